--- dingtalk.recall.engine.run: one run of the engine (see engine/init.lua
-- for what a run does and promises): the jobs waiting, in flight and
-- fresh, the round robin over the plans, the token of the run, retries and
-- the stop after a fatal error.  engine/init.lua makes a run and calls
-- run:loop(); nothing else uses this module.
local core = require "dingtalk.recall.core"
local report = require "dingtalk.recall.report"
local redaction = require "dingtalk.recall.report.redact"

local M = {}

--- Seconds to wait at least after a QPS-limit answer.
M.THROTTLE_WAIT = 1.0
--- Seconds a fetched token is used within one run even if the store calls
-- it expired (a server answering expireIn = 1e-9 cannot make the run fetch
-- tokens in a loop: at most one fetch per TOKEN_REUSE seconds, plus one per
-- batch after InvalidAuthentication).
M.TOKEN_REUSE = 60
--- Longest single wait in poll while requests are in flight.
local MAX_POLL = 1.0
--- Longest wait taken from one limiter answer before asking it again.
local MAX_LIMIT_WAIT = 60

local NOFLAGS = {}

---------------------------------------------------------------------------
-- One run
---------------------------------------------------------------------------

local Run = {}
Run.__index = Run

function M.new(e, stats)
  return setmetatable({
    e = e, T = e.transport, tm = e.tokens, stats = stats,
    waiting = {},        -- jobs due for another attempt (each with ready_at)
    in_flight = 0,
    token = nil, token_at = nil, token_job = nil,
    plans = {}, active = {}, nexti = {}, rr = 1,   -- fresh batches, round robin
    calls = {},          -- single requests (send, token) not started yet
    done = 0, total = 0,
  }, Run)
end

function Run:log(level, msg)
  local log = self.e.log
  if log then pcall(log, level, msg) end
end

-- Whether any job still waits for a start (not counting those in flight).
function Run:pending()
  return #self.active > 0 or #self.waiting > 0 or #self.calls > 0
end

-- Batch jobs: {kind = "batch", plan, i, p (plan index), keys, attempts, ...}
-- (What every batch job shares is read through its metatable: a job's own
-- fields then fit in eight slots.)
local BATCH = { __index = { kind = "batch", needs_token = true, limited = true } }
local function batch_job(plan, p, i)
  return setmetatable({ plan = plan, p = p, i = i, keys = core.batch(plan, i), attempts = 0 }, BATCH)
end

-- The next fresh batch in round-robin order, without taking it.
function Run:peek_fresh()
  local active = self.active
  if #active == 0 then return nil end
  if self.rr > #active then self.rr = 1 end
  local p = active[self.rr]
  local job = self.peeked
  if not job or job.p ~= p or job.i ~= self.nexti[p] then
    job = batch_job(self.plans[p], p, self.nexti[p])
    self.peeked = job
  end
  return job
end

-- Takes the batch peek_fresh returned.
function Run:take_fresh()
  local active, p = self.active, self.active[self.rr]
  local plan, i = self.plans[p], self.nexti[p]
  self.peeked = nil
  if i >= plan.nbatches then
    table.remove(active, self.rr) -- the next plan moves into this slot
  else
    self.nexti[p] = i + 1
    self.rr = self.rr + 1
  end
end

-- The job to start now, or nil and the time to look again.  Due retries
-- first, then single calls, then fresh batches round robin.
function Run:pick(t, token)
  local wake = math.huge
  for idx, j in ipairs(self.waiting) do
    if j.ready_at <= t then
      if token or not j.needs_token then return j, nil, idx end
    elseif j.ready_at < wake then
      wake = j.ready_at
    end
  end
  if not token then return nil, wake end
  if #self.calls > 0 then return self.calls[1], nil, "call" end
  local j = self:peek_fresh()
  if j then return j, nil, "fresh" end
  return nil, wake
end

function Run:take(where)
  if where == "fresh" then
    self:take_fresh()
  elseif where == "call" then
    table.remove(self.calls, 1)
  else
    table.remove(self.waiting, where)
  end
end

-- Finishes a batch: reports its outcomes through the hooks.
function Run:batch_done(job, outcomes)
  local hooks = self.hooks
  if hooks.on_batch_done then hooks.on_batch_done(job.plan, job.i, job.keys, outcomes, self.stats) end
  self.done = self.done + #job.keys
  if hooks.on_progress then hooks.on_progress(self.done, self.total) end
end

