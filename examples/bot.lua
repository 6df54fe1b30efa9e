#!/usr/bin/env lua
-- examples/bot.lua: a complete DingTalk bot in plain Lua that wires recall
-- into a group with dingtalk.recall.rules.
--
--   DINGTALK_APP_KEY=... DINGTALK_APP_SECRET=... DINGTALK_ROBOT_CODE=... \
--   BOT_ADMINS=staff1,staff2 lua examples/bot.lua --port 8080
--
-- It serves DingTalk's HTTP callback (LuaSocket; many connections at once,
-- each with size and time limits: see "a small HTTP/1.1 server" below):
-- checks the signature and refuses replays (dingtalk.recall.callback),
-- runs the chat commands (/recall last 3, /recall since 10m, /recall tag T,
-- /recall all) and answers in the HTTP response, which DingTalk posts to
-- the group.  "/say TEXT" makes the bot send TEXT through the API (so it is
-- recorded in the ledger and can be recalled; with BOT_TTL it is recalled
-- by itself).  Every BOT_SWEEP_EVERY seconds it sweeps expired messages.
-- Every recall and refusal is logged to stderr as one JSON line (the
-- rules' hooks): your audit log.
--
-- Settings (environment; credentials as for the dingtalk-recall CLI, or
-- its config file):
--   DINGTALK_APP_KEY, DINGTALK_APP_SECRET   the bot's app (the secret also signs callbacks)
--   DINGTALK_ACCESS_TOKEN                   instead of the key+secret (then set
--                                           DINGTALK_CALLBACK_SECRET to the app secret)
--   DINGTALK_ROBOT_CODE                     the robot's code (for /say)
--   DINGTALK_ENDPOINT, DINGTALK_CA_FILE     the API (e.g. the simulator)
--   DINGTALK_RECALL_LEDGER                  the ledger (shared with the CLI)
--   BOT_ADMINS        staff ids allowed to recall (comma separated); group admins are allowed too
--   BOT_GROUP_ADMINS  "no" to allow only BOT_ADMINS
--   BOT_TTL           a ttl for /say messages (e.g. 10m)
--   BOT_SWEEP_EVERY   seconds between sweeps (default 30; 0 = never)
--   BOT_MAX_CONNECTIONS, BOT_HEADER_TIMEOUT, BOT_REQUEST_TIMEOUT   server limits (below)
-- Options: --host H (default 127.0.0.1), --port N (default 8080; 0 = any
-- free port).  It prints "bot listening on http://HOST:PORT/" when ready.

-- From a checkout, lua/ and the built core next to this script (checkout.lua).
local here = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
local checkout = loadfile(here .. "/checkout.lua")
if checkout then checkout(here .. "/..") end

local socket = require "socket"
local cjson = require "cjson"
local recall = require "dingtalk.recall"
local callback = require "dingtalk.recall.callback"
local rules = require "dingtalk.recall.rules"
local ledger_mod = require "dingtalk.recall.ledger"
local config = require "dingtalk.recall.config"

-- One log line per call: control characters from chat text (newlines,
-- ANSI escapes) are written as \xNN, so nobody can forge or paint a line.
local function clean(v)
  return (tostring(v):gsub("[%c\127]", function(c) return ("\\x%02x"):format(c:byte()) end))
end
local function log(...)
  local parts = { ... }
  for i = 1, select("#", ...) do parts[i] = clean(parts[i]) end
  io.stderr:write(os.date("!%Y-%m-%dT%H:%M:%SZ "), table.concat(parts), "\n")
  io.stderr:flush()
end

local function die(msg)
  io.stderr:write("bot: ", msg, "\n")
  os.exit(1)
end

-- options
local host, port = "127.0.0.1", 8080
do
  local i = 1
  while arg and arg[i] do
    local a = arg[i]
    if a == "--host" then
      host = arg[i + 1] or die("--host needs a value")
      i = i + 1
    elseif a == "--port" then
      port = tonumber(arg[i + 1]) or die("--port needs a number")
      i = i + 1
    else
      die("unknown option " .. a .. " (--host H, --port N)")
    end
    i = i + 1
  end
end

-- settings
local cfg, cerr = config.load {}
if not cfg then die(tostring(cerr)) end
if not config.has_credentials(cfg) then
  die("no credentials: set DINGTALK_APP_KEY and DINGTALK_APP_SECRET (see the comments at the top)")
end
local callback_secret = os.getenv("DINGTALK_CALLBACK_SECRET") or cfg.app_secret
if not callback_secret then die("set DINGTALK_CALLBACK_SECRET (the app secret) to check callbacks") end
local admins = {}
for id in (os.getenv("BOT_ADMINS") or ""):gmatch("[^,%s]+") do admins[#admins + 1] = id end
local say_ttl
if os.getenv("BOT_TTL") then
  say_ttl = rules.parse_duration(os.getenv("BOT_TTL")) or die("BOT_TTL is not a duration")
end
local sweep_every = tonumber(os.getenv("BOT_SWEEP_EVERY") or "30") or die("BOT_SWEEP_EVERY is not a number")

local client, err = recall.client(config.client_options(cfg))
if not client then die(tostring(err)) end
local ledger
ledger, err = ledger_mod.open(cfg.ledger)
if not ledger then die(tostring(err)) end
ledger:attach(client)  -- every client:send is recorded, for /recall and the sweep

local r = rules.new {
  ledger = ledger, client = client, admins = admins,
  allow_group_admins = os.getenv("BOT_GROUP_ADMINS") ~= "no",
}
local replay = callback.memory_store()

-- the audit log: one JSON line per event (rules.audit's record)
local function audit(ev)
  local line = rules.audit(ev)
  if line then log("audit ", cjson.encode(line)) end
end
for _, e in ipairs { "recalled", "refused", "failed", "confirm", "swept" } do rules.on(e, audit) end

-- /say TEXT: sends TEXT to the group through the API (recorded in the ledger)
local function say(msg)
  local text = type(msg.text) == "table" and type(msg.text.content) == "string" and msg.text.content or ""
  local what = text:match("^%s*/say%s+(.-)%s*$")
  if not what or what == "" then return nil end
  if not r:authorized(msg) then return "Sorry, you are not allowed to do that here." end
  local key, serr = client:send(msg.conversationId, "sampleText", { content = what },
    { robot_code = msg.robotCode or cfg.robot_code, ttl = say_ttl, tags = { "say" } })
  if not key then return "Could not send: " .. tostring(serr.message or serr) end
  return nil, key
end

---------------------------------------------------------------------------
-- a small HTTP/1.1 server with limits: one request per connection, every
-- connection a coroutine over socket.select, so a slow or huge client holds
-- only its own connection.  Limits (bytes and seconds):
--   BOT_MAX_CONNECTIONS (64) connections at once; one more gets 503.
--   a header line at most 8 KiB, all headers 16 KiB, 64 lines: else 431.
--   a body at most callback.MAX_BODY (64 KiB), refused by its Content-Length
--   before a byte of it is read: 413.  No chunked bodies (411).
--   BOT_HEADER_TIMEOUT (10) seconds from connect to the end of the headers,
--   BOT_REQUEST_TIMEOUT (20) to the end of the answer: else 408 / closed.
--   After an error answer, at most 1 MiB or 2 s more of the request is read
--   and thrown away (so the client sees the answer), then the connection is
--   closed.
-- A command that recalls runs to its end before the next event is served
-- (the recall itself is bounded by the client's timeouts and retries).
---------------------------------------------------------------------------
local function env_number(name, default, lo, hi)
  local v = os.getenv(name)
  if v == nil or v == "" then return default end
  local x = tonumber(v)
  if not x or x ~= x or x < lo or x > hi then die(name .. " must be a number in [" .. lo .. ", " .. hi .. "]") end
  return x
end
local LIMITS = {
  connections = math.floor(env_number("BOT_MAX_CONNECTIONS", 64, 1, 512)),
  header_line = 8192, header_bytes = 16384, header_lines = 64, body = callback.MAX_BODY,
  header_timeout = env_number("BOT_HEADER_TIMEOUT", 10, 0.1, 300),
  request_timeout = env_number("BOT_REQUEST_TIMEOUT", 20, 0.1, 600),
  drain_bytes = 1048576, drain_time = 2,
}
local REASONS = { [200] = "OK", [400] = "Bad Request", [401] = "Unauthorized", [404] = "Not Found",
  [405] = "Method Not Allowed", [408] = "Request Timeout", [411] = "Length Required",
  [413] = "Payload Too Large", [431] = "Request Header Fields Too Large", [500] = "Internal Server Error",
  [503] = "Service Unavailable" }

local function text_reply(text)
  return cjson.encode { msgtype = "text", text = { content = text } }
end

-- Inside a connection's coroutine: waits until its socket is ready
-- ("read" or "write"); false when its deadline passed.
local function wait(what)
  return coroutine.yield(what) ~= "timeout"
end

-- Reads more into c.buf; nil, why ("timeout", "closed") when no more comes.
local function fill(c)
  while true do
    if not c.sock:dirty() and not wait("read") then return nil, "timeout" end
    local data, rerr, partial = c.sock:receive(8192)
    local got = data or partial
    if got and #got > 0 then
      c.buf = c.buf .. got
      return true
    end
    if rerr ~= "timeout" then return nil, "closed" end
  end
end

-- The next header line (without its CRLF) | nil, status | nil.
local function read_line(c)
  while true do
    local i = c.buf:find("\n", 1, true)
    if i then
      if i > LIMITS.header_line + 1 then return nil, 431 end
      local line = c.buf:sub(1, i - 1):gsub("\r$", "")
      c.buf = c.buf:sub(i + 1)
      c.header_bytes = c.header_bytes + i
      if c.header_bytes > LIMITS.header_bytes then return nil, 431 end
      return line
    end
    if #c.buf > LIMITS.header_line or c.header_bytes + #c.buf > LIMITS.header_bytes then return nil, 431 end
    local ok, why = fill(c)
    if not ok then return nil, why == "timeout" and 408 or nil end
  end
end

local function read_request(c)
  local line, status = read_line(c)
  if not line then return nil, status end
  local method, path = line:match("^(%u+)%s+(%S+)%s+HTTP/1%.[01]$")
  if not method then return nil, 400 end
  local headers = {}
  for _ = 1, LIMITS.header_lines + 1 do
    local h
    h, status = read_line(c)
    if not h then return nil, status end
    if h == "" then
      c.deadline = c.started + LIMITS.request_timeout
      local req = { method = method, path = path, headers = headers }
      if method ~= "POST" then return req end
      if headers["transfer-encoding"] then return nil, 411 end
      local len = tonumber(type(headers["content-length"]) == "string" and headers["content-length"] or "")
      if not len or len < 0 or len ~= math.floor(len) then return nil, 411 end
      -- Too big: refused before reading it (callback.verify checks again).
      if len > LIMITS.body then return nil, 413 end
      while #c.buf < len do
        local ok, why = fill(c)
        if not ok then return nil, why == "timeout" and 408 or nil end
      end
      req.body = c.buf:sub(1, len)
      return req
    end
    local k, v = h:match("^([^:]+):%s*(.-)%s*$")
    if not k then return nil, 400 end
    k = k:lower()
    if headers[k] then headers[k] = { headers[k], v } else headers[k] = v end
  end
  return nil, 431
end

-- Sends the whole answer, waiting for the socket as needed.
local function respond(c, status, body)
  body = body or ""
  local data = "HTTP/1.1 " .. status .. " " .. (REASONS[status] or "") .. "\r\n" ..
    "Content-Type: application/json; charset=utf-8\r\nContent-Length: " .. #body ..
    "\r\nConnection: close\r\n\r\n" .. body
  local at = 1
  while at <= #data do
    local last, serr, partial = c.sock:send(data, at)
    if last then return true end
    if serr ~= "timeout" then return false end
    at = partial + 1
    if not wait("write") then return false end
  end
  return true
end

-- After an error answer: reads and drops what the client still sends
-- (bounded), so it can read the answer before the connection closes.
local function drain(c)
  c.deadline = math.min(c.deadline, socket.gettime() + LIMITS.drain_time)
  c.sock:shutdown("send")
  local dropped = 0
  while dropped < LIMITS.drain_bytes do
    c.buf = ""
    local ok = fill(c)
    if not ok then return end
    dropped = dropped + #c.buf
  end
end

local function handle(req)
  if req.method == "GET" and req.path == "/healthz" then return 200, '{"ok":true}' end
  if req.method ~= "POST" then return 405, '{"error":"POST the callback here"}' end
  local msg, verr = callback.verify(req.headers, req.body, { app_secret = callback_secret, replay_store = replay })
  if not msg then
    log("refused callback: ", tostring(verr.code))
    return callback.http_status(verr), cjson.encode { error = verr.code }
  end
  local ok, result = pcall(r.handle, r, msg)
  if not ok then
    log("error: ", tostring(result))
    return 500, '{"error":"internal"}'
  end
  if result then
    log("command from ", tostring(msg.senderStaffId), ": ", result.command or "?", " -> ",
      (result.reply:gsub("\n.*", "")))
    return 200, text_reply(result.reply)
  end
  local sok, problem, key = pcall(say, msg)
  if not sok then
    log("error: ", tostring(problem))
    return 500, '{"error":"internal"}'
  end
  if problem then return 200, text_reply(problem) end
  if key then log("sent ", key) end
  return 200, "{}"
end

-- One connection, in its coroutine.
local function serve(c)
  local req, status = read_request(c)
  if not req then
    if status then
      if status == 431 or status == 413 or status == 408 then log("refused request: ", status) end
      respond(c, status, '{"error":"' .. (REASONS[status] or "bad request") .. '"}')
      drain(c)
    end
    return
  end
  respond(c, handle(req))
end

local server = socket.bind(host, port)
if not server then die("cannot listen on " .. host .. ":" .. port) end
server:settimeout(0)
local _, bound = server:getsockname()
io.stdout:write("bot listening on http://", host, ":", tostring(bound), "/\n")
io.stdout:flush()

local conns = {}   -- open connections: {sock, co, want = "read"|"write", deadline, ...}

local function step(c, why)
  local ok, want = coroutine.resume(c.co, why)
  if not ok then log("error: ", tostring(want)) end
  if not ok or coroutine.status(c.co) == "dead" then
    c.sock:close()
    c.closed = true
  else
    c.want = want
  end
end

local function accept_all()
  while true do
    local sock = server:accept()
    if not sock then return end
    sock:settimeout(0)
    if #conns >= LIMITS.connections then
      sock:send("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
      sock:close()
    else
      local now = socket.gettime()
      local c = { sock = sock, buf = "", header_bytes = 0, started = now, deadline = now + LIMITS.header_timeout }
      c.co = coroutine.create(function() serve(c) end)
      conns[#conns + 1] = c
      step(c, "start")
    end
  end
end

local last_sweep = os.time()
while true do
  local rt, wt = { server }, {}
  local now = socket.gettime()
  local timeout = 1
  for _, c in ipairs(conns) do
    if c.want == "write" then wt[#wt + 1] = c.sock else rt[#rt + 1] = c.sock end
    timeout = math.min(timeout, math.max(0, c.deadline - now))
  end
  local readable, writable = socket.select(rt, wt, timeout)
  if readable[server] then accept_all() end
  now = socket.gettime()
  for _, c in ipairs(conns) do
    if not c.closed then
      if readable[c.sock] or writable[c.sock] or (c.want == "read" and c.sock:dirty()) then
        step(c, "ready")
      elseif now >= c.deadline then
        step(c, "timeout")
      end
    end
  end
  local open = {}
  for _, c in ipairs(conns) do if not c.closed then open[#open + 1] = c end end
  conns = open
  if sweep_every > 0 and os.time() - last_sweep >= sweep_every then
    last_sweep = os.time()
    local rep, serr = rules.sweep(ledger, client)
    if not rep then log("sweep failed: ", tostring(serr)) end
  end
end
