--- The OpenResty transport: exchanges over cosockets (ngx.socket.tcp),
-- in light threads (ngx.thread) when several are in flight, in the
-- caller's own coroutine when one is alone (see poll), so a recall never
-- blocks the nginx worker; the C core still builds every request and parses
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
local http1 = require "dingtalk.recall.transport.http1"
local new_reader, read_response = http1.new_reader, http1.read_response
local io_failure = http1.io_failure
local connect_failure, tls_verdict, tls_failure = http1.connect_failure, http1.tls_verdict, http1.tls_failure

local M = {}
M.__index = M

M.DEFAULT_DICT = "dingtalk_recall"

local floor, min, max = math.floor, math.min, math.max
local concat = table.concat
local str_find, str_lower = string.find, string.lower

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
-- Requests: every check is the C core's (core.target), made once per
-- target and cached; per start only the bytes are put together.
---------------------------------------------------------------------------

-- Per-target setup, keyed by url, then by the three numbers: the core
-- checks the URL (scheme, host, port, loopback-only http) and the numbers
-- once per target, not per start.
local targets, ntargets, MAX_TARGETS = {}, 0, 64

local function target_for(built)
  local url, t1, t2, mx = built.url, built.timeout, built.connect_timeout, built.max_response_bytes
  local t = targets[url]
  if t and t.t1 == t1 and t.t2 == t2 and t.mx == mx then return t end
  local target, err = core.target { endpoint = url, timeout = t1, connect_timeout = t2, max_response_bytes = mx }
  if not target then return nil, err end
  local host, https, port = target.host, target.https, target.port
  -- "localhost" needs no resolver: cosockets resolve only through nginx's
  -- `resolver`, and localhost is loopback by definition.
  local addr = host
  if host == "localhost" then addr = "127.0.0.1" elseif str_find(host, ":", 1, true) then addr = "[" .. host .. "]" end
  local path = target.path
  if path == "" then path = "/" end
  t = {
    t1 = t1, t2 = t2, mx = mx,
    https = https, host = host, addr = addr, port = port, sni = host, authority = target.authority,
    timeout = target.timeout, connect_timeout = target.connect_timeout, max = floor(target.max_response_bytes),
    pool = (https and "dingtalk-recall:https:" or "dingtalk-recall:http:") .. host .. ":" .. port,
    head = "POST " .. path .. " HTTP/1.1\r\nHost: " .. target.authority .. "\r\nContent-Length: ",
  }
  if not targets[url] then
    if ntargets >= MAX_TARGETS then targets, ntargets = {}, 0 end
    ntargets = ntargets + 1
  end
  targets[url] = t
  return t
end

local SKIP = { host = true, ["content-length"] = true, ["transfer-encoding"] = true, connection = true }

