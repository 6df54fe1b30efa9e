--- dingtalk.recall.transport.http1: reads one HTTP/1.x answer from a
-- cosocket (anything with settimeouts and receiveany), within a deadline
-- and a size cap, and maps failures (connecting, the TLS handshake and its
-- verdict, reading) to the curl transport's error codes.  The OpenResty
-- transport's I/O half; it decides nothing about the answer.
local core = require "dingtalk.recall.core"

local M = {}

local floor, min, max = math.floor, math.min, math.max
local concat = table.concat
local str_sub, str_format = string.sub, string.format
local http_head, http_chunks = core.http_head, core.http_chunks

local function ms(seconds)
  return max(1, floor(seconds * 1000 + 0.5))
end
M.ms = ms


local READ_CHUNK = 16384

local Reader = {}
Reader.__index = Reader

--- new_reader(sock, deadline, now [, set_ms [, reuse]]): deadline on the
-- clock now() (the transport's: one clock for the deadline and the reads);
-- set_ms: the read timeout the socket already has (ms), so a read that
-- comes at once after it sets no timeout again; reuse: a reader done with
-- (see release), made ready for this socket instead of a new one.
function M.new_reader(sock, deadline, now, set_ms, reuse)
  local r = reuse or setmetatable({}, Reader)
  r.sock, r.deadline, r.now, r.buf, r.pos, r.received, r.set_ms = sock, deadline, now, "", 1, 0, set_ms
  return r
end

--- r:release() -> r, holding nothing (no socket, no bytes), for reuse.
function Reader:release()
  self.sock, self.buf, self.now = nil, "", nil
  return self
end

-- Sets the socket's timeouts to what is left of the deadline (when that
-- changed); false when nothing is left.
function Reader:left()
  local left = self.deadline - self.now()
  if left <= 0 then return false end
  local lms = ms(left)
  if lms ~= self.set_ms then
    self.sock:settimeouts(lms, lms, lms)
    self.set_ms = lms
  end
  return true
end

-- Reads whatever arrives next, within the exchange's deadline.
function Reader:fill()
  if not self:left() then return nil, "timeout" end
  local data, err = self.sock:receiveany(READ_CHUNK)
  if not data then return nil, err end
  if self.pos > 1 then
    self.buf = str_sub(self.buf, self.pos) .. data
    self.pos = 1
  else
    self.buf = self.buf .. data
  end
  self.received = self.received + #data
  return true
end

-- The hot path (the bytes already in the buffer) has no loop of its own:
-- what must wait for more bytes goes to bytes_more.

