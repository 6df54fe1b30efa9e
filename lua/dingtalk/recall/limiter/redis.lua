--- dingtalk.recall.limiter.redis: one QPS budget for every host of an
-- app, kept in Redis.
--
--   local rl = require "dingtalk.recall.limiter.redis"
--   local lim = assert(rl.new { redis = "redis://10.0.0.7:6379/0", key = "dingabc", rate = 20 })
--   local wait = lim:acquire(now)       -- 0: a start was taken now; else seconds to wait
--
-- Each start is one EVALSHA of an atomic script that keeps the start times
-- of the last window in a sorted set and answers "start now" (the start is
-- counted) or "your slot is in N µs" (reserved and counted then, so the
-- host waits and starts without asking again, and waiting hosts do not
-- all wake for the same free slot): at most `rate` starts in any `window`
-- seconds, on Redis's own clock (TIME inside the script), so clocks that
-- differ between hosts cannot break the budget.  The keys of one app share the
-- hash tag {dingtalk-recall:<key>}, so a proxy or a cluster keeps them on
-- one node.
--
-- When Redis cannot be reached the limiter says so once through opts.log,
-- goes on with a local limiter at fallback_share of the rate (so that a
-- fleet of 1/fallback_share hosts stays within the budget), tries Redis
-- again at most every probe_interval seconds, says when it is back, and
-- then first tells Redis the starts it made alone in the last window.  At
-- both edges it is careful: the first start alone waits one window (the
-- fleet may have used the budget just before), and for probe_interval +
-- window after its return a host keeps to its share as well (the others
-- may still be alone until their next probe).
local clock = require "dingtalk.recall.clock"
local resp = require "dingtalk.recall.redis"
local limiter = require "dingtalk.recall.limiter"

local M = {}
local Limiter = {}
Limiter.__index = Limiter

local DEFAULTS = { window = 1.05, fallback_share = 0.2, probe_interval = 3, timeout = 1 }
-- A reserved slot used later than this (seconds) is not used: the start
-- would come later than Redis counted it (the window's 50 ms guard covers
-- this and the spread of arrivals together).
local LATE = 0.005
-- Slots are reserved at most this far ahead (seconds).  A host that loses
-- Redis waits this long more before its first start alone: a slot another
-- host reserved just before the outage may still be used.
local AHEAD = 0.25

