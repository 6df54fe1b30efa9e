--- dingtalk.recall.ledger.redis: the ledger in Redis, shared by several
-- bot hosts and nginx workers.
--
-- Keys (P is the prefix, "dingtalk-recall:" by default):
--   P e:<key>          hash: c (conversation), r (robot), t (sent_at), g (tags, JSON),
--                      l (ttl), m (msgKey), s (state), why (reason), code, u (updated_at)
--   P all              sorted set of every key by sent_at
--   P c:<cid>, P r:<robot>, P t:<tag>, P s:<state>
--                      sorted sets by sent_at per conversation, robot, tag and state
--                      (P s:recalling is the set of keys an interrupted recall left)
-- Every operation is one EVAL of a script below, so it is atomic and one
-- round trip.  A record also drops up to 100 entries past the retention.
--
-- The connection: opts.redis_client (anything connected with an
-- :eval(script, numkeys, ...) method: resty.redis, lua-redis), or a small
-- RESP client of our own over ngx.socket.tcp (OpenResty) or luasocket.
local core = require "dingtalk.recall.core"
local cjson_mod = require "cjson"

local cjson = cjson_mod.new and cjson_mod.new() or cjson_mod
local unpack = table.unpack or unpack -- luacheck: ignore 113 143

local M = {}
local Redis = {}
Redis.__index = Redis

local DEFAULT_PREFIX = "dingtalk-recall:"
local DEFAULT_RETENTION = 7 * 86400
local DEFAULT_TIMEOUT = 5
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
    if type(c.why) == 'string' then redis.call('HSET', hk, 'why', c.why) else redis.call('HDEL', hk, 'why') end
    if type(c.code) == 'string' then redis.call('HSET', hk, 'code', c.code) else redis.call('HDEL', hk, 'code') end
    n = n + 1
  end
end
return n
]=]

local FIELDS = "'c', 'r', 't', 'g', 'l', 'm', 's', 'why', 'code', 'u'"

local GET = [=[
local h = redis.call('HMGET', ARGV[1] .. 'e:' .. ARGV[2], ]=] .. FIELDS .. [=[)
if not h[1] then return {} end
local out = { ARGV[2] }
for j = 1, 10 do out[j + 1] = h[j] or '' end
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
local out, found, off = {}, 0, 0
while true do
  local ks = redis.call('ZREVRANGEBYSCORE', idx, '+inf', min, 'LIMIT', off, 500)
  if #ks == 0 then break end
  off = off + #ks
  for _, k in ipairs(ks) do
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
      for j = 1, 10 do out[n + 1 + j] = h[j] or '' end
      found = found + 1
      if last > 0 and found >= last then return out end
    end
  end
end
return out
]=]

---------------------------------------------------------------------------
-- A small RESP client (ngx.socket.tcp in OpenResty, luasocket elsewhere)
---------------------------------------------------------------------------

local Conn = {}
Conn.__index = Conn

local function read_reply(sock)
  local line, err = sock:receive("*l")
  if not line then return nil, "read: " .. tostring(err), true end
  local kind, rest = line:sub(1, 1), line:sub(2)
  if kind == "+" then return rest end
  if kind == "-" then return nil, rest, false end
  if kind == ":" then return tonumber(rest) end
  if kind == "$" then
    local n = tonumber(rest)
    if not n then return nil, "bad reply: " .. line, true end
    if n < 0 then return false end
    local data, derr = sock:receive(n + 2)
    if not data then return nil, "read: " .. tostring(derr), true end
    return data:sub(1, n)
  end
  if kind == "*" then
    local n = tonumber(rest)
    if not n then return nil, "bad reply: " .. line, true end
    if n < 0 then return false end
    local arr = {}
    for i = 1, n do
      local v, verr, broken = read_reply(sock)
      if v == nil then
        if broken then return nil, verr, true end
        v = false -- an error inside an array: not ours to see
      end
      arr[i] = v
    end
    return arr
  end
  return nil, "bad reply: " .. line, true
end

