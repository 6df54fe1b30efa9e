--- dingtalk.recall.ledger.redis: the ledger in Redis, shared by several
-- bot hosts and nginx workers.
--
-- Keys (P is the prefix, "dingtalk-recall:" by default):
--   P e:<key>          hash: c (conversation), r (robot), t (sent_at), g (tags, JSON),
--                      l (ttl), m (msgKey), s (state), why (reason), code, u (updated_at)
--   P all              sorted set of every key by sent_at
--   P seq              the send sequence: each new key gets the next (field q),
--                      which orders entries sent within the same second
--   fields o (owner) and x (lease end, ms on Redis's clock) while `recalling`
--   P c:<cid>, P r:<robot>, P t:<tag>, P s:<state>
--                      sorted sets by sent_at per conversation, robot, tag and state
--                      (P s:recalling is the set of keys an interrupted recall left)
-- Every operation is one EVAL of a script below, so it is atomic and one
-- round trip.  A record also drops up to 100 entries past the retention.
--
-- The connection: opts.redis_client (anything connected with an
-- :eval(script, numkeys, ...) method: resty.redis, lua-redis), or the
-- project's RESP client (dingtalk.recall.redis: cosockets or LuaSocket,
-- scripts by EVALSHA).
local core = require "dingtalk.recall.core"
local hostclock = require "dingtalk.recall.clock"
local resp = require "dingtalk.recall.redis"
local cjson_mod = require "cjson"

local cjson = cjson_mod.new and cjson_mod.new() or cjson_mod
local unpack = table.unpack or unpack -- luacheck: ignore 113 143

local M = {}
local Redis = {}
Redis.__index = Redis

local DEFAULT_PREFIX = "dingtalk-recall:"
local DEFAULT_RETENTION = 7 * 86400
local DEFAULT_TIMEOUT = 5
local DEFAULT_LEASE = 60
local BATCH = 500 -- entries or changes in one EVAL

local function rerr(msg, fields)
  fields = fields or {}
  fields.hint = fields.hint or "Check that redis-server is running and reachable at the ledger's URL."
  if fields.retryable == nil then fields.retryable = true end
  return core.error("ledger.redis", msg, fields)
end

---------------------------------------------------------------------------
-- Scripts (Redis runs them in its Lua 5.1 with cjson)
---------------------------------------------------------------------------

local DROP = [=[
local function drop(P, k)
  local h = redis.call('HMGET', P .. 'e:' .. k, 'c', 'r', 'g', 's')
  if h[1] then
    redis.call('ZREM', P .. 'c:' .. h[1], k)
    redis.call('ZREM', P .. 'r:' .. h[2], k)
    if h[3] and h[3] ~= '' then
      for _, t in ipairs(cjson.decode(h[3])) do redis.call('ZREM', P .. 't:' .. t, k) end
    end
    if h[4] then redis.call('ZREM', P .. 's:' .. h[4], k) end
  end
  return h
end
]=]

local RECORD = DROP .. [=[
local P, now, cutoff = ARGV[1], ARGV[2], ARGV[3]
local old = redis.call('ZRANGEBYSCORE', P .. 'all', '-inf', '(' .. cutoff, 'LIMIT', 0, 100)
for _, k in ipairs(old) do
  drop(P, k)
  redis.call('DEL', P .. 'e:' .. k)
  redis.call('ZREM', P .. 'all', k)
end
for i = 4, #ARGV do
  local e = cjson.decode(ARGV[i])
  local k = e.k
  local h = drop(P, k)
  local state = h[4] or 'sent'
  if not h[1] then redis.call('HSET', P .. 'e:' .. k, 'q', redis.call('INCR', P .. 'seq')) end
  redis.call('HSET', P .. 'e:' .. k, 'c', e.c, 'r', e.r, 't', e.t, 'g', e.g, 'l', e.l, 'm', e.m,
    's', state, 'u', now)
  redis.call('ZADD', P .. 'all', e.t, k)
  redis.call('ZADD', P .. 'c:' .. e.c, e.t, k)
  redis.call('ZADD', P .. 'r:' .. e.r, e.t, k)
  redis.call('ZADD', P .. 's:' .. state, e.t, k)
  for _, t in ipairs(cjson.decode(e.g)) do redis.call('ZADD', P .. 't:' .. t, e.t, k) end
end
return #ARGV - 3
]=]