-- Returns {µs until the caller's start, slot id}: 0 (start now) or the
-- time of a slot reserved for it (counted at that time), at most `ahead`
-- away; or {negative µs}: ask again after that (no slot that near).  A
-- slot the caller could not use in time comes back as ARGV[4] and is freed.  A slot is at or after every
-- slot already given, and `rate` slots back from it lies at least a window
-- before it, so at most `rate` starts fall in any window.
local SCRIPT = resp.script [=[
local rate, window, ahead = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
-- a slot of this caller's that came too late for it: free it
if ARGV[4] ~= '' then redis.call('ZREM', KEYS[1], ARGV[4]) end
-- starts made without Redis (their age in µs), told once on return
for i = 5, #ARGV do
  local at = now - tonumber(ARGV[i])
  if at > now - window then redis.call('ZADD', KEYS[1], at, 'l' .. redis.call('INCR', KEYS[2])) end
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local n = redis.call('ZCARD', KEYS[1])
local at = now
if n >= rate then
  local edge = redis.call('ZRANGE', KEYS[1], n - rate, n - rate, 'WITHSCORES')
  local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
  at = math.max(now, tonumber(edge[2]) + window, tonumber(last[2]))
end
-- no slot further ahead than `ahead`: ask again when it is that near
if at - now > ahead then return { -(at - now - ahead) } end
local id = redis.call('INCR', KEYS[2])
redis.call('ZADD', KEYS[1], at, id)
redis.call('PEXPIRE', KEYS[1], math.ceil((at - now + window) / 1000) + 1000)
return { at - now, id }
]=]

--- new(opts) -> limiter | nil, err
-- opts: redis (a redis:// URL or a dingtalk.recall.redis client), key (the
-- app's name in the keys, default "default"), api ("recall"), rate
-- (starts per window, 0 = no limit), window (seconds, 1.05), fallback_share
-- (0.2), probe_interval (seconds, 3), timeout (seconds, 1), log(level, msg),
-- clock (this host's clock, clock.now: the one the engine's `now` comes from).
function M.new(opts)
  if type(opts) ~= "table" then error("redis limiter: new expects a table of options", 2) end
  local rate = opts.rate or 20
  if type(rate) ~= "number" or rate ~= rate or rate < 0 or rate > 1e6 or rate % 1 ~= 0 then
    error("redis limiter: rate must be a whole number in [0, 1e6]", 2)
  end
  local who = "redis limiter"
  local window = resp.option(opts, "window", 0.001, 3600, DEFAULTS.window, who)
  local share = resp.option(opts, "fallback_share", 0, 1, DEFAULTS.fallback_share, who)
  local probe = resp.option(opts, "probe_interval", 0.05, 3600, DEFAULTS.probe_interval, who)
  local timeout = resp.option(opts, "timeout", 0.01, 60, DEFAULTS.timeout, who)
  local tag = resp.tag(opts.key or "default", who)
  local api = opts.api or "recall"
  if type(api) ~= "string" or api:find("[{}%c]") then error("redis limiter: api must be a string", 2) end
  if opts.log ~= nil and type(opts.log) ~= "function" then error("redis limiter: log must be a function", 2) end
  if opts.clock ~= nil and type(opts.clock) ~= "function" then error("redis limiter: clock must be a function", 2) end
  local client, err = resp.connect(opts.redis, timeout, who)
  if not client then return nil, err end
  local local_rate = math.max(1, math.floor(rate * share))
  local self = setmetatable({
    redis = client, rate = rate, window = window, share = share, probe_interval = probe,
    keys = { tag .. ":lim:" .. api, tag .. ":limseq:" .. api },
    log = opts.log or resp.log,
    local_rate = local_rate, alone = limiter.new(local_rate, window),
    down = false, next_probe = 0, held = nil, clock = opts.clock or clock.now,
    stats = { redis = 0, fallback = 0, outages = 0, round_trips = 0, late = 0 },
  }, Limiter)
  return self
end

-- Alone (Redis unreachable): the local limiter at local_rate starts per
-- window, counted in stats.fallback.
local function local_acquire(self, now)
  local w = self.alone:acquire(now)
  if w == 0 then self.stats.fallback = self.stats.fallback + 1 end
  return w
end

local function fall_back(self, now, err)
  if not self.down then
    self.down = true
    self.stats.outages = self.stats.outages + 1
    -- The fleet may have used the whole budget in the last window (and
    -- hold slots up to AHEAD from now): the first start alone waits for
    -- both to pass.
    self.alone = limiter.new(self.local_rate, self.window)
    for _ = 1, self.local_rate do self.alone:take(now + AHEAD) end
    self.log("warn", ("the shared QPS budget in Redis is unreachable (%s): this host goes on alone at %d " ..
      "starts per %.2f s until Redis answers again"):format(resp.redact(tostring(err and err.message or err)),
      self.local_rate, self.window))
  end
  self.next_probe = now + self.probe_interval
  return local_acquire(self, now)
end

--- lim:acquire(now) -> 0 when a start was taken and counted now, else the
-- seconds to wait before asking again (> 0).  now: this host's clock (used
-- only by the fallback and the probe interval).
function Limiter:acquire(now)
  if self.rate <= 0 then return 0 end
  if self.down and now < self.next_probe then return local_acquire(self, now) end
  -- A slot Redis reserved for this host: its time, or a little after.
  -- Slots are kept on this host's own clock read now: the engine's `now`
  -- may be some milliseconds old (taken before other starts of its turn).
  local real = self.clock()
  local slot, drop = self.slot, ""
  if slot then
    if real < slot then return math.max(slot - now, slot - real) end
    self.slot = nil
    if real - slot <= LATE then
      self.stats.redis = self.stats.redis + 1
      return 0
    end
    -- too late to use (the start would come later than it was counted):
    -- give it back and ask again
    self.stats.late = self.stats.late + 1
    drop = self.slot_id
  end
  -- Just back from an outage: the other hosts may still be alone (until
  -- their next probe), so this one also keeps to its local share a while.
  local grace = not self.down and self.grace_until and now < self.grace_until
  if grace then
    local w = self.alone:wait(now)
    if w > 0 then return w end
  end
  local args = { self.rate, math.floor(self.window * 1e6 + 0.5), math.floor(AHEAD * 1e6), drop }
  if self.down then
    -- Back to Redis: first the starts made alone in the last window.
    for _, at in ipairs(self.alone:recent(now)) do args[#args + 1] = math.floor((now - at) * 1e6) end
  end
  self.stats.round_trips = self.stats.round_trips + 1
  local reply, err = self.redis:eval(SCRIPT, self.keys, args)
  local res = type(reply) == "table" and tonumber(reply[1])
  if not res then return fall_back(self, now, err or "unexpected reply") end
  if self.down then
    self.down = false
    grace = true
    self.grace_until = now + self.probe_interval + self.window
    self.log("info", "the shared QPS budget in Redis answers again: this host is back on it")
  end
  if res < 0 then return -res / 1e6 end -- no slot that near yet
  if grace then self.alone:take(now + res / 1e6) end
  if res == 0 then
    self.stats.redis = self.stats.redis + 1
    return 0
  end
  self.slot, self.slot_id = self.clock() + res / 1e6, tostring(reply[2])
  return math.max(self.slot - now, res / 1e6)
end

--- The engine of before acquire: delay(now) asks for a start and holds it
-- (0) for the take(now) that follows, or answers the wait.
function Limiter:delay(now)
  if self.held then return 0 end
  local wait = self:acquire(now)
  if wait <= 0 then self.held = true end
  return wait
end

function Limiter:take(now)
  if self.held then
    self.held = nil
    return
  end
  self:acquire(now)
end

M.Limiter = Limiter
M.now = clock.now
return M
