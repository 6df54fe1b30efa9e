-- spec/helpers/nginx.lua: start and stop an nginx (Debian's nginx with the
-- lua module) on a random loopback port, with a generated nginx.conf in a
-- temporary prefix directory, for specs that run the client inside OpenResty.
--
--   local nginx = require "spec.helpers.nginx"
--   local ok, why = nginx.available()          -- pending(why) when not ok
--   local n = nginx.start {
--     workers = 1,
--     shared_dicts = { dingtalk_recall = "1m" },
--     trusted_ca = s.ca_file,                  -- lua_ssl_trusted_certificate
--     modules = { ortest = "return { ... }" },  -- Lua modules written to <prefix>/lua/
--     http = "...",                            -- extra http{} directives
--     init_worker = "lua code",                -- init_worker_by_lua_block
--     server = "location /x { ... }",          -- the server{} body (listen is added)
--     wrap = "valgrind --tool=callgrind",      -- a command nginx runs under (bench/)
--   }
--   local status, body, headers, seconds = n:request("POST", "/x", { body = "..." })
--                                              -- (in-process: LuaSocket)
--   local job = n:spawn("GET", "/slow")        -- a request in the background (the curl CLI)
--   local status2, body2, _, seconds2 = job:wait()
--   n:stop()                                   -- always, in teardown (idempotent)
--
-- Instead of the generated configuration, opts.conf(ctx) may return a whole
-- nginx.conf; ctx has port, prefix, root, lua_path, lua_cpath, modules_dir,
-- preamble (user, pid, error_log, load_module lines) and temp_paths (the
-- *_temp_path lines for http{}).
--
-- nginx's LuaJIT loads the Lua 5.1 ABI, so lua_package_cpath points at the
-- repository's build/5.1/?.so; the helper builds it (make LUA_VERSION=5.1)
-- when it is missing.  Plain Lua (5.1-5.4, LuaJIT), io/os, LuaSocket and
-- the curl CLI (spawn only).  A watchdog stops nginx when the Lua process
-- that started it is gone.
local M = {}

local shell = require "spec.helpers.shell"
local sh_quote, sh, trim = shell.quote, shell.sh, shell.trim
local exists, write_file = shell.exists, shell.write_file
M.sh_quote = sh_quote

M.sh = sh


local read_file = shell.read -- nil when it cannot be read
M.read_file = read_file


-- The repository root, absolute, with a trailing slash.
M.root = shell.repo_root()

M.modules_dir = os.getenv("DINGTALK_TEST_NGINX_MODULES") or "/usr/lib/nginx/modules"

local binary -- false: looked for, none
local function nginx_binary()
  local env = os.getenv("DINGTALK_TEST_NGINX") or os.getenv("DINGTALK_SIM_NGINX")
  if env and env ~= "" then return env end
  if binary == nil then
    local out = trim(sh("command -v nginx || ls /usr/sbin/nginx"))
    binary = out ~= "" and not out:match("No such file") and out:match("[^\n]+") or false
  end
  return binary or nil
end

--- available() -> true | false, reason: nginx, the lua module and
-- lua-resty-core (which every cosocket-era API here relies on).  Asked
-- once per process.
local verdict
function M.available()
  if not verdict then verdict = { M.check() } end
  return verdict[1], verdict[2]
end

function M.check()
  local bin = nginx_binary()
  if not bin then return false, "nginx is not installed (apt-get install nginx libnginx-mod-http-lua)" end
  for _, m in ipairs { "ndk_http_module.so", "ngx_http_lua_module.so" } do
    if not exists(M.modules_dir .. "/" .. m) then
      return false, "the nginx lua module is missing: " .. M.modules_dir .. "/" .. m ..
        " (apt-get install libnginx-mod-http-lua)"
    end
  end
  if not exists("/usr/share/lua/5.1/resty/core.lua") and not os.getenv("DINGTALK_TEST_NGINX") then
    return false, "lua-resty-core is not installed (apt-get install lua-resty-core)"
  end
  if not trim(sh("command -v curl")):match("curl") then return false, "the curl CLI is not installed" end
  return true
end