local UPDATE = [=[
local P, now = ARGV[1], ARGV[2]
local n = 0
for i = 3, #ARGV do
  local c = cjson.decode(ARGV[i])
  local hk = P .. 'e:' .. c.k
  local h = redis.call('HMGET', hk, 's', 't')
  if h[1] then
    redis.call('ZREM', P .. 's:' .. h[1], c.k)
    redis.call('ZADD', P .. 's:' .. c.s, h[2], c.k)
    redis.call('HSET', hk, 's', c.s, 'u', now)
    if c.s ~= 'recalling' then redis.call('HDEL', hk, 'o', 'x') end
    if type(c.why) == 'string' then redis.call('HSET', hk, 'why', c.why) else redis.call('HDEL', hk, 'why') end
    if type(c.code) == 'string' then redis.call('HSET', hk, 'code', c.code) else redis.call('HDEL', hk, 'code') end
    n = n + 1
  end
end
return n
]=]

local CLAIM = [=[
local P, owner, lease = ARGV[1], ARGV[2], tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local got = {}
for i = 4, #ARGV, 2 do
  local k, was = ARGV[i], ARGV[i + 1]
  local hk = P .. 'e:' .. k
  local h = redis.call('HMGET', hk, 's', 'o', 'x', 't')
  local ok = false
  if h[1] == 'recalling' then
    ok = was == 'recalling' and (h[2] == owner or not h[3] or tonumber(h[3]) <= now)
  elseif h[1] then
    ok = h[1] == was
  end
  if ok then
    redis.call('ZREM', P .. 's:' .. h[1], k)
    redis.call('ZADD', P .. 's:recalling', h[4], k)
    redis.call('HSET', hk, 's', 'recalling', 'o', owner, 'x', now + lease)
    got[#got + 1] = k
  end
end
return got
]=]

local FIELDS = "'c', 'r', 't', 'g', 'l', 'm', 's', 'why', 'code', 'u', 'q'"
local NF = 11 -- fields per entry; a row is the key and its NF fields

local GET = [=[
local h = redis.call('HMGET', ARGV[1] .. 'e:' .. ARGV[2], ]=] .. FIELDS .. [=[)
if not h[1] then return {} end
local out = { ARGV[2] }
for j = 1, 11 do out[j + 1] = h[j] or '' end
return out
]=]

local LIST = [=[
local P, idx, min, last = ARGV[1], ARGV[1] .. ARGV[2], ARGV[3], tonumber(ARGV[4])
local conv, robot, tag, states, due = ARGV[5], ARGV[6], ARGV[7], ARGV[8], tonumber(ARGV[9])
local want
if states ~= '' then
  want = {}
  for s in string.gmatch(states, '[^,]+') do want[s] = true end
end
-- With last N: the entries of the N-th one's second all go back (the
-- caller orders them by their send sequence and keeps N).
local out, found, off, stop = {}, 0, 0, nil
while true do
  local ks = redis.call('ZREVRANGEBYSCORE', idx, '+inf', min, 'WITHSCORES', 'LIMIT', off, 500)
  if #ks == 0 then break end
  off = off + #ks / 2
  for i = 1, #ks, 2 do
    local k, score = ks[i], ks[i + 1]
    if stop and score ~= stop then return out end
    local h = redis.call('HMGET', P .. 'e:' .. k, ]=] .. FIELDS .. [=[)
    local ok = h[1] and (conv == '' or h[1] == conv) and (robot == '' or h[2] == robot)
      and (want == nil or want[h[7]])
    if ok and tag ~= '' then ok = redis.call('ZSCORE', P .. 't:' .. tag, k) end
    if ok and due then
      ok = h[7] == 'sent' and h[5] and h[5] ~= '' and tonumber(h[3]) + tonumber(h[5]) <= due
    end
    if ok then
      local n = #out
      out[n + 1] = k
      for j = 1, 11 do out[n + 1 + j] = h[j] or '' end
      found = found + 1
      if last > 0 and found >= last then stop = score end
    end
  end
end
return out
]=]

