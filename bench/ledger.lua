--- Issue 9's ledger row: 8 conversations of 2,500 keys each recalled
-- through Ledger:recall (the file journal) and through client:recall_groups
-- on the same client settings, against the simulator, interleaved runs.
-- Reports each run's wall time, this process's CPU time (os.clock: the
-- client and the store; the simulator runs apart) and the peak number of
-- requests in flight (counted by a wrapper around the transport), medians
-- and the ratios ledger / recall_groups (target: peak = concurrency, wall
-- ratio <= 1.2).
--
--   LUA_PATH="$PWD/lua/?.lua;$PWD/lua/?/init.lua;$PWD/?.lua;;" \
--   LUA_CPATH="$PWD/build/5.4/?.so;;" lua5.4 bench/ledger.lua [--runs N] [--keys N] [--groups N]
--     [--concurrency N] [--tls] [--dir DIR] [--only PATH]
--
-- --dir DIR: where the journals go (default: a fresh directory from
-- os.tmpname, usually /tmp).  Every mark is an fsync, which
-- client:recall_groups never pays: --dir /dev/shm (tmpfs, where fsync
-- returns at once) measures the same work without the disk's wait.
--
-- --only PATH (ledger, groups, ledger-setup, groups-setup): that path
-- alone, once per run, no summary; "-setup" skips each run's timed
-- section (so --runs N of both subtract).  For instruction counts, which load does not change: under
--   valgrind --tool=callgrind lua5.4 bench/ledger.lua --runs 1 --only ledger
-- (and --only ledger-setup, the same without the recall: subtract).
--
-- Each timed section starts after a full garbage collection, so that
-- neither path pays for the set-up's garbage (the ledger's 20,000
-- records, the seeded keys) or the other path's.
--
-- DINGTALK_BENCH_PIN=1 (2 cores or more) pins this process to the last
-- core and the simulator to the others: the client's CPU time is then its
-- own (on 2 cores the simulator gets one, and wall times bunch up behind
-- it: read the CPU ratio then).
--
-- Needs the simulator's nginx (docs/simulator.md).  Exits 1 when a run
-- did not recall every key or missed the concurrency.
local curl_now = require("dingtalk.recall.curl").now

local opts = { runs = 3, keys = 2500, groups = 8, concurrency = 8, tls = false, dir = false, only = false }
do
  local i = 1
  while arg[i] do
    local a = arg[i]
    if a == "--tls" then
      opts.tls = true
    elseif a == "--dir" or a == "--only" then
      i = i + 1
      opts[a:sub(3)] = assert(arg[i], a .. " DIR|PATH")
    elseif opts[a:sub(3)] ~= nil then
      i = i + 1
      opts[a:sub(3)] = assert(tonumber(arg[i]), a .. " N")
    else
      error("unknown option " .. a)
    end
    i = i + 1
  end
end

local sim = require "spec.helpers.sim"
local recall = require "dingtalk.recall"
local ledger = require "dingtalk.recall.ledger"

-- A transport that counts requests in flight.
local function counting(T)
  local c = { in_flight = 0, peak = 0 }
  return setmetatable({
    start = function(_, built, tag)
      local ok, err = T:start(built, tag)
      if ok then
        c.in_flight = c.in_flight + 1
        if c.in_flight > c.peak then c.peak = c.in_flight end
      end
      return ok, err
    end,
    poll = function(_, wait)
      local done = T:poll(wait)
      c.in_flight = c.in_flight - #done
      return done
    end,
    counter = c,
  }, { __index = T })
end