--- The 5.1-ABI core that nginx's LuaJIT loads; built when missing.
function M.ensure_core()
  local so = M.root .. "build/5.1/dingtalk/recall/core.so"
  if not exists(so) then
    local out, rc = sh("cd " .. sh_quote(M.root) .. " && make --no-print-directory LUA_VERSION=5.1 all")
    if rc ~= 0 or not exists(so) then error("cannot build the 5.1 core for nginx:\n" .. out, 2) end
  end
  return so
end

local lua_pid = shell.own_pid
local ports = require "spec.helpers.ports"
local proc = require "dingtalk_sim.proc" -- CLEAN_ENV: nginx without the caller's LUA_PATH/LUA_CPATH

local function nq(s) return '"' .. tostring(s):gsub("\\", "\\\\"):gsub('"', '\\"') .. '"' end
M.nq = nq

local function lines(v)
  if v == nil then return "" end
  if type(v) == "table" then return table.concat(v, "\n") end
  return v
end

---------------------------------------------------------------------------
-- the server object
---------------------------------------------------------------------------
local Server = {}
Server.__index = Server

-- The curl CLI's command for spawn().
local function curl_cmd(self, method, path, opts)
  opts = opts or {}
  local url = path:match("^https?://") and path or (self.url .. path)
  local c = "curl -sS -g --noproxy '*' -m " .. (opts.timeout or 60) .. " -X " .. method ..
    " -w '\\n__status=%{http_code} __time=%{time_total}'"
  if opts.dump_headers then c = c .. " -D " .. sh_quote(opts.dump_headers) end
  for k, v in pairs(opts.headers or {}) do c = c .. " -H " .. sh_quote(k .. ": " .. v) end
  if opts.body ~= nil then c = c .. " --data-binary @" .. sh_quote(opts.body_file) end
  return c .. " " .. sh_quote(url)
end

local function parse_curl(out, hfile)
  local body, status, secs = out:match("^(.*)\n__status=(%d+) __time=([%d%.]+)%s*$")
  local headers = {}
  local htext = hfile and read_file(hfile) or ""
  if hfile then os.remove(hfile) end
  for line in htext:gmatch("[^\r\n]+") do
    local k, v = line:match("^([^:]+):%s*(.*)$")
    if k then headers[k:lower()] = v end
  end
  if not status then return 0, out, headers, nil end
  return tonumber(status), body, headers, tonumber(secs)
end

local function prepare(opts)
  opts = opts or {}
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  if o.body ~= nil then
    o.body_file = os.tmpname()
    write_file(o.body_file, o.body)
  end
  o.dump_headers = os.tmpname()
  return o
end