M.parse_url = resp.parse_url

local function wrap_client(client)
  local ngx = rawget(_G, "ngx")
  local null = type(ngx) == "table" and ngx.null or nil
  return {
    eval = function(_, script, _, args)
      local ok, res, err = pcall(client.eval, client, script.source, 0, unpack(args))
      if not ok then return nil, tostring(res) end
      if res == nil or (null ~= nil and res == null) then return nil, tostring(err or "no reply") end
      return res
    end,
    close = function() end,
  }
end

---------------------------------------------------------------------------
-- The store
---------------------------------------------------------------------------

--- redis.open(url, opts, clock) -> store | nil, err
-- opts: timeout, prefix, retention, redis_client, lease (seconds a claim
-- of keys to recall holds before another host may take them over,
-- default 60), owner (this ledger's name in claims, default random).
function M.open(url, opts, clock)
  local cfg, perr = resp.parse_url(url)
  if not cfg then return nil, core.error("ledger.invalid", "ledger URL: " .. perr) end
  local lease = opts.lease or DEFAULT_LEASE
  if type(lease) ~= "number" or lease ~= lease or lease < 0.1 or lease > 86400 then
    error("ledger.open: option 'lease' must be a number of seconds in [0.1, 86400]", 3)
  end
  if opts.owner ~= nil and type(opts.owner) ~= "string" then
    error("ledger.open: option 'owner' must be a string", 3)
  end
  local self = setmetatable({
    kind = "redis", clock = clock, prefix = opts.prefix or DEFAULT_PREFIX,
    retention = opts.retention or DEFAULT_RETENTION, lease = lease,
    owner = opts.owner or ("%x-%x-%s"):format(os.time(), math.floor(hostclock.now() * 1e6) % 0x7fffffff,
      tostring({}):match("0x(%x+)") or tostring(math.random(1e9))),
    location = resp.redact(url),
  }, Redis)
  if opts.redis_client ~= nil then
    local c = opts.redis_client
    if type(c) ~= "table" or type(c.eval) ~= "function" then
      error("ledger.open: opts.redis_client must be a connected client with an eval method", 3)
    end
    self.conn, self.injected = wrap_client(c), true
  else
    local c, err = resp.new(url, { timeout = opts.timeout or DEFAULT_TIMEOUT })
    if not c then return nil, core.error("ledger.invalid", "ledger URL: " .. err.message) end
    self.conn = c
    self.location = c.url
    -- Reachable now, or say so now.
    local ok, perr2 = c:call("PING")
    if not ok then return nil, rerr("ledger " .. tostring(perr2.message), { retryable = perr2.retryable }) end
  end
  return self
end

local scripts = setmetatable({}, { __mode = "k" })
local function script_of(src)
  local s = scripts[src]
  if not s then
    s = resp.script(src)
    scripts[src] = s
  end
  return s
end

function Redis:eval(src, ...)
  local res, err = self.conn:eval(script_of(src), {}, { ... })
  if res ~= nil then return res end
  local msg = type(err) == "table" and err.message or tostring(err)
  if self.injected then msg = "ledger " .. self.location .. ": " .. msg else msg = "ledger " .. msg end
  return nil, rerr(msg, { retryable = type(err) == "table" and err.retryable or false })
end

local function numstr(n)
  if n == nil then return "" end
  return ("%.17g"):format(n)
end

local function eval_batches(self, script, head, items)
  for first = 1, #items, BATCH do
    local args = {}
    for i = 1, #head do args[i] = head[i] end
    for i = first, math.min(#items, first + BATCH - 1) do args[#args + 1] = items[i] end
    local ok, err = self:eval(script, unpack(args))
    if not ok then return nil, err end
  end
  return true
end

function Redis:record(entries)
  local items = {}
  for i, e in ipairs(entries) do
    local tags = cjson.encode(e.tags)
    if #e.tags == 0 then tags = "[]" end
    items[i] = cjson.encode { k = e.key, c = e.conversation, r = e.robot, t = numstr(e.sent_at), g = tags,
      l = numstr(e.ttl), m = e.msg_key or "" }
  end
  local now = self.clock()
  return eval_batches(self, RECORD, { self.prefix, numstr(now), numstr(now - self.retention) }, items)
end

--- changes: a ledger.changes (sets of keys by state).
function Redis:update(changes, now)
  if changes.count == 0 then return true end
  local items = {}
  for _, set in ipairs(changes.sets) do
    local why, code = set.why or {}, set.code or {}
    for _, part in ipairs(set.parts) do
      for _, k in ipairs(part) do
        items[#items + 1] = cjson.encode { k = k, s = set.state, why = why[k], code = code[k] }
      end
    end
  end
  return eval_batches(self, UPDATE, { self.prefix, numstr(now) }, items)
end

local function entry(row, i)
  local function opt(v) return (v ~= "" and v) or nil end
  local ok, tags = pcall(cjson.decode, row[i + 4] or "")
  if not ok or type(tags) ~= "table" then tags = {} end
  return {
    key = row[i], conversation = row[i + 1], robot = row[i + 2], sent_at = tonumber(row[i + 3]) or 0,
    tags = tags, ttl = tonumber(opt(row[i + 5]) or ""), msg_key = opt(row[i + 6]), state = row[i + 7],
    reason = opt(row[i + 8]), code = opt(row[i + 9]), updated_at = tonumber(row[i + 10]),
  }, tonumber(row[i + 11]) or 0
end

function Redis:get(key)
  local row, err = self:eval(GET, self.prefix, key)
  if not row then return nil, err end
  if type(row) ~= "table" or #row < NF + 1 then return nil end
  return (entry(row, 1))
end

--- q: {conversation, robot, tag, states (set), min_t, last, due_at}
-- Newest first: by send time, then by send sequence (several in one second).
function Redis:list(q)
  local idx
  local states = {}
  for s in pairs(q.states or {}) do states[#states + 1] = s end
  table.sort(states)
  if q.conversation then idx = "c:" .. q.conversation
  elseif q.tag then idx = "t:" .. q.tag
  elseif q.robot then idx = "r:" .. q.robot
  elseif #states == 1 then idx = "s:" .. states[1]
  elseif q.due_at then idx = "s:sent"
  else idx = "all" end
  local row, err = self:eval(LIST, self.prefix, idx, q.min_t and numstr(q.min_t) or "-inf", q.last or 0,
    q.conversation or "", q.robot or "", q.tag or "", table.concat(states, ","), q.due_at and numstr(q.due_at) or "")
  if not row then return nil, err end
  local out, seq = {}, {}
  if type(row) ~= "table" then return out end
  for i = 1, #row, NF + 1 do
    local e, q_ = entry(row, i)
    out[#out + 1] = e
    seq[e] = q_
  end
  table.sort(out, function(a, b)
    if a.sent_at ~= b.sent_at then return a.sent_at > b.sent_at end
    if seq[a] ~= seq[b] then return seq[a] > seq[b] end
    return a.key > b.key
  end)
  if q.last and q.last > 0 then
    for i = #out, q.last + 1, -1 do out[i] = nil end
  end
  return out
end

--- claims: array of {key, was} (was: the state the key was listed in).
-- Marks each key `recalling`, owned by this ledger until now + lease (on
-- Redis's clock), when it is still in state `was` or, for `recalling`,
-- when its lease has ended or it is this ledger's own.  One atomic script:
-- of several hosts sweeping at once, exactly one gets each key.  Returns
-- the set of keys claimed | nil, err.
function Redis:claim(claims)
  local got = {}
  for first = 1, #claims, BATCH do
    local args = { self.prefix, self.owner, numstr(math.floor(self.lease * 1000)) }
    for i = first, math.min(#claims, first + BATCH - 1) do
      args[#args + 1] = claims[i].key
      args[#args + 1] = claims[i].was
    end
    local res, err = self:eval(CLAIM, unpack(args))
    if not res then return nil, err end
    if type(res) == "table" then
      for _, k in ipairs(res) do got[k] = true end
    end
  end
  return got
end

function Redis:close()
  if self.conn then self.conn:close() end
  self.conn = nil
end

M.Redis = Redis
return M
