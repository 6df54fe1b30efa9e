--- dingtalk.recall.limiter.redis: one QPS budget for every host of an
-- app, kept in Redis.
--
--   local rl = require "dingtalk.recall.limiter.redis"
--   local lim = assert(rl.new { redis = "redis://10.0.0.7:6379/0", key = "dingabc", rate = 20 })
--   local wait = lim:acquire(now)       -- 0: a start was taken now; else seconds to wait
--
-- Each request for a start is one EVALSHA of an atomic script that keeps
-- the start times of the last window in a sorted set and answers "start
-- now" (counted at that moment, Redis's TIME) or "ask again in N µs": at
-- most `rate` starts in any `window` seconds, on Redis's own clock, so
-- clocks that differ between hosts cannot break the budget.  A start is
-- counted when the host asks for it and is sent right after the answer,
-- never at a time reserved ahead (a host that wakes late would then start
-- later than it was counted).  Hosts told to wait are spread over the
-- coming free moments (the first waiter the first one, and so on), so
-- they do not all ask at once.  The keys of one app share the hash tag
-- {dingtalk-recall:<key>}, so a proxy or a cluster keeps them on one node.
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

-- window: DingTalk counts a request when it arrives, and arrivals spread
-- out from the starts counted here (the answer's way back, the send, the
-- network, the server's own scheduling): the margin over 1 s covers that
-- spread (the client's qps_window, the same default; docs/scale-out.md).
local DEFAULTS = { window = 1.05, fallback_share = 0.2, probe_interval = 3, timeout = 1 }
-- A waiter told to ask again at a free moment and not back this long
-- after it (seconds) no longer pushes later waiters back.
local STALE = 0.1

-- ARGV: rate, window (µs), stale (µs), this caller's waiter id or '', then
-- the ages (µs) of starts made without Redis.  Returns {0}: start now
-- (counted now), or {-µs, waiter id}: ask again after that long.  When
-- the window is full, the next free moments are when its oldest starts
-- leave it; the waiters already told to come back take the first of
-- them, so this caller gets the one after theirs.
local SCRIPT = resp.script [=[
local rate, window, stale = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
if ARGV[4] ~= '' then redis.call('ZREM', KEYS[3], ARGV[4]) end
-- starts made without Redis (their age in µs), told once on return
for i = 5, #ARGV do
  local at = now - tonumber(ARGV[i])
  if at > now - window then redis.call('ZADD', KEYS[1], at, 'l' .. redis.call('INCR', KEYS[2])) end
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local n = redis.call('ZCARD', KEYS[1])
if n < rate then
  redis.call('ZADD', KEYS[1], now, redis.call('INCR', KEYS[2]))
  redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000) + 1000)
  return { 0 }
end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - stale)
local j = math.min(n - rate + redis.call('ZCARD', KEYS[3]), n - 1)
local edge = redis.call('ZRANGE', KEYS[1], j, j, 'WITHSCORES')
local at = math.max(tonumber(edge[2]) + window, now + 1)
local id = redis.call('INCR', KEYS[2])
redis.call('ZADD', KEYS[3], at, id)
redis.call('PEXPIRE', KEYS[3], math.ceil((at - now + stale) / 1000) + 1000)
return { now - at, id }
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
    keys = { tag .. ":lim:" .. api, tag .. ":limseq:" .. api, tag .. ":limwait:" .. api },
    log = opts.log or resp.log,
    local_rate = local_rate, alone = limiter.new(local_rate, window),
    down = false, next_probe = 0, held = nil, clock = opts.clock or clock.now,
    stats = { redis = 0, fallback = 0, outages = 0, round_trips = 0, waits = 0 },
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
    -- The fleet may have used the whole budget in the last window: the
    -- first start alone waits for it to pass.
    self.alone = limiter.new(self.local_rate, self.window)
    for _ = 1, self.local_rate do self.alone:take(now) end
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
  -- Just back from an outage: the other hosts may still be alone (until
  -- their next probe), so this one also keeps to its local share a while.
  local grace = not self.down and self.grace_until and now < self.grace_until
  if grace then
    local w = self.alone:wait(now)
    if w > 0 then return w end
  end
  local args = { self.rate, math.floor(self.window * 1e6 + 0.5), math.floor(STALE * 1e6), self.waiter or "" }
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
  if res < 0 then -- ask again then
    self.waiter = tostring(reply[2])
    self.stats.waits = self.stats.waits + 1
    return -res / 1e6
  end
  self.waiter = nil
  if grace then self.alone:take(now) end
  self.stats.redis = self.stats.redis + 1
  return 0
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