-- The header lines of a built request, checked: only the HTTP framing is
-- guarded here (no CR, LF or NUL, no ':' or blank in a name), since these
-- bytes go on the wire as they are.  -> lines, map | nil, err.
local function header_lines(headers)
  local lines, map = {}, {}
  for k, v in pairs(headers) do
    if type(k) ~= "string" or type(v) ~= "string" then error("request.headers must map strings to strings", 4) end
    if k == "" or str_find(k, "[%c%s:]") or str_find(v, "[%z\r\n]") then
      return nil, core.error("invalidParameter.param.invalid",
        "a request header has a bad name or a control character in its value")
    end
    map[k] = v
    if not SKIP[str_lower(k)] then lines[#lines + 1] = k .. ": " .. v .. "\r\n" end
  end
  lines[#lines + 1] = "\r\n"
  return concat(lines), map
end

--- The bytes of a built request for its target: wrong types raise, a bad
-- target is the core's error object.  Headers come from the core's
-- builders; their lines are checked and put together once per target and
-- header set (the same on every batch until the token changes), so a start
-- only compares them with the last set and joins the bytes.
local function prepare(built)
  if type(built) ~= "table" then error("start expects a built request (a table)", 3) end
  if built.method ~= "POST" then error('request.method must be "POST"', 3) end
  local body, headers = built.body, built.headers
  if type(built.url) ~= "string" then error("request.url must be a string", 3) end
  if type(body) ~= "string" then error("request.body must be a string", 3) end
  if type(headers) ~= "table" then error("request.headers must be a table", 3) end
  if built.ca_file ~= nil and type(built.ca_file) ~= "string" then error("request.ca_file must be a string", 3) end
  local t, err = target_for(built)
  if not t then return nil, err end
  local lines, map = t.lines, t.hmap
  if map then -- the same set as last time? (values are strings: equal ones are checked ones)
    local n = 0
    for k, v in pairs(headers) do
      if map[k] ~= v then
        lines = nil
        break
      end
      n = n + 1
    end
    if n ~= t.hn then lines = nil end
  end
  if not lines then
    lines, map = header_lines(headers)
    if not lines then return nil, map end
    local n = 0
    for _ in pairs(map) do n = n + 1 end
    t.lines, t.hmap, t.hn = lines, map, n
  end
  return t, t.head .. #body .. "\r\n" .. lines .. body
end

-- The connect options of a pool (one table per pool and transport, not
-- one per exchange).
local function connect_options(self, pool)
  local opts = self.copts[pool]
  if not opts then
    if self.ncopts >= 2 * MAX_TARGETS then self.copts, self.ncopts = {}, 0 end
    opts = { pool = pool, pool_size = self.pool_size }
    self.copts[pool] = opts
    self.ncopts = self.ncopts + 1
  end
  return opts
end

--- One HTTP/1.1 exchange of payload with target req; returns {status,
-- headers, body} or {error}.  The clock is ngx.now(): nginx refreshes it
-- whenever a cosocket call waits, and a call that does not wait takes no
-- time worth counting against the deadline.
local function exchange(self, req, payload)
  local ngx_now, tcp = ngx.now, ngx.socket.tcp
  local deadline = ngx_now() + req.timeout
  local pool = req.pool
  while true do
    local left = deadline - ngx_now()
    if left <= 0 then return io_failure(req, "connecting", "timeout") end
    local sock = tcp()
    local lms = ms(left)
    sock:settimeouts(ms(min(req.connect_timeout, left)), lms, lms)
    local ok, err = sock:connect(req.addr, req.port, connect_options(self, pool))
    if not ok then return connect_failure(req, err) end
    local reused = (sock:getreusedtimes() or 0) > 0
    if not reused then -- a new connection took time: the deadline is nearer
      left = deadline - ngx_now()
      if left <= 0 then
        sock:close()
        return io_failure(req, req.https and "the TLS handshake" or "sending", "timeout")
      end
      lms = ms(left)
      sock:settimeouts(lms, lms, lms)
      if req.https then
        -- false: no session object.  Verification on, against the SNI name.
        ok, err = sock:sslhandshake(false, req.sni, true)
        if ok then ok, err = tls_verdict(sock) end
        if not ok then
          sock:close()
          return tls_failure(req, err)
        end
        left = deadline - ngx_now()
        lms = ms(left)
        sock:settimeouts(lms, lms, lms)
      end
    end
    local res, reusable
    if left <= 0 then
      res = io_failure(req, "sending", "timeout")
    else
      local sent
      sent, err = sock:send(payload)
      if not sent then
        res = io_failure(req, "sending the request", err)
        res.nothing = true
      else
        -- one spare reader per transport: an exchange takes it while it reads
        local r = new_reader(sock, deadline, ngx_now, lms, self.spare_reader)
        self.spare_reader = nil
        res, reusable = read_response(req, r)
        self.spare_reader = r:release()
      end
    end
    if reusable and pool == req.pool then
      sock:setkeepalive(self.keepalive_ms)
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

local COSOCKET_PHASES
local function phase_ok()
  local phase = ngx.get_phase()
  if not COSOCKET_PHASES then COSOCKET_PHASES = require("dingtalk.recall.hosts").COSOCKET_PHASES end
  return COSOCKET_PHASES[phase] == true, phase
end

local function no_cosockets(phase)
  return core.error("transport.connect", "cosockets are not available in the " .. tostring(phase) ..
    " phase; recall from a content/access/rewrite handler or an ngx.timer", { retryable = false })
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
  local keepalive = opts.keepalive_timeout or 30
  return setmetatable({
    name = "openresty",
    dict = dict,
    dict_name = name,
    pool_size = max(floor(opts.pool_size or 32), opts.max_connections or 1),
    keepalive_timeout = keepalive,
    keepalive_ms = keepalive * 1000,
    copts = {}, ncopts = 0, -- connect options per pool
    start_batch = M.start_batch, -- its own fields: the engine looks for them with rawget
    exchange_batch = M.exchange_batch,
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
    -- (done: completions not yet polled, made when one comes; queued:
    -- request, payload, tag, flat; threads: made at the first spawn)
    s = self.idle or { done = nil, queued = {}, in_flight = 0, threads = nil, waiting = false }
    self.idle = nil
    self.sessions[co] = s
  end
  return s, co
end

-- A session with nothing queued, in flight or unpolled is let go: kept
-- as the transport's one idle session for the next coroutine (a request
-- handler makes one exchange and ends: no session table per request).
local function let_go(self, s, co)
  if s.in_flight == 0 and s.done == nil and s.queued[1] == nil and not s.waiting then
    self.sessions[co] = nil
    self.idle = s
  end
end

-- The exchange in a light thread: protected, since a raise there (a bug:
-- every failure of the network or the peer is a result, never a raise)
-- would leave the caller waiting for its completion.
local function exchange_result(self, req, payload, tag)
  local ok, res = pcall(exchange, self, req, payload)
  if not ok then
    res = { error = core.error("transport.io", "the exchange failed: " .. tostring(res), { retryable = false }) }
  end
  res.tag = tag
  return res
end

local function add_done(s, res)
  local done = s.done
  if not done then
    done = {}
    s.done = done
  end
  done[#done + 1] = res
end

local function run(self, s, req, payload, tag, x)
  add_done(s, exchange_result(self, req, payload, tag))
  s.in_flight = s.in_flight - 1
  x.done = true
  s.threads[x] = nil
  if s.waiting then
    s.waiting = false
    s.sema:post(1)
  end
end

local function queue(self, req, payload, tag)
  local ok, phase = phase_ok()
  if not ok then return nil, no_cosockets(phase) end
  local s = session(self)
  s.in_flight = s.in_flight + 1
  local q = s.queued
  local n = #q
  q[n + 1], q[n + 2], q[n + 3] = req, payload, tag
  return true
end

--- Queues a built request; tag comes back with its completion from
-- poll(), which starts what is queued.  Returns true | nil, err.
function M:start(built, tag)
  local req, payload = prepare(built)
  if not req then return nil, payload end
  return queue(self, req, payload, tag)
end

-- The bytes of a recall batch without a built table: the first batch for
-- a target and token is built by core.build_batch and checked as start()
-- checks any request; the next ones get their bytes from
-- core.batch_payload with that checked head and header lines.
-- -> req, payload | nil, err [, true: the token was refused].
local function batch_bytes(self, plan, keys, target, token)
  local b = self.batch
  if not (b and b.target == target and b.token == token) then
    local built, err = core.build_batch(plan, 1, target, token)
    if not built then return nil, err, true end
    local req, perr = prepare(built)
    if not req then return nil, perr end
    b = { target = target, token = token, req = req, head = req.head, tail = "\r\n" .. req.lines }
    self.batch = b
  end
  local payload, err = core.batch_payload(plan, keys, target, token, b.head, b.tail)
  if not payload then return nil, err, true end
  return b.req, payload
end

--- Queues a recall batch without a built table (the engine calls it when
-- the transport has this field of its own; see batch_bytes).  -> true |
-- nil, err [, true: the token was refused, nothing was sent].
function M:start_batch(plan, keys, target, token, tag)
  local req, payload, refused = batch_bytes(self, plan, keys, target, token)
  if not req then return nil, payload, refused end
  return queue(self, req, payload, tag)
end

--- exchange_batch(plan, keys, target, token) -> {status, headers, body}
-- | {error} | nil, err [, true: the token was refused]: one recall batch
-- sent and its answer read now, in the caller's coroutine (the engine's
-- single batch, when the transport has this field of its own).  Nothing
-- is queued and no session is looked up (coroutine.running, which LuaJIT
-- does not compile): the exchange of poll's inline case, without the way
-- there.  It runs unprotected, as that one does (see INLINE_WAIT below).
function M:exchange_batch(plan, keys, target, token)
  local ok, phase = phase_ok()
  if not ok then return nil, no_cosockets(phase) end
  local req, payload, refused = batch_bytes(self, plan, keys, target, token)
  if not req then return nil, payload, refused end
  return exchange(self, req, payload)
end

-- Starts the queued exchanges, each in a light thread.
local function spawn_queued(self, s)
  local queued = s.queued
  s.queued = {}
  if not s.sema then
    local semaphore = require "ngx.semaphore"
    s.sema = semaphore.new(0)
  end
  local threads = s.threads or {}
  s.threads = threads
  for i = 1, #queued, 3 do
    local x = { done = false }
    local th, serr = ngx.thread.spawn(run, self, s, queued[i], queued[i + 1], queued[i + 2], x)
    if not th then
      s.in_flight = s.in_flight - 1
      add_done(s, { tag = queued[i + 2], error = core.error("transport.io",
        "cannot start a light thread: " .. tostring(serr), { retryable = false }) })
    elseif not x.done then
      threads[x] = th -- it may have finished already
    end
  end
end

-- A caller that waits this long has nothing else due: one queued exchange
-- with nothing else in flight then runs in the caller's own coroutine
-- (cosocket I/O still yields to nginx), without a light thread, and
-- without pcall: returning into a pcall frame is a return LuaJIT cannot
-- record (NYI: return to lower frame), so everything after the exchange's
-- last socket call ran in the interpreter, about 10% of a one-batch
-- call's cycles by callgrind's cache model.  exchange raises only on a bug
-- of ours (spec/http1_spec.lua feeds the reader hostile bytes in every cut
-- and expects a result each time); such a raise reaches the caller as any
-- Lua error would.
local INLINE_WAIT = 1.0

--- Waits up to `wait` seconds for completions (without blocking the
-- worker); returns an array of {tag, status, headers, body} or {tag, error}.
function M:poll(wait)
  local s, co = session(self)
  local q = s.queued
  local nq = #q
  if nq == 3 and s.in_flight == 1 and not s.done and (wait or 0) >= INLINE_WAIT then
    local req, payload, tag = q[1], q[2], q[3]
    q[1], q[2], q[3] = nil, nil, nil
    s.in_flight = 0 -- (before: a raise leaves the session as it would be after)
    let_go(self, s, co)
    local res = exchange(self, req, payload)
    res.tag = tag
    return { res }
  end
  if nq > 0 then spawn_queued(self, s) end
  if not s.done then
    if s.in_flight > 0 then
      -- at least 1 ms: the light threads only run while this one waits
      s.waiting = true
      s.sema:wait(max(wait or 0, 0.001))
      s.waiting = false
    elseif wait and wait > 0 then
      ngx.sleep(max(wait, 0.001)) -- nginx counts in ms: never sleep(0)
    end
  end
  local done = s.done or {}
  s.done = nil
  let_go(self, s, co)
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
  for _, th in pairs(s.threads or {}) do pcall(ngx.thread.kill, th) end
  self.sessions[co] = nil
end

---------------------------------------------------------------------------
-- Limiter and token store shared by all workers (transport/ngx_shared.lua)
---------------------------------------------------------------------------

--- limiter(api, rate, window) -> an object with acquire(now) (and the
-- older delay(now) / take(now)): over the shared dict, or per worker.
function M:limiter(api, rate, window)
  return require("dingtalk.recall.transport.ngx_shared").limiter(self.dict, api, rate, window)
end

--- token_store() -> {get(key), set(key, entry, ttl), delete(key, token)}
-- over the shared dict (or per worker).
function M:token_store()
  return require("dingtalk.recall.transport.ngx_shared").token_store(self.dict)
end

return M
