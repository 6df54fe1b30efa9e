--- dingtalk.recall.transport.ngx_shared: the QPS limiter and the token
-- cache that all the workers of one nginx share over a lua_shared_dict
-- (used by the OpenResty transport's limiter() and token_store()).
-- luacheck: read globals ngx
local plain_limiter = require "dingtalk.recall.limiter"

local M = {}

local floor, max = math.floor, math.max

---------------------------------------------------------------------------
-- The QPS limiter shared by all workers
---------------------------------------------------------------------------
-- Starts are counted in buckets of window/BUCKETS seconds in the shared
-- dict.  A start is allowed when the buckets covering the last
-- window + GUARD buckets hold fewer than `rate` starts, so no span of
-- window * (1 + GUARD/BUCKETS) seconds (1.1 s for 1 s) ever sees more than
-- `rate` starts.  The guard absorbs the spread between a start and its
-- arrival (a new TLS connection on a busy host takes tens of ms more than
-- a pooled one), which the server's own one-second count sees.  The count
-- is raised first and checked after, so two workers racing for the last
-- slot both back off rather than both go: never over the rate.

local BUCKETS = 40
local GUARD = 4

local SharedLimiter = {}
SharedLimiter.__index = SharedLimiter

local function shared_limiter(dict, api, rate, window)
  local width = window / BUCKETS
  return setmetatable({
    dict = dict, rate = rate, window = window, width = width,
    span = BUCKETS + GUARD,                   -- buckets before the current one
    ttl = 2 * window + 1,
    prefix = "lim:" .. api .. ":" .. window .. ":",
  }, SharedLimiter)
end

function SharedLimiter:counts(k)
  local dict, prefix = self.dict, self.prefix
  local counts, sum = {}, 0
  for i = k - self.span, k do
    local c = dict:get(prefix .. i) or 0
    counts[i] = c
    sum = sum + c
  end
  return counts, sum
end

--- Seconds to wait before a start is allowed; 0 when one is allowed now,
-- and then the slot is held for the take() that follows.
function SharedLimiter:delay(t)
  if self.rate <= 0 then return 0 end
  local k = floor(t / self.width)
  if self.held then
    if self.held == k then return 0 end
    self.dict:incr(self.prefix .. self.held, -1)   -- a stale hold: give it back (if still there)
    self.held = nil
  end
  local counts, sum = self:counts(k)
  if sum < self.rate then
    local key = self.prefix .. k
    local v = self.dict:incr(key, 1, 0, self.ttl)
    if v then
      local _, again = self:counts(k)
      if again <= self.rate then
        self.held = k
        return 0
      end
      self.dict:incr(key, -1)
    end
    return self.width / 2                       -- lost a race with another worker
  end
  -- The oldest buckets must leave the range until fewer than rate remain.
  local excess, i = sum - self.rate + 1, k - self.span
  while i < k do
    excess = excess - counts[i]
    if excess <= 0 then break end
    i = i + 1
  end
  return max((i + self.span + 1) * self.width - t, 0.001)
end

--- acquire(t) -> 0 when a start was taken now, else seconds to wait (the
-- engine's limiter interface).
function SharedLimiter:acquire(t)
  local d = self:delay(t)
  if d > 0 then return d end
  self:take(t)
  return 0
end

--- Records a start at t (uses the slot delay() held, if any).
function SharedLimiter:take(t)
  if self.rate <= 0 then return end
  if self.held then
    self.held = nil
    return
  end
  self.dict:incr(self.prefix .. floor(t / self.width), 1, 0, self.ttl)
end

-- Without a shared dict: one limiter per API and rate in this worker.
local worker_limiters = {}

--- limiter(dict, api, rate, window) -> an object with acquire(now) (and
-- delay(now) / take(now)); dict nil: one limiter per API and rate in this worker.
function M.limiter(dict, api, rate, window)
  if dict then return shared_limiter(dict, api, rate, window) end
  local key = api .. ":" .. rate .. ":" .. window
  local lim = worker_limiters[key]
  if not lim then
    lim = plain_limiter.new(rate, window)
    worker_limiters[key] = lim
  end
  return lim
end

---------------------------------------------------------------------------
-- The token cache shared by all workers
---------------------------------------------------------------------------

local json
local function codec()
  if not json then
    local cjson = require "cjson"
    json = cjson.new and cjson.new() or cjson
  end
  return json
end

local worker_tokens = {}

--- token_store() -> {get(key), set(key, entry, ttl), delete(key, token)};
-- entries are {token, expires_at} (expires_at on this transport's clock,
-- which every worker shares).  Keys are hashed: they name the credential.
function M.token_store(dict)
  if not dict then
    return {
      get = function(_, key) return worker_tokens[key] end,
      set = function(_, key, entry) worker_tokens[key] = entry end,
      delete = function(_, key, token)
        local e = worker_tokens[key]
        if e and e.token == token then worker_tokens[key] = nil end
      end,
    }
  end
  local function dkey(key) return "tok:" .. ngx.encode_base64(ngx.sha1_bin(key)) end
  local store = {}
  function store.get(_, key)
    local v = dict:get(dkey(key))
    if type(v) ~= "string" then return nil end
    local ok, e = pcall(codec().decode, v)
    if ok and type(e) == "table" and type(e.token) == "string" and type(e.expires_at) == "number" then
      return { token = e.token, expires_at = e.expires_at }
    end
    return nil
  end
  function store.set(_, key, entry, ttl)
    local v = codec().encode { token = entry.token, expires_at = entry.expires_at }
    dict:set(dkey(key), v, (ttl and ttl > 0) and ttl or 0)
  end
  function store.delete(self_, key, token)
    local e = store.get(self_, key)
    if e and e.token == token then dict:delete(dkey(key)) end
  end
  return store
end

return M
