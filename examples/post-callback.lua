#!/usr/bin/env lua
-- examples/post-callback.lua: post a signed DingTalk bot callback, as
-- DingTalk would, to a bot (examples/bot.lua) and print its answer.
--
--   DINGTALK_APP_SECRET=sim-app-secret lua examples/post-callback.lua \
--     --url http://127.0.0.1:8080/ --conversation cidDemo --staff staff1 "/recall last 2"
--
-- Options: --url URL (default http://127.0.0.1:8080/), --secret S (default
-- $DINGTALK_APP_SECRET), --conversation CID, --staff ID (senderStaffId),
-- --nick NAME, --robot CODE (default $DINGTALK_ROBOT_CODE or dingsimrobot),
-- --admin (isAdmin = true), --single (a one-to-one chat), --timestamp MS
-- (default now).  Prints the bot's reply text (or the HTTP status and body)
-- and exits 0 on HTTP 200, 1 otherwise.

-- From a checkout, lua/ and the built core next to this script (checkout.lua).
local here = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
local checkout = loadfile(here .. "/checkout.lua")
if checkout then checkout(here .. "/..") end

local http = require "socket.http"
local ltn12 = require "ltn12"
local cjson = require "cjson"
local callback = require "dingtalk.recall.callback"

local function die(msg)
  io.stderr:write("post-callback: ", msg, "\n")
  os.exit(2)
end

local o = {
  url = "http://127.0.0.1:8080/", secret = os.getenv("DINGTALK_APP_SECRET"), conversation = "cidDemo",
  staff = "staff1", nick = "Demo User", robot = os.getenv("DINGTALK_ROBOT_CODE") or "dingsimrobot",
}
local text
local i = 1
while arg[i] do
  local a = arg[i]
  local name = a:match("^%-%-(.+)$")
  if name == "admin" then
    o.admin = true
  elseif name == "single" then
    o.single = true
  elseif name and o[name] ~= nil or name == "secret" or name == "timestamp" then
    o[name] = arg[i + 1] or die("--" .. name .. " needs a value")
    i = i + 1
  elseif name then
    die("unknown option " .. a)
  else
    text = text and (text .. " " .. a) or a
  end
  i = i + 1
end
if not text then die("give the message text, e.g. \"/recall last 2\"") end
if not o.secret then die("set DINGTALK_APP_SECRET or pass --secret") end

local body = cjson.encode {
  msgtype = "text", text = { content = text }, msgId = "msg" .. os.time(),
  conversationId = o.conversation, conversationType = o.single and "1" or "2",
  senderStaffId = o.staff, senderNick = o.nick, senderId = "$:LWCP_v1:$" .. o.staff,
  isAdmin = o.admin and true or false, robotCode = o.robot, chatbotUserId = "$:LWCP_v1:$bot",
  createAt = os.time() * 1000,
}
local headers = assert(callback.headers(o.secret, o.timestamp and tonumber(o.timestamp) or nil))
headers["content-length"] = tostring(#body)

local out = {}
local ok, status = http.request {
  url = o.url, method = "POST", headers = headers,
  source = ltn12.source.string(body), sink = ltn12.sink.table(out),
}
if not ok then die("cannot post to " .. o.url .. ": " .. tostring(status)) end
local answer = table.concat(out)
local decoded = answer ~= "" and select(2, pcall(cjson.decode, answer)) or nil
if status == 200 and type(decoded) == "table" and type(decoded.text) == "table" then
  io.stdout:write(tostring(decoded.text.content), "\n")
elseif status == 200 then
  io.stdout:write("(no reply)\n")
else
  io.stdout:write("HTTP ", tostring(status), " ", answer, "\n")
end
os.exit(status == 200 and 0 or 1)
