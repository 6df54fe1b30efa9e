-- spec/helpers/hostile_http.lua: the one hostile DingTalk stand-in of the
-- specs, on 127.0.0.1: every answer is scripted by the test, for what the
-- simulator never says (echoed secrets, control characters, absurd token
-- lifetimes, endless throttling, trickled or oversized answers).
--
--   local hh = require "spec.helpers.hostile_http"
--   local srv = hh.start { kind = "error", code = "X", message = "..." }  -- or hh.start() and:
--   srv:answer { kind = "failed", reason = "..." }             -- every path, the token endpoint too
--   srv:answer { token = { kind = "token", expire = "1e-9" }, api = { kind = "ok" } } -- apart
--   srv.url, srv.port, srv:requests() (all but /ping), srv:counts() -> {token = n, api = n}, srv:stop()
--
-- An answer applies to every later request.  With `token` and/or `api`
-- fields instead of a kind, the token endpoint (/v1.0/oauth2/...) and the
-- rest are answered apart (missing: a good token, every key recalled).
-- Kinds:
--   ok         200; a recall: every key recalled; a send (…/send):
--              processQueryKey = key (default "hostileKey<n>")
--   token      200 {"accessToken": value (default "hostile-tok-<n>", n-th
--              token request), "expireIn": expire}: expire is the raw JSON
--              text ("7200" by default, "1e-9", "NaN", '"7200"', ...)
--   error      status (default 400), JSON {code, message, requestid},
--              x-acs-request-id = request_id
--   failed     200, every key failed with `reason`; requestid = request_id
--   send       200 {processQueryKey = key}
--   too_large  200, x-acs-request-id = request_id, a body of `size` bytes
--              (default 1.2 MB: over the default max_response_bytes)
--   raw        status, content_type (application/json), body as given
-- Any answer may add `headers` (name -> value) and `trickle` (seconds
-- between the bytes of the whole answer, never finishing in time).  Every
-- text may hold "%TOKEN%" (the access token the request carried, echoed
-- back), "%SECRET%" and "%APPKEY%" (what a token request carried), "%KEY%"
-- (the first key) and "%BODY%" (the request body).  Header values lose CR,
-- LF and NUL.  Texts go through lua-cjson: controls are JSON-escaped on the
-- wire, bytes >= 0x80 (invalid UTF-8 too) pass as they are.
--
-- The server is a child ($DINGTALK_RECALL_TEST_LUA with LuaSocket and
-- lua-cjson; it never loads the project) that reads <dir>/answer.lua at each
-- request, one connection at a time, "Connection: close".  Starting costs
-- one shell and the child (no polling); the child leaves, removing its
-- folder, on stop() or within a second of the test process's end.
local shell = require "spec.helpers.shell"
local q, trim = shell.quote, shell.trim

local M = {}

