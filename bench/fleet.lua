--- The fleet benchmark (issue 11): a mixed fleet recalling for one app on
-- one Redis, against the simulator throttled to 20 QPS.
--
--   LUA_PATH="lua/?.lua;lua/?/init.lua;./?.lua;;" LUA_CPATH="build/5.4/?.so;;" \
--     lua5.4 bench/fleet.lua [--requests N] [--no-baseline] [--no-nginx]
--
-- In one invocation:
--   1. baseline: one plain-Lua process alone (the local limiter, no Redis)
--      recalls N requests' worth of keys (default 1,200 requests = 24,000
--      keys) at qps 20;
--   2. the fleet: 3 plain-Lua processes, the CLI and 2 nginx workers
--      (cosockets; skipped without nginx) recall the same number of keys
--      together, sharing the budget and the token through one redis-server.
-- Every host that runs as a service in a real fleet (the plain-Lua
-- processes, the nginx workers, the baseline's process) is started first
-- and made ready (client made, keys read); "ready s" is that start-up,
-- not counted.  At the go they recall together and the CLI is started:
-- its start-up is counted, as for an operator.
-- For each: wall time from the go against the ideal (N / 20 s), throttled answers, the
-- simulator's most arrivals in any 1 s, token fetches; for the fleet also
-- Redis round trips per start (EVALSHA, SCRIPT LOAD and PING calls from
-- INFO commandstats over the recall calls the simulator counted) and Redis
-- CPU (used_cpu_sys + used_cpu_user from INFO) per start.  Run from the
-- repository root; servers are started on 127.0.0.1 and stopped on exit.
local redis_helper = require "spec.helpers.redis"
local sim = require "spec.helpers.sim"
local fleet = require "spec.helpers.fleet"
local shell = require "spec.helpers.shell"
local clock = require "dingtalk.recall.clock"
local cjson = require("cjson").new()

local q = shell.quote
local LUA = os.getenv("BENCH_LUA") or "lua5.4"

local requests, baseline, use_nginx = 1200, true, true
do
  local i = 1
  while arg[i] do
    if arg[i] == "--requests" then
      requests = assert(tonumber(arg[i + 1]), "--requests N")
      i = i + 1
    elseif arg[i] == "--no-baseline" then baseline = false
    elseif arg[i] == "--no-nginx" then use_nginx = false
    else error("unknown argument " .. arg[i]) end
    i = i + 1
  end
end

local CID = "cidBenchFleet"
local QPS = 20
local rs = redis_helper.start()
local s = sim.start { qps = QPS }
local f = fleet.start { redis = rs, sim = s, cid = CID, lua = LUA, nginx = use_nginx }
local dir = f.dir
local function cleanup()
  f:stop()
  rs:stop()
  s:stop()
end

local function info()
  local out = rs:cli("INFO", "all")
  local function num(name) return tonumber(out:match(name .. ":([%d.]+)")) or 0 end
  if os.getenv("BENCH_DEBUG") then io.stderr:write(out:match("# Commandstats.-# Errorstats") or "", "\n") end
  return { cmds = num("total_commands_processed"), cpu = num("used_cpu_sys") + num("used_cpu_user"),
    evalsha = tonumber(out:match("cmdstat_evalsha:calls=(%d+)")) or 0,
    -- what clients send (commands run inside scripts are counted apart)
    trips = (tonumber(out:match("cmdstat_evalsha:calls=(%d+)")) or 0) +
      (tonumber(out:match("cmdstat_script|load:calls=(%d+)")) or 0) +
      (tonumber(out:match("cmdstat_ping:calls=(%d+)")) or 0) }
end

local function seed(n)
  local keys = {}
  local left = n
  while left > 0 do
    local k = s:seed_keys(math.min(left, 5000), CID)
    for _, v in ipairs(k) do keys[#keys + 1] = v end
    left = left - #k
  end
  return keys
end

local results = {}

local function run(name, fn)
  s:reset()
  s:config { qps = QPS }
  rs:flush()
  local keys = seed(requests * 20)
  local i0 = info()
  local tl = clock.now()
  local t0 = fn(keys)
  local took = clock.now() - t0
  local i1 = info()
  local st = s:stats()
  local r = {
    name = name, seconds = took, ready = t0 - tl, ideal = requests / QPS, ratio = took / (requests / QPS),
    throttled = st.throttled, max_1s = st.max_recall_calls_in_any_1s, tokens = st.tokens_issued,
    recalled = math.floor(st.recalled), keys = #keys, calls = st.recall_calls,
    redis_cmds_per_start = (i1.cmds - i0.cmds - 1) / st.recall_calls,
    round_trips_per_start = (i1.trips - i0.trips) / st.recall_calls,
    evalsha_per_start = (i1.evalsha - i0.evalsha) / st.recall_calls,
    redis_cpu_ms = (i1.cpu - i0.cpu) * 1000,
  }
  r.redis_cpu_us_per_start = r.redis_cpu_ms * 1000 / st.recall_calls
  results[#results + 1] = r
  io.stderr:write(cjson.encode(r), "\n")
end

local ok, err = pcall(function()
  if baseline then
    run("one process, local limiter", function(keys)
      local kf, out = dir .. "/base.keys", dir .. "/base.out"
      f:write_keys(kf, keys, 1, #keys)
      local go = dir .. "/base.go"
      local pid = f:child("recall", { CID, kf, out, "1" }, "base", "GO=" .. q(go) .. " ", "-")
      while not shell.read_file(out .. ".ready") do clock.sleep(0.01) end
      local t0 = clock.now()
      io.open(go, "w"):close()
      assert(f:wait({ pid }, 600))
      return t0
    end)
  end
  run("fleet: 3 Lua + CLI" .. (f.ng and " + 2 nginx workers" or "") .. ", one Redis", function(keys)
    local r = f:launch(keys, { go = true })
    local t0 = r:go(60)
    assert(f:finish(r, 600))
    return t0
  end)
end)
cleanup()
if not ok then error(err) end

print(("%-48s %7s %8s %7s %7s %9s %6s %6s %9s %10s %12s"):format("run (" .. requests .. " requests at qps 20)",
  "ready s", "wall s", "ideal", "ratio", "throttled", "max1s", "tokens", "recalled", "trips/start", "cpu us/start"))
for _, r in ipairs(results) do
  print(("%-48s %7.2f %8.1f %7.0f %7.3f %9d %6d %6d %9s %10s %12s"):format(r.name, r.ready, r.seconds, r.ideal,
    r.ratio,
    r.throttled, r.max_1s, r.tokens, r.recalled .. "/" .. r.keys,
    r.name:match("^fleet") and ("%.2f"):format(r.round_trips_per_start) or "-",
    r.name:match("^fleet") and ("%.1f"):format(r.redis_cpu_us_per_start) or "-"))
end
