--- dingtalk.recall.token.redis: one access token for every host of an
-- app, kept in Redis (a token store for token.lua's use_store: get, set,
-- delete).
--
--   local ts = require "dingtalk.recall.token.redis"
--   client.tokens:use_store(assert(ts.new { redis = "redis://10.0.0.7/0", key = "dingabc" }))
--
-- One fetch for all hosts: a host that finds no token takes a short lock
-- (SET NX PX) and fetches; the others wait for the token it stores (polling
-- with a bounded backoff) instead of fetching their own.  The token is
-- stored with its expiry (PX), so each host computes its own expires_at on
-- its own clock.  After InvalidAuthentication the token is deleted only if
-- it is still the one that failed (compare-and-delete): invalidated once
-- for everyone, never a fresh one.  Each host keeps the token it read
-- until it expires or fails, so a start costs no Redis round trip.
--
-- When Redis cannot be reached: said once through opts.log; the store then
-- behaves as a local one (this host fetches its own token) and tries Redis
-- again at most every probe_interval seconds.
local clock = require "dingtalk.recall.clock"
local resp = require "dingtalk.recall.redis"

local M = {}
local Store = {}
Store.__index = Store

local DEFAULTS = { lock_ttl = 5, max_wait = 10, probe_interval = 3, timeout = 1 }

-- {1, token, pttl} | {2} (this host has the lock: fetch) | {3} (another host fetches)
local GET = resp.script [=[
local v = redis.call('GET', KEYS[1])
if v then return { 1, v, redis.call('PTTL', KEYS[1]) } end
if ARGV[1] ~= '' and redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return { 2 } end
return { 3 }
]=]

local SET = resp.script [=[
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if redis.call('GET', KEYS[2]) == ARGV[3] then redis.call('DEL', KEYS[2]) end
return 1
]=]

local DELETE = resp.script [=[
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
]=]

local function default_sleep(s)
  local ngx = rawget(_G, "ngx")
  if type(ngx) == "table" and ngx.sleep then
    local ok = pcall(ngx.sleep, s)
    if ok then return end
  end
  clock.sleep(s)
end

--- new(opts) -> store | nil, err.  opts: redis (URL or client), key (the
-- app's name, default "default"), clock (this host's clock, default
-- clock.now: the one the engine passes as now), lock_ttl (seconds, 5),
-- max_wait (seconds a host waits for another's fetch, 10), probe_interval
-- (3), timeout (1), log(level, msg), sleep(seconds).
function M.new(opts)
  if type(opts) ~= "table" then error("redis token store: new expects a table of options", 2) end
  local who = "redis token store"
  local tag = resp.tag(opts.key or "default", who)
  local client, err = resp.connect(opts.redis, resp.option(opts, "timeout", 0.01, 60, DEFAULTS.timeout, who), who)
  if not client then return nil, err end
  return setmetatable({
    redis = client, tag = tag, clock = opts.clock or clock.now,
    lock_ttl = resp.option(opts, "lock_ttl", 0.1, 600, DEFAULTS.lock_ttl, who),
    max_wait = resp.option(opts, "max_wait", 0, 600, DEFAULTS.max_wait, who),
    probe_interval = resp.option(opts, "probe_interval", 0.05, 3600, DEFAULTS.probe_interval, who),
    log = opts.log or resp.log, sleep = opts.sleep or default_sleep,
    owner = ("%x-%s"):format(math.floor(clock.now() * 1e6) % 0x7fffffff, tostring({}):match("0x(%x+)") or "0"),
    cache = {}, locked = {}, down = false, next_probe = 0,
    stats = { waits = 0, locks = 0, reads = 0 },
  }, Store)
end

-- The Redis keys of a credential.  token.lua's key holds the secret last
-- (after \0): it never goes to Redis.
local function rkeys(self, key)
  local name = key
  if type(key) == "string" and key:find("\0", 1, true) then name = key:match("^(.*)%z[^%z]*$") or "" end
  name = name:gsub("[%z%c{}]", "|")
  return { self.tag .. ":token:" .. name, self.tag .. ":token-lock:" .. name }
end

local function unreachable(self, err)
  if not self.down then
    self.down = true
    self.log("warn", ("the shared token in Redis is unreachable (%s): this host fetches and keeps its own " ..
      "until Redis answers again"):format(resp.redact(tostring(err and err.message or err))))
  end
  self.next_probe = self.clock() + self.probe_interval
end

local function back(self)
  if self.down then
    self.down = false
    self.log("info", "the shared token in Redis answers again")
  end
end

--- store:get(key) -> {token, expires_at} | nil (nil: this host fetches now)
function Store:get(key)
  local now = self.clock()
  local c = self.cache[key]
  if c and now < c.expires_at then return c end
  local lock = self.locked[key]
  if lock and now < lock then return nil end -- our own fetch is running
  self.locked[key] = nil
  if self.down and now < self.next_probe then return nil end
  local ks = rkeys(self, key)
  local deadline, pause = now + self.max_wait, 0.02
  while true do
    self.stats.reads = self.stats.reads + 1
    local res, err = self.redis:eval(GET, ks, { self.owner, math.floor(self.lock_ttl * 1000) })
    if type(res) ~= "table" then
      unreachable(self, err)
      return nil
    end
    back(self)
    if res[1] == 1 and type(res[2]) == "string" and tonumber(res[3]) and res[3] > 0 then
      local e = { token = res[2], expires_at = self.clock() + res[3] / 1000 }
      self.cache[key] = e
      return e
    elseif res[1] == 2 then
      self.stats.locks = self.stats.locks + 1
      self.locked[key] = self.clock() + self.lock_ttl
      return nil
    end
    -- another host is fetching: wait for its token
    now = self.clock()
    if now >= deadline then
      self.log("warn", "waited " .. self.max_wait .. " s for another host's token fetch: fetching here")
      return nil
    end
    self.stats.waits = self.stats.waits + 1
    self.sleep(math.min(pause, deadline - now))
    pause = math.min(pause * 2, 0.5)
  end
end

--- store:set(key, entry, ttl): stores the token for everyone for ttl
-- seconds, and ends this host's lock.
function Store:set(key, entry, ttl)
  self.cache[key] = { token = entry.token, expires_at = entry.expires_at }
  self.locked[key] = nil
  ttl = tonumber(ttl) or (entry.expires_at - self.clock())
  if ttl ~= ttl or ttl <= 0 then return end
  local res, err = self.redis:eval(SET, rkeys(self, key), { entry.token, math.max(1, math.floor(ttl * 1000)),
    self.owner })
  if not res then unreachable(self, err) else back(self) end
end

--- store:delete(key, token): forgets token (after InvalidAuthentication),
-- here and in Redis, unless it was already replaced there.
function Store:delete(key, token)
  local c = self.cache[key]
  if c and c.token == token then self.cache[key] = nil end
  local res, err = self.redis:eval(DELETE, rkeys(self, key), { token })
  if not res then unreachable(self, err) else back(self) end
end

M.Store = Store
return M
