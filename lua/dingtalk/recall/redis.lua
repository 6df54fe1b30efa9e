--- dingtalk.recall.redis: the project's one Redis client (RESP2), for
-- every host: ngx cosockets inside OpenResty, LuaSocket elsewhere (plain
-- Lua 5.1-5.4, LuaJIT, Neovim).  Used by the Redis ledger, the Redis QPS
-- limiter and the Redis token store.
--
--   local redis = require "dingtalk.recall.redis"
--   local r = assert(redis.new("redis://user:p%2Fss@127.0.0.1:6379/2", { timeout = 2 }))
--   local v, err = r:call("GET", "k")          -- nil bulk string -> false
--   local replies = r:pipeline { { "SET", "a", 1 }, { "INCR", "a" } }
--   local s = redis.script("return redis.call('TIME')")
--   local t = r:eval(s, { "key1" }, { "arg" })  -- EVALSHA, SCRIPT LOAD on NOSCRIPT
--   r:close()
--
-- Replies: simple strings and bulk strings are Lua strings, integers are
-- numbers, a nil bulk string or nil array is false, arrays are tables
-- (an error reply inside an array is an error object there).  An error
-- reply to a call is nil, err; every failure is nil, err with err an error
-- object (core.error): code "redis.reply" (the server said -ERR ...,
-- err.reply holds its first word), "redis.auth" (AUTH or SELECT refused),
-- "redis.io" (connect, send, read, timeout: retryable) or "redis.invalid"
-- (a bad URL).  The password never appears in an error, a log line or
-- tostring(client): errors name the server by its redacted URL.
--
-- The connection: made at the first call, re-made after it breaks.  A
-- command that fails on a connection that was already in use before this
-- call because it was closed (a restarted server, an idle timeout) is sent
-- once more on a new connection: it never reached the server.  In
-- OpenResty every call takes a connection from the cosocket pool and puts
-- it back (a cosocket belongs to one request): AUTH and SELECT run only on
-- new ones, and the pool is named by host, port, db and user.
local core = require "dingtalk.recall.core"

local unpack = table.unpack or unpack -- luacheck: ignore 113 143

local M = {}
local Client = {}
Client.__index = Client

local DEFAULT_TIMEOUT = 5
local MAX_BULK = 512 * 1024 * 1024   -- Redis's own limit on a bulk string
local MAX_ARRAY = 1024 * 1024
local MAX_DEPTH = 8

-- Passwords, kept out of the client table so that dumping the client (or
-- its cfg) cannot print them.
local secrets = setmetatable({}, { __mode = "k" })

local function unescape(s)
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

local function escape(s)
  return (s:gsub("[^%w%-._~]", function(c) return ("%%%02X"):format(c:byte()) end))
end

--- redact(s [, password]): s with anything that looks like a URL's
-- userinfo (and the password itself, raw and percent-encoded) replaced
-- by ***.  For any string that may hold a Redis URL.
function M.redact(s, password)
  s = tostring(s)
  -- scheme://userinfo@ : the userinfo runs to the last @ before the host
  s = s:gsub("(%a[%w+.-]*://)([^%s]*)@([^@%s]*)", function(scheme, userinfo, rest)
    local user = userinfo:match("^([^:]*):")
    return scheme .. (user and user .. ":" or "") .. "***@" .. rest
  end)
  if type(password) == "string" and password ~= "" then
    for _, p in ipairs { password, escape(password) } do
      local i = 1
      while true do
        local a, b = s:find(p, i, true)
        if not a then break end
        s = s:sub(1, a - 1) .. "***" .. s:sub(b + 1)
        i = a + 3
      end
    end
  end
  return s
end

--- parse_url("redis://[user[:password]@]host[:port][/db]") -> cfg | nil, msg
-- The userinfo runs to the last @, so a password may hold / @ ? : and #
-- as they are, or percent-encoded (%2F, %40, ...).  cfg: host, port, db,
-- user, password.  The message never holds the password.
function M.parse_url(url)
  if type(url) ~= "string" then return nil, "the Redis URL must be a string" end
  local rest = url:match("^redis://(.*)$")
  if not rest then return nil, "not a redis:// URL: " .. M.redact(url) end
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
  hostpart = hostpart:gsub("[?#].*$", "")
  local hostport, db = hostpart:match("^([^/]*)/?(.*)$")
  if db ~= "" then
    cfg.db = tonumber(db)
    if not db:match("^%d+$") or not cfg.db or cfg.db > 1e6 then
      return nil, "the database must be a number: /" .. db
    end
  end
  local host, port = hostport:match("^%[([^%]]+)%]:?(%d*)$")
  if not host then host, port = hostport:match("^([^:]*):?(%d*)$") end
  if not host then return nil, "bad host:port '" .. hostport .. "'" end
  cfg.host = host ~= "" and host or "127.0.0.1"
  if port ~= "" then cfg.port = tonumber(port) end
  if not cfg.port or cfg.port < 1 or cfg.port > 65535 then return nil, "bad port " .. port end
  return cfg
