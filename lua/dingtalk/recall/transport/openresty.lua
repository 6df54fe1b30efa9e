--- The OpenResty transport: each exchange runs in a light thread
-- (ngx.thread) over a cosocket (ngx.socket.tcp), so a recall never blocks
-- the nginx worker; the C core still builds every request and parses
-- every answer, so results and errors are the ones of the curl transport.
--
-- Chosen automatically (dingtalk.recall.hosts) when the client runs in a
-- phase that allows cosockets (rewrite, access, content, timer, ssl_*),
-- or explicitly with `transport = "openresty"`.
--
-- The engine asks for now(), start(built, tag), poll(wait) and close();
-- this transport also gives limiter(api, rate, window) and token_store()
-- over a lua_shared_dict, so that all the workers of an nginx together
-- keep the app's QPS and share one access token.
--
-- nginx.conf needs:
--   lua_shared_dict dingtalk_recall 1m;     # limiter and tokens, all workers
--   lua_ssl_trusted_certificate /etc/ssl/certs/ca-certificates.crt;
--   lua_ssl_verify_depth 5;
--   resolver <your DNS server>;              # cosockets do not read /etc/resolv.conf
-- TLS is always verified against lua_ssl_trusted_certificate (a request's
-- ca_file cannot be applied per connection by cosockets).  Redirects are
-- never followed.  Nothing happens at require.
-- luacheck: read globals ngx
local core = require "dingtalk.recall.core"
local plain_limiter = require "dingtalk.recall.limiter"

local M = {}
M.__index = M

M.DEFAULT_DICT = "dingtalk_recall"

local floor, min, max = math.floor, math.min, math.max
local concat, sort = table.concat, table.sort
local str_find, str_sub, str_lower, str_format = string.find, string.sub, string.lower, string.format

-- ngx.now after ngx.update_time: this module never loads libcurl.
local function now()
  ngx.update_time()
  return ngx.now()
end
M.now = now

local function ms(seconds)
  return max(1, floor(seconds * 1000 + 0.5))
end

---------------------------------------------------------------------------
-- Requests: the same checks as the curl transport (csrc/dtr_curl.c)
---------------------------------------------------------------------------

local TOKEN_SEPARATORS = "()<>@,;:\\\"/[]?={}"

local function header_ok(name, value)
  if #name == 0 or #name + #value > 8192 then return false end
  for i = 1, #name do
    local c = name:byte(i)
    if c <= 0x20 or c >= 0x7f or str_find(TOKEN_SEPARATORS, string.char(c), 1, true) then return false end
  end
  for i = 1, #value do
    local c = value:byte(i)
    if (c < 0x20 and c ~= 9) or c == 0x7f then return false end
  end
  return true
end

local function is_loopback(host)
  if host == "localhost" or host == "[::1]" then return true end
  local a, b, c, d = host:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  if not a then return false end
  for _, o in ipairs { a, b, c, d } do
    if tonumber(o) > 255 then return false end
  end
  return tonumber(a) == 127
end

local function bad_endpoint(msg)
  return nil, core.error("invalid.endpoint", msg)
end

--- Splits a built request's url: {https, host, port, path, authority}.
local function parse_url(url)
  if #url > 4096 or str_find(url, "[%c%s]") then return bad_endpoint("endpoint is not a valid URL") end
  local scheme, rest = url:match("^(%a[%w+.-]*)://(.*)$")
  scheme = scheme and str_lower(scheme)
  if scheme ~= "https" and scheme ~= "http" then
    return bad_endpoint("endpoint must start with https:// (or http:// to loopback)")
  end
  local authority, path = rest:match("^([^/]*)(.*)$")
  if str_find(authority, "[@\\?#]") or str_find(path, "[?#]") then
    return bad_endpoint("endpoint is not a valid https://host[:port][/path] URL")
  end
  local host, port
  if str_sub(authority, 1, 1) == "[" then
    host, port = authority:match("^(%[[%x:.]+%])(.*)$")
  else
    host, port = authority:match("^([^:]+)(.*)$")
  end
  if not host then return bad_endpoint("endpoint has no host") end
  if port ~= "" then
    port = port:match("^:(%d+)$")
    port = port and tonumber(port)
    if not port or port < 1 or port > 65535 then return bad_endpoint("endpoint has a bad port") end
  else
    port = scheme == "https" and 443 or 80
  end
  host = str_lower(host)
  local https = scheme == "https"
  if not https and not is_loopback(host) then
    return bad_endpoint("plain http is only allowed to loopback addresses; use https:// (TLS is always verified)")
  end
  -- "localhost" needs no resolver: cosockets only resolve through nginx's
  -- `resolver`, and localhost is loopback by definition.
  local addr = host
  if host == "localhost" then addr = "127.0.0.1" end
  return {
    https = https, host = host, addr = addr, port = port, path = path ~= "" and path or "/",
    authority = (port == (https and 443 or 80)) and host or (host .. ":" .. port),
    sni = host:match("^%[(.*)%]$") or host,
  }