-- This process's user and system CPU seconds (all its threads, those
-- ended too) from /proc/self/stat, in clock ticks (1/100 s here: sums over
-- runs mean more than one run's figure); nil without /proc.
local function cputimes()
  local f = io.open("/proc/self/stat", "r")
  if not f then return nil end
  local line = f:read("*l")
  f:close()
  local u, sy = line:match("^.-%) %S+" .. (" %S+"):rep(10) .. " (%d+) (%d+)")
  if not u then return nil end
  return tonumber(u) / 100, tonumber(sy) / 100
end

local function median(t)
  local s = {}
  for i, v in ipairs(t) do s[i] = v end
  table.sort(s)
  local n = #s
  if n % 2 == 1 then return s[(n + 1) / 2] end
  return (s[n / 2] + s[n / 2 + 1]) / 2
end

local s = sim.start { tls = opts.tls, latency = 0, workers = 2 }
if os.getenv("DINGTALK_BENCH_PIN") == "1" then -- (see the top)
  local shell = require "spec.helpers.shell"
  local master = shell.trim(shell.read_file(s.state_dir .. "/nginx.pid"))
  local others = master:match("^%d+$") and shell.pin_apart(shell.own_pid(), master)
  if others then io.write("pinned: this process on a core of its own, the simulator on " .. others .. "\n") end
end
local dir = os.tmpname()
os.remove(dir)
if opts.dir then dir = opts.dir .. "/" .. dir:match("[^/]+$") end
local results = { ledger = {}, groups = {} }
local ok, err = pcall(function()
  s:config { qps = 0, latency = 0, faults = "" }
  local function client(T)
    return assert(recall.client { robot_code = s.robot, endpoint = s.url, ca_file = s.ca_file,
      access_token = s.token, concurrency = opts.concurrency, qps = 0, transport = T })
  end
  local function seed()
    s:reset()
    local groups, total = {}, 0
    for g = 1, opts.groups do
      local cid = "cidBench" .. g
      local keys = s:seed_keys(opts.keys, cid)
      groups[g] = { conversation = cid, keys = keys }
      total = total + #keys
    end
    return groups, total
  end
  for run = 1, opts.runs do
    local paths = run % 2 == 1 and { "ledger", "groups" } or { "groups", "ledger" }
    local only = opts.only and opts.only:match("^(%a+)")
    if only then paths = { only } end
    local setup_only = opts.only and opts.only:match("%-setup$") ~= nil
    -- one path's run; returns early (nothing timed) for a "-setup" path
    local function run_path(which)
      local groups, total = seed()
      local T = counting(require("dingtalk.recall.transport.curl").new { max_connections = opts.concurrency })
      local c = client(T)
      local rep, t0, t1, c0, c1, u0, u1, s0, s1
      if which == "ledger" then
        local l = assert(ledger.open(dir .. "/run" .. run .. "/ledger"))
        do -- (the 20,000 record tables are garbage once recorded: out of scope before the timed section)
          local entries = {}
          for _, g in ipairs(groups) do
            for _, k in ipairs(g.keys) do
              entries[#entries + 1] = { key = k, conversation = g.conversation, robot = s.robot }
            end
          end
          assert(l:record_many(entries))
        end
        -- time spent in the store (reading its entries, appends with fsync)
        -- and waiting for the fsync of marks written ahead (sync:wait());
        -- the selection's pass over the entries is ledger/select.lua's
        local store = { entries = { 0, 0 }, update = { 0, 0 } }
        local waits = { 0, 0 }
        for m, acc in pairs(store) do
          local f = l.backend[m]
          l.backend[m] = function(...)
            local a = curl_now()
            local r1, r2 = f(...)
            acc[1], acc[2] = acc[1] + (curl_now() - a), acc[2] + 1
            if m == "update" and r1 and r2 then
              local sync = r2
              r2 = { wait = function()
                local w = curl_now()
                local ok, err = sync:wait()
                waits[1], waits[2] = waits[1] + (curl_now() - w), waits[2] + 1
                return ok, err
              end }
            end
            return r1, r2
          end
        end
        collectgarbage() -- the set-up's garbage (20,000 records) is not the recall's
        if setup_only then
          l:close()
          return c:close()
        end
        u0, s0 = cputimes()
        t0, c0 = curl_now(), os.clock()
        rep = assert(l:recall(c, {}))
        t1, c1 = curl_now(), os.clock()
        u1, s1 = cputimes()
        l:close()
        io.write(("        store: read %.3f s (%d calls), update %.3f s (%d calls), waiting for fsync %.3f s (%d)\n")
          :format(store.entries[1], store.entries[2], store.update[1], store.update[2], waits[1], waits[2]))
        results.store = results.store or {}
        results.store[#results.store + 1] = store.entries[1] + store.update[1] + waits[1]
      else
        collectgarbage()
        if setup_only then return c:close() end
        u0, s0 = cputimes()
        t0, c0 = curl_now(), os.clock()
        rep = assert(c:recall_groups(groups))
        t1, c1 = curl_now(), os.clock()
        u1, s1 = cputimes()
      end
      c:close()
      local recalled = s:stats().recalled
      if #rep.recalled ~= total or recalled ~= total then
        error(("%s run %d: %d of %d keys recalled (server: %d)"):format(which, run, #rep.recalled, total, recalled))
      end
      local r = { wall = t1 - t0, cpu = c1 - c0, peak = T.counter.peak, user = u0 and u1 - u0, sys = s0 and s1 - s0 }
      results[which][#results[which] + 1] = r
      io.write(("%-7s run %d: %.3f s (cpu %.3f s), peak in flight %d, %d requests\n"):format(which, run, r.wall,
        r.cpu, r.peak, rep.requests))
    end
    for _, which in ipairs(paths) do run_path(which) end
  end
end)
s:stop()
os.execute("rm -rf '" .. dir .. "'")
if not ok then
  io.stderr:write("bench/ledger.lua: ", tostring(err), "\n")
  os.exit(1)
end
if opts.only then os.exit(0) end

local function col(list, f)
  local t = {}
  for i, r in ipairs(list) do t[i] = r[f] end
  return t
end
local lw, gw = median(col(results.ledger, "wall")), median(col(results.groups, "wall"))
local lp, gp = median(col(results.ledger, "peak")), median(col(results.groups, "peak"))
local lc, gc = median(col(results.ledger, "cpu")), median(col(results.groups, "cpu"))
print(("\n== %d conversations x %d keys, concurrency %d, %s, %s (medians of %d), journal in %s"):format(opts.groups,
  opts.keys, opts.concurrency, opts.tls and "https" or "http", rawget(_G, "jit") and rawget(_G, "jit").version or
  _VERSION, opts.runs, dir:match("^(.*)/[^/]+$")))
print("| path | wall s | client CPU s | peak in flight |")
print("|---|---:|---:|---:|")
print(("| Ledger:recall (file journal) | %.3f | %.3f | %d |"):format(lw, lc, lp))
print(("| client:recall_groups | %.3f | %.3f | %d |"):format(gw, gc, gp))
print(("Ledger:recall's time in the file store (reads, updates, fsync waits): median %.3f s"):format(
  median(results.store)))
local function sum(list, f)
  local n = 0
  for _, r in ipairs(list) do
    if not r[f] then return nil end
    n = n + r[f]
  end
  return n
end
local lu, ls, gu, gs = sum(results.ledger, "user"), sum(results.ledger, "sys"), sum(results.groups, "user"),
  sum(results.groups, "sys")
if lu and gu then
  print(("CPU over all %d runs (/proc/self/stat, 10 ms ticks): ledger user %.2f s + system %.2f s, recall_groups"
    .. " user %.2f s + system %.2f s"):format(opts.runs, lu, ls, gu, gs))
end
print(("ratio ledger / recall_groups: %.2fx wall (target <= 1.2x), %.2fx CPU; ledger peak %d of %d (target: ="
  .. " concurrency)"):format(lw / gw, lc / gc, lp, opts.concurrency))
-- each run's own ratio (its two paths ran one after the other), then the
-- median: a slow second of the machine then slows both sides of a ratio
local pw, pc = {}, {}
for i = 1, math.min(#results.ledger, #results.groups) do
  pw[i] = results.ledger[i].wall / results.groups[i].wall
  pc[i] = results.groups[i].cpu > 0 and results.ledger[i].cpu / results.groups[i].cpu or 1
end
print(("the median of each run's own ratio: %.2fx wall, %.2fx CPU"):format(median(pw), median(pc)))
os.exit((lp == opts.concurrency) and 0 or 1)
