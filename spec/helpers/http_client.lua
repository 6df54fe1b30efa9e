-- spec/helpers/http_client.lua: a small HTTP/1.1 client for the test
-- helpers, in-process (LuaSocket), so that talking to a server the specs
-- started costs no process.  Plain HTTP over TCP (loopback) or a unix
-- socket; TLS stays with the library under test and the curl CLI.
--
--   local http = require "spec.helpers.http_client"
--   local c = http.new { host = "127.0.0.1", port = 8080 }   -- or { unix = "/path/sim.sock" }
--   local r = c:request("POST", "/path", '{"a":1}', { ["Content-Type"] = "application/json" })
--   -- r.status, r.headers (lower-case names), r.body, r.time; on a failure
--   -- r.err ("connect", "send", "empty", "partial", "timeout", "bad answer")
--   -- and r.why (the socket's words)
--   c:close()
--
-- A client keeps its connection between requests (keep_alive, the default)
-- and, when a reused idle connection turns out closed before a single byte
-- of the answer, sends the request once more on a new one (what curl does);
-- with keep_alive = false every request has a connection of its own, like
-- one run of the curl CLI.  Plain Lua 5.1-5.4 and LuaJIT; never loads the
-- project.
local socket = require "socket"

local M = {}

local Client = {}
Client.__index = Client

--- opts: host + port, or unix (a socket path); timeout (s, default 60,
-- for the whole exchange); keep_alive (default true).
function M.new(opts)
  assert(opts.unix or (opts.host and opts.port), "http_client.new: host and port, or unix")
  return setmetatable({ host = opts.host, port = opts.port, unix = opts.unix, timeout = opts.timeout or 60,
    keep_alive = opts.keep_alive ~= false }, Client)
end

--- host, port of an http:// URL (nil for any other scheme).
function M.parse_url(url)
  local host, port = url:match("^http://%[?([%w%.:%-]-)%]?:(%d+)/?$")
  if not host then
    host = url:match("^http://([%w%.%-]+)/?$")
    port = host and 80
  end
  return host, tonumber(port)
end

function Client:close()
  if self.conn then self.conn:close() end
  self.conn = nil
end

local function connect(self)
  local conn, err
  if self.unix then
    local unix = require "socket.unix"
    if unix.stream then conn, err = unix.stream() else conn, err = unix() end
    if conn then
      local ok, cerr = conn:connect(self.unix)
      if not ok then conn:close(); conn, err = nil, cerr end
    end
  else
    conn, err = socket.connect(self.host, self.port)
  end
  if conn and not self.unix then conn:setoption("tcp-nodelay", true) end
  return conn, err
end

-- Reads up to the deadline; returns data or nil, err, partial.
local function recv(conn, deadline, pattern)
  local left = deadline - socket.gettime()
  if left <= 0 then return nil, "timeout", "" end
  conn:settimeout(left)
  return conn:receive(pattern)
end

local function read_answer(conn, method, deadline, r)
  local line, err = recv(conn, deadline, "*l")
  if not line then return "empty", err end
  local status = line:match("^HTTP/1%.%d (%d%d%d)")
  if not status then return "bad answer", "status line " .. string.format("%q", line) end
  r.status = tonumber(status)
  r.http10 = line:match("^HTTP/1%.0") ~= nil
  while true do
    local h
    h, err = recv(conn, deadline, "*l")
    if not h then return "partial", "in the headers: " .. tostring(err) end
    if h == "" then break end
    local k, v = h:match("^([^:]+):%s*(.-)%s*$")
    if k then
      k = k:lower()
      r.headers[k] = r.headers[k] and (r.headers[k] .. ", " .. v) or v
    end
  end
  if r.status < 200 then -- 100 Continue and the like: the real answer follows
    r.headers = {}
    return read_answer(conn, method, deadline, r)
  end
  if method == "HEAD" or r.status == 204 or r.status == 304 then return nil end
  local te, cl = r.headers["transfer-encoding"], tonumber(r.headers["content-length"])
  local parts = {}
  if te and te:lower():find("chunked", 1, true) then
    while true do
      local size
      size, err = recv(conn, deadline, "*l")
      local n = size and tonumber(size:match("^%x+"), 16)
      if not n then r.body = table.concat(parts); return "partial", "chunk size: " .. tostring(err or size) end
      if n == 0 then
        repeat line = recv(conn, deadline, "*l") until not line or line == "" -- trailers
        break
      end
      local data, perr, partial = recv(conn, deadline, n)
      if not data then
        parts[#parts + 1] = partial
        r.body = table.concat(parts)
        return perr == "timeout" and "timeout" or "partial", perr
      end
      parts[#parts + 1] = data
      recv(conn, deadline, "*l")
    end
    r.body = table.concat(parts)
  elseif cl then
    local data, perr, partial = "", nil, nil
    if cl > 0 then data, perr, partial = recv(conn, deadline, cl) end
    if not data then
      r.body = partial or ""
      return perr == "timeout" and "timeout" or "partial", perr
    end
    r.body = data
  else -- until the server closes
    local data, perr, partial = recv(conn, deadline, "*a")
    r.body = data or partial or ""
    if not data then return perr == "timeout" and "timeout" or "partial", perr end
    r.close = true
  end
  return nil
end

--- request(method, path, body, headers, opts) -> r (see the top of the file).
-- opts.timeout overrides the client's for this exchange.
function Client:request(method, path, body, headers, opts)
  local timeout = opts and opts.timeout or self.timeout
  local t0 = socket.gettime()
  local deadline = t0 + timeout
  local lines = { method .. " " .. path .. " HTTP/1.1" }
  local has = {}
  for k, v in pairs(headers or {}) do
    lines[#lines + 1] = k .. ": " .. v
    has[k:lower()] = true
  end
  if not has.host then
    lines[#lines + 1] = "Host: " .. (self.unix and "localhost" or (self.host .. ":" .. self.port))
  end
  if body ~= nil and not has["content-length"] then lines[#lines + 1] = "Content-Length: " .. #body end
  if not self.keep_alive and not has.connection then lines[#lines + 1] = "Connection: close" end
  local wire = table.concat(lines, "\r\n") .. "\r\n\r\n" .. (body or "")

  for attempt = 1, 2 do
    local r = { headers = {}, body = "" }
    local reused = self.conn ~= nil
    if not reused then
      local conn, err = connect(self)
      if not conn then
        r.err, r.why, r.time = "connect", err, socket.gettime() - t0
        return r
      end
      self.conn = conn
    end
    local conn = self.conn
    conn:settimeout(math.max(deadline - socket.gettime(), 0.001))
    local ok, serr = conn:send(wire)
    local kind, why
    if not ok then
      kind, why = "send", serr
    else
      kind, why = read_answer(conn, method, deadline, r)
    end
    r.time = socket.gettime() - t0
    if kind or r.close or r.http10 or not self.keep_alive
      or (r.headers.connection or ""):lower() == "close" then
      self:close()
    end
    -- a kept connection the server had closed meanwhile: once more, on a new one
    if not (reused and attempt == 1 and (kind == "send" or (kind == "empty" and why == "closed"))) then
      r.err, r.why = kind, why
      return r
    end
  end
end

return M
