-- dingtalk_sim.main: the `dingtalk-sim` command (start/stop the DingTalk API
-- simulator: nginx + the lua module serving dingtalk_sim.server).
--   local code = require("dingtalk_sim.main").main(arg)   -- exit status
-- Pure Lua (io/os); runs under Lua 5.1-5.4 and LuaJIT.  No side effects at
-- require.
local proc = require "dingtalk_sim.proc"
local conf = require "dingtalk_sim.conf"

local M = {}

M.USAGE = [[
usage: dingtalk-sim --port N [options]
       dingtalk-sim --stop --state-dir DIR

Starts a DingTalk OpenAPI simulator (access token, group message send and
recall) on loopback, served by nginx with the lua module.

options:
  --port N             port to listen on (required); 0: a free port the
                       kernel gives (the line printed names it)
  --host H             127.0.0.1 (default), ::1 or localhost; loopback only
  --tls                serve HTTPS; without --cert/--key a test CA (ca.pem) and a
                       server cert for localhost/127.0.0.1/::1 are generated
  --cert F --key F     use this certificate and key for --tls
  --wrong-host-cert    serve the generated cert for DNS:wrong.example only
  --workers N          nginx worker processes (default 1)
  --qps N              per-app limit on the recall API per second (0 = off)
  --latency S          seconds added before each API answer (fractions ok)
  --faults SPEC        random faults, e.g. system_error=0.1,reset=0.05
  --seed N             seed for the random faults and ids
  --app KEY:SECRET     an app (repeatable; default dingsimappkey:sim-app-secret)
  --robot CODE[:APP]   a robot (repeatable; default dingsimrobot of the first app)
  --token TOKEN        static always-valid token of the first app (default sim-static-token)
  --token-ttl S        lifetime of issued tokens in seconds (default 7200)
  --state-dir DIR      where nginx.conf, logs, pid and certs go (default: mktemp -d)
  --socket PATH        also serve plain HTTP on this unix socket (the admin
                       API of a --tls simulator without TLS; at most 100 bytes)
  --foreground         run nginx in the foreground (daemon off)
  --nginx PATH         nginx binary (default $DINGTALK_SIM_NGINX or nginx)
  --nginx-modules DIR  directory of ndk_http_module.so and ngx_http_lua_module.so
                       (default /usr/lib/nginx/modules)
  --stop               stop the simulator of --state-dir
  --help               this text

faults: system_error throttle throttle_api quota invalid_token capitalised reset
  html ban redirect malformed truncated huge trickle slow reset_after failed_key

nginx starts without the caller's LUA_PATH/LUA_CPATH/LUA_INIT.

Prints one line: dingtalk-sim listening on http(s)://HOST:PORT state=DIR [ca=DIR/ca.pem]
  [socket=PATH]
Exit status: 0 started (or stopped), 1 failed, 2 bad usage, 3 the port is in use.
]]

local die, quote, run, trim = proc.die, proc.quote, proc.run, proc.trim