end

-- The URL to show: no password.
local function show(cfg)
  local host = cfg.host:find(":", 1, true) and "[" .. cfg.host .. "]" or cfg.host
  local auth = ""
  if cfg.user then auth = escape(cfg.user) .. ":***@" elseif cfg.has_password then auth = ":***@" end
  return ("redis://%s%s:%d/%d"):format(auth, host, cfg.port, cfg.db)
end

local function ngx_host()
  local ngx = rawget(_G, "ngx")
  return type(ngx) == "table" and type(ngx.socket) == "table" and ngx.socket.tcp ~= nil and ngx or nil
end

--- new(url [, opts]) -> client | nil, err (a bad URL).  Connects at the
-- first call.  opts: timeout (seconds, each connect/send/read, default
-- 5), connect_timeout, pool_size (OpenResty, default 64),
-- keepalive (OpenResty idle seconds, default 60).
function M.new(url, opts)
  if opts ~= nil and type(opts) ~= "table" then error("redis.new: opts must be a table", 2) end
  opts = opts or {}
  local cfg, msg = M.parse_url(url)
  if not cfg then return nil, core.error("redis.invalid", msg, { retryable = false,
    hint = "The URL is redis://[user:password@]host[:port][/db]." }) end
  for _, name in ipairs { "timeout", "connect_timeout", "pool_size", "keepalive" } do
    local v = opts[name]
    if v ~= nil and (type(v) ~= "number" or v ~= v or v <= 0 or v > 3600) then
      error(("redis.new: option '%s' must be a number of seconds in (0, 3600]"):format(name), 2)
    end
  end
  local password = cfg.password
  cfg.password = nil
  cfg.has_password = password ~= nil
  local self = setmetatable({
    cfg = cfg, url = nil, timeout = opts.timeout or DEFAULT_TIMEOUT,
    connect_timeout = opts.connect_timeout or opts.timeout or DEFAULT_TIMEOUT,
    pool_size = math.floor(opts.pool_size or 64), keepalive = opts.keepalive or 60,
    shas = {}, round_trips = 0, connects = 0,
  }, Client)
  self.url = show(cfg)
  secrets[self] = password
  return self
end

function Client:__tostring()
  return "redis client " .. self.url
end

local function fail(self, code, msg, fields)
  fields = fields or {}
  if fields.retryable == nil then fields.retryable = code == "redis.io" end
  fields.hint = fields.hint or (code == "redis.io" and
    "Check that redis-server is running and reachable at " .. self.url .. "." or nil)
  return nil, core.error(code, M.redact(self.url .. ": " .. msg, secrets[self]), fields)
end

---------------------------------------------------------------------------
-- The wire
---------------------------------------------------------------------------

