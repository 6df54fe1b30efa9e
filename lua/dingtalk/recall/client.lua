--- The client: recall any number of keys with tokens, batching,
-- concurrency, a QPS limit, retries and per-key accounting.
--
-- A thin adapter: the C core plans (core.plan: validate, dedupe and cut
-- batches once), builds and parses every request; the engine
-- (dingtalk.recall.engine) schedules them; the report module classifies
-- each key; a transport (libcurl multi in plain Lua, cosockets in
-- OpenResty, uv in Neovim) moves the bytes.
--
-- Every option is checked when the client is made: an unknown name, a
-- number that is not finite or out of range, or a fraction where a count
-- is wanted answers nil, err (an error object, code
-- invalidParameter.param.invalid); a value of the wrong Lua type raises.
local core = require "dingtalk.recall.core"
local engine = require "dingtalk.recall.engine"
local limiter = require "dingtalk.recall.limiter"
local tokens = require "dingtalk.recall.token"

local M = {}

--- Read-only view of the reasons meaning "already recalled" (kept for
-- callers of the old table; the one list is core.reasons, read through
-- dingtalk.recall.report).
M.ALREADY_RECALLED = setmetatable({}, {
  __index = function(_, reason) return require("dingtalk.recall.report").already_recalled(reason) or nil end,
  __newindex = function() error("client.ALREADY_RECALLED is read-only: the reasons are core.reasons", 2) end,
})

local Client = {}
Client.__index = Client

local DEFAULTS = {
  concurrency = 4, qps = 20, max_retries = 3,
  backoff_base = 0.2, backoff_max = 5,
  -- DingTalk counts requests when they arrive: a window 50 ms longer than
  -- a second keeps arrival jitter from pushing qps + 1 into one second.
  qps_window = 1.05,
}

-- Every option the client knows: its Lua type, and for numbers the range
-- [lo, hi] and whether it must be an integer.  Anything else is refused.
local INT, NUM = true, false
local OPTIONS = {
  robot_code = { "string" }, endpoint = { "string" }, ca_file = { "string" },
  access_token = { "string" }, app_key = { "string" }, app_secret = { "string" },
  suite_key = { "string" }, suite_secret = { "string" }, auth_corp_id = { "string" },
  suite_ticket = { "string" }, shared_dict = { "string|boolean" }, -- false: no shared dict
  timeout = { "number", NUM, 0.001, 600 },
  connect_timeout = { "number", NUM, 0.001, 600 },
  max_response_bytes = { "number", INT, 1, 67108864 },
  concurrency = { "number", INT, engine.LIMITS.concurrency[1], engine.LIMITS.concurrency[2] },
  qps = { "number", INT, 0, limiter.MAX_RATE },
  qps_window = { "number", NUM, 0.1, 60 },
  max_retries = { "number", INT, engine.LIMITS.max_retries[1], engine.LIMITS.max_retries[2] },
  backoff_base = { "number", NUM, engine.LIMITS.backoff_base[1], engine.LIMITS.backoff_base[2] },
  backoff_max = { "number", NUM, engine.LIMITS.backoff_max[1], engine.LIMITS.backoff_max[2] },
  retry_after_max = { "number", NUM, engine.LIMITS.retry_after_max[1], engine.LIMITS.retry_after_max[2] },
  token_refresh_margin = { "number", NUM, 0, 7200 },
  on_sent = { "function" }, random = { "function" }, token_provider = { "function" }, log = { "function" },
  transport = { "string|table" }, limiter = { "table" }, token_store = { "table" }, redis = { "string" },
}
M.OPTIONS = OPTIONS

-- The fields of a core target that build_send takes as options.
local TARGET_FIELDS = { "endpoint", "ca_file", "timeout", "connect_timeout", "max_response_bytes" }

local function param_error(msg, hint)
  return nil, core.error("invalidParameter.param.invalid", msg, hint and { hint = hint } or nil)
end