---------------------------------------------------------------------------
-- arguments
---------------------------------------------------------------------------
local function parse(argv, stdout, stderr)
  local opt = { stdout = stdout, stderr = stderr, -- where the line, --help and errors go
    apps = {}, robots = {}, workers = 1, qps = 0, latency = 0, token_ttl = 7200,
    host = "127.0.0.1", modules = "/usr/lib/nginx/modules" }
  local args = {}
  for k = 1, #argv do args[k] = argv[k] end
  local i = 1
  local function need_value(name)
    local v = args[i + 1]
    if v == nil then die("option " .. name .. " needs a value (see --help)", 2) end
    i = i + 1
    return v
  end
  local function number_opt(name, min)
    local v = tonumber(need_value(name))
    if not v or v < min then die("option " .. name .. " needs a number >= " .. min, 2) end
    return v
  end
  while i <= #args do
    local a = args[i]
    local name, inline = a:match("^(%-%-[%w%-]+)=(.*)$")
    if name then
      a = name
      table.insert(args, i + 1, inline)
    end
    if a == "--help" or a == "-h" then
      opt.stdout:write(M.USAGE)
      proc.finish(0)
    elseif a == "--port" then
      opt.port = number_opt(a, 0)
      if opt.port > 65535 or opt.port ~= math.floor(opt.port) then die("bad --port", 2) end
    elseif a == "--host" then opt.host, opt.host_given = need_value(a), true
    elseif a == "--tls" then opt.tls = true
    elseif a == "--cert" then opt.cert = need_value(a)
    elseif a == "--key" then opt.key = need_value(a)
    elseif a == "--wrong-host-cert" then opt.wrong_host = true
    elseif a == "--workers" then opt.workers = math.floor(number_opt(a, 1))
    elseif a == "--qps" then opt.qps = math.floor(number_opt(a, 0))
    elseif a == "--latency" then opt.latency = number_opt(a, 0)
    elseif a == "--faults" then opt.faults = need_value(a)
    elseif a == "--seed" then opt.seed = math.floor(number_opt(a, -math.huge))
    elseif a == "--app" then
      local k, s = need_value(a):match("^([^:]+):(.+)$")
      if not k then die("--app wants KEY:SECRET", 2) end
      opt.apps[#opt.apps + 1] = { key = k, secret = s }
    elseif a == "--robot" then
      local v = need_value(a)
      local c, app = v:match("^([^:]+):(.+)$")
      if not c then c = v end
      if c == "" then die("--robot wants CODE[:APPKEY]", 2) end
      opt.robots[#opt.robots + 1] = { code = c, app = app }
    elseif a == "--token" then opt.token = need_value(a)
    elseif a == "--token-ttl" then opt.token_ttl = math.floor(number_opt(a, 1))
    elseif a == "--state-dir" then opt.state_dir = need_value(a)
    elseif a == "--socket" then opt.socket = need_value(a)
    elseif a == "--foreground" then opt.foreground = true
    elseif a == "--nginx" then opt.nginx = need_value(a)
    elseif a == "--nginx-modules" then opt.modules = need_value(a)
    elseif a == "--stop" then opt.stop = true
    else
      die("unknown option " .. a .. " (see --help)", 2)
    end
    i = i + 1
  end
  opt.nginx = opt.nginx or os.getenv("DINGTALK_SIM_NGINX") or "nginx"
  return opt
end

local function check(opt)
  if opt.port == nil then die("--port N is required (see --help)", 2) end
  local host = opt.host
  if host == "localhost" then host = "127.0.0.1" end
  if not (host:match("^127%.%d+%.%d+%.%d+$") or host == "::1" or host == "[::1]") then
    die("refusing to listen on non-loopback host " .. opt.host .. " (use 127.0.0.1 or ::1)", 2)
  end
  if host == "[::1]" then host = "::1" end
  if (opt.cert and not opt.key) or (opt.key and not opt.cert) then die("--cert and --key go together", 2) end
  if (opt.cert or opt.wrong_host) and not opt.tls then opt.tls = true end
  if opt.wrong_host and opt.cert then die("--wrong-host-cert uses the generated certs; drop --cert/--key", 2) end
  if opt.socket then
    -- sun_path holds 108 bytes; nginx wants room for its own suffixes
    if #opt.socket > 100 or opt.socket == "" or opt.socket:find("[%z\1-\31;{}\"'\\%s]") then
      die("--socket wants a path of at most 100 bytes without spaces, quotes, ';' or braces", 2)
    end
  end
  local app_keys = {}
  for _, a in ipairs(opt.apps) do app_keys[a.key] = true end
  if #opt.apps == 0 then
    opt.apps[1] = { key = "dingsimappkey", secret = "sim-app-secret" }
    app_keys.dingsimappkey = true
  end
  for _, r in ipairs(opt.robots) do
    r.app = r.app or opt.apps[1].key
    if not app_keys[r.app] then die("--robot " .. r.code .. ": unknown app " .. r.app .. " (add it with --app)", 2) end
  end
  if #opt.robots == 0 then opt.robots[1] = { code = "dingsimrobot", app = opt.apps[1].key } end
  if opt.faults then
    for item in opt.faults:gmatch("[^,]+") do
      if not (item:match("^%s*[%w_]+%s*=%s*[%d%.eE%-]+%s*$") or item:match("^%s*[%w_]+%s*$")) then
        die("bad --faults item '" .. item .. "' (want name=rate,...)", 2)
      end
    end
  end
  return host
end

---------------------------------------------------------------------------
-- --stop
---------------------------------------------------------------------------
local function stop(opt)
  if not opt.state_dir then die("--stop needs --state-dir DIR", 2) end
  local dir = proc.abspath(opt.state_dir)
  local pidfile = dir .. "/nginx.pid"
  if not proc.exists(pidfile) and proc.exists(dir .. "/nginx.conf") then
    -- a simulator that is still starting writes its pid file a moment after it listens
    for _ = 1, 40 do
      if (proc.read_file(pidfile) or "") ~= "" then break end
      proc.sleep(0.05)
    end
  end
  local pid = trim(proc.read_file(pidfile) or "")
  if not pid:match("^%d+$") then
    opt.stdout:write("dingtalk-sim: not running (no pid in " .. dir .. "/nginx.pid)\n")
    return 0
  end
  if proc.pid_alive(pid) then
    run("kill -TERM " .. pid .. " 2>/dev/null")
    -- wait up to 10 s, then SIGKILL
    local gone = false
    for i = 1, 500 do
      if not proc.pid_alive(pid) then gone = true break end
      proc.sleep(i < 50 and 0.01 or 0.05)
    end
    if not gone then
      run("kill -KILL " .. pid .. " 2>/dev/null")
      run("pkill -KILL -P " .. pid .. " 2>/dev/null")
      proc.sleep(0.2)
    end
  end
  os.remove(pidfile)
  opt.stdout:write("dingtalk-sim: stopped (" .. dir .. ")\n")
  return 0
end

---------------------------------------------------------------------------
-- start
---------------------------------------------------------------------------
--- The folder holding dingtalk_sim/ (for nginx's lua_package_path): where
-- this module was loaded from.
local function lua_dir()
  local src = debug.getinfo(1, "S").source
  if src:sub(1, 1) == "@" then
    local d = proc.abspath(src:sub(2)):match("^(.*)/dingtalk_sim/main%.lua$")
    if d and proc.exists(d .. "/dingtalk_sim/server.lua") then return d end
  end
  local searchpath = rawget(package, "searchpath")
  local f = searchpath and searchpath("dingtalk_sim.server", package.path)
  if f then return (proc.abspath(f):match("^(.*)/dingtalk_sim/server%.lua$")) end
  die("cannot find dingtalk_sim/server.lua (next to dingtalk_sim/main.lua or on package.path)")
end

local function state_dir(opt)
  local dir = opt.state_dir
  if not dir then
    dir = trim(proc.capture("mktemp -d ${TMPDIR:-/tmp}/dingtalk-sim.XXXXXX"))
    if dir == "" then die("mktemp -d failed") end
  else
    if not proc.exists(dir) and not run("mkdir -p " .. quote(dir)) then die("cannot create " .. dir) end
    dir = proc.abspath(dir)
  end
  dir = dir:gsub("/+$", "")
  local old_pid = proc.nginx_pid(dir)
  if old_pid then
    die("a simulator is already running with state dir " .. dir .. " (pid " .. old_pid .. "); use --stop")
  end
  if not proc.exists(dir .. "/tmp") then run("mkdir -p " .. quote(dir .. "/tmp")) end
  return dir
end

-- Waits for the port to answer and for the pid file (nginx listens before
-- it daemonises but writes its pid file after), so that --stop always
-- finds the pid once we have reported success.
local function wait_up(dir, host, opt)
  local ok
  if proc.listening(host, opt.port) ~= nil then -- in-process or bash: probes every 20 ms for 5 s
    ok = false
    for _ = 1, 250 do
      if proc.listening(host, opt.port) then ok = true break end
      proc.sleep(0.02)
    end
  else
    local shown = host == "::1" and "[::1]" or host
    ok = run("sh -c " .. quote("for i in $(seq 50); do curl -s -o /dev/null " ..
      (opt.tls and "-k https://" or "http://") .. shown .. ":" .. opt.port ..
      "/_sim/ping && exit 0; sleep 0.1; done; exit 1"))
  end
  if not ok then return false end
  for _ = 1, 250 do
    if proc.nginx_pid(dir) then return true end
    proc.sleep(0.02)
  end
  return false
end

local function start_failed(dir, log)
  local pid = trim(proc.read_file(dir .. "/nginx.pid") or "")
  if pid:match("^%d+$") then run("kill -TERM " .. pid .. " 2>/dev/null") end
  local text = proc.tail(log, 20)
  if text == "" or log ~= dir .. "/error.log" and not text:match("emerg") then
    local elog = proc.tail(dir .. "/error.log", 20)
    text = text .. (elog ~= "" and ("\n" .. elog) or "")
  end
  local code = text:match("Address already in use") and 3 or 1
  die("nginx failed to start (state dir " .. dir .. "):\n" .. text, code)
end

-- One attempt on opt.port: writes nginx.conf, starts nginx.
local function start_once(opt, dir, host, ldir, line)
  if proc.listening(host, opt.port) then
    die("port " .. opt.port .. " on " .. host .. " is in use (Address already in use)", 3)
  end
  if opt.socket and proc.exists(opt.socket) then
    -- a socket file left by a simulator that is gone (state_dir refused a
    -- running one) or by a failed attempt: nginx cannot bind over it
    if not run("test -S " .. quote(opt.socket)) then die("--socket " .. opt.socket .. " exists and is not a socket") end
    os.remove(opt.socket)
  end
  conf.nginx_conf(dir, opt, host, ldir)
  os.remove(dir .. "/error.log")
  local nginx_cmd = proc.CLEAN_ENV .. quote(opt.nginx) .. " -p " .. quote(dir .. "/") ..
    " -c " .. quote(dir .. "/nginx.conf") .. " -e " .. quote(dir .. "/error.log")
  if opt.foreground then
    local p = io.popen(nginx_cmd .. " </dev/null 2>&1", "r")
    if not wait_up(dir, host, opt) then
      p:close()
      start_failed(dir, dir .. "/error.log")
    end
    opt.stdout:write(line(), "\n")
    opt.stdout:flush()
    for l in p:lines() do opt.stderr:write(l, "\n") end
    p:close()
    return 0
  end
  if not run(nginx_cmd .. " </dev/null >" .. quote(dir .. "/start.log") .. " 2>&1") then
    start_failed(dir, dir .. "/start.log")
  end
  if not wait_up(dir, host, opt) then start_failed(dir, dir .. "/start.log") end
  opt.stdout:write(line(), "\n")
  return 0
end

local function start(opt)
  local host = check(opt)
  local ldir = lua_dir()
  local dir = state_dir(opt)
  local ca_file
  if opt.tls and not opt.cert then
    conf.certs(dir)
    ca_file = dir .. "/ca.pem"
    local base = opt.wrong_host and "wrong-host" or "server"
    opt.cert, opt.key = dir .. "/" .. base .. ".pem", dir .. "/" .. base .. ".key"
  end
  if opt.cert then
    opt.cert, opt.key = proc.abspath(opt.cert), proc.abspath(opt.key)
    if not proc.exists(opt.cert) then die("no such certificate file " .. opt.cert) end
    if not proc.exists(opt.key) then die("no such key file " .. opt.key) end
  end
  conf.sim_config(dir, opt)
  if opt.socket then opt.socket = proc.abspath(opt.socket) end
  local function line()
    local shown = host == "::1" and "[::1]" or host
    return "dingtalk-sim listening on " .. (opt.tls and "https" or "http") .. "://" .. shown .. ":" .. opt.port ..
      " state=" .. dir .. (ca_file and (" ca=" .. ca_file) or "") .. (opt.socket and (" socket=" .. opt.socket) or "")
  end
  if opt.port ~= 0 then return start_once(opt, dir, host, ldir, line) end
  -- --port 0: a port the kernel gives; another program may take it between
  -- our probe and nginx's bind, so try a few
  local last
  for _ = 1, 10 do
    opt.port = proc.kernel_port(host)
    if not opt.port then die("cannot get a free port from the kernel (needs perl or lua-socket)") end
    local ok, err = pcall(start_once, opt, dir, host, ldir, line)
    if ok then return err end
    if type(err) ~= "table" or err.exit ~= 3 then error(err, 0) end
    last = err
  end
  error(last, 0)
end

--- main(argv[, streams]) -> exit status (0 ok, 1 failed, 2 usage, 3 port in use).
-- streams: { stdout = , stderr = }, anything with :write (and :flush), by
-- default io.stdout and io.stderr: a host (the spec helper) that starts a
-- simulator in-process reads the line it prints there.
function M.main(argv, streams)
  argv = argv or {}
  local stdout = streams and streams.stdout or io.stdout
  local stderr = streams and streams.stderr or io.stderr
  local ok, res = pcall(function()
    local opt = parse(argv, stdout, stderr)
    if opt.stop then return stop(opt) end
    return start(opt)
  end)
  if ok then return res or 0 end
  if type(res) == "table" and res.exit then
    if res.msg then stderr:write("dingtalk-sim: ", res.msg, "\n") end
    return res.exit
  end
  stderr:write("dingtalk-sim: ", tostring(res), "\n")
  return 1
end

return M
