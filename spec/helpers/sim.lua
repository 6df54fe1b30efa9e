-- spec/helpers/sim.lua: start and drive the DingTalk simulator from busted specs.
--
--   local sim = require "spec.helpers.sim"
--   local s
--   setup(function() s = sim.start{ tls = true, qps = 20 } end)
--   teardown(function() if s then s:stop() end end)   -- always stop in teardown
--
-- Plain Lua (5.1-5.4, LuaJIT); uses io/os, LuaSocket (admin calls in-process,
-- through the simulator's unix socket: spec/helpers/http_client.lua) and
-- lua-cjson. It never loads the project's own code, so it can test it.
--
-- Nothing leaks when a test errors out: besides stop() (idempotent), every
-- started simulator has a watchdog shell that stops nginx and removes the
-- state dir as soon as the Lua process that started it is gone.

local sim = {}

---------------------------------------------------------------------------
-- JSON
---------------------------------------------------------------------------
-- JSON through lua-cjson (a dependency of the project, for every runtime).
local cjson = require("cjson").new()
local json = { null = cjson.null, decode = cjson.decode, encode = cjson.encode }
sim.json = json

---------------------------------------------------------------------------
-- shell helpers
---------------------------------------------------------------------------
local shell = require "spec.helpers.shell"
local sh_quote, sh, trim = shell.quote, shell.sh, shell.trim
sim.sh_quote = sh_quote

-- Run a shell command; returns its stdout+stderr and exit code.
sim.sh = sh


-- The simulator's launcher (lua/dingtalk_sim/main.lua), in-process when
-- it is on package.path (spec/run.sh puts it there), else nil.
local launcher
local function sim_main()
  if launcher == nil then
    local ok, m = pcall(require, "dingtalk_sim.main")
    launcher = ok and m or false
  end
  return launcher or nil
end

-- true when the process exists and is not a zombie (PID 1 here may reap late)
function sim.alive(pid)
  local ok, proc = pcall(require, "dingtalk_sim.proc")
  if ok then return proc.pid_alive(pid) end
  local _, rc = sh("kill -0 " .. pid .. " 2>/dev/null && ! grep -q '^[0-9]* ([^)]*) Z' /proc/" .. pid ..
    "/stat 2>/dev/null")
  return rc == 0
end

local lua_cmd -- found once a process

-- The test CA and certificates the launcher generates (openssl, five runs)
-- are kept from a --tls simulator of this process for the next ones, which
-- get copies in their (fresh, 0700) state dirs and skip openssl; not the
-- CA's key.  One simulator at a time holds them: simulators running at the
-- same time always have CAs of their own (a client that trusts one's CA
-- does not trust the other's).
local CERT_FILES = { "ca.pem", "server.pem", "server.key", "wrong-host.pem", "wrong-host.key" }
local cert_cache -- { [file] = text }
local cert_holder = setmetatable({}, { __mode = "v" }) -- [1]: the simulator using them (weak: GC frees them)
local function keep_certs(dir)
  local c = {}
  for _, f in ipairs(CERT_FILES) do
    c[f] = shell.read_file(dir .. "/" .. f)
    if c[f] == "" then return nil end
  end
  cert_cache = c
  return c
end
local function put_certs(dir)
  for _, f in ipairs(CERT_FILES) do
    local h = assert(io.open(dir .. "/" .. f, "wb"))
    h:write(cert_cache[f])
    h:close()
  end
  sh("chmod 600 " .. sh_quote(dir .. "/server.key") .. " " .. sh_quote(dir .. "/wrong-host.key"))
end
-- absolute, so that stop works from any directory
local repo_root = shell.repo_root

local function interpreter()
  if lua_cmd then return lua_cmd end
  local out = sh("for i in lua luajit lua5.4 lua5.3 lua5.2 lua5.1; do " ..
    "command -v $i >/dev/null 2>&1 && { echo $i; exit 0; }; done; exit 1")
  local i = trim(out)
  lua_cmd = i ~= "" and i or "lua"
  return lua_cmd
end

-- Runs the launcher with these arguments: in-process when it can, else as
-- `dingtalk-sim` (cmd); returns its output (stdout and stderr) and status.
local function launch(cmd, args)
  local main = sim_main()
  if main then
    local out = {}
    local sink = { flush = function() end }
    function sink.write(self, ...)
      for _, x in ipairs { ... } do out[#out + 1] = tostring(x) end
      return self
    end
    local rc = main.main(args, { stdout = sink, stderr = sink })
    return table.concat(out), rc
  end
  local quoted = {}
  for i, a in ipairs(args) do quoted[i] = sh_quote(a) end
  return sh(cmd .. " " .. table.concat(quoted, " "))
end

local own_pid = shell.own_pid
local ports = require "spec.helpers.ports"
local http = require "spec.helpers.http_client"

---------------------------------------------------------------------------
-- the simulator object
---------------------------------------------------------------------------
local Sim = {}
Sim.__index = Sim

-- The simulator's HTTP, in-process (spec/helpers/http_client.lua): its unix
-- socket (plain HTTP whether or not it serves TLS) or its plain TCP port.
-- Admin calls share one kept connection; the API's paths, where faults
-- may close a connection on purpose, get one connection each.
local function http_client(self, keep_alive)
  local o = { timeout = self.curl_timeout or 60, keep_alive = keep_alive }
  if self.socket then
    o.unix = self.socket
  elseif not self.tls then
    o.host, o.port = "127.0.0.1", self.port
  else
    error("dingtalk-sim: an https simulator without --socket: no in-process client for it", 3)
  end
  return http.new(o)
end

-- Raw HTTP request: returns status (0 when no answer came), body (string;
-- on a failure, what went wrong), headers table (lower-case names).
function Sim:request(method, path, body, headers)
  local admin = path:sub(1, 6) == "/_sim/"
  local c
  if admin then
    self.http = self.http or http_client(self, true)
    c = self.http
  else
    c = http_client(self, false)
  end
  local h = {}
  for k, v in pairs(headers or {}) do h[k] = v end
  if body ~= nil then
    if type(body) ~= "string" then body = json.encode(body) end
    h["Content-Type"] = h["Content-Type"] or "application/json"
  end
  local r = c:request(method, path, body, h)
  if r.err then
    return r.status or 0, r.body .. "(no complete answer: " .. r.err .. ": " .. tostring(r.why) .. ")", r.headers
  end
  return r.status, r.body, r.headers
end

-- Admin call: returns the decoded JSON answer (or raises) and the HTTP status.
function Sim:admin(method, path, body)
  if path:sub(1, 1) ~= "/" then path = "/" .. path end
  if path:sub(1, 6) ~= "/_sim/" then path = "/_sim" .. path end
  local status, resp = self:request(method, path, body)
  local ok, v = pcall(json.decode, resp)
  if not ok then
    error("dingtalk-sim admin " .. method .. " " .. path .. " -> " .. status .. ": " .. tostring(resp), 2)
  end
  return v, status
end

function Sim:stats() return (self:admin("GET", "/_sim/stats")) end
function Sim:reset(all) return (self:admin("POST", "/_sim/reset", { all = all and true or false })) end
function Sim:script(t) return (self:admin("POST", "/_sim/script", t)) end
function Sim:config(t) return (self:admin("POST", "/_sim/config", t)) end
function Sim:set_robot(t) return (self:admin("POST", "/_sim/robot", t)) end
function Sim:set_app(t) return (self:admin("POST", "/_sim/app", t)) end
function Sim:age(seconds) return (self:admin("POST", "/_sim/age", { seconds = seconds })) end
function Sim:key(k)
  local v, status = self:admin("GET", "/_sim/key?key=" .. k:gsub("[^%w%-_.~]", function(c)
    return string.format("%%%02X", c:byte())
  end))
  if status == 404 then return nil end
  return v
end
-- The views of many keys in one call: { [key] = view } for the keys the
-- simulator knows (GET /_sim/key's answer each), the others absent.
function Sim:keys(list)
  local out = {}
  for i = 1, #list, 5000 do
    local part = {}
    for j = i, math.min(i + 4999, #list) do part[#part + 1] = list[j] end
    local v, status = self:admin("POST", "/_sim/keys", { keys = part })
    if status ~= 200 then error("dingtalk-sim admin POST /_sim/keys -> " .. status .. ": " .. json.encode(v), 2) end
    for k, view in pairs(v.keys) do out[k] = view end
  end
  return out
end
function Sim:expire_tokens(new_static)
  local v = self:admin("POST", "/_sim/expire_tokens", { static_token = new_static })
  if new_static then self.token = new_static end
  return v
end
function Sim:seed_keys(count, cid, robot)
  local v = self:admin("POST", "/_sim/seed_keys", {
    openConversationId = cid or "cidSimSeed", robotCode = robot or self.robot, count = count or 1 })
  return v.keys
end
-- A fresh access token through the real API.
function Sim:fetch_token(key, secret)
  local status, body = self:request("POST", "/v1.0/oauth2/accessToken",
    { appKey = key or self.app_key, appSecret = secret or self.app_secret })
  if status ~= 200 then error("token fetch failed: " .. status .. " " .. body, 2) end
  return json.decode(body).accessToken
end
-- Send a message through the real API; returns its processQueryKey.
function Sim:send(cid, robot, token)
  local status, body = self:request("POST", "/v1.0/robot/groupMessages/send", {
    msgKey = "sampleText", msgParam = '{"content":"hello from the spec"}',
    openConversationId = cid or "cidSimSpec", robotCode = robot or self.robot,
  }, { ["x-acs-dingtalk-access-token"] = token or self.token })
  if status ~= 200 then error("send failed: " .. status .. " " .. body, 2) end
  return json.decode(body).processQueryKey
end

--- Before each test: the server's state and settings back to a clean
-- start (no QPS limit, no latency, no fault) and no token cached in this
-- Lua state (dingtalk.recall.token), as a fresh process would have.
function Sim:fresh()
  self:reset()
  self:config { qps = 0, latency = 0, faults = "" }
  require("dingtalk.recall.token").clear_cache()
end

function Sim:stop()
  if self.stopped then return end
  self.stopped = true
  if self.http then self.http:close() end
  if cert_holder[1] == self then cert_holder[1] = nil end
  local pid = trim(shell.read_file(self.state_dir .. "/nginx.pid"))
  launch(self.cmd, { "--stop", "--state-dir", self.state_dir })
  if pid:match("^%d+$") and sim.alive(pid) then -- belt and braces: the master we started must be gone
    sh("kill -TERM " .. pid .. "; sleep 0.5")
    if sim.alive(pid) then sh("kill -KILL " .. pid) end
  end
  if self.owns_state and not self.keep_state then
    sh("rm -rf " .. sh_quote(self.state_dir))
  end
  if self.socket_dir then sh("rm -rf " .. sh_quote(self.socket_dir)) end
  if self.claimed then ports.release(self.port) end
end

-- Lua 5.2+ run __gc on tables; 5.1/LuaJIT need a proxy userdata.
local function attach_gc(obj)
  local function fin() pcall(Sim.stop, obj) end
  if _VERSION == "Lua 5.1" and newproxy then -- luacheck: ignore
    local proxy = newproxy(true) -- luacheck: ignore
    getmetatable(proxy).__gc = fin
    rawset(obj, "__gc_proxy", proxy)
  else
    setmetatable(obj, { __index = Sim, __gc = fin })
  end
end

---------------------------------------------------------------------------
-- start
---------------------------------------------------------------------------
-- opts: tls, qps, latency, faults, seed, workers, wrong_host_cert, token_ttl,
-- apps = {"KEY:SECRET", ...}, robots = {"CODE[:APP]", ...}, token, port,
-- state_dir, keep_state, cert, key, args = {extra CLI args}, curl_timeout.
function sim.start(opts)
  opts = opts or {}
  local root = repo_root()
  local script = root .. "bin/dingtalk-sim"
  local cmd = interpreter() .. " " .. sh_quote(script)
  local state_dir = opts.state_dir
  local owns = false
  if not state_dir then
    state_dir = trim(sh("mktemp -d ${TMPDIR:-/tmp}/dingtalk-sim-spec.XXXXXX"))
    owns = true
  end
  -- the admin API through a unix socket (sun_path is short: a folder of its
  -- own under $TMPDIR when the state dir's path is too long)
  local socket, socket_dir = state_dir .. "/sim.sock", nil
  if #socket > 100 then
    socket_dir = trim(sh("mktemp -d ${TMPDIR:-/tmp}/dtr-sim.XXXXXX"))
    socket = socket_dir .. "/sim.sock"
  end
  local args = { "--state-dir", state_dir, "--socket", socket }
  local generated = opts.tls and not opts.cert and owns
  local lent = generated and cert_cache and not cert_holder[1]
  if lent then put_certs(state_dir) end
  local function add(...) for _, a in ipairs({ ... }) do args[#args + 1] = a end end
  if opts.tls then add("--tls") end
  if opts.cert then add("--cert", opts.cert, "--key", opts.key) end
  if opts.wrong_host_cert then add("--wrong-host-cert") end
  if opts.qps then add("--qps", tostring(opts.qps)) end
  if opts.latency then add("--latency", tostring(opts.latency)) end
  if opts.faults then add("--faults", opts.faults) end
  if opts.seed then add("--seed", tostring(opts.seed)) end
  if opts.workers then add("--workers", tostring(opts.workers)) end
  if opts.token_ttl then add("--token-ttl", tostring(opts.token_ttl)) end
  if opts.token then add("--token", opts.token) end
  for _, a in ipairs(opts.apps or {}) do add("--app", a) end
  for _, r in ipairs(opts.robots or {}) do add("--robot", r) end
  for _, a in ipairs(opts.args or {}) do add(a) end

  -- a port no other suite running side by side holds (spec/helpers/ports.lua)
  local out, rc, port
  for _ = 1, 12 do
    port = opts.port or ports.claim()
    local argv = { "--port", tostring(port) }
    for _, a in ipairs(args) do argv[#argv + 1] = a end
    out, rc = launch(cmd, argv)
    if rc == 0 then break end
    if not opts.port then ports.release(port) end
    if rc ~= 3 or opts.port then break end -- 3 = address in use (by someone else): another port
  end
  if rc ~= 0 then
    if owns then sh("rm -rf " .. sh_quote(state_dir)) end
    if socket_dir then sh("rm -rf " .. sh_quote(socket_dir)) end
    error("dingtalk-sim failed to start (rc " .. tostring(rc) .. "):\n" .. out, 2)
  end
  local line = out:match("(dingtalk%-sim listening on [^\n]*)")
  if generated and not lent and not cert_holder[1] then
    lent = keep_certs(state_dir) ~= nil
  end
  local s = setmetatable({
    port = port,
    claimed = not opts.port,
    state_dir = state_dir,
    owns_state = owns,
    keep_state = opts.keep_state,
    cmd = cmd,
    line = line,
    tls = opts.tls and true or false,
    url = (opts.tls and "https://localhost:" or "http://127.0.0.1:") .. port,
    ca_file = line and line:match(" ca=(%S+)") or nil,
    socket = line and line:match(" socket=(%S+)") or nil,
    socket_dir = socket_dir,
    token = opts.token or "sim-static-token",
    app_key = "dingsimappkey",
    app_secret = "sim-app-secret",
    robot = "dingsimrobot",
    curl_timeout = opts.curl_timeout,
  }, Sim)
  if lent then cert_holder[1] = s end
  if opts.apps and opts.apps[1] then
    s.app_key, s.app_secret = opts.apps[1]:match("^([^:]+):(.+)$")
  end
  if opts.robots and opts.robots[1] then s.robot = opts.robots[1]:match("^([^:]+)") end

  -- watchdog: stop nginx (and drop the state dir) once this Lua process is gone
  local pidfile = state_dir .. "/nginx.pid"
  local lp = own_pid()
  -- (a zombie counts as gone: its state after the name in /proc/PID/stat is Z)
  local wd = "while kill -0 " .. lp .. " 2>/dev/null && [ -f " .. sh_quote(pidfile) .. " ]; do " ..
    "st=; read -r st </proc/" .. lp .. "/stat 2>/dev/null; case \"$st\" in *') Z '*) break;; esac; " ..
    "sleep 1; done; " ..
    "if [ -f " .. sh_quote(pidfile) .. " ]; then " .. cmd .. " --stop --state-dir " .. sh_quote(state_dir) ..
    " >/dev/null 2>&1; " ..
    ((owns and not opts.keep_state) and ("rm -rf " .. sh_quote(state_dir) .. "; ") or "") .. "fi; " ..
    (socket_dir and ("rm -rf " .. sh_quote(socket_dir)) or ":")
  -- its own session (setsid), so that stopping the test's process group
  -- (Ctrl-C on make test) does not take the watchdog with it
  os.execute("if command -v setsid >/dev/null 2>&1; then setsid nohup sh -c " .. sh_quote(wd) ..
    " </dev/null >/dev/null 2>&1 & else nohup sh -c " .. sh_quote(wd) .. " </dev/null >/dev/null 2>&1 & fi")
  attach_gc(s)
  return s
end

return sim