--- request(method, path [, {body=, headers=, timeout=}]) -> status, body,
-- headers (lower-case names), seconds (client side); 0 and the error
-- when there is no answer.  In-process (LuaSocket): no child.
function Server:request(method, path, opts)
  opts = opts or {}
  local socket, http, ltn12 = require "socket", require "socket.http", require "ltn12"
  local url = path:match("^https?://") and path or (self.url .. path)
  local headers = {}
  for k, v in pairs(opts.headers or {}) do headers[k:lower()] = v end
  local source
  if opts.body ~= nil then
    headers["content-length"] = tostring(#opts.body)
    headers["content-type"] = headers["content-type"] or "application/x-www-form-urlencoded" -- as curl -d
    source = ltn12.source.string(opts.body)
  end
  local out = {}
  local t0 = socket.gettime()
  local ok, status, rheaders = http.request { url = url, method = method, headers = headers, source = source,
    sink = ltn12.sink.table(out), redirect = false,
    create = function()
      local c = socket.tcp()
      c:settimeout(opts.timeout or 60)
      return c
    end }
  local secs = socket.gettime() - t0
  if not ok then return 0, tostring(status), {}, nil end
  return status, table.concat(out), rheaders or {}, secs
end

--- spawn(method, path [, opts]) -> job: the same request, in the
-- background; job:wait([timeout]) -> what request() returns; job:done().
function Server:spawn(method, path, opts)
  local o = prepare(opts)
  local out = os.tmpname()
  local mark = out .. ".done"
  os.execute("(" .. curl_cmd(self, method, path, o) .. " >" .. sh_quote(out) .. " 2>&1; touch " ..
    sh_quote(mark) .. ") </dev/null >/dev/null 2>&1 &")
  local job = {}
  function job.done() return exists(mark) end
  function job.wait(_, timeout)
    local deadline = os.time() + (timeout or 60)
    while not exists(mark) do
      if os.time() > deadline then error("background request did not finish", 2) end
      require("socket").sleep(0.05)
    end
    local text = read_file(out) or ""
    os.remove(out)
    os.remove(mark)
    if o.body_file then os.remove(o.body_file) end
    return parse_curl(text, o.dump_headers)
  end
  return job
end

function Server:error_log()
  return read_file(self.prefix .. "/error.log") or ""
end

function Server:pid()
  return trim(read_file(self.prefix .. "/nginx.pid") or "")
end

--- Stops nginx (waits for it to exit) and removes the prefix.  Idempotent.
function Server:stop()
  if self.stopped then return end
  self.stopped = true
  local pid = self:pid()
  local rm = self.keep and "" or ("rm -rf " .. sh_quote(self.prefix))
  if pid:match("^%d+$") then
    sh("kill -TERM " .. pid .. " 2>/dev/null; for i in $(seq 100); do kill -0 " .. pid ..
      " 2>/dev/null || break; sleep 0.05; done; kill -KILL " .. pid .. " 2>/dev/null; " .. rm .. "; exit 0")
  elseif rm ~= "" then
    sh(rm)
  end
  if self.claimed then ports.release(self.port) end
end

---------------------------------------------------------------------------
-- configuration
---------------------------------------------------------------------------
local uid
local function context(port, prefix, opts)
  local root = M.root
  uid = uid or trim(sh("id -u"))
  local is_root = uid == "0"
  local ctx = {
    port = port, prefix = prefix, root = root, modules_dir = M.modules_dir,
    lua_path = prefix .. "/lua/?.lua;" .. root .. "lua/?.lua;" .. root .. "lua/?/init.lua;" .. root .. "?.lua;;",
    lua_cpath = root .. "build/5.1/?.so;;",
  }
  ctx.preamble = table.concat({
    is_root and "user root;" or "",
    "daemon on;",
    "master_process on;",
    "worker_processes " .. (opts.workers or 1) .. ";",
    "pid " .. nq(prefix .. "/nginx.pid") .. ";",
    "error_log " .. nq(prefix .. "/error.log") .. " " .. (opts.log_level or "warn") .. ";",
    "load_module " .. nq(M.modules_dir .. "/ndk_http_module.so") .. ";",
    "load_module " .. nq(M.modules_dir .. "/ngx_http_lua_module.so") .. ";",
  }, "\n")
  local temps = {}
  for _, t in ipairs { "client_body", "proxy", "fastcgi", "uwsgi", "scgi" } do
    temps[#temps + 1] = "  " .. t .. "_temp_path " .. nq(prefix .. "/tmp/" .. t) .. ";"
  end
  ctx.temp_paths = table.concat(temps, "\n")
  return ctx
end

local function generated_conf(ctx, opts)
  local c = {
    ctx.preamble,
    lines(opts.main),
    "events { worker_connections 1024; }",
    "http {",
    "  access_log off;",
    "  default_type application/json;",
    ctx.temp_paths,
    "  lua_package_path " .. nq(ctx.lua_path) .. ";",
    "  lua_package_cpath " .. nq(ctx.lua_cpath) .. ";",
    "  lua_socket_log_errors off;",
  }
  local dicts = {}
  for name in pairs(opts.shared_dicts or {}) do dicts[#dicts + 1] = name end
  table.sort(dicts)
  for _, name in ipairs(dicts) do
    c[#c + 1] = "  lua_shared_dict " .. name .. " " .. opts.shared_dicts[name] .. ";"
  end
  if opts.trusted_ca then
    c[#c + 1] = "  lua_ssl_trusted_certificate " .. nq(opts.trusted_ca) .. ";"
    c[#c + 1] = "  lua_ssl_verify_depth 3;"
  end
  c[#c + 1] = lines(opts.http)
  if opts.init then c[#c + 1] = "  init_by_lua_block {\n" .. opts.init .. "\n  }" end
  if opts.init_worker then c[#c + 1] = "  init_worker_by_lua_block {\n" .. opts.init_worker .. "\n  }" end
  c[#c + 1] = "  server {"
  c[#c + 1] = "    listen 127.0.0.1:" .. ctx.port .. (opts.reuseport and " reuseport" or "") .. ";"
  c[#c + 1] = lines(opts.server)
  c[#c + 1] = "  }"
  c[#c + 1] = "}"
  return table.concat(c, "\n") .. "\n"
end

-- "env K=V ..." for the nginx command (the workers read what `env K;` names).
local function env_prefix(env)
  if not env then return "" end
  local names = {}
  for k in pairs(env) do names[#names + 1] = k end
  table.sort(names)
  if #names == 0 then return "" end
  local parts = { "env" }
  for _, k in ipairs(names) do parts[#parts + 1] = sh_quote(k .. "=" .. env[k]) end
  return table.concat(parts, " ") .. " "
end

local function wait_port(port, tries)
  local socket = require "socket"
  for _ = 1, tries do
    local c = socket.tcp()
    c:settimeout(1)
    local ok = c:connect("127.0.0.1", port)
    c:close()
    if ok then return true end
    socket.sleep(0.05)
  end
  return false
end

--- start(opts) -> server (see the header).  Raises when nginx fails.
function M.start(opts)
  opts = opts or {}
  local ok, why = M.available()
  if not ok then error(why, 2) end
  M.ensure_core()
  local bin = nginx_binary()
  local prefix = trim(sh("d=$(mktemp -d ${TMPDIR:-/tmp}/dingtalk-nginx-spec.XXXXXX) && " ..
    "mkdir -p \"$d/tmp\" \"$d/lua\" && echo \"$d\""))
  for name, code in pairs(opts.modules or {}) do
    write_file(prefix .. "/lua/" .. name:gsub("%.", "/") .. ".lua", code)
  end
  local last
  for _ = 1, 12 do
    local port = opts.port or ports.claim() -- safe beside other suites (spec/helpers/ports.lua)
    local ctx = context(port, prefix, opts)
    local conf = opts.conf and opts.conf(ctx) or generated_conf(ctx, opts)
    write_file(prefix .. "/nginx.conf", conf)
    os.remove(prefix .. "/error.log")
    local out, rc = sh(proc.CLEAN_ENV .. env_prefix(opts.env) .. (opts.wrap and (opts.wrap .. " ") or "") ..
      sh_quote(bin) .. " -p " .. sh_quote(prefix .. "/") ..
      " -c " .. sh_quote(prefix .. "/nginx.conf") .. " -e " .. sh_quote(prefix .. "/error.log") .. " </dev/null")
    local log = read_file(prefix .. "/error.log") or ""
    if rc == 0 and wait_port(port, opts.wrap and 1200 or 100) then
      local s = setmetatable({
        port = port, prefix = prefix, url = "http://127.0.0.1:" .. port, keep = opts.keep, conf = conf,
        claimed = not opts.port,
      }, Server)
      -- watchdog: stop nginx once the Lua process that started it is gone
      local pidfile = prefix .. "/nginx.pid"
      -- (a zombie counts as gone: kill -0 still reaches it)
      local lp = lua_pid()
      -- (builtins but sleep: one child every 2 s)
      local wd = "while kill -0 " .. lp .. " 2>/dev/null && { st=; read -r st </proc/" .. lp .. "/stat 2>/dev/null; " ..
        "case \"$st\" in *') Z '*) false;; *) true;; esac; } && [ -f " .. sh_quote(pidfile) .. " ]; " ..
        "do sleep 2; done; " ..
        "if [ -f " .. sh_quote(pidfile) .. " ]; then kill -TERM $(cat " .. sh_quote(pidfile) .. ") 2>/dev/null; " ..
        (opts.keep and "" or ("sleep 1; rm -rf " .. sh_quote(prefix) .. "; ")) .. "fi"
      -- its own session (setsid), so that a runner killing the test's
      -- process group does not take the watchdog with it
      os.execute("if command -v setsid >/dev/null 2>&1; then setsid nohup sh -c " .. sh_quote(wd) ..
        " </dev/null >/dev/null 2>&1 & else nohup sh -c " .. sh_quote(wd) .. " </dev/null >/dev/null 2>&1 & fi")
      return s
    end
    local pid = trim(read_file(prefix .. "/nginx.pid") or "")
    if pid:match("^%d+$") then sh("kill -TERM " .. pid) end
    last = out .. "\n" .. log
    if not opts.port then ports.release(port) end
    if opts.port or not last:match("Address already in use") then break end
  end
  if not opts.keep then sh("rm -rf " .. sh_quote(prefix)) end
  error("nginx failed to start:\n" .. tostring(last), 2)
end

return M
