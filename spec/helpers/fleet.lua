-- spec/helpers/fleet.lua: the mixed fleet of issue 11, launched the same
-- way by spec/redis_fleet_spec.lua and bench/fleet.lua: 3 plain-Lua hosts
-- (spec/fixtures/fleet_child.lua), the CLI and 2 nginx workers
-- (spec/fixtures/fleet_nginx.lua, when nginx is installed), all recalling
-- for one app of a simulator with the QPS budget and the token on one
-- redis-server.
--
--   local fleet = require "spec.helpers.fleet"
--   local f = fleet.start { redis = rs, sim = s, cid = "cidX" }   -- rs, s: the helpers' servers
--   local run = f:launch(keys, { share = 1 / f:hosts() })        -- returns at once
--   assert(f:finish(run, 90))            -- waits for every host (kills them after 90 s)
--   local run = f:launch(keys, { go = true }); local t0 = run:go(30)
--     the running hosts (Lua, nginx) first get ready (client made, keys read),
--     then recall together at run:go(), which starts the CLI then
--   run.outs[i]: { out = JSON summary path, log = stderr path, cli = true|nil, nginx = true|nil }
--   f:stop()
--
-- Keys are split in f:hosts() equal shares in the order Lua 1-3, CLI,
-- nginx worker 1-2; the last host takes what the division leaves.  Every
-- host writes a JSON summary to its out file when it is done (the nginx
-- workers too, so waiting needs no HTTP polling).  Plain Lua 5.1-5.4 and
-- LuaJIT; io/os and the project's clock.
local shell = require "spec.helpers.shell"
local nginx = require "spec.helpers.nginx"
local clock = require "dingtalk.recall.clock"
local cjson = require("cjson").new()

local q, sh, trim = shell.quote, shell.sh, shell.trim

local M = {}
local Fleet = {}
Fleet.__index = Fleet

--- fleet.start(opts) -> fleet.  opts: redis, sim (started servers), cid,
-- lua (the interpreter of the plain-Lua hosts and the CLI; default
-- $DINGTALK_RECALL_TEST_LUA or "lua"), nginx (false: no nginx workers),
-- dir (a scratch directory; default a new one, removed by stop).
function M.start(opts)
  local self = setmetatable({
    rs = assert(opts.redis, "fleet.start: redis"), s = assert(opts.sim, "fleet.start: sim"),
    cid = assert(opts.cid, "fleet.start: cid"),
    lua = opts.lua or os.getenv("DINGTALK_RECALL_TEST_LUA") or "lua",
    dir = opts.dir, runs = 0,
  }, Fleet)
  if not self.dir then
    self.dir = trim(sh("mktemp -d ${TMPDIR:-/tmp}/dtr-fleet.XXXXXX"))
    self.own_dir = true
  end
  if opts.nginx ~= false and nginx.available() then
    self.ng = nginx.start {
      workers = 2, log_level = "notice", shared_dicts = { fleet = "1m" },
      modules = { fleetng = assert(shell.read_file("spec/fixtures/fleet_nginx.lua")) },
      init_worker = '    require("fleetng").init_worker()',
      server = "    location = /fleet/start { content_by_lua_block { require('fleetng').start() } }\n",
    }
  end
  return self
end

--- How many hosts a launch starts: 6 with nginx, else 4.
function Fleet:hosts() return self.ng and 6 or 4 end

function Fleet:stop()
  if self.ng then self.ng:stop() end
  self.ng = nil
  if self.own_dir and self.dir then sh("rm -rf " .. q(self.dir)) end
  self.dir = nil
end

function Fleet.write_keys(_, path, keys, from, to)
  local f = assert(io.open(path, "w"))
  for i = from, to do f:write(keys[i], "\n") end
  f:close()
end

--- Runs a shell command in the background; returns its pid.
function Fleet.background(_, cmd)
  local p = assert(io.popen(cmd .. " & echo $!"))
  local pid = trim(p:read("*a"))
  p:close()
  assert(pid:match("^%d+$"), "no pid: " .. pid)
  return pid
end

--- Whether a process runs (not a zombie), from /proc: no shell per look.
function Fleet.alive(_, pid)
  local f = io.open("/proc/" .. pid .. "/stat", "r")
  if not f then return false end
  local stat = f:read("*l") or ""
  f:close()
  return not stat:match("^%d+ %(.*%) Z")
end

--- Waits for pids to end; after `seconds` kills them all and returns
-- nil, err.
function Fleet:wait(pids, seconds)
  local deadline = clock.now() + seconds
  for _, pid in ipairs(pids) do
    while self:alive(pid) do
      if clock.now() > deadline then
        for _, p in ipairs(pids) do sh("kill -9 " .. p .. " 2>/dev/null") end
        return nil, "the fleet did not finish within " .. seconds .. " s"
      end
      clock.sleep(0.05)
    end
  end
  return true
end

