-- spec/helpers/redis.lua: a throw-away redis-server on a random loopback port.
--
--   local redis = require "spec.helpers.redis"
--   if redis.available() then
--     local r = redis.start()          -- r.port, r.url ("redis://127.0.0.1:P/0"), r.dir
--     ...  r:cli("DBSIZE")  r:flush()
--     r:stop()                         -- always, in teardown
--   end
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
  local out, rc = sh(ENV .. "redis-cli -h 127.0.0.1 -p " .. self.port .. " " .. table.concat(args, " "))
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

--- redis.start() -> server (raises when it cannot start one)
function M.start()
  local dir = trim(sh("mktemp -d ${TMPDIR:-/tmp}/dingtalk-redis-spec.XXXXXX"))
  local lua_pid = shell.own_pid()
  local last
  for _ = 1, 10 do
    local port = rand_port()
    sh("rm -f " .. sh_quote(dir .. "/redis.pid"))
    local out, rc = sh(ENV .. "redis-server --port " .. port .. " --bind 127.0.0.1 --save '' --appendonly no" ..
      " --daemonize yes --pidfile " .. sh_quote(dir .. "/redis.pid") .. " --dir " .. sh_quote(dir) ..
      " --logfile " .. sh_quote(dir .. "/redis.log"))
    if rc == 0 then
      for _ = 1, 50 do
        local pong = trim(sh(ENV .. "redis-cli -h 127.0.0.1 -p " .. port .. " PING"))
        if pong == "PONG" then
          local s = setmetatable({ port = port, dir = dir, url = "redis://127.0.0.1:" .. port .. "/0" }, Server)
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