end
M._parse_url = parse_url

local function number_field(built, name, dflt)
  local v = built[name]
  if v == nil then return dflt end
  if type(v) ~= "number" or v ~= v or v <= 0 then
    error(("request field '%s' must be a positive number"):format(name), 3)
  end
  return v
end

--- Checks a built request the way the curl transport does: wrong types
-- raise, bad content is an error object.  Returns the parsed request.
local function read_built(built)
  if type(built) ~= "table" then error("start expects a built request (a table)", 3) end
  if built.method ~= "POST" then error('request.method must be "POST"', 3) end
  if type(built.url) ~= "string" then error("request.url must be a string", 3) end
  if type(built.body) ~= "string" then error("request.body must be a string", 3) end
  if type(built.headers) ~= "table" then error("request.headers must be a table", 3) end
  if built.ca_file ~= nil and type(built.ca_file) ~= "string" then error("request.ca_file must be a string", 3) end
  local names = {}
  for k, v in pairs(built.headers) do
    if type(k) ~= "string" or type(v) ~= "string" then error("request.headers must map strings to strings", 3) end
    if not header_ok(k, v) then
      return nil, core.error("invalidParameter.param.invalid",
        "a request header has a bad name or a control character in its value")
    end
    names[#names + 1] = k
  end
  sort(names)
  local req, err = parse_url(built.url)
  if not req then return nil, err end
  req.timeout = number_field(built, "timeout", 10)
  req.connect_timeout = number_field(built, "connect_timeout", 3)
  req.max = floor(number_field(built, "max_response_bytes", 1048576))
  local head = { "POST ", req.path, " HTTP/1.1\r\nHost: ", req.authority, "\r\nContent-Length: ", #built.body, "\r\n" }
  for _, k in ipairs(names) do
    local lk = str_lower(k)
    if lk ~= "host" and lk ~= "content-length" and lk ~= "transfer-encoding" and lk ~= "connection" then
      head[#head + 1] = k .. ": " .. built.headers[k] .. "\r\n"
    end
  end
  head[#head + 1] = "\r\n"
  head[#head + 1] = built.body
  req.payload = concat(head)
  req.pool = (req.https and "dingtalk-recall:https:" or "dingtalk-recall:http:") .. req.host .. ":" .. req.port
  return req
end

---------------------------------------------------------------------------
-- The exchange (runs in a light thread)
---------------------------------------------------------------------------

local MAX_HEADER_BYTES = 100 * 1024 -- as libcurl's CURL_MAX_HTTP_HEADER
local READ_CHUNK = 16384

local Reader = {}
Reader.__index = Reader

local function new_reader(sock, deadline)
  return setmetatable({ sock = sock, deadline = deadline, buf = "", pos = 1, received = 0 }, Reader)
end

-- Reads whatever arrives next, within the exchange's deadline.
function Reader:fill()
  local left = self.deadline - now()
  if left <= 0 then return nil, "timeout" end
  self.sock:settimeouts(ms(left), ms(left), ms(left))
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

-- One line without its CRLF; at most `limit` bytes.
function Reader:line(limit)
  while true do
    local i = str_find(self.buf, "\n", self.pos, true)
    if i then
      local line = str_sub(self.buf, self.pos, i - 1)
      self.pos = i + 1
      if str_sub(line, -1) == "\r" then line = str_sub(line, 1, -2) end
      return line
    end
    if #self.buf - self.pos + 1 > limit then return nil, "header line too long" end
    local ok, err = self:fill()
    if not ok then return nil, err end
  end
end

-- Exactly n bytes, appended to `parts`.
function Reader:bytes(n, parts)
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

-- Maps a cosocket error to the curl transport's codes.
local function io_failure(req, what, err)
  if err == "timeout" then
    return transport_error("transport.timeout",
      str_format("the exchange timed out after %d ms (%s)", ms(req.timeout), what))
  end
  return transport_error("transport.io", what .. " failed: " .. tostring(err))
end

local function too_large(req, status, request_id)
  return transport_error("response.too_large",
    str_format("the answer is larger than max_response_bytes (%d)", req.max),
    { status = status, request_id = request_id })
end

-- Reads one response.  Returns result, reusable (boolean).  A result has
-- status, headers, body, or error (and `nothing` when no byte came).
local function read_response(req, r)
  local status, version, headers, length, chunked, conn
  repeat
    local line, err = r:line(MAX_HEADER_BYTES)
    if not line then
      local res = io_failure(req, "reading the status line", err)
      res.nothing = r.received == 0
      return res
    end
    version, status = line:match("^HTTP/(%d%.%d) (%d%d%d)")
    if not status then
      return transport_error("transport.io", "the server's reply is not HTTP/1.x")
    end
    status = tonumber(status)
    headers, length, chunked, conn = {}, nil, false, nil
    local bytes = 0
    while true do
      local h
      h, err = r:line(MAX_HEADER_BYTES)
      if not h then return io_failure(req, "reading the headers", err) end
      if h == "" then break end
      bytes = bytes + #h
      if bytes > MAX_HEADER_BYTES then return transport_error("transport.io", "the answer's headers are too large") end
      local name, value = h:match("^([^:%s]+):%s*(.-)%s*$")
      if name then
        name = str_lower(name)
        if name == "x-acs-request-id" or name == "content-type" then
          headers[name] = value
        elseif name == "content-length" then
          local n = value:match("^%d+$") and tonumber(value)
          if not n or (length and length ~= n) then
            return transport_error("transport.io", "the answer has a bad Content-Length")
          end
          length = n
        elseif name == "transfer-encoding" then
          chunked = str_lower(value):match("chunked%s*$") ~= nil
        elseif name == "connection" then
          conn = str_lower(value)
        end
      end
    end
  until status >= 200 or status == 101

  local reusable = (version == "1.1" and not (conn and conn:find("close", 1, true)))
    or (version == "1.0" and conn ~= nil and conn:find("keep-alive", 1, true) ~= nil)
  local parts = {}
  local rid = headers["x-acs-request-id"]
  if status == 204 or status == 304 then
    parts[1] = "" -- no body
  elseif chunked then
    local total = 0
    while true do
      local line, err = r:line(4096)
      if not line then return io_failure(req, "reading the body", err) end
      local size = line:match("^%s*(%x+)")
      if not size then return transport_error("transport.io", "the answer has a bad chunk size") end
      size = tonumber(size, 16)
      if size == 0 then
        repeat -- trailers
          line, err = r:line(MAX_HEADER_BYTES)
          if not line then return io_failure(req, "reading the body", err) end
        until line == ""
        break
      end
      total = total + size
      if total > req.max then return too_large(req, status, rid) end
      local ok, berr = r:bytes(size, parts)
      if not ok then return io_failure(req, "reading the body", berr) end
      line, err = r:line(2)
      if line ~= "" then return io_failure(req, "reading the body", err or "a chunk does not end in CRLF") end
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
  return { status = status, headers = headers, body = concat(parts) }, reusable
end

local function connect_failure(req, err)
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
local function tls_verdict(sock)
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

local function tls_failure(req, err)
  if err == "timeout" then
    return transport_error("transport.timeout", str_format("the TLS handshake with %s timed out", req.authority))
  end
  return transport_error("transport.tls",
    str_format("TLS verification of %s failed: %s (nginx trusts the CAs of lua_ssl_trusted_certificate)",
      req.authority, tostring(err)))
end

--- One HTTP/1.1 exchange; returns {status, headers, body} or {error}.
local function exchange(self, req)
  local deadline = now() + req.timeout
  local pool = req.pool
  while true do
    local left = deadline - now()
    if left <= 0 then return io_failure(req, "connecting", "timeout") end
    local sock = ngx.socket.tcp()
    sock:settimeouts(ms(min(req.connect_timeout, left)), ms(left), ms(left))
    local ok, err = sock:connect(req.addr, req.port, { pool = pool, pool_size = self.pool_size })
    if not ok then return connect_failure(req, err) end
    local reused = (sock:getreusedtimes() or 0) > 0
    if req.https and not reused then
      left = deadline - now()
      if left <= 0 then
        sock:close()
        return io_failure(req, "the TLS handshake", "timeout")
      end
      sock:settimeouts(ms(left), ms(left), ms(left))
      -- false: no session object.  Verification on, against the SNI name.
      ok, err = sock:sslhandshake(false, req.sni, true)
      if ok then ok, err = tls_verdict(sock) end
      if not ok then
        sock:close()
        return tls_failure(req, err)
      end
    end
    left = deadline - now()
    local res, reusable
    if left <= 0 then
      res = io_failure(req, "sending", "timeout")
    else
      sock:settimeouts(ms(left), ms(left), ms(left))
      local sent
      sent, err = sock:send(req.payload)
      if not sent then
        res = io_failure(req, "sending the request", err)
        res.nothing = true
      else
        res, reusable = read_response(req, new_reader(sock, deadline))
      end
    end
    if reusable and pool == req.pool then
      sock:setkeepalive(self.keepalive_timeout * 1000)
    else
      sock:close()
    end
    -- A pooled connection the server had closed meanwhile: like libcurl,
    -- try once more, on a new connection (a pool that never holds any),
    -- when nothing at all came back.
    if not (res.error and res.nothing and reused and res.error.code == "transport.io") then
      res.nothing = nil
      return res
    end
    pool = req.pool .. ":fresh"
  end
end

---------------------------------------------------------------------------
-- The transport object
---------------------------------------------------------------------------

local function phase_ok()
  local phase = ngx.get_phase()
  local hosts = require "dingtalk.recall.hosts"
  return hosts.COSOCKET_PHASES[phase] == true, phase
end

--- new(opts) -> transport.  opts.shared_dict: the name of a
-- lua_shared_dict for the QPS limiter and the token cache (default
-- "dingtalk_recall" when nginx.conf declares it; false: per worker).
-- opts.pool_size (default 32) and opts.keepalive_timeout (seconds, default
-- 30) tune the per-worker connection pools.
function M.new(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("openresty transport options must be a table", 2) end
  if type(ngx) ~= "table" or not ngx.socket then
    error("the openresty transport needs OpenResty (nginx with the lua module)", 2)
  end
  local name, dict = opts.shared_dict, nil
  if name == nil then
    name = M.DEFAULT_DICT
    dict = ngx.shared[name]
    if not dict then name = nil end
  elseif name ~= false then
    if type(name) ~= "string" then error("shared_dict must be the name of a lua_shared_dict (a string)", 2) end
    dict = ngx.shared[name]
    if not dict then error("no lua_shared_dict named '" .. name .. "' in nginx.conf", 2) end
  else
    name = nil
  end
  for _, k in ipairs { "pool_size", "keepalive_timeout", "max_connections" } do
    if opts[k] ~= nil and type(opts[k]) ~= "number" then error(k .. " must be a number", 2) end
  end
  return setmetatable({
    name = "openresty",
    dict = dict,
    dict_name = name,
    pool_size = max(floor(opts.pool_size or 32), opts.max_connections or 1),
    keepalive_timeout = opts.keepalive_timeout or 30,
    sessions = setmetatable({}, { __mode = "k" }),
  }, M)
end

-- The exchanges of one coroutine (a request's handler, a timer): a client
-- shared by concurrent requests keeps each request's completions apart.
local MAIN = {}
local function session(self)
  local co = coroutine.running() or MAIN
  local s = self.sessions[co]
  if not s then
    s = { done = {}, in_flight = 0, threads = {}, waiting = false }
    self.sessions[co] = s
  end
  return s
end

local function run(self, s, req, tag, x)
  local ok, res = pcall(exchange, self, req)
  if not ok then
    res = { error = core.error("transport.io", "the exchange failed: " .. tostring(res), { retryable = false }) }
  end
  res.tag = tag
  s.done[#s.done + 1] = res
  s.in_flight = s.in_flight - 1
  x.done = true
  s.threads[x] = nil
  if s.waiting then
    s.waiting = false
    s.sema:post(1)
  end
end

--- Starts a built request in a light thread; tag comes back with its
-- completion from poll().  Returns true | nil, err.
function M:start(built, tag)
  local req, err = read_built(built)
  if not req then return nil, err end
  local ok, phase = phase_ok()
  if not ok then
    return nil, core.error("transport.connect", "cosockets are not available in the " .. tostring(phase) ..
      " phase; recall from a content/access/rewrite handler or an ngx.timer", { retryable = false })
  end
  local s = session(self)
  if not s.sema then
    local semaphore = require "ngx.semaphore"
    s.sema = semaphore.new(0)
  end
  s.in_flight = s.in_flight + 1
  local x = { done = false }
  local th, serr = ngx.thread.spawn(run, self, s, req, tag, x)
  if not th then
    s.in_flight = s.in_flight - 1
    return nil, core.error("transport.io", "cannot start a light thread: " .. tostring(serr), { retryable = false })
  end
  if not x.done then s.threads[x] = th end -- it may have finished already
  return true
end

--- Waits up to `wait` seconds for completions (without blocking the
-- worker); returns an array of {tag, status, headers, body} or {tag, error}.
function M:poll(wait)
  local s = session(self)
  if #s.done == 0 then
    if s.in_flight > 0 then
      -- at least 1 ms: the light threads only run while this one waits
      s.waiting = true
      s.sema:wait(max(wait or 0, 0.001))
      s.waiting = false
    elseif wait and wait > 0 then
      ngx.sleep(max(wait, 0.001)) -- nginx counts in ms: never sleep(0)
    end
  end
  local done = s.done
  s.done = {}
  return done
end

--- Exchanges in flight for the calling coroutine.
function M:in_flight()
  return session(self).in_flight
end

--- Stops the calling coroutine's exchanges still running (their
-- connections are closed, not pooled).  Safe to call twice.
function M:close()
  local co = coroutine.running() or MAIN
  local s = self.sessions[co]
  if not s then return end
  for _, th in pairs(s.threads) do pcall(ngx.thread.kill, th) end
  self.sessions[co] = nil
end

---------------------------------------------------------------------------
-- The QPS limiter shared by all workers
---------------------------------------------------------------------------
-- Starts are counted in buckets of window/BUCKETS seconds in the shared
-- dict.  A start is allowed when the buckets covering the last
-- window + GUARD buckets hold fewer than `rate` starts, so no span of
-- window * (1 + GUARD/BUCKETS) seconds (1.1 s for 1 s) ever sees more than
-- `rate` starts.  The guard absorbs the spread between a start and its
-- arrival (a new TLS connection on a busy host takes tens of ms more than
-- a pooled one), which the server's own one-second count sees.  The count
-- is raised first and checked after, so two workers racing for the last
-- slot both back off rather than both go: never over the rate.

local BUCKETS = 40
local GUARD = 4

local SharedLimiter = {}
SharedLimiter.__index = SharedLimiter

local function shared_limiter(dict, api, rate, window)
  local width = window / BUCKETS
  return setmetatable({
    dict = dict, rate = rate, window = window, width = width,
    span = BUCKETS + GUARD,                   -- buckets before the current one
    ttl = 2 * window + 1,
    prefix = "lim:" .. api .. ":" .. window .. ":",
  }, SharedLimiter)
end

function SharedLimiter:counts(k)
  local dict, prefix = self.dict, self.prefix
  local counts, sum = {}, 0
  for i = k - self.span, k do
    local c = dict:get(prefix .. i) or 0
    counts[i] = c
    sum = sum + c
  end
  return counts, sum
end

--- Seconds to wait before a start is allowed; 0 when one is allowed now,
-- and then the slot is held for the take() that follows.
function SharedLimiter:delay(t)
  if self.rate <= 0 then return 0 end
  local k = floor(t / self.width)
  if self.held then
    if self.held == k then return 0 end
    self.dict:incr(self.prefix .. self.held, -1)   -- a stale hold: give it back (if still there)
    self.held = nil
  end
  local counts, sum = self:counts(k)
  if sum < self.rate then
    local key = self.prefix .. k
    local v = self.dict:incr(key, 1, 0, self.ttl)
    if v then
      local _, again = self:counts(k)
      if again <= self.rate then
        self.held = k
        return 0
      end
      self.dict:incr(key, -1)
    end
    return self.width / 2                       -- lost a race with another worker
  end
  -- The oldest buckets must leave the range until fewer than rate remain.
  local excess, i = sum - self.rate + 1, k - self.span
  while i < k do
    excess = excess - counts[i]
    if excess <= 0 then break end
    i = i + 1
  end
  return max((i + self.span + 1) * self.width - t, 0.001)
end

--- Records a start at t (uses the slot delay() held, if any).
function SharedLimiter:take(t)
  if self.rate <= 0 then return end
  if self.held then
    self.held = nil
    return
  end
  self.dict:incr(self.prefix .. floor(t / self.width), 1, 0, self.ttl)
end

-- Without a shared dict: one limiter per API and rate in this worker.
local worker_limiters = {}

--- limiter(api, rate, window) -> an object with delay(now) and take(now).
function M:limiter(api, rate, window)
  if self.dict then return shared_limiter(self.dict, api, rate, window) end
  local key = api .. ":" .. rate .. ":" .. window
  local lim = worker_limiters[key]
  if not lim then
    lim = plain_limiter.new(rate, window)
    worker_limiters[key] = lim
  end
  return lim
end

---------------------------------------------------------------------------
-- The token cache shared by all workers
---------------------------------------------------------------------------

local json
local function codec()
  if not json then
    local cjson = require "cjson"
    json = cjson.new and cjson.new() or cjson
  end
  return json
end

local worker_tokens = {}

--- token_store() -> {get(key), set(key, entry, ttl), delete(key, token)};
-- entries are {token, expires_at} (expires_at on this transport's clock,
-- which every worker shares).  Keys are hashed: they name the credential.
function M:token_store()
  local dict = self.dict
  if not dict then
    return {
      get = function(_, key) return worker_tokens[key] end,
      set = function(_, key, entry) worker_tokens[key] = entry end,
      delete = function(_, key, token)
        local e = worker_tokens[key]
        if e and e.token == token then worker_tokens[key] = nil end
      end,
    }
  end
  local function dkey(key) return "tok:" .. ngx.encode_base64(ngx.sha1_bin(key)) end
  local store = {}
  function store.get(_, key)
    local v = dict:get(dkey(key))
    if type(v) ~= "string" then return nil end
    local ok, e = pcall(codec().decode, v)
    if ok and type(e) == "table" and type(e.token) == "string" and type(e.expires_at) == "number" then
      return { token = e.token, expires_at = e.expires_at }
    end
    return nil
  end
  function store.set(_, key, entry, ttl)
    local v = codec().encode { token = entry.token, expires_at = entry.expires_at }
    dict:set(dkey(key), v, (ttl and ttl > 0) and ttl or 0)
  end
  function store.delete(self_, key, token)
    local e = store.get(self_, key)
    if e and e.token == token then dict:delete(dkey(key)) end
  end
  return store
end

return M