function Conn:call(...)
  local args = { ... }
  local parts = { "*" .. #args .. "\r\n" }
  for i = 1, #args do
    local a = tostring(args[i])
    parts[#parts + 1] = "$" .. #a .. "\r\n"
    parts[#parts + 1] = a
    parts[#parts + 1] = "\r\n"
  end
  local ok, err = self.sock:send(table.concat(parts))
  if not ok then return nil, "send: " .. tostring(err), true end
  return read_reply(self.sock)
end

function Conn:eval(script, ...)
  return self:call("EVAL", script, 0, ...)
end

function Conn:close()
  if not self.sock then return end
  if self.ngx then
    self.sock:setkeepalive(10000, 64)
  else
    self.sock:close()
  end
  self.sock = nil
end

local function connect(cfg)
  local ngx = rawget(_G, "ngx")
  local sock, in_ngx
  if type(ngx) == "table" and type(ngx.socket) == "table" and ngx.socket.tcp then
    local ok, s = pcall(ngx.socket.tcp)
    if not ok then return nil, "no cosocket in this nginx phase (" .. tostring(s) .. ")" end
    sock, in_ngx = s, true
    sock:settimeout(cfg.timeout * 1000)
  else
    local ok, socket = pcall(require, "socket")
    if not ok then
      return nil, "the Redis ledger needs luasocket outside OpenResty (Debian: lua-socket), " ..
        "or opts.redis_client"
    end
    sock = socket.tcp()
    sock:settimeout(cfg.timeout)
  end
  local ok, err
  if in_ngx then
    -- pooled connections are told apart by what AUTH and SELECT made of them
    ok, err = sock:connect(cfg.host, cfg.port, { pool = ("dingtalk-recall-ledger:%s:%d:%d:%s"):format(
      cfg.host, cfg.port, cfg.db, cfg.user or (cfg.password and "default" or "")) })
  else
    ok, err = sock:connect(cfg.host, cfg.port)
  end
  if not ok then return nil, ("connect %s:%d: %s"):format(cfg.host, cfg.port, tostring(err)) end
  local c = setmetatable({ sock = sock, ngx = in_ngx }, Conn)
  if in_ngx and sock.getreusedtimes and (sock:getreusedtimes() or 0) > 0 then return c end
  if cfg.password then
    local res, aerr
    if cfg.user then
      res, aerr = c:call("AUTH", cfg.user, cfg.password)
    else
      res, aerr = c:call("AUTH", cfg.password)
    end
    if not res then
      c:close()
      return nil, "AUTH: " .. tostring(aerr)
    end
  end
  if cfg.db ~= 0 then
    local res, serr = c:call("SELECT", cfg.db)
    if not res then
      c:close()
      return nil, "SELECT " .. cfg.db .. ": " .. tostring(serr)
    end
  end
  return c
end

local function unescape(s)
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

--- redis://[user[:password]@]host[:port][/db] -> cfg | nil, msg
local function parse_url(url)
  local rest = url:match("^redis://(.*)$")
  if not rest then return nil, "not a redis:// URL" end
  rest = rest:gsub("[?#].*$", "")
  local cfg = { port = 6379, db = 0 }
  local auth, hostpart = rest:match("^(.*)@([^@]*)$")
  if auth then
    local user, pass = auth:match("^([^:]*):(.*)$")
    if user then
      cfg.user = user ~= "" and unescape(user) or nil
      cfg.password = unescape(pass)
    else
      cfg.password = unescape(auth)
    end
    if cfg.password == "" then cfg.password = nil end
  else
    hostpart = rest
  end
  local hostport, db = hostpart:match("^([^/]*)/?(.*)$")
  if db ~= "" then
    cfg.db = tonumber(db)
    if not cfg.db or cfg.db < 0 or cfg.db % 1 ~= 0 then return nil, "the database must be a number: /" .. db end
  end
  local host, port = hostport:match("^%[([^%]]+)%]:?(%d*)$")
  if not host then host, port = hostport:match("^([^:]*):?(%d*)$") end
  if not host then return nil, "bad host:port '" .. hostport .. "'" end
  cfg.host = host ~= "" and host or "127.0.0.1"
  if port ~= "" then cfg.port = tonumber(port) end
  if cfg.port < 1 or cfg.port > 65535 then return nil, "bad port " .. port end
  return cfg
end
M.parse_url = parse_url

local function wrap_client(client)
  local ngx = rawget(_G, "ngx")
  local null = type(ngx) == "table" and ngx.null or nil
  return {
    eval = function(_, script, ...)
      local ok, res, err = pcall(client.eval, client, script, 0, ...)
      if not ok then return nil, tostring(res), false end
      if res == nil or (null ~= nil and res == null) then return nil, tostring(err or "no reply"), false end
      return res
    end,
    close = function() end,
  }
end

---------------------------------------------------------------------------
-- The store
---------------------------------------------------------------------------

--- redis.open(url, opts, clock) -> store | nil, err
function M.open(url, opts, clock)
  local cfg, perr = parse_url(url)
  if not cfg then return nil, core.error("ledger.invalid", "ledger URL: " .. perr) end
  cfg.timeout = opts.timeout or DEFAULT_TIMEOUT
  local self = setmetatable({
    cfg = cfg, kind = "redis", clock = clock, prefix = opts.prefix or DEFAULT_PREFIX,
    retention = opts.retention or DEFAULT_RETENTION,
    location = url:gsub("//[^@/]*@", "//***@"),
  }, Redis)
  if opts.redis_client ~= nil then
    local c = opts.redis_client
    if type(c) ~= "table" or type(c.eval) ~= "function" then
      error("ledger.open: opts.redis_client must be a connected client with an eval method", 3)
    end
    self.conn, self.injected = wrap_client(c), true
  else
    local c, err = connect(cfg)
    if not c then return nil, rerr("ledger " .. self.location .. ": " .. err) end
    self.conn = c
  end
  return self
end

function Redis:eval(script, ...)
  for attempt = 1, 2 do
    if not self.conn then
      local c, cerr = connect(self.cfg)
      if not c then return nil, rerr("ledger " .. self.location .. ": " .. cerr) end
      self.conn = c
    end
    local res, err, broken = self.conn:eval(script, ...)
    if res ~= nil and res ~= false then return res end
    if not broken or self.injected or attempt == 2 then
      if broken then
        self.conn:close()
        self.conn = nil
      end
      return nil, rerr("ledger " .. self.location .. ": " .. tostring(err), { retryable = broken and true or false })
    end
    -- The connection broke (a restarted server, an idle timeout): once more
    -- on a new one.  Every script may safely run twice.
    self.conn:close()
    self.conn = nil
  end
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

function Redis:update(changes, now)
  if #changes == 0 then return true end
  local items = {}
  for i, c in ipairs(changes) do
    items[i] = cjson.encode { k = c.key, s = c.state, why = c.reason, code = c.code }
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
  }
end

function Redis:get(key)
  local row, err = self:eval(GET, self.prefix, key)
  if not row then return nil, err end
  if type(row) ~= "table" or #row < 11 then return nil end
  return entry(row, 1)
end

--- q: {conversation, robot, tag, states (set), min_t, last, due_at}
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
  local out = {}
  if type(row) ~= "table" then return out end
  for i = 1, #row, 11 do out[#out + 1] = entry(row, i) end
  return out
end

function Redis:close()
  if self.conn then self.conn:close() end
  self.conn = nil
end

M.Redis = Redis
return M