local function encode(parts, args)
  parts[#parts + 1] = "*" .. #args .. "\r\n"
  for i = 1, #args do
    local a = args[i]
    local t = type(a)
    if t == "number" then
      a = (a % 1 == 0 and a > -1e15 and a < 1e15) and ("%d"):format(a) or ("%.17g"):format(a)
    elseif t ~= "string" then
      error("redis: command arguments must be strings or numbers (argument " .. i .. " is a " .. t .. ")", 4)
    end
    parts[#parts + 1] = "$" .. #a .. "\r\n"
    parts[#parts + 1] = a
    parts[#parts + 1] = "\r\n"
  end
end

-- One reply: value | nil, msg, kind ("reply" for -ERR, "io" otherwise).
local function read_reply(sock, depth)
  local line, err = sock:receive("*l")
  if not line then return nil, tostring(err), "io" end
  local kind, rest = line:sub(1, 1), line:sub(2)
  if kind == "+" then return rest end
  if kind == "-" then return nil, rest, "reply" end
  if kind == ":" then
    local n = tonumber(rest)
    if not n or not rest:match("^%-?%d+$") then return nil, "bad integer reply", "io" end
    return n
  end
  if kind == "$" then
    local n = tonumber(rest)
    if not n or not rest:match("^%-?%d+$") or n > MAX_BULK then return nil, "bad bulk length", "io" end
    if n < 0 then return false end
    local data, derr = sock:receive(n + 2)
    if not data then return nil, tostring(derr), "io" end
    if data:sub(-2) ~= "\r\n" then return nil, "bad bulk string", "io" end
    return data:sub(1, n)
  end
  if kind == "*" then
    local n = tonumber(rest)
    if not n or not rest:match("^%-?%d+$") or n > MAX_ARRAY then return nil, "bad array length", "io" end
    if n < 0 then return false end
    if depth >= MAX_DEPTH then return nil, "arrays nested too deep", "io" end
    local arr = {}
    for i = 1, n do
      local v, verr, vkind = read_reply(sock, depth + 1)
      if v == nil then
        if vkind == "io" then return nil, verr, "io" end
        v = core.error("redis.reply", verr, { retryable = false, reply = verr:match("^(%S+)") })
      end
      arr[i] = v
    end
    return arr
  end
  return nil, "bad reply type " .. ("%q"):format(kind), "io"
end

-- A connected socket: sock, reused | nil, msg, code
local function connect(self)
  local cfg = self.cfg
  local ngx = ngx_host()
  local sock
  if ngx then
    local ok, s = pcall(ngx.socket.tcp)
    if not ok then return nil, "no cosocket in this nginx phase", "redis.io" end
    sock = s
    sock:settimeouts(self.connect_timeout * 1000, self.timeout * 1000, self.timeout * 1000)
    local pool = ("dingtalk-recall-redis:%s:%d:%d:%s"):format(cfg.host, cfg.port, cfg.db,
      cfg.user or (cfg.has_password and "default" or ""))
    local ok2, err = sock:connect(cfg.host, cfg.port, { pool = pool, pool_size = self.pool_size })
    if not ok2 then return nil, "connect: " .. tostring(err), "redis.io" end
  else
    local ok, socket = pcall(require, "socket")
    if not ok then
      return nil, "the Redis client needs LuaSocket outside OpenResty (Debian: lua-socket)", "redis.io"
    end
    sock = socket.tcp()
    sock:settimeout(self.connect_timeout)
    local ok2, err = sock:connect(cfg.host, cfg.port)
    if not ok2 then
      sock:close()
      return nil, "connect: " .. tostring(err), "redis.io"
    end
    sock:settimeout(self.timeout)
    sock:setoption("tcp-nodelay", true)
  end
  self.connects = self.connects + 1
  self.ngx = ngx ~= nil -- the last connection was a cosocket
  if ngx and (sock:getreusedtimes() or 0) > 0 then return sock, true end
  local function setup(args)
    local parts = {}
    encode(parts, args)
    local ok, err = sock:send(table.concat(parts))
    if not ok then return nil, tostring(err), "io" end
    return read_reply(sock, 0)
  end
  local password = secrets[self]
  if password then
    local res, err, kind = setup(cfg.user and { "AUTH", cfg.user, password } or { "AUTH", password })
    if not res then
      sock:close()
      return nil, "AUTH: " .. tostring(err), kind == "io" and "redis.io" or "redis.auth"
    end
  end
  if cfg.db ~= 0 then
    local res, err, kind = setup { "SELECT", cfg.db }
    if not res then
      sock:close()
      return nil, "SELECT " .. cfg.db .. ": " .. tostring(err), kind == "io" and "redis.io" or "redis.auth"
    end
  end
  return sock, false
end

local function release(self, sock)
  if ngx_host() then
    sock:setkeepalive(self.keepalive * 1000, self.pool_size)
  else
    self.sock = sock
  end
end

local function drop(self)
  if self.sock then self.sock:close() end
  self.sock = nil
end

-- Sends the encoded commands and reads n replies: replies (each value or
-- error object) | nil, msg, code.
local function exchange(self, payload, n)
  for attempt = 1, 2 do
    local sock, reused = self.sock, true
    if sock then
      self.sock = nil
    else
      local s, r, code = connect(self)
      if not s then return nil, r, code end
      sock, reused = s, r
    end
    self.round_trips = self.round_trips + 1
    local ok, err = sock:send(payload)
    local replies = {}
    if ok then
      for i = 1, n do
        local v, rerr, kind = read_reply(sock, 0)
        if v == nil and kind == "io" then
          ok, err = nil, rerr
          break
        end
        replies[i] = v == nil and core.error("redis.reply", M.redact(rerr, secrets[self]),
          { retryable = rerr:match("^BUSY") ~= nil or rerr:match("^LOADING") ~= nil,
            reply = rerr:match("^(%S+)") }) or v
      end
    end
    if ok then
      release(self, sock)
      return replies
    end
    sock:close()
    -- A connection that was idle may have been closed under us (a server
    -- restart): the command never reached it.  Once more on a new one.
    local closed = err == "closed" or tostring(err):match("reset") or tostring(err):match("broken pipe")
    if not (reused and closed and attempt == 1) then
      return nil, tostring(err), "redis.io"
    end
  end
end

--- client:call(cmd, ...) -> reply | nil, err
function Client:call(...)
  local args = { ... }
  if type(args[1]) ~= "string" then error("redis:call expects a command name (string)", 2) end
  local parts = {}
  encode(parts, args)
  local replies, msg, code = exchange(self, table.concat(parts), 1)
  if not replies then
    drop(self)
    return fail(self, code, tostring(args[1]) .. ": " .. msg)
  end
  local v = replies[1]
  if core.is_error(v) then return nil, v end
  return v
end

--- client:pipeline{ {cmd, ...}, ... } -> replies | nil, err.  One round
-- trip; replies[i] is the i-th reply (an error reply is an error object
-- there, the others still ran).  nil, err only when the connection failed.
function Client:pipeline(cmds)
  if type(cmds) ~= "table" then error("redis:pipeline expects an array of commands", 2) end
  if #cmds == 0 then return {} end
  local parts = {}
  for i, c in ipairs(cmds) do
    if type(c) ~= "table" or type(c[1]) ~= "string" then
      error("redis:pipeline: command " .. i .. " must be an array {name, args...}", 2)
    end
    encode(parts, c)
  end
  local replies, msg, code = exchange(self, table.concat(parts), #cmds)
  if not replies then
    drop(self)
    return fail(self, code, "pipeline: " .. msg)
  end
  return replies
end

--- redis.script(source) -> script: a script to run with client:eval.
function M.script(source)
  if type(source) ~= "string" then error("redis.script expects the script's source", 2) end
  return { source = source }
end

--- client:eval(script, keys, args) -> reply | nil, err.  EVALSHA of the
-- script's SHA1 (learnt with SCRIPT LOAD the first time), loaded again
-- when the server answers NOSCRIPT (a restart, SCRIPT FLUSH).
function Client:eval(script, keys, args)
  if type(script) == "string" then script = M.script(script) end
  keys, args = keys or {}, args or {}
  for attempt = 1, 2 do
    local sha = self.shas[script.source]
    if not sha then
      local s, err = self:call("SCRIPT", "LOAD", script.source)
      if not s then return nil, err end
      sha = s
      self.shas[script.source] = sha
    end
    local cmd = { "EVALSHA", sha, #keys }
    for i = 1, #keys do cmd[#cmd + 1] = keys[i] end
    for i = 1, #args do cmd[#cmd + 1] = args[i] end
    local res, err = self:call(unpack(cmd, 1, #cmd))
    if res ~= nil then return res end
    if not (err.reply == "NOSCRIPT" and attempt == 1) then return nil, err end
    self.shas[script.source] = nil
  end
end

--- client:close(): closes (plain Lua) the connection.  Safe twice.
function Client:close()
  drop(self)
end

---------------------------------------------------------------------------
-- What the modules built on this client share (limiter/redis.lua,
-- token/redis.lua): their options, their app's hash tag, their log.
---------------------------------------------------------------------------

--- option(opts, name, lo, hi, default, who) -> the number opts[name], or
-- default when absent; raises (at new's caller) unless finite in [lo, hi].
function M.option(opts, name, lo, hi, default, who)
  local v = opts[name]
  if v == nil then return default end
  if type(v) ~= "number" or v ~= v or v < lo or v > hi then
    error(("%s: option '%s' must be a number in [%s, %s]"):format(who, name, lo, hi), 3)
  end
  return v
end

--- tag(key, who) -> "{dingtalk-recall:<key>}": one hash tag per app, so a
-- proxy or a cluster keeps an app's keys on one node.  Raises on a key
-- that is empty or holds braces or control characters.
function M.tag(key, who)
  if type(key) ~= "string" or key == "" or key:find("[{}%c]") then
    error(who .. ": key must be a non-empty string without braces or control characters", 3)
  end
  return "{dingtalk-recall:" .. key .. "}"
end

--- connect(redis, timeout, who) -> client | nil, err: a redis:// URL (a
-- new client) or a client made by this module (used as it is).
function M.connect(redis, timeout, who)
  if type(redis) == "string" then return M.new(redis, { timeout = timeout }) end
  if type(redis) ~= "table" or type(redis.eval) ~= "function" then
    error(who .. ": redis must be a redis:// URL or a dingtalk.recall.redis client", 3)
  end
  return redis
end

--- log(level, msg): the default log of those modules: ngx.log inside
-- nginx, else stderr.  Messages are the modules' own (passwords redacted).
function M.log(level, msg)
  local ngx = rawget(_G, "ngx")
  if type(ngx) == "table" and ngx.log then
    ngx.log(level == "warn" and ngx.WARN or ngx.NOTICE, "dingtalk-recall: ", msg)
  else
    io.stderr:write("dingtalk-recall: ", level, ": ", msg, "\n")
  end
end

M.Client = Client
return M