-- (bytes) n bytes, more than the buffer holds: read until they came.
local function bytes_more(self, n, parts)
  while n > 0 do
    local have = #self.buf - self.pos + 1
    if have > 0 then
      local take = min(have, n)
      parts[#parts + 1] = str_sub(self.buf, self.pos, self.pos + take - 1)
      self.pos = self.pos + take
      n = n - take
    else
      self.buf, self.pos = "", 1
      local ok, err = self:fill()
      if not ok then return nil, err end
    end
  end
  return true
end

-- Exactly n bytes, appended to `parts`.
function Reader:bytes(n, parts)
  local pos = self.pos
  if #self.buf - pos + 1 < n then return bytes_more(self, n, parts) end
  parts[#parts + 1] = str_sub(self.buf, pos, pos + n - 1)
  self.pos = pos + n
  return true
end

-- Everything until the peer closes, at most `cap` bytes (then nil, "too large").
function Reader:rest(parts, cap)
  local total = 0
  while true do
    local have = #self.buf - self.pos + 1
    if have > 0 then
      total = total + have
      if total > cap then return nil, "too large" end
      parts[#parts + 1] = str_sub(self.buf, self.pos)
    end
    self.buf, self.pos = "", 1
    local ok, err = self:fill()
    if not ok then
      if err == "closed" then return true end
      return nil, err
    end
  end
end

local function transport_error(code, msg, fields)
  return { error = core.error(code, msg, fields) }
end
M.transport_error = transport_error

-- Maps a cosocket error to the curl transport's codes.
function M.io_failure(req, what, err)
  if err == "timeout" then
    return transport_error("transport.timeout",
      str_format("the exchange timed out after %d ms (%s)", ms(req.timeout), what))
  end
  return transport_error("transport.io", what .. " failed: " .. tostring(err))
end

local io_failure = M.io_failure
local function too_large(req, status, request_id)
  return transport_error("response.too_large",
    str_format("the answer is larger than max_response_bytes (%d)", req.max),
    { status = status, request_id = request_id })
end

-- Reads one response.  Returns result, reusable (boolean).  A result has
-- status, headers, body, or error (and `nothing` when no byte came).  The
-- head (status line and headers, interim answers skipped) is read by the
-- core (core.http_head) from the bytes as they come, as is a chunked
-- body (core.http_chunks); a body of a Content-Length or to the end here.
function M.read_response(req, r)
  local stop, status, reusable, length, chunked, rid, ctype
  local scanned, phase = 0, "reading the status line"
  while true do
    if r.pos <= #r.buf then -- (none at first: the reader starts empty)
      stop, status, reusable, length, chunked, rid, ctype = http_head(r.buf, r.pos, scanned)
      if stop then break end
      if stop == nil then -- refused: status is the message, reusable the phase (a line too long)
        if reusable then return io_failure(req, reusable, status) end
        return transport_error("transport.io", status)
      end
      scanned, r.pos, phase = status, reusable, length -- no whole head yet: more bytes
    end
    local ok, err = r:fill()
    if not ok then
      local res = io_failure(req, phase, err)
      if r.received == 0 then res.nothing = true end
      return res
    end
  end
  r.pos = stop
  local headers = {}
  if rid then headers["x-acs-request-id"] = rid end
  if ctype then headers["content-type"] = ctype end

  local parts = {}
  if status == 204 or status == 304 then
    parts[1] = "" -- no body
  elseif chunked then -- (read by the core, from the bytes as they come)
    local a, b = 0, 0
    while true do
      local done, pos, data, na, nb = http_chunks(r.buf, r.pos, req.max, a, b)
      if done then
        r.pos = done
        parts[#parts + 1] = pos -- (the last data)
        break
      end
      if done == nil then -- refused: pos is the message, data true when too large
        if data then return too_large(req, status, rid) end
        return transport_error("transport.io", pos)
      end
      if data ~= "" then parts[#parts + 1] = data end
      r.pos, a, b = pos, na, nb
      local ok, err = r:fill()
      if not ok then return io_failure(req, "reading the body", err) end
    end
  elseif length then
    if length > req.max then return too_large(req, status, rid) end
    local ok, err = r:bytes(length, parts)
    if not ok then return io_failure(req, "reading the body", err) end
  else
    reusable = false
    local ok, err = r:rest(parts, req.max)
    if not ok then
      if err == "too large" then return too_large(req, status, rid) end
      return io_failure(req, "reading the body", err)
    end
  end
  if r.pos <= #r.buf then reusable = false end -- bytes beyond the answer: do not trust the connection
  return { status = status, headers = headers, body = parts[2] and concat(parts) or parts[1] or "" }, reusable
end

---------------------------------------------------------------------------
-- Connecting and the TLS handshake over a cosocket (the OpenResty
-- transport's): their failures in the curl transport's codes
---------------------------------------------------------------------------

function M.connect_failure(req, err)
  if err == "timeout" then
    return transport_error("transport.timeout",
      str_format("connecting to %s timed out", req.authority))
  end
  local msg = str_format("could not connect to %s: %s", req.authority, tostring(err))
  if tostring(err):find("resolver", 1, true) then
    msg = msg .. " (add a `resolver` directive to nginx.conf: cosockets resolve names through it)"
  end
  return transport_error("transport.connect", msg)
end

-- ngx_lua 0.10.23 + lua-resty-core 0.1.25 (Debian 12) report a TLS
-- handshake that completed at once (loopback, a fast peer) as a success
-- even when the certificate failed verification or did not match the
-- host; the verdict is still recorded on the socket.  So after every
-- handshake the verdict is read again through the same FFI call that
-- lua-resty-core uses.  Versions without that call skip the check (their
-- handshake reports failures itself).
local verdict_reader
function M.tls_verdict(sock)
  if verdict_reader == nil then
    verdict_reader = false
    local ok, ffi = pcall(require, "ffi")
    local bok, base = pcall(require, "resty.core.base")
    if ok and bok and type(base) == "table" and base.get_request and base.get_errmsg_ptr then
      local C = ffi.C
      local fok, fn = pcall(function() return C.ngx_http_lua_ffi_socket_tcp_get_sslhandshake_result end)
      if fok and fn then
        local errmsg = base.get_errmsg_ptr()
        local sess = ffi.new("void *[1]")
        local code = ffi.new("int[1]")
        local FFI_ERROR = base.FFI_ERROR or -1
        verdict_reader = function(s)
          local u, r = s[1], base.get_request()
          if not u or not r then return true end
          sess[0], code[0] = nil, 0
          if C.ngx_http_lua_ffi_socket_tcp_get_sslhandshake_result(r, u, sess, errmsg, code) == FFI_ERROR then
            local msg = errmsg[0] ~= nil and ffi.string(errmsg[0]) or "certificate verification failed"
            if code[0] ~= 0 then msg = code[0] .. ": " .. msg end
            return nil, msg
          end
          return true
        end
      end
    end
  end
  if not verdict_reader then return true end
  return verdict_reader(sock)
end

function M.tls_failure(req, err)
  if err == "timeout" then
    return transport_error("transport.timeout", str_format("the TLS handshake with %s timed out", req.authority))
  end
  return transport_error("transport.tls",
    str_format("TLS verification of %s failed: %s (nginx trusts the CAs of lua_ssl_trusted_certificate)",
      req.authority, tostring(err)))
end

return M
