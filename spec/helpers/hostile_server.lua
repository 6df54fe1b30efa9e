-- spec/helpers/hostile_server.lua: a hostile DingTalk stand-in on 127.0.0.1
-- for the loop-bound specs (spec/hostile_loops_spec.lua).  It counts every
-- request it saw, token and API apart, so a spec can assert that a run made
-- a bounded number of them.
--
--   local hs = require "spec.helpers.hostile_server"
--   local h = hs.start { expire = "1e-9", api = "ok" }
--   h.url, h:counts() -> {token = n, api = n}, h:stop()
--
-- options:
--   expire   the raw JSON text of the token answer's expireIn ("7200", "1e-9",
--            "NaN", '"7200"', ...); each answer carries a new token "hostile-tok-N"
--   token    "ok" (default) | "trickle": the token answer's status line, then one
--            byte per `trickle` seconds (default 0.5), never finishing in time
--   api      "ok": every key recalled | "auth": 400 InvalidAuthentication forever |
--            "qps": 403 Forbidden.AccessDenied.QpsLimitForAppkeyAndApi forever, with
--            Retry-After: 99999999 and x-ratelimit-reset: 1e300
-- One connection at a time; the child ($DINGTALK_RECALL_TEST_LUA, LuaSocket,
-- lua-cjson) is stopped by stop() or by a watchdog once the test process is
-- gone.  Never loads the project.
local shell = require "spec.helpers.shell"

local q, sh, trim, read_file = shell.quote, shell.sh, shell.trim, shell.read_file
local M = {}