--- f:child(mode, args, name [, env [, redis]]) -> pid:
-- spec/fixtures/fleet_child.lua MODE REDIS ENDPOINT APPKEY APPSECRET ROBOT
-- ARGS..., stderr to <dir>/<name>.log; redis "-": no Redis.
function Fleet:child(mode, args, name, env, redis)
  local s = self.s
  local argv = { q(redis or self.rs.url), q(s.url), q(s.app_key), q(s.app_secret), q(s.robot) }
  for _, a in ipairs(args) do argv[#argv + 1] = q(a) end
  return self:background((env or "") .. self.lua .. " spec/fixtures/fleet_child.lua " .. mode .. " " ..
    table.concat(argv, " ") .. " >/dev/null 2>" .. q(self.dir .. "/" .. name .. ".log"))
end

--- f:launch(keys, opts) -> run: starts every host on its share of keys.
-- opts.share: each host's fallback_share (default 1 / hosts); opts.env:
-- "NAME=value " words put before the plain-Lua hosts' command; opts.go:
-- the hosts wait for run:go() (see above).
function Fleet:launch(keys, opts)
  opts = opts or {}
  self.runs = self.runs + 1
  local dir, s, tag = self.dir, self.s, "r" .. self.runs .. "-"
  local hosts = self:hosts()
  local per = math.floor(#keys / hosts)
  local share = opts.share or 1 / hosts
  local function range(i) return (i - 1) * per + 1, i == hosts and #keys or i * per end
  local run = { pids = {}, outs = {}, per = per }
  local env = opts.env or ""
  if opts.go then
    run.go_file = dir .. "/" .. tag .. "go"
    env = env .. "GO=" .. q(run.go_file) .. " "
  end
  for i = 1, 3 do
    local name = tag .. "lua" .. i
    local kf, out = dir .. "/" .. name .. ".keys", dir .. "/" .. name .. ".out"
    self:write_keys(kf, keys, range(i))
    run.outs[i] = { out = out, log = dir .. "/" .. name .. ".log", keys = select(2, range(i)) - range(i) + 1 }
    run.pids[i] = self:child("recall", { self.cid, kf, out, tostring(share) }, name, env)
  end
  local kf, name = dir .. "/" .. tag .. "cli.keys", tag .. "cli"
  self:write_keys(kf, keys, range(4))
  local co = { out = dir .. "/" .. name .. ".out", log = dir .. "/" .. name .. ".log", cli = true,
    keys = select(2, range(4)) - range(4) + 1 }
  run.outs[4] = co
  local function cli()
    run.pids[4] = self:background("env -u DINGTALK_ACCESS_TOKEN DINGTALK_ENDPOINT=" .. q(s.url) ..
      " DINGTALK_APP_KEY=" .. q(s.app_key) .. " DINGTALK_APP_SECRET=" .. q(s.app_secret) ..
      " DINGTALK_RECALL_REDIS=" .. q(self.rs.url) .. " DINGTALK_RECALL_LEDGER=" .. q(dir .. "/" .. name .. "-ledger") ..
      " XDG_CONFIG_HOME=" .. q(dir .. "/xdg") .. " " .. self.lua .. " bin/dingtalk-recall recall --conversation " ..
      q(self.cid) .. " --robot " .. q(s.robot) .. " --qps 20 --json --quiet - <" .. q(kf) .. " >" .. q(co.out) ..
      " 2>" .. q(co.log))
  end
  if not opts.go then cli() end
  if self.ng then
    local files, outs = {}, {}
    for w = 1, 2 do
      files[w], outs[w] = dir .. "/" .. tag .. "ng" .. w .. ".keys", dir .. "/" .. tag .. "ng" .. w .. ".out"
      self:write_keys(files[w], keys, range(4 + w))
      run.outs[4 + w] = { out = outs[w], nginx = true, keys = select(2, range(4 + w)) - range(4 + w) + 1 }
    end
    local status, body = self.ng:request("POST", "/fleet/start", { body = cjson.encode {
      redis = self.rs.url, endpoint = s.url, app_key = s.app_key, app_secret = s.app_secret, robot = s.robot,
      cid = self.cid, files = files, outs = outs, share = share, go = run.go_file } })
    assert(status == 200, "fleet: /fleet/start answered " .. tostring(status) .. " " .. tostring(body))
  end
  if opts.go then
    --- run:go(seconds) -> the clock at the go: waits for the hosts to be
    -- ready, lets them go, starts the CLI.
    function run.go(_, seconds)
      local deadline = clock.now() + (seconds or 60)
      for _, o in ipairs(run.outs) do
        while not o.cli and not shell.exists(o.out .. ".ready") do
          assert(clock.now() < deadline, "fleet: a host is not ready: " .. tostring(o.log and shell.read_file(o.log)))
          clock.sleep(0.01)
        end
      end
      local t0 = clock.now()
      local g = assert(io.open(run.go_file, "w"))
      g:close()
      cli()
      return t0
    end
  end
  return run
end

--- f:finish(run, seconds) -> true | nil, err: waits for the processes,
-- then for the nginx workers' summaries.
function Fleet:finish(run, seconds)
  local deadline = clock.now() + seconds
  local ok, err = self:wait(run.pids, seconds)
  if not ok then return nil, err end
  for _, o in ipairs(run.outs) do
    if o.nginx then
      while (shell.read_file(o.out) or "") == "" do
        if clock.now() > deadline then return nil, "the nginx workers did not finish within " .. seconds .. " s" end
        clock.sleep(0.05)
      end
    end
  end
  return true
end

--- The JSON summary of a host (raises when there is none).
function Fleet.result(_, o)
  local text = shell.read_file(o.out)
  assert(text and text ~= "", "no output in " .. o.out .. ": " .. tostring(o.log and shell.read_file(o.log)))
  return cjson.decode(text)
end

return M