local function serialize(v)
  if type(v) == "string" then return string.format("%q", v) end
  if type(v) == "number" or type(v) == "boolean" then return tostring(v) end
  local parts = {}
  for k, x in pairs(v) do parts[#parts + 1] = "[" .. serialize(k) .. "]=" .. serialize(x) end
  return "{" .. table.concat(parts, ",") .. "}"
end
M.serialize = serialize

-- "\n", "\r" and an ANSI escape, for log-injection tests.
M.CTL = "first line\nFAKE-LOG-LINE injected\r\27[31mred\27[0m end"

local FILES = { "answer.lua", "answer.lua.tmp", "counts", "counts.tmp", "log", "stop" }

---------------------------------------------------------------------------
-- the child
---------------------------------------------------------------------------
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
  return { method = method, path = path, headers = headers, body = n > 0 and conn:receive(n) or "" }
end

local REASONS = { [200] = "OK", [400] = "Bad Request", [403] = "Forbidden", [404] = "Not Found",
  [502] = "Bad Gateway" }

-- The whole answer's bytes: status line, headers, body.
local function framing(status, body, headers, ctype)
  local h = { "HTTP/1.1 " .. status .. " " .. (REASONS[status] or "X"), "Content-Type: " .. (ctype or
    "application/json"), "Content-Length: " .. #body, "Connection: close" }
  for k, v in pairs(headers or {}) do h[#h + 1] = k .. ": " .. (tostring(v):gsub("[%z\r\n]", "")) end
  return table.concat(h, "\r\n") .. "\r\n\r\n" .. body
end

-- (status, body, headers, content type) of answer a to request req.
local function reply(cjson, a, req, n)
  local dok, doc = pcall(cjson.decode, req.body)
  if not dok or type(doc) ~= "table" then doc = {} end
  local keys = type(doc.processQueryKeys) == "table" and doc.processQueryKeys or {}
  local subs = { TOKEN = req.headers["x-acs-dingtalk-access-token"] or "",
    SECRET = tostring(doc.appSecret or doc.suiteSecret or ""), APPKEY = tostring(doc.appKey or doc.suiteKey or ""),
    KEY = tostring(keys[1] or ""), BODY = req.body }
  local function fill(s)
    if type(s) ~= "string" then return s end
    return (s:gsub("%%(%u+)%%", function(w) return subs[w] end))
  end
  local headers = {}
  for k, v in pairs(a.headers or {}) do headers[k] = fill(v) end
  if a.request_id and a.kind ~= "failed" then headers["x-acs-request-id"] = fill(a.request_id) end
  local kind = a.kind
  if kind == "ok" and req.path:match("/send$") then
    return 200, cjson.encode { processQueryKey = fill(a.key) or ("hostileKey" .. n.api) }, headers
  elseif kind == "ok" then
    return 200, '{"successResult":' .. (#keys > 0 and cjson.encode(keys) or "[]") .. ',"failedResult":{}}', headers
  elseif kind == "token" then
    return 200, '{"accessToken":' .. cjson.encode(fill(a.value) or ("hostile-tok-" .. n.token)) ..
      ',"expireIn":' .. (a.expire or "7200") .. "}", headers
  elseif kind == "failed" then
    local failed = {}
    for _, k in ipairs(keys) do failed[k] = fill(a.reason) end
    return 200, '{"successResult":[],"failedResult":' .. (next(failed) and cjson.encode(failed) or "{}") ..
      ',"requestid":' .. cjson.encode(fill(a.request_id or "r1")) .. "}", headers
  elseif kind == "send" then
    return 200, cjson.encode { processQueryKey = fill(a.key) }, headers
  elseif kind == "too_large" then
    return 200, string.rep("x", a.size or 1200000), headers
  elseif kind == "raw" then
    return a.status or 200, fill(a.body or ""), headers, a.content_type
  end
  return a.status or 400, cjson.encode { code = fill(a.code), message = fill(a.message),
    requestid = fill(a.request_id) }, headers
end

local function exists(path)
  local f = io.open(path, "rb")
  return f ~= nil and (f:close() or true)
end

-- Whether process pid is gone (or a zombie); false where /proc is missing.
local function gone(pid)
  if not exists("/proc/self/stat") then return false end
  local f = io.open("/proc/" .. pid .. "/stat", "rb")
  if not f then return true end
  local st = f:read("*a") or ""
  f:close()
  return st:match("^%d+ %(.*%) (%a)") == "Z"
end

--- Runs the server (in the child): prints its port, then answers until
-- <dir>/stop appears or process `parent` is gone, and removes dir.
function M.serve(dir, parent)
  local socket = require "socket"
  local cjson = require("cjson").new()
  local srv = assert(socket.bind("127.0.0.1", 0))
  srv:settimeout(1)
  local _, port = srv:getsockname()
  io.stdout:write("port=", port, "\n")
  io.stdout:flush()
  local n = { token = 0, api = 0 }
  local function over() return exists(dir .. "/stop") or gone(parent) end
  while not over() do
    local conn = srv:accept()
    if conn then
      conn:settimeout(5)
      local req = read_request(conn)
      if req and req.path == "/ping" then
        conn:send(framing(200, '{"ok":true}'))
      elseif req then
        local what = req.path:match("^/v1%.0/oauth2/") and "token" or "api"
        n[what] = n[what] + 1
        local cf = io.open(dir .. "/counts.tmp", "w")
        if cf then
          cf:write(n.token, " ", n.api, "\n")
          cf:close()
          os.rename(dir .. "/counts.tmp", dir .. "/counts")
        end
        local ok, a = pcall(dofile, dir .. "/answer.lua")
        if not ok or type(a) ~= "table" then a = { kind = "error", code = "spec.bad_answer", message = tostring(a) } end
        if not a.kind then
          a = a[what] or (what == "token" and { kind = "token" } or { kind = "ok" })
        end
        local rok, status, body, headers, ctype = pcall(reply, cjson, a, req, n)
        if not rok then status, body, headers = 500, cjson.encode { code = "spec.bad_answer", message = status }, {} end
        local bytes = framing(status, body, headers, ctype)
        if a.trickle then
          conn:settimeout(1)
          for i = 1, #bytes do
            if over() or not conn:send(bytes:sub(i, i)) then break end
            socket.sleep(a.trickle)
          end
        else
          conn:send(bytes)
        end
      end
      conn:close()
    end
  end
  srv:close()
  for _, f in ipairs(FILES) do os.remove(dir .. "/" .. f) end
  os.remove(dir)
end

---------------------------------------------------------------------------
-- the parent
---------------------------------------------------------------------------
local Server = {}
Server.__index = Server

--- Sets the answer of every later request (see the header).
function Server:answer(a)
  shell.write_file(self.dir .. "/answer.lua.tmp", "return " .. serialize(a) .. "\n")
  os.rename(self.dir .. "/answer.lua.tmp", self.dir .. "/answer.lua")
end

--- {token = n, api = n}: the requests it has answered so far (not /ping).
function Server:counts()
  local t, a = shell.read_file(self.dir .. "/counts"):match("(%d+) (%d+)")
  return { token = tonumber(t) or 0, api = tonumber(a) or 0 }
end

--- All requests so far (token and API; not /ping).
function Server:requests()
  local n = self:counts()
  return n.token + n.api
end

--- Stops the child (it removes its folder).  Idempotent.
function Server:stop()
  if self.stopped then return end
  self.stopped = true
  shell.write_file(self.dir .. "/stop", "")
  -- wake its accept(); no need to wait for it
  local ok, socket = pcall(require, "socket")
  if ok then
    local c = socket.tcp()
    c:settimeout(0.5)
    c:connect("127.0.0.1", self.port)
    c:close()
  end
end

-- A fresh folder of ours (no shell when LuaFileSystem is there).
local function make_dir()
  local ok, lfs = pcall(require, "lfs")
  if ok then
    for _ = 1, 10 do
      local base = os.tmpname()
      os.remove(base)
      if lfs.mkdir(base .. ".hh") then return base .. ".hh" end
    end
  end
  return trim(shell.sh("mktemp -d ${TMPDIR:-/tmp}/dtr-hostile-http.XXXXXX"))
end

--- start([answer]) -> server; the first answer defaults to an error
-- (spec.unset) so that a test that forgets to set one fails.
function M.start(a)
  local lua = os.getenv("DINGTALK_RECALL_TEST_LUA") or "lua"
  local dir = make_dir()
  local s = setmetatable({ dir = dir }, Server)
  s:answer(a or { kind = "error", code = "spec.unset", message = "no answer set" })
  local code = ("require('spec.helpers.hostile_http').serve(%q, %q)"):format(dir, shell.own_pid())
  -- the shell starts the child and leaves at once; the child prints its port
  local p = assert(io.popen(lua .. " -e " .. q(code) .. " </dev/null 2>" .. q(dir .. "/log") .. " & echo pid=$!", "r"))
  local got = {}
  for _ = 1, 2 do
    local k, v = (p:read("*l") or ""):match("^(%a+)=(%d+)$")
    if k then got[k] = v end
  end
  p:close()
  local pid, port = got.pid, tonumber(got.port)
  if not port then
    local log = shell.read_file(dir .. "/log")
    for _, f in ipairs(FILES) do os.remove(dir .. "/" .. f) end
    os.remove(dir)
    error("the hostile server did not start: " .. log, 2)
  end
  s.pid, s.port, s.url = trim(pid or ""), port, "http://127.0.0.1:" .. port
  return s
end

---------------------------------------------------------------------------
-- checks of what a terminal gets
---------------------------------------------------------------------------
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
