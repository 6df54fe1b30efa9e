-- spec/helpers/redis.lua: a throw-away redis-server on a random loopback port.
--
--   local redis = require "spec.helpers.redis"
--   if redis.available() then
--     local r = redis.start()          -- r.port, r.url ("redis://127.0.0.1:P/0"), r.dir
--     ...  r:cli("DBSIZE")  r:flush()
--     r:stop()                         -- always, in teardown
--   end
--   redis.start { args = { "--requirepass", "pw" }, auth = { "-a", "pw" } }
--     extra server arguments, and the redis-cli arguments that authenticate
--   r:kill()  r:restart()              -- down (SIGKILL) and up again on the same port
--
-- The server keeps nothing on disk (--save "" --appendonly no) and lives
-- in a temporary directory; a watchdog shell stops it and removes the
-- directory when the Lua process that started it is gone, so a failing
-- spec leaks nothing.  Plain Lua 5.1-5.4 and LuaJIT, io/os only.
local M = {}

local shell = require "spec.helpers.shell"
local sh_quote, sh, trim = shell.quote, shell.sh, shell.trim



-- redis-server and redis-cli are not what a sanitizer run (make asan
-- preloads its runtime) is about: they run without the preload.
local ENV = "env -u LD_PRELOAD "

-- a port no other suite running side by side holds (another redis there
-- would answer our PING): spec/helpers/ports.lua
local function rand_port() return require("spec.helpers.ports").claim() end

--- Why the Redis specs cannot run here ("redis-server or luasocket
-- missing": the library's Redis client needs luasocket), or nil.
function M.missing()
  if M.available() and pcall(require, "socket") then return nil end
  return "redis-server or luasocket missing"
end

--- try_start([opts]) -> server | nil, why: M.start when Redis can run here.
function M.try_start(opts)
  local why = M.missing()
  if why then return nil, why end
  return M.start(opts)
end

--- Is redis-server (and redis-cli) installed?
function M.available()
  local _, rc = sh("command -v redis-server && command -v redis-cli")
  return rc == 0
end

local Server = {}
Server.__index = Server

--- Runs redis-cli against this server; returns its output (trimmed) and exit code.
function Server:cli(...)
  local args = {}
  for i, a in ipairs { ... } do args[i] = sh_quote(a) end
  local auth = {}
  for i, a in ipairs(self.auth or {}) do auth[i] = sh_quote(a) end
  if #auth > 0 then auth[#auth + 1] = "--no-auth-warning" end
  local out, rc = sh(ENV .. "redis-cli -h 127.0.0.1 -p " .. self.port .. " " .. table.concat(auth, " ") .. " " ..
    table.concat(args, " "))
  return trim(out), rc
end

function Server:flush()
  return self:cli("FLUSHALL")
end

function Server:stop()
  if self.stopped then return end
  self.stopped = true
  local f = io.open(self.dir .. "/redis.pid", "r")
  local pid = f and f:read("*l")
  if f then f:close() end
  if pid and pid:match("^%d+$") then
    sh("kill " .. pid .. "; for i in 1 2 3 4 5 6 7 8 9 10; do kill -0 " .. pid ..
      " 2>/dev/null || break; sleep 0.1; done; kill -9 " .. pid .. " 2>/dev/null; true")
  end
  sh("rm -rf " .. sh_quote(self.dir))
end

local function launch(dir, port, extra)
  return sh(ENV .. "redis-server --port " .. port .. " --bind 127.0.0.1 --save '' --appendonly no" ..
    " --daemonize yes --pidfile " .. sh_quote(dir .. "/redis.pid") .. " --dir " .. sh_quote(dir) ..
    " --logfile " .. sh_quote(dir .. "/redis.log") .. extra)
end

local function read_pid(dir)
  local f = io.open(dir .. "/redis.pid", "r")
  local pid = f and f:read("*l")
  if f then f:close() end
  return pid and pid:match("^%d+$") and pid or nil
end

--- Kills the server (SIGKILL) and waits until it is gone; the directory stays.
function Server:kill()
  local pid = read_pid(self.dir)
  if pid then
    sh("kill -9 " .. pid .. "; for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do kill -0 " .. pid ..
      " 2>/dev/null || break; sleep 0.1; done; true")
  end
end

--- Starts the server again on the same port (after kill); raises when it cannot.
function Server:restart()
  for _ = 1, 30 do
    sh("rm -f " .. sh_quote(self.dir .. "/redis.pid"))
    local _, rc = launch(self.dir, self.port, self.extra)
    if rc == 0 then
      for _ = 1, 50 do
        local pong = self:cli("PING")
        if pong == "PONG" then return true end
        sh("sleep 0.1")
      end
    end
    sh("sleep 0.2")
  end
  error("redis-server did not start again on port " .. self.port, 2)
end

--- redis.start([opts]) -> server (raises when it cannot start one)
function M.start(opts)
  opts = opts or {}
  local extra = ""
  for _, a in ipairs(opts.args or {}) do extra = extra .. " " .. sh_quote(a) end
  local dir = trim(sh("mktemp -d ${TMPDIR:-/tmp}/dingtalk-redis-spec.XXXXXX"))
  local lua_pid = shell.own_pid()
  local last
  for _ = 1, 10 do
    local port = rand_port()
    sh("rm -f " .. sh_quote(dir .. "/redis.pid"))
    local out, rc = launch(dir, port, extra)
    if rc == 0 then
      local s = setmetatable({ port = port, dir = dir, url = "redis://127.0.0.1:" .. port .. "/0", extra = extra,
        auth = opts.auth }, Server)
      for _ = 1, 50 do
        local pong = s:cli("PING")
        if pong == "PONG" then
          local pidfile = sh_quote(dir .. "/redis.pid")
          local wd = "while kill -0 " .. lua_pid .. " 2>/dev/null && [ -f " .. pidfile .. " ]; do sleep 1; done; " ..
            "if [ -f " .. pidfile .. " ]; then kill $(cat " .. pidfile .. ") 2>/dev/null; sleep 0.5; rm -rf " ..
            sh_quote(dir) .. "; fi"
          os.execute("nohup sh -c " .. sh_quote(wd) .. " </dev/null >/dev/null 2>&1 &")
          return s
        end
        sh("sleep 0.1")
      end
    end
    local log = io.open(dir .. "/redis.log", "r")
    last = (log and log:read("*a") or "") .. out
    if log then log:close() end
    -- a port already taken: kill what may have started and try another
    local f = io.open(dir .. "/redis.pid", "r")
    local pid = f and f:read("*l")
    if f then f:close() end
    if pid and pid:match("^%d+$") then sh("kill " .. pid) end
  end
  sh("rm -rf " .. sh_quote(dir))
  error("redis-server did not start:\n" .. tostring(last), 2)
end

return M
