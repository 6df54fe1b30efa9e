--- The client: recall any number of keys with tokens, batching,
-- concurrency, a QPS limit, retries and per-key accounting.
--
-- The C core validates, builds and parses every request; a transport
-- (libcurl multi in plain Lua, cosockets in OpenResty, uv in Neovim) moves
-- the bytes.  The engine below is host-neutral: it only calls
-- transport.now(), transport:start(built, tag) and transport:poll(wait).
local core = require "dingtalk.recall.core"
local limiter = require "dingtalk.recall.limiter"
local tokens = require "dingtalk.recall.token"

local M = {}
local Client = {}
Client.__index = Client

local MAX_KEYS = core.MAX_KEYS
local DEFAULTS = {
  concurrency = 4, qps = 20, max_retries = 3,
  backoff_base = 0.2, backoff_max = 5,
  -- DingTalk counts requests when they arrive: a window 50 ms longer than
  -- a second keeps arrival jitter from pushing qps + 1 into one second.
  qps_window = 1.05,
}
-- Failure reasons that mean "this message is already gone".  DingTalk
-- does not document its text; ALREADY_RECALLED is the simulator's.
M.ALREADY_RECALLED = { ALREADY_RECALLED = true }

-- Errors after which the server may have done the recall all the same:
-- the answer, not the request, was lost.
local AMBIGUOUS = {
  ["transport.io"] = true, ["transport.timeout"] = true,
  ["response.invalid"] = true, ["response.too_large"] = true,
}

local QPS_CODES = {
  ["Forbidden.AccessDenied.QpsLimitForAppkeyAndApi"] = true,
  ["Forbidden.AccessDenied.QpsLimitForApi"] = true,
}

local function param_error(msg)
  return nil, core.error("invalidParameter.param.invalid", msg)
end

local function opt_type(config, name, want)
  local v = config[name]
  if v ~= nil and type(v) ~= want then
    error(("client option '%s' must be a %s"):format(name, want), 3)
  end
  return v
end

--- Picks the transport: an object given by the caller, a name, or the
-- host's natural one (cosockets inside OpenResty, libcurl elsewhere).
local function make_transport(spec, config)
  if type(spec) == "table" then return spec end
  if spec == nil then
    local ok, hosts = pcall(require, "dingtalk.recall.hosts")
    spec = ok and hosts.detect() or "curl"
  end
  local mod = require("dingtalk.recall.transport." .. spec)
  return mod.new { max_connections = config.concurrency, shared_dict = config.shared_dict }
end

--- recall.client(config) -> client | nil, err
function M.new(config)
  if type(config) ~= "table" then error("recall.client expects a table of options", 2) end
  for _, name in ipairs { "robot_code", "endpoint", "ca_file", "access_token", "app_key", "app_secret",
    "suite_key", "suite_secret", "auth_corp_id", "suite_ticket" } do
    opt_type(config, name, "string")
  end
  for _, name in ipairs { "timeout", "connect_timeout", "max_response_bytes", "concurrency", "qps",
    "max_retries", "backoff_base", "backoff_max" } do
    opt_type(config, name, "number")
  end
  opt_type(config, "on_sent", "function")
  local self = setmetatable({}, Client)
  self.robot_code = config.robot_code
  self.concurrency = math.floor(config.concurrency or DEFAULTS.concurrency)
  self.qps = config.qps or DEFAULTS.qps
  self.max_retries = math.floor(config.max_retries or DEFAULTS.max_retries)
  self.backoff_base = config.backoff_base or DEFAULTS.backoff_base
  self.backoff_max = config.backoff_max or DEFAULTS.backoff_max
  if self.concurrency < 1 then return param_error("concurrency must be at least 1") end
  if self.qps < 0 then return param_error("qps must be 0 (off) or positive") end
  if self.max_retries < 0 then return param_error("max_retries must not be negative") end
  self.options = {
    endpoint = config.endpoint, ca_file = config.ca_file, timeout = config.timeout,
    connect_timeout = config.connect_timeout, max_response_bytes = config.max_response_bytes,
  }
  -- The endpoint and options are checked now, not at the first call.
  local probe = {}
  for k, v in pairs(self.options) do probe[k] = v end
  probe.access_token = "probe"
  local ok, err = core.validate({ openConversationId = "cid", robotCode = "probe",
    processQueryKeys = { "probe" } }, probe)
  if not ok then return nil, err end
  local tm
  tm, err = tokens.new({
    access_token = config.access_token, app_key = config.app_key, app_secret = config.app_secret,
    suite_key = config.suite_key, suite_secret = config.suite_secret, auth_corp_id = config.auth_corp_id,
    suite_ticket = config.suite_ticket, token_provider = config.token_provider,
    token_refresh_margin = config.token_refresh_margin, transport_options = self.options,
  })
  if not tm then return nil, err end
  self.tokens = tm
  self.transport_spec = config.transport
  self.transport_config = config
  self.limiters = {
    recall = limiter.new(self.qps, config.qps_window or DEFAULTS.qps_window),
    send = limiter.new(self.qps, config.qps_window or DEFAULTS.qps_window),
  }
  -- Shared by every host of the app through Redis (options `redis` or
  -- `limiter = {redis = ...}`): the QPS budget and the token; see
  -- dingtalk.recall.shared and docs/scale-out.md.
  if config.redis ~= nil or config.limiter ~= nil then
    ok, err = require("dingtalk.recall.shared").apply(self, config, self.qps,
      config.qps_window or DEFAULTS.qps_window)
    if not ok then return nil, err end
    self.shared_state = self.redis ~= nil
  end
  self.on_sent = config.on_sent
  self.random = config.random or math.random
  return self