-- Levenshtein distance, for "did you mean".
local function distance(a, b)
  local prev = {}
  for j = 0, #b do prev[j] = j end
  for i = 1, #a do
    local cur = { [0] = i }
    for j = 1, #b do
      local cost = a:sub(i, i) == b:sub(j, j) and 0 or 1
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
    end
    prev = cur
  end
  return prev[#b]
end

--- The known option nearest to `name` (for a hint).
function M.closest_option(name)
  local best, bd
  for known in pairs(OPTIONS) do
    local d = distance(name, known)
    if not bd or d < bd or (d == bd and known < best) then best, bd = known, d end
  end
  return best
end

local function fmt(v)
  if v ~= v then return "nan" end
  return tostring(v)
end

-- Checks every option; raises on a wrong Lua type, nil, err on a bad value.
local function check_options(config)
  for name, v in pairs(config) do
    if type(name) ~= "string" then error("client option names must be strings", 4) end
    local spec = OPTIONS[name]
    if not spec then
      local near = M.closest_option(name)
      return param_error(("unknown client option '%s' (did you mean '%s'?)"):format(name, near),
        "Known options are listed in docs/architecture.md and README (the client).")
    end
    local want = spec[1]
    if not want:find(type(v), 1, true) then
      error(("client option '%s' must be a %s"):format(name, want:gsub("|", " or ")), 4)
    end
    if want == "number" then
      local lo, hi = spec[3], spec[4]
      if v ~= v or v == math.huge or v == -math.huge then
        return param_error(("client option '%s' must be a finite number, not %s"):format(name, fmt(v)))
      end
      if spec[2] == INT and v % 1 ~= 0 then
        return param_error(("client option '%s' must be a whole number, not %s"):format(name, fmt(v)))
      end
      if v < lo or v > hi then
        return param_error(("client option '%s' must be in %s..%s, not %s"):format(name, lo, hi, fmt(v)))
      end
    end
  end
  if config.backoff_base and config.backoff_max and config.backoff_base > config.backoff_max then
    return param_error("backoff_base must not exceed backoff_max")
  end
  if config.shared_dict == true then error("client option 'shared_dict' must be a string (or false)", 4) end
  -- limiter: a limiter object (acquire(now)), or Redis settings
  -- ({redis = url, key = ..., ...}: dingtalk.recall.shared checks them).
  if config.limiter ~= nil and type(config.limiter.acquire) == "function" and config.redis ~= nil then
    error("client options 'limiter' (an object) and 'redis' exclude each other", 4)
  end
  if config.limiter ~= nil and type(config.limiter.acquire) ~= "function" and config.limiter.redis == nil
    and config.redis == nil then
    error("client option 'limiter' must be a limiter (with acquire(now)) or Redis settings with redis = URL", 4)
  end
  return true
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
  local ok, err = check_options(config)
  if not ok then return nil, err end
  local self = setmetatable({}, Client)
  self.robot_code = config.robot_code
  self.concurrency = config.concurrency or DEFAULTS.concurrency
  self.qps = config.qps or DEFAULTS.qps
  self.max_retries = config.max_retries or DEFAULTS.max_retries
  self.backoff_base = config.backoff_base or DEFAULTS.backoff_base
  self.backoff_max = config.backoff_max or math.max(DEFAULTS.backoff_max, self.backoff_base)
  self.retry_after_max = config.retry_after_max
  -- The transport settings are checked once, now, not at the first call.
  local target
  target, err = core.target {
    endpoint = config.endpoint, ca_file = config.ca_file, timeout = config.timeout,
    connect_timeout = config.connect_timeout, max_response_bytes = config.max_response_bytes,
  }
  if not target then return nil, err end
  self.target = target
  local tm
  tm, err = tokens.new({
    access_token = config.access_token, app_key = config.app_key, app_secret = config.app_secret,
    suite_key = config.suite_key, suite_secret = config.suite_secret, auth_corp_id = config.auth_corp_id,
    suite_ticket = config.suite_ticket, token_provider = config.token_provider,
    token_refresh_margin = config.token_refresh_margin, transport_options = target,
  })
  if not tm then return nil, err end
  if config.token_store then tm:use_store(config.token_store) end
  self.tokens = tm
  self.transport_spec = config.transport
  self.transport_config = config
  local window = config.qps_window or DEFAULTS.qps_window
  self.limiters = {
    recall = config.limiter or limiter.new(self.qps, window),
    send = limiter.new(self.qps, window),
  }
  self.own_limiter = config.limiter == nil
  -- Shared by every host of the app through Redis (options `redis` or
  -- `limiter = {redis = ...}`): the QPS budget and the token; see
  -- dingtalk.recall.shared and docs/scale-out.md.
  if config.redis ~= nil or (config.limiter ~= nil and type(config.limiter.acquire) ~= "function") then
    if not self.own_limiter then self.limiters.recall = limiter.new(self.qps, window) end
    ok, err = require("dingtalk.recall.shared").apply(self, config, self.qps, window)
    if not ok then return nil, err end
    self.shared_state = self.redis ~= nil
    self.own_limiter = not self.shared_state
  end
  self.on_sent = config.on_sent
  self.random = config.random or math.random
  self.log = config.log
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
        if api ~= "recall" or self.own_limiter then
          self.limiters[api] = limiter.wrap(t:limiter(api, lim.rate, lim.window))
        end
      end
    end
    if t.token_store and not self.transport_config.token_store and not self.shared_state then
      self.tokens:use_store(t:token_store())
    end
    self.engines = nil
  end
  return t
end

--- The engine of one API (recall or send), made with the transport.
function Client:engine(api)
  local T = self:transport()
  local engines = self.engines
  if not engines then
    engines = {}
    self.engines = engines
  end
  local e = engines[api]
  if not e then
    e = engine.new {
      transport = T, target = self.target, tokens = self.tokens, limiter = self.limiters[api],
      concurrency = self.concurrency, max_retries = self.max_retries, backoff_base = self.backoff_base,
      backoff_max = self.backoff_max, retry_after_max = self.retry_after_max, random = self.random,
      log = self.log,
    }
    engines[api] = e
  end
  return e
end

--- Releases the transport (connections).  Safe to call twice.
function Client:close()
  if self._transport and self._transport.close then self._transport:close() end
  self._transport = nil
  self.engines = nil
end

---------------------------------------------------------------------------
-- Recall
---------------------------------------------------------------------------

-- One group's plan: plan | nil, err.  Wrong Lua types raise (core.plan).
local function plan_group(self, cid, keys, robot)
  if keys ~= nil and type(keys) ~= "table" then
    return param_error("keys must be a table (an array of strings)")
  end
  if cid ~= nil and type(cid) ~= "string" then return param_error("conversation must be a string") end
  robot = robot or self.robot_code
  if cid == nil or cid == "" then
    return nil, core.error("miss.openConversationId", "the conversation (open_conversation_id) is missing or empty")
  end
  if keys == nil then
    return nil, core.error("invalidParameter.processQueryKey.missing", "keys is missing")
  end
  return core.plan(cid, robot, keys)
end

--- client:run(plans, hooks [, opts]) -> report: runs core plans through
-- the client's engine (see dingtalk.recall.engine); the ledger uses it.
function Client:run(plans, hooks, opts)
  return self:engine("recall"):run(plans, hooks, opts)
end

--- client:recall(open_conversation_id, keys [, opts]) -> report | nil, err
-- opts.on_progress(done, total) is called as batches finish;
-- opts.robot_code overrides the client's robot; opts.ambiguous = true
-- says the keys may have been recalled before (a key the server calls
-- already recalled then counts recalled, as the ledger does).
function Client:recall(cid, keys, opts)
  if opts == nil then
    local plan, err = plan_group(self, cid, keys) -- the usual call: no tables for options
    if not plan then return nil, err end
    return self:run({ plan })
  end
  if type(opts) ~= "table" then error("recall options must be a table", 2) end
  local plan, err = plan_group(self, cid, keys, opts.robot_code)
  if not plan then return nil, err end
  return self:run({ plan }, { on_progress = opts.on_progress }, { ambiguous = opts.ambiguous })
end

-- A group's keys without those an earlier group already had (a key names
-- one message: it is recalled once).  The caller's array itself unless a
-- duplicate shows up; arrays core.plan will refuse are passed on as they are.
local function without_seen(keys, seen)
  if type(keys) ~= "table" then return keys end
  local out = keys
  local n = #keys
  for i = 1, n do
    local k = keys[i]
    if type(k) ~= "string" then return keys end -- core.plan says why
    if seen[k] then
      if out == keys then
        out = {}
        for j = 1, i - 1 do out[j] = keys[j] end
      end
    else
      seen[k] = true
      if out ~= keys then out[#out + 1] = k end
    end
  end
  if out ~= keys and #out == 0 then return false end
  return out
end

--- client:recall_groups(groups [, opts]) -> report | nil, err
-- Recalls in many conversations at once, in one run (one concurrency
-- pool, one QPS budget, fair across groups).  groups: an array of
-- {conversation = cid, keys = {...}, robot_code = optional}, or a map
-- cid -> keys.  One report over all keys (a key seen in an earlier group
-- is not sent again).
function Client:recall_groups(groups, opts)
  opts = opts or {}
  if type(groups) ~= "table" then error("recall_groups expects a table", 2) end
  if type(opts) ~= "table" then error("recall options must be a table", 2) end
  local list = {}
  if groups[1] ~= nil then
    list = groups
  else
    for cid, keys in pairs(groups) do list[#list + 1] = { conversation = cid, keys = keys } end
    table.sort(list, function(a, b) return tostring(a.conversation) < tostring(b.conversation) end)
  end
  local plans, seen = {}, (#list > 1) and {} or nil
  for _, g in ipairs(list) do
    if type(g) ~= "table" then error("recall_groups: each group must be a table", 2) end
    local keys = g.keys
    if seen then keys = without_seen(keys, seen) end
    if keys ~= false then
      local plan, err = plan_group(self, g.conversation, keys, g.robot_code)
      if not plan then return nil, err end
      plans[#plans + 1] = plan
    end
  end
  if #plans == 0 then
    return nil, core.error("invalidParameter.processQueryKey.missing", "keys is empty")
  end
  return self:run(plans, { on_progress = opts.on_progress })
end

---------------------------------------------------------------------------
-- Send (where keys come from)
---------------------------------------------------------------------------

--- client:send(open_conversation_id, msg_key, msg_param [, opts]) ->
-- process_query_key | nil, err.  msg_param: a table (sent as the JSON
-- string the API wants).  The on_sent hook gets {key, conversation, robot,
-- msg_key, sent_at, tags, ttl} (opts.tags and opts.ttl): the fields of a
-- ledger entry, so ledger:record takes it as it is.
function Client:send(cid, msg_key, msg_param, opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("send options must be a table", 2) end
  local robot = opts.robot_code or self.robot_code
  local request = { openConversationId = cid, robotCode = robot, msgKey = msg_key, msgParam = msg_param }
  local target = self.target
  local result, err = self:engine("send"):call {
    build = function(token)
      local o = { access_token = token }
      for _, f in ipairs(TARGET_FIELDS) do o[f] = target[f] end
      return core.build_send(request, o)
    end,
    parse = function(status, headers, body, token) return core.parse_send(status, headers, body, token) end,
  }
  if not result then return nil, err end
  local pqk = result.processQueryKey
  if self.on_sent then
    self.on_sent {
      key = pqk, conversation = cid, robot = robot, msg_key = msg_key,
      sent_at = os.time(), tags = opts.tags, ttl = opts.ttl,
    }
  end
  return pqk
end

--- client:token() -> token | nil, err: fetches (or returns the cached)
-- token; for checking credentials.  The token is the caller's to guard.
function Client:token()
  return self:engine("send"):token()
end

M.Client = Client
return M