---------------------------------------------------------------------------
-- the server (in the child)
---------------------------------------------------------------------------
local function respond(conn, status, body, headers)
  local reasons = { [200] = "OK", [400] = "Bad Request", [403] = "Forbidden", [404] = "Not Found" }
  local h = { "HTTP/1.1 " .. status .. " " .. (reasons[status] or "X"), "Content-Type: application/json",
    "Content-Length: " .. #body, "Connection: close" }
  for k, v in pairs(headers or {}) do h[#h + 1] = k .. ": " .. v end
  conn:send(table.concat(h, "\r\n") .. "\r\n\r\n" .. body)
end

local function read_request(conn)
  local line = conn:receive("*l")
  if not line then return nil end
  local method, path = line:match("^(%u+)%s+(%S+)")
  if not method then return nil end
  local headers = {}
  for _ = 1, 100 do
    local h = conn:receive("*l")
    if not h then return nil end
    if h == "" then break end
    local k, v = h:match("^([^:]+):%s*(.-)%s*$")
    if k then headers[k:lower()] = v end
  end
  local n = math.min(tonumber(headers["content-length"] or "0") or 0, 1048576)
  local body = n > 0 and conn:receive(n) or ""
  return { method = method, path = path, headers = headers, body = body or "" }
end

local function bump(counts, file, what)
  counts[what] = counts[what] + 1
  local f = io.open(file .. ".tmp", "w")
  if f then
    f:write(counts.token, " ", counts.api, "\n")
    f:close()
    os.rename(file .. ".tmp", file)
  end
end

function M.serve(dir)
  local socket = require "socket"
  local cjson_mod = require "cjson.safe"
  local cjson = cjson_mod.new and cjson_mod.new() or cjson_mod
  local cfg = cjson.decode(read_file(dir .. "/cfg.json"))
  local srv = assert(socket.bind("127.0.0.1", 0))
  local _, port = srv:getsockname()
  local f = assert(io.open(dir .. "/port.tmp", "w"))
  f:write(tostring(port), "\n")
  f:close()
  os.rename(dir .. "/port.tmp", dir .. "/port")
  local counts = { token = 0, api = 0 }
  while true do
    local conn = srv:accept()
    if conn then
      conn:settimeout(5)
      local req = read_request(conn)
      if req and req.path == "/ping" then
        respond(conn, 200, '{"ok":true}')
      elseif req and req.path:match("^/v1%.0/oauth2/") then
        bump(counts, dir .. "/counts", "token")
        local body = '{"accessToken":"hostile-tok-' .. counts.token .. '","expireIn":' ..
          (cfg.expire or "7200") .. "}"
        if cfg.token == "trickle" then
          local head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " .. #body ..
            "\r\nConnection: close\r\n\r\n" .. body
          conn:settimeout(1)
          for i = 1, #head do
            if not conn:send(head:sub(i, i)) then break end
            socket.sleep(cfg.trickle or 0.5)
          end
        else
          respond(conn, 200, body)
        end
      elseif req then
        bump(counts, dir .. "/counts", "api")
        local doc = cjson.decode(req.body)
        local keys = type(doc) == "table" and type(doc.processQueryKeys) == "table" and doc.processQueryKeys or {}
        if cfg.api == "auth" then
          respond(conn, 400, '{"code":"InvalidAuthentication","message":"token is invalid","requestid":"h1"}')
        elseif cfg.api == "qps" then
          respond(conn, 403,
            '{"code":"Forbidden.AccessDenied.QpsLimitForAppkeyAndApi","message":"slow down","requestid":"h2"}',
            { ["Retry-After"] = "99999999", ["x-ratelimit-reset"] = "1e300" })
        elseif #keys == 0 then
          respond(conn, 200, '{"successResult":[],"failedResult":{}}')
        else
          respond(conn, 200, '{"successResult":' .. cjson.encode(keys) .. ',"failedResult":{}}')
        end
      end
      conn:close()
    end
  end
end

---------------------------------------------------------------------------
-- the parent side
---------------------------------------------------------------------------
local Server = {}
Server.__index = Server

--- {token = n, api = n}: the requests it has seen so far.
function Server:counts()
  local t, a = (read_file(self.dir .. "/counts")):match("(%d+) (%d+)")
  return { token = tonumber(t) or 0, api = tonumber(a) or 0 }
end

function Server:stop()
  if self.stopped then return end
  self.stopped = true
  if self.pid:match("^%d+$") then sh("kill " .. self.pid .. " 2>/dev/null; true") end
  sh("rm -rf " .. q(self.dir))
end

function M.start(opts)
  local lua = os.getenv("DINGTALK_RECALL_TEST_LUA") or "lua"
  local dir = trim(sh("mktemp -d ${TMPDIR:-/tmp}/dtr-hostile.XXXXXX"))
  local parts = {}
  for k, v in pairs(opts or {}) do
    parts[#parts + 1] = ("%q:%s"):format(k, type(v) == "number" and tostring(v) or ("%q"):format(v))
  end
  shell.write_file(dir .. "/cfg.json", "{" .. table.concat(parts, ",") .. "}")
  local child = "echo $$ > " .. q(dir .. "/pid") .. "; exec " .. lua .. " -e " ..
    q("require('spec.helpers.hostile_server').serve(" .. ("%q"):format(dir) .. ")")
  os.execute("nohup sh -c " .. q(child) .. " </dev/null >" .. q(dir .. "/log") .. " 2>&1 &")
  local port
  for _ = 1, 100 do
    port = tonumber(trim(read_file(dir .. "/port")))
    if port then break end
    sh("sleep 0.05")
  end
  if not port then
    local log = read_file(dir .. "/log")
    sh("rm -rf " .. q(dir))
    error("the hostile server did not start: " .. log, 2)
  end
  local pid = trim(read_file(dir .. "/pid"))
  local wd = "while kill -0 " .. shell.own_pid() .. " 2>/dev/null && kill -0 " .. pid ..
    " 2>/dev/null; do sleep 1; done; kill " .. pid .. " 2>/dev/null; rm -rf " .. q(dir)
  os.execute("nohup sh -c " .. q(wd) .. " </dev/null >/dev/null 2>&1 &")
  return setmetatable({ port = port, url = "http://127.0.0.1:" .. port, dir = dir, pid = pid }, Server)
end

return M
