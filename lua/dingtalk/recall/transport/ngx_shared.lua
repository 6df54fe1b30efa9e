--- dingtalk.recall.transport.ngx_shared: the QPS limiter and the token
-- cache that all the workers of one nginx share over a lua_shared_dict
-- (used by the OpenResty transport's limiter() and token_store()).
-- luacheck: read globals ngx
local plain_limiter = require "dingtalk.recall.limiter"
local token_mod = require "dingtalk.recall.token"

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
--
-- The check after is a second read of every bucket only when another
-- start may have slipped in: every raise of a bucket is followed by a
-- raise of one sequence number, read before the buckets.  When raising it
-- gives exactly the number read plus one, no other start raised a bucket
-- after this one's read without this one seeing it, and any that raises
-- later sees this one's raise (in its read, or through the sequence).

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
    seq = "lim:" .. api .. ":" .. window .. ":seq",
    keys = {}, nkeys = 0,                     -- bucket number -> its key, made once
    buckets = {},                             -- the last read counts, reused
  }, SharedLimiter)
end

-- The dict key of bucket i (the span's keys are made once, not per read).
function SharedLimiter:key(i)
  local keys = self.keys
  local key = keys[i]
  if not key then
    if self.nkeys > 4 * (BUCKETS + GUARD) then -- forget the buckets left behind
      keys = {}
      self.keys, self.nkeys = keys, 0
    end
    key = self.prefix .. i
    keys[i] = key
    self.nkeys = self.nkeys + 1
  end
  return key
end

-- The counts of the buckets k - span .. k (a table reused by the next
-- read) and their sum.
function SharedLimiter:counts(k)
  local dict, keys, counts = self.dict, self.keys, self.buckets
  local last = self.counts_k
  if last ~= k then
    if last == k - 1 then
      counts[k - self.span - 1] = nil -- the bucket that left the span
    else
      counts = {}
      self.buckets = counts
    end
    self.counts_k = k
  end
  local sum = 0
  for i = k - self.span, k do
    local c = dict:get(keys[i] or self:key(i)) or 0
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
    self.dict:incr(self:key(self.held), -1)         -- a stale hold: give it back (if still there)
    self.held = nil
  end
  local dict = self.dict
  local seq = dict:get(self.seq) or 0
  local counts, sum = self:counts(k)
  if sum < self.rate then
    local key = self:key(k)
    local v = dict:incr(key, 1, 0, self.ttl)
    if v then
      local again = sum + 1
      if dict:incr(self.seq, 1, 0) ~= seq + 1 then again = select(2, self:counts(k)) end
      if again <= self.rate then
        self.held = k
        return 0
      end
      dict:incr(key, -1)
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
  self.dict:incr(self:key(floor(t / self.width)), 1, 0, self.ttl)
  self.dict:incr(self.seq, 1, 0) -- after the bucket (see above)
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
  if not dict then return token_mod.table_store(worker_tokens) end
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