-- The secrets of this run: the token a job was sent with, the current
-- token, a fixed token and the app or suite secret.
-- (The list is kept while the two tokens stay the same: one per run, as
-- a rule, rather than one per answer.)
function Run:secrets(job)
  local jt, cur = job and job.token, self.token
  local list = self.secret_list
  if list and self.secret_jt == jt and self.secret_cur == cur then return list end
  local tm = self.tm
  list = { jt, cur, tm.fixed }
  if tm.secrets then for _, v in ipairs(tm.secrets) do list[#list + 1] = v end end
  self.secret_list, self.secret_jt, self.secret_cur = list, jt, cur
  return list
end

-- The one redaction point of a run: every error a job ends with (from
-- the transport, the parser, the builder, a hook or the token manager)
-- loses every secret of this client, whatever its length, in every field,
-- before anyone (report, tostring, CLI, Neovim, logs) sees it.  Codes are
-- read for retries and fatality before this, so redaction cannot mislead.
function Run:fail(job, err)
  err = redaction.redact_error(err, self:secrets(job))
  if job.kind == "batch" then
    self:batch_done(job, report.fail(self.stats, job.keys, err))
  elseif job.kind == "token" then
    self.token_job = nil
    self:fail_token_waiters(err)
  else
    job.err = err
  end
end

-- Every job that needs a token and has not started fails with err (a
-- token that cannot be had).
function Run:fail_token_waiters(err)
  local waiting = self.waiting
  for i = #waiting, 1, -1 do
    local j = waiting[i]
    if j.needs_token then
      table.remove(waiting, i)
      self:fail(j, err)
    end
  end
  self:fail_fresh(err)
end

-- Fails every batch and call not started yet.
function Run:fail_fresh(err)
  local calls = self.calls
  self.calls = {}
  for _, j in ipairs(calls) do self:fail(j, err) end
  while #self.active > 0 do
    local j = self:peek_fresh()
    self:take_fresh()
    self:fail(j, err)
  end
end

-- A fatal error: nothing more is sent; what is in flight still finishes.
function Run:stop(err)
  if self.stopped then return end
  self.stopped = err
  self.stats.stopped = err
  self:log("error", "run stopped: " .. tostring(err.code))
  local waiting = self.waiting
  self.waiting = {}
  for _, j in ipairs(waiting) do
    if j.kind == "token" then self.token_job = nil end
    self:fail(j, err)
  end
  self:fail_fresh(err)
end

function Run:backoff(attempt)
  local e = self.e
  local base = math.min(e.backoff_max, e.backoff_base * 2 ^ (attempt - 1))
  local r = tonumber(e.random()) or 0.5
  if not (r >= 0 and r <= 1) then r = 0.5 end
  return base / 2 + r * base / 2
end

-- After a failed attempt: queues the job again (true) or not (false).
function Run:retry(job, err, t)
  local flags = core.codes[err.code] or NOFLAGS
  local stats, e = self.stats, self.e
  if flags.throttle then stats.throttled = stats.throttled + 1 end
  if flags.ambiguous then job.ambiguous = true end
  if flags.fatal or self.stopped then return false end
  if flags.auth and job.needs_token and self.tm:managed() and not job.auth_refreshed then
    job.auth_refreshed = true
    if job.token == self.token then
      self.tm:invalidate(job.token)
      self.token = nil
    end
    job.ready_at = t
  else
    -- The error's own word first: core.error sets it from the catalogue,
    -- and whoever made the error may have said otherwise (an exchange
    -- that cannot be made in this phase is no better a second later).
    local retryable = err.retryable
    if type(retryable) ~= "boolean" then retryable = flags.retryable == true end
    if not retryable or job.attempts >= e.max_retries then return false end
    job.attempts = job.attempts + 1
    local delay = self:backoff(job.attempts)
    if flags.throttle and delay < M.THROTTLE_WAIT then delay = M.THROTTLE_WAIT end
    local ra = tonumber(err.retry_after)
    if ra and ra > delay then delay = math.min(ra, e.retry_after_max) end
    job.ready_at = t + delay
  end
  if job.kind ~= "token" then stats.retries = stats.retries + 1 end
  self:log("info", ("retrying after %s (attempt %d)"):format(tostring(err.code), job.attempts))
  self.waiting[#self.waiting + 1] = job
  return true
end

-- A batch's first start: its on_batch_start hook, asked before the QPS
-- budget, so a batch the hook refuses (a store error, keys another host of
-- a shared ledger holds) costs no start.  -> true, or false when refused.
function Run:begin(job)
  job.started = true
  local hook = self.hooks.on_batch_start
  if not hook then return true end
  local ok, herr = hook(job.plan, job.i, job.keys)
  if ok == false then
    self:fail(job, herr or core.error("invalidParameter.param.invalid", "the batch was refused by its hook"))
    return false
  end
  return true
end

--- runs.send_batch(T, target, plan, i, keys, token, tag) -> ok, err, refused:
-- sends batch i of plan (keys: core.batch(plan, i)) on transport T.  A
-- transport with a start_batch field of its own (not inherited: a wrapper of
-- start() sees every request) sends it without a built table; else
-- core.build_batch and T:start.  refused: the builder's answer, nothing sent.
local function send_batch(T, target, plan, i, keys, token, tag)
  local direct = rawget(T, "start_batch")
  if direct then return direct(T, plan, keys, target, token, tag) end
  local built, err = core.build_batch(plan, i, target, token)
  if not built then return nil, err, true end
  local ok, serr = T:start(built, tag)
  return ok, serr
end
M.send_batch = send_batch

function Run:start(job, token, t)
  local e, kind = self.e, job.kind
  if kind == "probe" then
    job.result = token
    return
  end
  local ok, err, refused
  if kind == "batch" then
    job.token = token
    ok, err, refused = send_batch(self.T, e.target, job.plan, job.i, job.keys, token, job)
  else
    local built
    if kind == "token" then
      built, err = self.tm:build(e.target, t)
    else
      built, err = job.build(token)
    end
    refused = not built
    if built then
      job.token = token
      ok, err = self.T:start(built, job)
    end
  end
  if refused then return self:fail(job, err) end -- nothing was sent
  if not ok then
    if not self:retry(job, err, t) then self:complete_failed(job, err) end
    return
  end
  self.in_flight = self.in_flight + 1
  if kind ~= "token" then self.stats.requests = self.stats.requests + 1 end
end

function Run:complete_failed(job, err)
  local fatal = (core.codes[err.code] or NOFLAGS).fatal
  self:fail(job, err)
  if fatal then self:stop(err) end
end

-- One finished exchange.
function Run:complete(c, t)
  local job = c.tag
  self.in_flight = self.in_flight - 1
  local result, err = nil, c.error
  if not err then
    if job.kind == "batch" then
      result, err = core.parse(c.status, c.headers, c.body, job.token, job.keys)
    elseif job.kind == "token" then
      result, err = self.tm:accept(c.status, c.headers, c.body, t)
    else
      result, err = job.parse(c.status, c.headers, c.body, job.token)
    end
  end
  if result and type(result) == "table" and type(result.request_id) == "string" then
    result.request_id = redaction.redact(result.request_id, self:secrets(job))
  end
  if result then
    if job.kind == "batch" then
      self:batch_done(job, report.classify(self.stats, job.keys, result, job.ambiguous or self.ambiguous))
      self.pacer:step()
    elseif job.kind == "token" then
      self.token_job, self.token, self.token_at = nil, result, t
    else
      job.result = result
    end
  elseif not self:retry(job, err, t) then
    self:complete_failed(job, err)
  end
end

-- The token to send with now, starting a fetch when none is usable.
function Run:token_now(t)
  local tm = self.tm
  local tok = tm:current(t)
  if tok then
    if tok ~= self.token then self.token, self.token_at = tok, t end
    return tok
  end
  if self.token and t - self.token_at < M.TOKEN_REUSE then return self.token end
  self.token = nil
  if self.token_job or not tm:managed() or not self:pending() then return nil end
  self.stats.token_fetches = self.stats.token_fetches + 1
  if tm.provider then
    local err
    tok, err = tm:call_provider(t)
    if not tok then
      local fatal = (core.codes[err.code] or NOFLAGS).fatal
      self:fail_token_waiters(err)
      if fatal then self:stop(err) end
      return nil
    end
    self.token, self.token_at = tok, t
    return tok
  end
  self.token_job = { kind = "token", attempts = 0, ready_at = t, needs_token = false }
  table.insert(self.waiting, 1, self.token_job)
  return nil
end

function Run:loop()
  local T, e, lim = self.T, self.e, self.e.limiter
  while self:pending() or self.in_flight > 0 do
    local t = T.now()
    local token = self:token_now(t)
    local wake = math.huge
    while self.in_flight < e.concurrency and not self.stopped do
      local job, w, where = self:pick(t, token)
      if not job then
        wake = w
        break
      end
      local refused = job.kind == "batch" and not job.started and not self:begin(job)
      local d = 0
      if refused then -- luacheck: ignore 542
        -- failed by its hook: no start, no budget
      elseif lim and job.limited then
        -- now, not the turn's t: a start counted before it is sent can overfill a second
        d = lim:acquire(T.now())
        if type(d) ~= "number" or d ~= d or d < 0 then
          error("engine: limiter:acquire(now) must return 0 or the seconds to wait, not " .. tostring(d))
        end
        if d > MAX_LIMIT_WAIT then d = MAX_LIMIT_WAIT end -- asked again then
      end
      if d > 0 then
        wake = t + d
        break
      end
      self:take(where)
      if not refused then self:start(job, token, t) end
      -- A start may have fetched or dropped nothing: the token stays.
    end
    if not self:pending() and self.in_flight == 0 then break end
    local wait = wake - t
    if self.in_flight > 0 then
      if wait > MAX_POLL then wait = MAX_POLL end
    elseif wait == math.huge then
      error("engine: work is pending but nothing is in flight or due (a bug)")
    end
    local done = T:poll(wait > 0 and wait or 0)
    if done and #done > 0 then
      local t2 = T.now()
      for i = 1, #done do self:complete(done[i], t2) end
    end
  end
end

M.Run = Run
M.batch_job = batch_job
M.MAX_POLL = MAX_POLL
return M