end

--- The client's transport, made at first use.  A transport may share
-- limiters and tokens between processes (OpenResty workers): it then
-- provides limiter(api, rate, window) and token_store().
function Client:transport()
  local t = self._transport
  if not t then
    t = make_transport(self.transport_spec, self.transport_config)
    self._transport = t
    if t.limiter and not self.shared_state then
      for api, lim in pairs(self.limiters) do
        self.limiters[api] = t:limiter(api, lim.rate, lim.window)
      end
    end
    if t.token_store and not self.shared_state then self.tokens:use_store(t:token_store()) end
  end
  return t
end

--- Releases the transport (connections).  Safe to call twice.
function Client:close()
  if self._transport and self._transport.close then self._transport:close() end
  self._transport = nil
end

---------------------------------------------------------------------------
-- The engine
---------------------------------------------------------------------------

local function backoff(self, attempt)
  local base = math.min(self.backoff_max, self.backoff_base * 2 ^ (attempt - 1))
  return base / 2 + self.random() * base / 2
end

--- Runs jobs to completion.  A job has: build(job, token) -> built|nil,err;
-- parse(job, status, headers, body) -> result|nil,err; finish(job, result);
-- fail(job, err); limiter (a limiter or nil); needs_token.
function Client:_run(jobs, stats)
  local T = self:transport()
  local now = T.now
  local tm = self.tokens
  -- Jobs never started, in order: an array, or {n = count, get = fn(i)}
  -- that makes the i-th job when the engine reaches it (i only grows).
  local head, nfresh = 1, jobs.n or #jobs
  local fresh = jobs.get or function(i) return jobs[i] end
  local waiting = {}                   -- jobs to retry, each with ready_at
  local in_flight, token_job = 0, nil
  local options = {}
  for k, v in pairs(self.options) do options[k] = v end

  local function fail_waiting(err)
    for i = head, nfresh do fresh(i):fail(err) end
    head = nfresh + 1
    for i = #waiting, 1, -1 do
      local j = waiting[i]
      if j.needs_token then
        table.remove(waiting, i)
        j:fail(err)
      end
    end
  end

  local function retry_later(job, err, t)
    if QPS_CODES[err.code] then stats.throttled = stats.throttled + 1 end
    if AMBIGUOUS[err.code] then job.ambiguous = true end
    if err.code == "InvalidAuthentication" and tm:managed() and job.needs_token and not job.auth_refreshed then
      tm:invalidate(job.token)
      job.auth_refreshed = true
      job.ready_at = t
    elseif err.retryable and job.attempts < self.max_retries then
      job.attempts = job.attempts + 1
      local delay = backoff(self, job.attempts)
      if err.retry_after and err.retry_after > delay then delay = err.retry_after end
      job.ready_at = t + delay
    else
      return false
    end
    stats.retries = stats.retries + 1
    waiting[#waiting + 1] = job
    return true
  end

  local token_handlers = {
    needs_token = false,
    build = function() return tm:build(self.options) end,
    parse = function(_, status, headers, body) return tm:accept(status, headers, body, now()) end,
    finish = function() token_job = nil end,
    fail = function(_, err) token_job = nil; fail_waiting(err) end,
  }

  local function start(job, token, t)
    local built, err = job:build(token, options)
    if not built then
      job:fail(err)
      return
    end
    if job.limiter then job.limiter:take(t) end
    job.token = token
    local ok, serr = T:start(built, job)
    if not ok then
      job:fail(serr)
      return
    end
    in_flight = in_flight + 1
    if job.needs_token then stats.requests = stats.requests + 1 end
  end

  -- The next job allowed to start now, or nil and the time to look again.
  local function next_job(t, have_token)
    local wake = math.huge
    for i, j in ipairs(waiting) do
      if j.ready_at <= t and (have_token or not j.needs_token) then
        local d = j.limiter and j.limiter:delay(t) or 0
        if d <= 0 then
          table.remove(waiting, i)
          return j
        end
        wake = math.min(wake, t + d)
      elseif j.ready_at > t then
        wake = math.min(wake, j.ready_at)
      end
    end
    local j = head <= nfresh and fresh(head) or nil
    if j and (have_token or not j.needs_token) then
      local d = j.limiter and j.limiter:delay(t) or 0
      if d <= 0 then
        head = head + 1
        return j
      end
      wake = math.min(wake, t + d)
    end
    return nil, wake
  end

  while head <= nfresh or #waiting > 0 or in_flight > 0 do
    local t = now()
    local token = tm:current(t)
    if not token and tm:managed() and not token_job and (head <= nfresh or #waiting > 0) then
      if tm.provider then
        local err
        token, err = tm:call_provider(t)
        stats.token_fetches = stats.token_fetches + 1
        if not token then fail_waiting(err) end
      else
        token_job = setmetatable({ attempts = 0, ready_at = t }, { __index = token_handlers })
        waiting[#waiting + 1] = token_job
        stats.token_fetches = stats.token_fetches + 1
      end
    end
    local wake = math.huge
    while in_flight < self.concurrency do
      local job, w = next_job(t, token ~= nil)
      if not job then
        wake = w
        break
      end
      start(job, token, t)
    end
    local wait = wake - t
    if in_flight > 0 then wait = math.min(wait, 1.0) end
    if wait == math.huge then
      if head > nfresh and #waiting == 0 and in_flight == 0 then break end
      wait = 0.05 -- waiting on nothing we know of (a token in flight); look again soon
    end
    local done = T:poll(wait > 0 and wait or 0)
    for i = 1, #done do
      local c = done[i]
      local job = c.tag
      in_flight = in_flight - 1
      local t2 = now()
      local result, err = nil, c.error
      if not err then result, err = job:parse(c.status, c.headers, c.body) end
      if result then
        job:finish(result)
      elseif not retry_later(job, err, t2) then
        job:fail(err)
      end
    end
  end
end

---------------------------------------------------------------------------
-- Recall
---------------------------------------------------------------------------

local RecallJob = {}
RecallJob.__index = RecallJob
RecallJob.needs_token = true

function RecallJob:build(token, options)
  options.access_token = token
  return core.build(self.request, options)
end

function RecallJob:parse(status, headers, body)
  return core.parse(status, headers, body, self.token)
end

function RecallJob:finish(result)
  local report = self.report
  local keys = self.request.processQueryKeys
  local succ, failed = result.successResult, result.failedResult
  local recalled, n = report.recalled, report._nrecalled
  -- The usual answer lists the batch's keys in order: no set needed then.
  local same = #succ == #keys
  for i = 1, same and #keys or 0 do
    if succ[i] ~= keys[i] then
      same = false
      break
    end
  end
  if same then
    for i = 1, #keys do recalled[n + i] = keys[i] end
    n = n + #keys
  else
    local ok = {}
    for _, k in ipairs(succ) do ok[k] = true end
    for _, k in ipairs(keys) do
      if ok[k] then
        n = n + 1
        recalled[n] = k
      elseif failed[k] ~= nil and self.ambiguous and M.ALREADY_RECALLED[failed[k]] then
        -- An earlier attempt whose answer was lost did the recall.
        n = n + 1
        recalled[n] = k
        report.already_recalled[#report.already_recalled + 1] = k
      elseif failed[k] ~= nil then
        report.failed[k] = failed[k]
      else
        report.errors[k] = core.error("response.missing_key",
          "the server answered neither success nor failure for this key",
          { request_id = result.request_id })
      end
    end
  end
  report._nrecalled = n
  self:progress()
end

function RecallJob:fail(err)
  for _, k in ipairs(self.request.processQueryKeys) do self.report.errors[k] = err end
  self:progress()
end

function RecallJob:progress()
  local report = self.report
  report._done = report._done + #self.request.processQueryKeys
  if self.on_progress then self.on_progress(report._done, report._total) end
end

local function new_report()
  return { recalled = {}, failed = {}, errors = {}, already_recalled = {}, requests = 0, retries = 0, throttled = 0,
    token_fetches = 0, total = 0, _done = 0, _nrecalled = 0 }
end

-- Checks one group's arguments; returns robot | nil, err.
local function check_group(self, cid, keys, robot)
  if cid == nil or cid == "" then
    return nil, core.error("miss.openConversationId", "open_conversation_id is missing or empty")
  end
  if type(cid) ~= "string" then return param_error("open_conversation_id must be a string") end
  if keys == nil then
    return nil, core.error("invalidParameter.processQueryKey.missing", "keys is missing")
  end
  if type(keys) ~= "table" then return param_error("keys must be a table (an array of strings)") end
  robot = robot or self.robot_code
  -- Conversation and robot are checked once, before anything is sent.
  local ok, err = core.validate { openConversationId = cid, robotCode = robot, processQueryKeys = { "k" } }
  if not ok then return nil, err end
  return robot
end

-- The recall jobs of a run: batches of 20 become jobs only when the
-- engine reaches them, so 100,000 keys never hold 5,000 jobs at once.
-- groups: {cid, robot, keys (unique, valid), n, nbatches} in order.
local function recall_jobs(self, report, on_progress)
  local groups = {}
  local jobs = { n = 0, groups = groups }
  local g, base, last_i, last_job = 1, 0, nil, nil
  local lim = self.limiters.recall
  function jobs.get(i)
    if i == last_i then return last_job end
    while i > base + groups[g].nbatches do
      base = base + groups[g].nbatches
      g = g + 1
    end
    local grp = groups[g]
    local first = (i - base - 1) * MAX_KEYS
    local batch = {}
    for j = 1, math.min(MAX_KEYS, grp.n - first) do batch[j] = grp.keys[first + j] end
    last_i, last_job = i, setmetatable({
      request = { openConversationId = grp.cid, robotCode = grp.robot, processQueryKeys = batch },
      report = report, attempts = 0, ready_at = 0, limiter = lim, on_progress = on_progress,
    }, RecallJob)
    return last_job
  end
  return jobs
end

-- Adds one group's keys to jobs: unique keys in input order, in batches
-- of 20; keys the API would refuse go straight to errors.  Returns the
-- number of unique keys.
local function add_group(_, jobs, report, cid, robot, keys)
  local seen, total = report._seen, 0
  -- `uniq` is the caller's array itself until a duplicate or a bad key
  -- shows up; one probe table checks every key (no garbage per key).
  local uniq, n = keys, 0
  local probe = { openConversationId = cid, robotCode = robot, processQueryKeys = { "" } }
  for i = 1, #keys do
    local k = keys[i]
    local good = false
    if k ~= nil and not seen[k] then
      seen[k] = true
      total = total + 1
      probe.processQueryKeys[1] = k
      local kok, kerr = core.validate(probe)
      if kok then
        good = true
      else
        report.errors[k] = kerr
        report._done = report._done + 1
      end
    end
    if good then
      n = n + 1
      if uniq ~= keys then uniq[n] = k end
    elseif uniq == keys then
      uniq = {}
      for j = 1, n do uniq[j] = keys[j] end
    end
  end
  if n > 0 then
    local nb = math.ceil(n / MAX_KEYS)
    jobs.groups[#jobs.groups + 1] = { cid = cid, robot = robot, keys = uniq, n = n, nbatches = nb }
    jobs.n = jobs.n + nb
  end
  return total
end

local function run_report(self, jobs, report, t0)
  report._total = report.total
  report._seen = nil -- the dedupe set is not needed while the requests run
  self:_run(jobs, report)
  report._done, report._total, report._nrecalled = nil, nil, nil
  report.ok = next(report.failed) == nil and next(report.errors) == nil
  report.elapsed = self:transport().now() - t0
  return report
end

--- client:recall(open_conversation_id, keys [, opts]) -> report | nil, err
-- opts.on_progress(done, total) is called as batches finish;
-- opts.robot_code overrides the client's robot.
function Client:recall(cid, keys, opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("recall options must be a table", 2) end
  local robot, err = check_group(self, cid, keys, opts.robot_code)
  if not robot then return nil, err end
  local t0 = self:transport().now()
  local report = new_report()
  local jobs = recall_jobs(self, report, opts.on_progress)
  report._seen = {}
  report.total = add_group(self, jobs, report, cid, robot, keys)
  if report.total == 0 then
    return nil, core.error("invalidParameter.processQueryKey.missing", "keys is empty")
  end
  return run_report(self, jobs, report, t0)
end

--- client:recall_groups(groups [, opts]) -> report | nil, err
-- Recalls in many conversations at once, in one run (one concurrency
-- pool, one QPS budget).  groups: an array of {conversation = cid,
-- keys = {...}, robot_code = optional}, or a map cid -> keys.  The report
-- is one report over all keys (keys are unique across conversations).
function Client:recall_groups(groups, opts)
  opts = opts or {}
  if type(groups) ~= "table" then error("recall_groups expects a table", 2) end
  if type(opts) ~= "table" then error("recall options must be a table", 2) end
  local list = {}
  if groups[1] ~= nil then
    list = groups
  else
    for cid, keys in pairs(groups) do list[#list + 1] = { conversation = cid, keys = keys } end
    table.sort(list, function(a, b) return a.conversation < b.conversation end)
  end
  local t0 = self:transport().now()
  local report = new_report()
  local jobs = recall_jobs(self, report, opts.on_progress)
  report._seen = {}
  for _, g in ipairs(list) do
    local robot, err = check_group(self, g.conversation, g.keys, g.robot_code)
    if not robot then return nil, err end
    report.total = report.total + add_group(self, jobs, report, g.conversation, robot, g.keys)
  end
  if report.total == 0 then
    return nil, core.error("invalidParameter.processQueryKey.missing", "keys is empty")
  end
  return run_report(self, jobs, report, t0)
end

---------------------------------------------------------------------------
-- Send (where keys come from)
---------------------------------------------------------------------------

local SendJob = {}
SendJob.__index = SendJob
SendJob.needs_token = true

function SendJob:build(token, options)
  options.access_token = token
  return core.build_send(self.request, options)
end

function SendJob:parse(status, headers, body)
  return core.parse_send(status, headers, body, self.token)
end

function SendJob:finish(result) self.result = result end
function SendJob:fail(err) self.err = err end

--- client:send(open_conversation_id, msg_key, msg_param [, opts]) ->
-- process_query_key | nil, err.  msg_param: a table (sent as the JSON
-- string the API wants).  opts.tags and opts.ttl reach the on_sent hook.
function Client:send(cid, msg_key, msg_param, opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("send options must be a table", 2) end
  local robot = opts.robot_code or self.robot_code
  local job = setmetatable({
    request = { openConversationId = cid, robotCode = robot, msgKey = msg_key, msgParam = msg_param },
    attempts = 0, ready_at = 0, limiter = self.limiters.send,
  }, SendJob)
  local stats = { requests = 0, retries = 0, throttled = 0, token_fetches = 0 }
  self:_run({ job }, stats)
  if not job.result then return nil, job.err end
  local pqk = job.result.processQueryKey
  if self.on_sent then
    self.on_sent {
      processQueryKey = pqk, openConversationId = cid, robotCode = robot, msgKey = msg_key,
      sent_at = os.time(), tags = opts.tags, ttl = opts.ttl,
    }
  end
  return pqk
end

--- client:token() -> token | nil, err: fetches (or returns the cached)
-- token; for checking credentials.  The token is the caller's to guard.
function Client:token()
  local T = self:transport()
  local tok = self.tokens:current(T.now())
  if tok then return tok end
  if self.tokens.provider then return self.tokens:call_provider(T.now()) end
  -- A job that needs a token and, given one, sends nothing: the engine
  -- fetches the token exactly as it does for recalls.
  local job = {
    needs_token = true, attempts = 0, ready_at = 0,
    build = function(j, token) j.result = token end,
    fail = function(j, e) j.err = e end,
  }
  self:_run({ job }, { requests = 0, retries = 0, throttled = 0, token_fetches = 0 })
  if job.result then return job.result end
  return nil, job.err
end

M.Client = Client
return M
