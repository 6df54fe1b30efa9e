-- spec/helpers/faulty_server.lua: a small, deliberately hostile HTTP server on
-- loopback, for answers the simulator never gives: a server that echoes the
-- caller's access token, app secret and request body back in its errors
-- (code, message, request id, x-acs-request-id header, an HTML page, a
-- per-key failure reason), and one whose messages and reasons hold control
-- characters (newlines, carriage returns, ANSI escapes).
--
--   local faulty = require "spec.helpers.faulty_server"
--   local f = faulty.start { api = "echo", token = "echo_secret", token_value = "tok-..." }
--   -- f.url ("http://127.0.0.1:P"), f:requests() (how many API calls it answered), f:stop()
--
-- api modes (recall and send):
--   ok           a normal answer: every key recalled; send gets a processQueryKey
--   echo         400 InvalidAuthentication; message, requestid and x-acs-request-id carry the token
--                and the request body
--   echo_code    400 whose code itself holds the token
--   echo_html    502 text/html page quoting the token and the request body
--   echo_failed  200 whose failedResult gives every key a reason quoting the token
--   echo_ok_rid  200 that answers for no key, its x-acs-request-id quoting the token
--   ctl_error    400 whose message holds "\n", "\r" and an ANSI escape
--   ctl_failed   200 whose failedResult reasons hold "\n", "\r" and an ANSI escape
-- token modes (/v1.0/oauth2/accessToken and corpAccessToken):
--   ok           {"accessToken": token_value, "expireIn": 7200}
--   echo_secret  400 invalidClientIdOrSecret quoting the app secret (message, requestid, header)
--
-- The server runs in a child process ($DINGTALK_RECALL_TEST_LUA, LuaSocket and
-- lua-cjson), one connection at a time, "Connection: close".  A watchdog shell
-- kills it when the Lua process that started it is gone.  Plain Lua 5.1-5.4
-- and LuaJIT; it never loads the project's code.
local M = {}

local shell = require "spec.helpers.shell"
local sh_quote, sh, trim = shell.quote, shell.sh, shell.trim



local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

---------------------------------------------------------------------------
-- the server (runs in the child)
---------------------------------------------------------------------------
local CTL = "first line\nFAKE-LOG-LINE injected\r\27[31mred\27[0m end"

