-- spec/helpers/hostile_http.lua: a hostile DingTalk stand-in on 127.0.0.1
-- whose every answer is scripted by the test, for the rendering and
-- redaction specs (hostile_output_spec, hostile_secrets_spec).
--
--   local hh = require "spec.helpers.hostile_http"
--   local srv = hh.start()
--   srv:answer { kind = "error", code = "X", message = "...", request_id = "..." }
--   -- srv.url, srv:requests(), srv:stop()
--
-- Answer kinds (every text may hold "%TOKEN%": the access token the request
-- carried, echoed back; "%SECRET%": the app secret a token request
-- carried; "%KEY%": the first key of the request).  Every path gets the
-- same answer (the token endpoint too):
--   error      HTTP status (default 400), JSON {code, message, requestid},
--              x-acs-request-id = request_id
--   failed     200, every key failed with `reason`; requestid = request_id
--   send       200 {processQueryKey = key}
--   too_large  200, x-acs-request-id = request_id, a body of `size` bytes
--              (default 1.2 MB: over the default max_response_bytes)
-- The answer is read from a file at each request, so a test changes it
-- without restarting.  Texts go through lua-cjson: controls are JSON-escaped
-- on the wire, bytes >= 0x80 (invalid UTF-8 too) pass as they are.
-- Runs in a child process ($DINGTALK_RECALL_TEST_LUA with LuaSocket and
-- lua-cjson), one connection at a time; a watchdog kills it with us.
local shell = require "spec.helpers.shell"
local sh, q, trim = shell.sh, shell.quote, shell.trim

local M = {}

