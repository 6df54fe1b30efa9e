#!/usr/bin/env lua
-- examples/bot.lua: a complete DingTalk bot in plain Lua that wires recall
-- into a group with dingtalk.recall.rules.
--
--   DINGTALK_APP_KEY=... DINGTALK_APP_SECRET=... DINGTALK_ROBOT_CODE=... \
--   BOT_ADMINS=staff1,staff2 lua examples/bot.lua --port 8080
--
-- It serves DingTalk's HTTP callback (one request at a time, LuaSocket):
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
-- Options: --host H (default 127.0.0.1), --port N (default 8080; 0 = any
-- free port).  It prints "bot listening on http://HOST:PORT/" when ready.

-- From a checkout, find lua/ and the built core next to this script.
local function script_root()
  local src = arg and arg[0] or ""
  local dir = src:match("^(.*)/[^/]*$") or "."
  return dir .. "/.."
end
do
  local root = script_root()
  local f = io.open(root .. "/lua/dingtalk/recall/rules.lua", "r")
  if f then
    f:close()
    package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
    local v = rawget(_G, "jit") and "5.1" or (_VERSION:match("(%d+%.%d+)") or "5.1")
    package.cpath = root .. "/build/" .. v .. "/?.so;" .. package.cpath
  end
end

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

-- the audit log: one JSON line per event
local function audit(ev)
  if ev.event == "swept" and ev.report.total == 0 then return end
  local line = {
    event = ev.event, command = ev.command, sender = ev.sender, conversation = ev.conversation,
    reason = ev.reason, err = ev.err and tostring(ev.err) or nil,
  }
  if ev.report then
    line.recalled = #ev.report.recalled
    local n = 0
    for _ in pairs(ev.report.failed or {}) do n = n + 1 end
    for _ in pairs(ev.report.errors or {}) do n = n + 1 end
    line.not_recalled = n
  end
  log("audit ", cjson.encode(line))
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
-- a minimal HTTP/1.1 server: one request per connection
---------------------------------------------------------------------------
local MAX_HEADER_LINES, MAX_BODY = 64, callback.MAX_BODY
local REASONS = { [200] = "OK", [400] = "Bad Request", [401] = "Unauthorized", [404] = "Not Found",
  [405] = "Method Not Allowed", [411] = "Length Required", [413] = "Payload Too Large",
  [500] = "Internal Server Error" }

local function respond(conn, status, body)
  body = body or ""
  conn:send("HTTP/1.1 " .. status .. " " .. (REASONS[status] or "") .. "\r\n" ..
    "Content-Type: application/json; charset=utf-8\r\nContent-Length: " .. #body ..
    "\r\nConnection: close\r\n\r\n" .. body)
end

local function text_reply(text)
  return cjson.encode { msgtype = "text", text = { content = text } }
end

local function read_request(conn)
  local line = conn:receive("*l")
  if not line then return nil end
  local method, path = line:match("^(%u+)%s+(%S+)%s+HTTP/1%.[01]$")
  if not method then return nil, 400 end
  local headers = {}
  for _ = 1, MAX_HEADER_LINES + 1 do
    local h = conn:receive("*l")
    if not h then return nil end
    if h == "" then
      local req = { method = method, path = path, headers = headers }
      if method ~= "POST" then return req end
      if headers["transfer-encoding"] then return nil, 411 end
      local len = tonumber(headers["content-length"] or "")
      if not len or len < 0 or len ~= math.floor(len) then return nil, 411 end
      -- Too big: refused before reading it (callback.verify checks again).
      if len > MAX_BODY then return nil, 413 end
      req.body = len > 0 and conn:receive(len) or ""
      if not req.body then return nil end
      return req
    end
    local k, v = h:match("^([^:]+):%s*(.-)%s*$")
    if not k then return nil, 400 end
    k = k:lower()
    if headers[k] then headers[k] = { headers[k], v } else headers[k] = v end
  end
  return nil, 400
end

local function serve(conn)
  conn:settimeout(5)
  local req, status = read_request(conn)
  if not req then
    if status then respond(conn, status, '{"error":"bad request"}') end
    return
  end
  if req.method == "GET" and req.path == "/healthz" then return respond(conn, 200, '{"ok":true}') end
  if req.method ~= "POST" then return respond(conn, 405, '{"error":"POST the callback here"}') end
  local msg, verr = callback.verify(req.headers, req.body, { app_secret = callback_secret, replay_store = replay })
  if not msg then
    log("refused callback: ", tostring(verr.code))
    return respond(conn, callback.http_status(verr), cjson.encode { error = verr.code })
  end
  local ok, result = pcall(r.handle, r, msg)
  if not ok then
    log("error: ", tostring(result))
    return respond(conn, 500, '{"error":"internal"}')
  end
  if result then
    log("command from ", tostring(msg.senderStaffId), ": ", result.command or "?", " -> ",
      (result.reply:gsub("\n.*", "")))
    return respond(conn, 200, text_reply(result.reply))
  end
  local problem, key = say(msg)
  if problem then return respond(conn, 200, text_reply(problem)) end
  if key then log("sent ", key) end
  return respond(conn, 200, "{}")
end

local server = socket.bind(host, port)
if not server then die("cannot listen on " .. host .. ":" .. port) end
server:settimeout(1)
local _, bound = server:getsockname()
io.stdout:write("bot listening on http://", host, ":", tostring(bound), "/\n")
io.stdout:flush()

local last_sweep = os.time()
while true do
  local conn = server:accept()
  if conn then
    local ok, e = pcall(serve, conn)
    if not ok then log("error: ", tostring(e)) end
    conn:close()
  end
  if sweep_every > 0 and os.time() - last_sweep >= sweep_every then
    last_sweep = os.time()
    local rep, serr = rules.sweep(ledger, client)
    if not rep then log("sweep failed: ", tostring(serr)) end
  end
end