local function respond(conn, status, ctype, body, headers)
  local reasons = { [200] = "OK", [400] = "Bad Request", [404] = "Not Found", [502] = "Bad Gateway" }
  local h = { "HTTP/1.1 " .. status .. " " .. (reasons[status] or "X"),
    "Content-Type: " .. ctype, "Content-Length: " .. #body, "Connection: close" }
  for k, v in pairs(headers or {}) do h[#h + 1] = k .. ": " .. v end
  conn:send(table.concat(h, "\r\n") .. "\r\n\r\n" .. body)
end

local function answer(conn, cjson, req, cfg)
  local path, hdr, body = req.path, req.headers, req.body or ""
  if path == "/ping" then return respond(conn, 200, "application/json", '{"ok":true}') end
  local doc = cjson.decode(body)
  if type(doc) ~= "table" then doc = {} end
  if path:match("^/v1%.0/oauth2/") then
    if cfg.token == "echo_secret" then
      local secret = tostring(doc.appSecret or doc.suiteSecret or "")
      return respond(conn, 400, "application/json", cjson.encode {
        code = "invalidClientIdOrSecret", requestid = "rid-" .. secret,
        message = "appSecret " .. secret .. " is wrong for " .. tostring(doc.appKey or doc.suiteKey),
      }, { ["x-acs-request-id"] = "rid-" .. secret })
    end
    return respond(conn, 200, "application/json",
      cjson.encode { accessToken = cfg.token_value, expireIn = 7200 })
  end
  local token = hdr["x-acs-dingtalk-access-token"] or ""
  local keys = type(doc.processQueryKeys) == "table" and doc.processQueryKeys or {}
  local mode = cfg.api
  if mode == "ok" then
    if path:match("/send$") then
      return respond(conn, 200, "application/json", cjson.encode { processQueryKey = "faultyKey" .. #body })
    end
    local ok = {}
    for i, k in ipairs(keys) do ok[i] = k end
    if #ok == 0 then return respond(conn, 200, "application/json", '{"successResult":[],"failedResult":{}}') end
    return respond(conn, 200, "application/json", '{"successResult":' .. cjson.encode(ok) .. ',"failedResult":{}}')
  elseif mode == "echo" then
    return respond(conn, 400, "application/json", cjson.encode {
      code = "InvalidAuthentication", requestid = "rid-" .. token,
      message = "the token " .. token .. " is not valid; you sent " .. body,
    }, { ["x-acs-request-id"] = "rid-" .. token })
  elseif mode == "echo_code" then
    return respond(conn, 400, "application/json", cjson.encode {
      code = "Auth." .. token, message = "bad token", requestid = "r1" })
  elseif mode == "echo_html" then
    return respond(conn, 502, "text/html", "<html><body><h1>502</h1><p>upstream saw token " .. token ..
      " and body " .. body .. "</p></body></html>", { ["x-acs-request-id"] = "rid-" .. token })
  elseif mode == "echo_failed" or mode == "ctl_failed" then
    local failed = {}
    for _, k in ipairs(keys) do
      failed[k] = mode == "echo_failed" and ("DENIED_FOR_" .. token) or ("NOPE " .. CTL)
    end
    if next(failed) == nil then
      return respond(conn, 200, "application/json", '{"successResult":[],"failedResult":{}}')
    end
    return respond(conn, 200, "application/json",
      '{"successResult":[],"failedResult":' .. cjson.encode(failed) .. "}")
  elseif mode == "echo_ok_rid" then
    return respond(conn, 200, "application/json", '{"successResult":[],"failedResult":{}}',
      { ["x-acs-request-id"] = "rid-" .. token })
  elseif mode == "ctl_error" then
    return respond(conn, 400, "application/json", cjson.encode {
      code = "system.weird", message = CTL, requestid = "rid-ctl" })
  end
  return respond(conn, 404, "application/json", '{"code":"InvalidAction.NotFound","message":"no such mode"}')
end

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
  local body = ""
  if n > 0 then body = conn:receive(n) or "" end
  return { method = method, path = path, headers = headers, body = body }
end

--- Runs the server (in the child): binds a free loopback port, writes it to
-- port_file, and answers forever.  Counts API requests into count_file.
function M.serve(port_file, api, token, token_value, count_file)
  local socket = require "socket"
  local cjson_mod = require "cjson.safe"
  local cjson = cjson_mod.new and cjson_mod.new() or cjson_mod
  local srv = assert(socket.bind("127.0.0.1", 0))
  local _, port = srv:getsockname()
  local f = assert(io.open(port_file .. ".tmp", "w"))
  f:write(tostring(port), "\n")
  f:close()
  os.rename(port_file .. ".tmp", port_file)
  local cfg = { api = api, token = token, token_value = token_value }
  local count = 0
  while true do
    local conn = srv:accept()
    if conn then
      conn:settimeout(5)
      local req = read_request(conn)
      if req then
        if req.path ~= "/ping" then
          count = count + 1
          local cf = io.open(count_file, "w")
          if cf then
            cf:write(tostring(count), "\n")
            cf:close()
          end
        end
        pcall(answer, conn, cjson, req, cfg)
      end
      conn:close()
    end
  end
end

M.CTL = CTL

---------------------------------------------------------------------------
-- the parent side
---------------------------------------------------------------------------
local Server = {}
Server.__index = Server

--- How many API requests (not /ping) it has answered.
function Server:requests()
  return tonumber(trim(read_file(self.dir .. "/count") or "0")) or 0
end

function Server:stop()
  if self.stopped then return end
  self.stopped = true
  local pid = trim(read_file(self.dir .. "/pid") or "")
  if pid:match("^%d+$") then sh("kill " .. pid .. " 2>/dev/null; true") end
  sh("rm -rf " .. sh_quote(self.dir))
end

--- faulty.start{api = mode, token = mode, token_value = "..."} -> server
function M.start(opts)
  opts = opts or {}
  local lua = os.getenv("DINGTALK_RECALL_TEST_LUA") or "lua"
  local dir = trim(sh("mktemp -d ${TMPDIR:-/tmp}/dtr-faulty.XXXXXX"))
  local parent = trim(sh("echo $PPID"))
  local code = ("require('spec.helpers.faulty_server').serve(%q, %q, %q, %q, %q)"):format(
    dir .. "/port", opts.api or "ok", opts.token or "ok", opts.token_value or "faulty-token", dir .. "/count")
  -- The child writes its pid, then becomes the server; the watchdog kills it
  -- when our process is gone.
  local child = "echo $$ > " .. sh_quote(dir .. "/pid") .. "; exec " .. lua .. " -e " .. sh_quote(code)
  os.execute("nohup sh -c " .. sh_quote(child) .. " </dev/null >" .. sh_quote(dir .. "/log") .. " 2>&1 &")
  local port
  for _ = 1, 100 do
    port = tonumber(trim(read_file(dir .. "/port") or ""))
    if port then break end
    sh("sleep 0.05")
  end
  if not port then
    local log = read_file(dir .. "/log") or ""
    sh("rm -rf " .. sh_quote(dir))
    error("the faulty server did not start: " .. log, 2)
  end
  local pid = trim(read_file(dir .. "/pid") or "")
  local wd = "while kill -0 " .. parent .. " 2>/dev/null && kill -0 " .. pid .. " 2>/dev/null; do sleep 1; done; " ..
    "kill " .. pid .. " 2>/dev/null; rm -rf " .. sh_quote(dir)
  os.execute("nohup sh -c " .. sh_quote(wd) .. " </dev/null >/dev/null 2>&1 &")
  return setmetatable({ port = port, url = "http://127.0.0.1:" .. port, dir = dir, pid = pid }, Server)
end

return M