local function serialize(v)
  if type(v) == "string" then return string.format("%q", v) end
  if type(v) == "number" or type(v) == "boolean" then return tostring(v) end
  local parts = {}
  for k, x in pairs(v) do parts[#parts + 1] = "[" .. serialize(k) .. "]=" .. serialize(x) end
  return "{" .. table.concat(parts, ",") .. "}"
end
M.serialize = serialize

---------------------------------------------------------------------------
-- the child
---------------------------------------------------------------------------
local function read_request(conn)
  local line = conn:receive("*l")
  if not line then return nil end
  local method, path = line:match("^(%u+)%s+(%S+)")
  if not method then return nil end
  local headers = {}
  while true do
    local h = conn:receive("*l")
    if not h then return nil end
    if h == "" then break end
    local k, v = h:match("^([^:]+):%s*(.-)%s*$")
    if k then headers[k:lower()] = v end
  end
  local n = tonumber(headers["content-length"] or "0") or 0
  return { method = method, path = path, headers = headers, body = n > 0 and conn:receive(n) or "" }
end

local function respond(conn, status, body, headers)
  local h = { "HTTP/1.1 " .. status .. " X", "Content-Type: application/json", "Content-Length: " .. #body,
    "Connection: close" }
  for k, v in pairs(headers or {}) do h[#h + 1] = k .. ": " .. v end
  conn:send(table.concat(h, "\r\n") .. "\r\n\r\n" .. body)
end

function M.serve(dir)
  local socket = require "socket"
  local cjson = require("cjson").new()
  local srv = assert(socket.bind("127.0.0.1", 0))
  local _, port = srv:getsockname()
  local f = assert(io.open(dir .. "/port.tmp", "w"))
  f:write(port, "\n")
  f:close()
  os.rename(dir .. "/port.tmp", dir .. "/port")
  local count = 0
  while true do
    local conn = srv:accept()
    if conn then
      conn:settimeout(5)
      local req = read_request(conn)
      if req then
        count = count + 1
        local cf = io.open(dir .. "/count", "w")
        if cf then cf:write(count, "\n") cf:close() end
        local ok, a = pcall(dofile, dir .. "/answer.lua")
        if not ok then a = { kind = "error", code = "spec.bad_answer", message = tostring(a) } end
        local dok, doc = pcall(cjson.decode, req.body)
        if not dok or type(doc) ~= "table" then doc = {} end
        local keys = type(doc.processQueryKeys) == "table" and doc.processQueryKeys or {}
        local token = req.headers["x-acs-dingtalk-access-token"] or ""
        local secret = tostring(doc.appSecret or doc.suiteSecret or "")
        local function fill(s)
          if type(s) ~= "string" then return s end
          s = s:gsub("%%TOKEN%%", function() return token end)
          s = s:gsub("%%SECRET%%", function() return secret end)
          return (s:gsub("%%KEY%%", function() return tostring(keys[1] or "") end))
        end
        if a.kind == "failed" then
          local failed = {}
          for _, k in ipairs(keys) do failed[k] = fill(a.reason) end
          respond(conn, 200, '{"successResult":[],"failedResult":' .. (next(failed) and cjson.encode(failed) or "{}")
            .. ',"requestid":' .. cjson.encode(fill(a.request_id or "r1")) .. "}")
        elseif a.kind == "send" then
          respond(conn, 200, cjson.encode { processQueryKey = fill(a.key) })
        elseif a.kind == "too_large" then
          respond(conn, 200, string.rep("x", a.size or 1200000),
            { ["x-acs-request-id"] = (fill(a.request_id):gsub("[%z\r\n]", "")) })
        else
          respond(conn, a.status or 400, cjson.encode { code = fill(a.code), message = fill(a.message),
            requestid = fill(a.request_id) },
            a.request_id and { ["x-acs-request-id"] = (fill(a.request_id):gsub("[%z\r\n]", "")) } or nil)
        end
      end
      conn:close()
    end
  end
end

---------------------------------------------------------------------------
-- the parent
---------------------------------------------------------------------------
local Server = {}
Server.__index = Server

--- Sets the answer of every later request.  Header values cannot carry
-- CR, LF or NUL: those are removed from request_id in the header only.
function Server:answer(a)
  shell.write_file(self.dir .. "/answer.lua.tmp", "return " .. serialize(a) .. "\n")
  os.rename(self.dir .. "/answer.lua.tmp", self.dir .. "/answer.lua")
end

function Server:requests()
  return tonumber(trim(shell.read_file(self.dir .. "/count"))) or 0
end

function Server:stop()
  if self.stopped then return end
  self.stopped = true
  if self.pid:match("^%d+$") then sh("kill " .. self.pid .. " 2>/dev/null; true") end
  sh("rm -rf " .. q(self.dir))
end

function M.start()
  local lua = os.getenv("DINGTALK_RECALL_TEST_LUA") or "lua"
  local dir = trim(sh("mktemp -d ${TMPDIR:-/tmp}/dtr-hostile-http.XXXXXX"))
  local parent = trim(sh("echo $PPID"))
  local code = ("require('spec.helpers.hostile_http').serve(%q)"):format(dir)
  local child = "echo $$ > " .. q(dir .. "/pid") .. "; exec " .. lua .. " -e " .. q(code)
  os.execute("nohup sh -c " .. q(child) .. " </dev/null >" .. q(dir .. "/log") .. " 2>&1 &")
  local port
  for _ = 1, 100 do
    port = tonumber(trim(shell.read_file(dir .. "/port")))
    if port then break end
    sh("sleep 0.05")
  end
  if not port then
    local log = shell.read_file(dir .. "/log")
    sh("rm -rf " .. q(dir))
    error("the hostile server did not start: " .. log, 2)
  end
  local pid = trim(shell.read_file(dir .. "/pid"))
  local wd = "while kill -0 " .. parent .. " 2>/dev/null && kill -0 " .. pid .. " 2>/dev/null; do sleep 1; done; " ..
    "kill " .. pid .. " 2>/dev/null; rm -rf " .. q(dir)
  os.execute("nohup sh -c " .. q(wd) .. " </dev/null >/dev/null 2>&1 &")
  local s = setmetatable({ port = port, url = "http://127.0.0.1:" .. port, dir = dir, pid = pid }, Server)
  s:answer { kind = "error", code = "spec.unset", message = "no answer set" }
  return s
end

--- The hostile payloads, by name.
M.PAYLOADS = {
  esc = "\27[2J\27[Hwiped",
  osc8 = "\27]8;;http://evil.example/\7click me\27]8;;\7",
  c1 = "csi\194\155" .. "31m and raw\155" .. "2J",
  crlf = "one\r\nFAKE-LINE: injected",
  nul = "a\0b",
  bad_utf8 = "bad\255\254\192\128\237\160\128utf8",
}

--- Whether s is valid UTF-8 (no overlongs, no surrogates).
function M.valid_utf8(s)
  local i, n = 1, #s
  while i <= n do
    local c = s:byte(i)
    local len = c < 0x80 and 1 or (c >= 0xc2 and c <= 0xdf) and 2 or (c >= 0xe0 and c <= 0xef) and 3
      or (c >= 0xf0 and c <= 0xf4) and 4 or nil
    if not len or i + len - 1 > n then return false end
    for k = 1, len - 1 do
      local d = s:byte(i + k)
      if d < 0x80 or d > 0xbf then return false end
    end
    if (c == 0xe0 and s:byte(i + 1) < 0xa0) or (c == 0xed and s:byte(i + 1) > 0x9f)
      or (c == 0xf0 and s:byte(i + 1) < 0x90) or (c == 0xf4 and s:byte(i + 1) > 0x8f) then
      return false
    end
    i = i + len
  end
  return true
end

--- nil when s is safe for a terminal (newlines allowed between lines, no
-- other control, no C1, valid UTF-8, no injected line); else why.
function M.unsafe(s, allow_newline)
  if not M.valid_utf8(s) then return "invalid UTF-8" end
  local pat = allow_newline and "[%z\1-\9\11-\31\127]" or "[%z\1-\31\127]"
  local at = s:find(pat)
  if at then return ("control byte 0x%02x at %d"):format(s:byte(at), at) end
  if s:find("\194[\128-\159]") then return "a C1 control (U+0080..U+009F)" end
  if s:find("\nFAKE%-LINE") then return "an injected line" end
  return nil
end

return M
