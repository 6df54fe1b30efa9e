--- dingtalk.recall.engine: the one scheduler every front-end recalls through.
--
--   local engine = require "dingtalk.recall.engine"
--   local e = engine.new { transport = T, target = core.target(opts), tokens = tm, limiter = lim,
--                          concurrency = 4, max_retries = 3, backoff_base = 0.2, backoff_max = 5,
--                          random = math.random, log = function(level, msg) end }
--   local report = e:run(plans, hooks [, opts])
--
-- plans: core.plan results (one per conversation and robot).  They run
-- under one pool (`concurrency` requests in flight), one QPS budget (the
-- limiter: lim:acquire(now) -> 0 or seconds to wait) and one token store.
-- Fair across plans: batches start round-robin over the plans, so the first
-- batch of every plan starts before the second batch of any plan (retries
-- that are due go first).
--
-- hooks (all optional):
--   on_batch_start(plan, i, keys) -> nothing, or false, err to keep the
--     batch from being sent (its keys then end in errors with err);
--     called once per batch, before its first attempt;
--   on_batch_done(plan, i, keys, outcomes): once per batch, when its keys'
--     outcomes are final; outcomes[key] is "recalled" | "already_recalled" |
--     "failed" | "error" | "missing".  Keys the plan refused (plan.invalid)
--     come first, as batch 0.  A fifth argument is the report being
--     built (for the reasons and errors behind the outcomes);
--   on_progress(done, total): keys finished so far, after each batch.
-- opts.ambiguous = true: every batch may have been recalled before (the
-- ledger's `recalling` keys), so "already recalled" answers count recalled.
--
-- Retries are bounded (max_retries per batch, one token refetch per batch
-- after InvalidAuthentication), back off exponentially with jitter, honour
-- a server's retry_after up to retry_after_max, and wait at least a second
-- after a QPS-limit answer.  The flags of core.codes decide: retryable,
-- ambiguous (the server may have done the work), throttle, auth, fatal (no
-- later request can succeed: the run stops and every key not yet sent ends
-- in errors with that error).  Every key ends in exactly one of recalled,
-- failed and errors.
--
-- The engine only calls transport.now(), transport:start(built, tag) and
-- transport:poll(wait) (which waits up to `wait` seconds when nothing is in
-- flight), and a batch's start_batch(plan, keys, target, token, tag) when the
-- transport has that field of its own (rawget: the curl and OpenResty
-- transports; a run's batches and the single batch's fast path alike),
-- and for the single batch exchange_batch(plan, keys, target, token) ->
-- completion | nil, err [, refused] instead when it has that one (the
-- OpenResty transport: the exchange made at once in the caller's coroutine);
-- with a fake transport and clock every path runs in milliseconds.
local core = require "dingtalk.recall.core"
local report = require "dingtalk.recall.report"
local pacer = require "dingtalk.recall.engine.pacer"
local runs = require "dingtalk.recall.engine.run"
local new_run = runs.new

local M = {}

local Engine = {}
Engine.__index = Engine

--- Bounds and defaults of the engine's settings (the client checks the
-- caller's options against these).
M.LIMITS = {
  concurrency = { 1, 64 }, max_retries = { 0, 10 }, backoff_base = { 0, 60 }, backoff_max = { 0, 600 },
  retry_after_max = { 0, 600 },
}
M.DEFAULTS = {
  concurrency = 4, max_retries = 3, backoff_base = 0.2, backoff_max = 5, retry_after_max = 30,
}
-- The run's constants (engine/run.lua), for reading.
M.THROTTLE_WAIT, M.TOKEN_REUSE = runs.THROTTLE_WAIT, runs.TOKEN_REUSE

local NOFLAGS = {}

--- engine.new(opts) -> engine.  Wrong types raise: the client checks a
-- caller's values before; the engine trusts what it is given.
function M.new(o)
  if type(o) ~= "table" then error("engine.new expects a table", 2) end
  if type(o.transport) ~= "table" then error("engine.new: transport must be an object", 2) end
  if type(o.tokens) ~= "table" then error("engine.new: tokens must be a token manager", 2) end
  if o.limiter ~= nil and type(o.limiter) ~= "table" then error("engine.new: limiter must be an object", 2) end
  local self = setmetatable({
    transport = o.transport, target = o.target, tokens = o.tokens, limiter = o.limiter,
    random = o.random or math.random, log = o.log,
  }, Engine)
  for name, lim in pairs(M.LIMITS) do
    local v = o[name]
    if v == nil then v = M.DEFAULTS[name] end
    if type(v) ~= "number" or not (v >= lim[1] and v <= lim[2]) then
      error(("engine.new: %s must be a number in %s..%s"):format(name, lim[1], lim[2]), 2)
    end
    self[name] = v
  end
  self.concurrency = math.floor(self.concurrency)
  self.max_retries = math.floor(self.max_retries)
  return self
end

---------------------------------------------------------------------------
-- Entry points
---------------------------------------------------------------------------

-- A run that takes over a single batch (below) where its happy path ends,
-- with the report it fills: -> run, report.
local function take_over(self, plan, ambiguous, token, t)
  local r = report.new()
  r.total = plan.total
  local run = new_run(self, r)
  r.recalled = core.new_array(r.total) -- filled in order, never grown
  run.hooks, run.ambiguous, run.total = NOFLAGS, ambiguous, r.total
  run.plans[1] = plan -- its one batch is taken: nothing left fresh
  run.token, run.token_at = token, t
  run.pacer = pacer.new()
  return run, r
end

-- The job of the single batch, made only when a run takes it over (the
-- happy path tags its request with the plan).
local function single_job(plan, token)
  local job = runs.batch_job(plan, 1, 1)
  job.started, job.token = true, token
  return job
end

-- The usual call of a request handler: one plan of one batch, no hooks.
-- Its happy path (a token at hand, the QPS budget free, one answer that
-- parses) runs here without a scheduler, a job or a report until the end;
-- at the first other turn (the limiter says wait, a start or an answer
-- fails) a run takes the job over in the state it is in and does what it
-- would have done from there.  Nil when there is no token at hand: the run
-- does it all.
local function run_single(self, plan, ambiguous, t0)
  local T, lim = self.transport, self.limiter
  local token = self.tokens:current(t0)
  if not token then return nil end
  -- a wait: the run asks the limiter again.  (At t0, the clock Engine:run
  -- read a moment ago: one clock read less a call.)
  if lim and lim:acquire(t0) ~= 0 then return nil end
  local keys = core.batch(plan, 1) -- plan[1], kept by a plan of one batch: no copy
  local done, ok, serr, refused, c
  local now_batch = rawget(T, "exchange_batch") -- sends and reads now (OpenResty): no start, no poll
  if now_batch then
    c, serr, refused = now_batch(T, plan, keys, self.target, token)
    if c then
      c.tag, ok = plan, true
    end
  else
    ok, serr, refused = runs.send_batch(T, self.target, plan, 1, keys, token, plan)
  end
  if refused or not ok then
    local job = single_job(plan, token)
    local run, r = take_over(self, plan, ambiguous, token, t0)
    if refused then -- the builder's answer: nothing sent, the batch fails (as in a run)
      run:fail(job, serr)
    elseif not run:retry(job, serr, t0) then
      run:complete_failed(job, serr)
    end
    run:loop()
    return r
  end
  if not c then
    done = T:poll(runs.MAX_POLL)
    while not (done and #done > 0) do done = T:poll(runs.MAX_POLL) end
    c = done[1]
  end
  -- The usual answer (every key recalled) needs no request id: nothing
  -- then reads it, so no result is made; anything else the run parses.
  -- (An exchange made now has no array of completions: one is made here
  -- for the run, off the usual path.)
  if not ((done == nil or done[2] == nil) and c.tag == plan and not c.error
      and core.answered_all(c.status, c.body, keys)) then
    done = done or { c }
    local job = single_job(plan, token)
    local run, r = take_over(self, plan, ambiguous, token, t0)
    r.requests = 1
    local t2 = T.now()
    run.in_flight = #done -- (more than one: as the run's loop, which completes what comes)
    for i = 1, #done do
      if done[i].tag == plan then done[i].tag = job end
      run:complete(done[i], t2)
    end
    run:loop()
    return r
  end
  return report.whole(keys) -- the batch is the plan's alone
end

--- e:run(plans, hooks [, opts]) -> report.  plans: an array of core plans;
-- keys must be unique across plans (core.plan dedupes within one).
function Engine:run(plans, hooks, opts)
  if type(plans) ~= "table" then error("engine:run expects an array of plans", 2) end
  if hooks ~= nil and type(hooks) ~= "table" then error("engine:run: hooks must be a table", 2) end
  opts = opts or NOFLAGS
  local t0 = self.transport.now()
  local one = plans[1]
  if hooks == nil and plans[2] == nil and type(one) == "table" and one.nbatches == 1 and one.ninvalid == 0 then
    local r = run_single(self, one, opts.ambiguous == true, t0)
    if r then return report.finish(r, self.transport.now() - t0) end
  end
  hooks = hooks or NOFLAGS -- (an empty table, only read)
  local r = report.new()
  local run = new_run(self, r)
  run.hooks, run.ambiguous = hooks, opts.ambiguous == true
  for p, plan in ipairs(plans) do
    run.plans[p] = plan
    r.total = r.total + plan.total + plan.ninvalid
    if plan.nbatches > 0 then
      run.active[#run.active + 1] = p
      run.nexti[p] = 1
    end
  end
  run.total = r.total
  r.recalled = core.new_array(r.total) -- filled in order, never grown
  run.pacer = pacer.new()
  local batches = 0
  for _, plan in ipairs(plans) do
    batches = batches + plan.nbatches
    if plan.ninvalid > 0 then
      local keys = {}
      for k in pairs(plan.invalid) do keys[#keys + 1] = k end
      table.sort(keys)
      local outcomes = report.fail_map(r, plan.invalid)
      if hooks.on_batch_done then hooks.on_batch_done(plan, 0, keys, outcomes, r) end
      run.done = run.done + #keys
    end
  end
  if run.done > 0 and hooks.on_progress then hooks.on_progress(run.done, run.total) end
  -- (a large run in incremental mode: see engine/pacer.lua).  No closure
  -- here: a function that makes one closes upvalues (UCLO) at each of its
  -- returns, a bytecode LuaJIT 2.1 does not record, so the traces through
  -- the one-batch return above aborted there (jit.v in an nginx worker:
  -- "NYI: bytecode 50").
  pacer.within(batches, nil, run.loop, run)
  return report.finish(r, self.transport.now() - t0)
end

--- e:call(job) -> result | nil, err: one request (send) through the same
-- pool, limiter, tokens and retries.  job.build(token) -> built | nil, err;
-- job.parse(status, headers, body, token) -> result | nil, err.
function Engine:call(job, stats)
  stats = stats or report.new()
  local run = new_run(self, stats)
  run.hooks = {}
  local j = { kind = "call", build = job.build, parse = job.parse, attempts = 0, needs_token = true,
    limited = true }
  run.calls[1] = j
  run:loop()
  if j.result ~= nil then return j.result end
  return nil, j.err
end

--- e:token() -> token | nil, err: the token the engine would send with,
-- fetched (once, shared) when none is cached.
function Engine:token()
  local run = new_run(self, report.new())
  run.hooks = {}
  local j = { kind = "probe", attempts = 0, needs_token = true }
  run.calls[1] = j
  run:loop()
  if j.result ~= nil then return j.result end
  return nil, j.err
end

M.Engine = Engine
return M
