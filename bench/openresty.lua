-- bench/openresty.lua: worker CPU per recall() call inside one nginx
-- worker, through the library's OpenResty transport ("lib": client:recall;
-- "transport": the transport's start/poll and core.parse alone, one batch)
-- and through bare cosockets written by hand with cjson ("bare": the
-- baseline; "checked", one batch: the baseline plus the checks the client
-- makes besides, see exchange below), against the stand-in
-- (bench/standin.lua) in a second nginx, over plain http and over https
-- (TLS verified, connections kept alive), on loopback.  A call is one batch of 20 keys, or ten batches (200 keys, 4 in
-- flight: the client's default concurrency, and 4 light threads by hand).
-- wrk drives each location in turn; the client worker's CPU time over the
-- run (the scheduler's count in ns, /proc/<pid>/schedstat; utime+stime
-- in clock ticks where that is missing), divided by the calls wrk
-- completed, is the figure.  Rounds alternate the order; the medians and their ratios to
-- the baseline of the same invocation are printed, then one table.
--
--   LUA_PATH="lua/?.lua;lua/?/init.lua;./?.lua;;" LUA_CPATH="build/5.4/?.so;;" \
--     lua5.4 bench/openresty.lua [rounds (5)] [seconds per run (3)] [connections (4)] \
--       [scenarios (http:1,https:1,http:10,https:10)]
--     lua5.4 bench/openresty.lua callgrind [calls (2000)] [scenarios]
--     lua5.4 bench/openresty.lua callgrind-loop [calls (2000)] [scenarios]
--     lua5.4 bench/openresty.lua syscalls [calls (2000)] [scenarios]
--     lua5.4 bench/openresty.lua alloc [calls (2000)] [scenarios]
--     lua5.4 bench/openresty.lua paired [calls (20000)] [scenarios]
--
-- The callgrind mode counts instructions instead, which load does not
-- change: the client nginx runs under valgrind's callgrind; each location
-- is warmed up (300 requests), its counters zeroed, then `calls` requests
-- come one after another on one kept-alive connection (curl), one call
-- each, as under wrk, and the worker's instructions over them (nginx's
-- share of a request included: the same on every location), divided by
-- the calls, are the figure (user space only: the kernel's share of a
-- cosocket's syscalls is not in it; it is the same on both).
-- callgrind-loop makes the `calls` calls in one request's loop (?n=)
-- instead: fewer instructions a call besides the call's own, but LuaJIT
-- then compiles the call into the loop's traces, a regime a request
-- handler never sees (at 11da9c6, http: 0.84x of bare's instructions in
-- the loop, 0.87x a request each).
-- The syscalls mode counts the worker's system calls per call instead
-- (strace -c over `calls` requests driven as in the callgrind mode): the
-- kernel's share of the CPU figure.  At ef1a772 every location makes the
-- same ones (http: 2 epoll_wait, 2 recvfrom, 1 sendto, 1 writev a call).
-- The alloc mode counts the bytes the worker's Lua heap grows by per call
-- instead (the GC stopped over `calls` requests driven as in the callgrind
-- mode): what the collector reclaims, its share of the CPU figure.
-- DINGTALK_BENCH_PIN=1 (wrk mode, 2 cores or more) pins the measured
-- worker to a core of its own (taskset).  Besides the ratio of the
-- medians, the wrk mode prints the median of each round's own ratio
-- (client:recall / bare run next to each other), for CPU and for user
-- time alone: the machine's slow and fast minutes then cancel out.  Each
-- run's line also gives the worker's minor page faults and context
-- switches (voluntary: it slept in epoll_wait) per call.
-- DINGTALK_BENCH_LOCATIONS=transport,checked picks the optional locations
-- (lib and bare always run); DINGTALK_BENCH_PERF=DIR keeps a `perf record`
-- of the worker in each run (DIR/<location>-<scheme>-<round>.data).
-- DINGTALK_BENCH_JIT=FILE writes LuaJIT's jit.v log of the worker (its
-- traces, and where they abort) to FILE.
-- DINGTALK_BENCH_CALLGRIND_KEEP=DIR keeps the dumps (one per location, in
-- the table's order) for callgrind_annotate; DINGTALK_BENCH_CALLGRIND_OPTS
-- adds valgrind options (--cache-sim=yes: the figure becomes an estimate
-- of cycles, Ir + 10 x L1 misses + 100 x last-level misses).
--
-- Needs nginx + libnginx-mod-http-lua + lua-resty-core, wrk, openssl and
-- the 5.1 core (made when missing).  Plain Lua 5.1-5.4; uses
-- spec/helpers/nginx.lua and the simulator's test CA (dingtalk_sim.conf).
local nginx = require "spec.helpers.nginx"
local shell = require "spec.helpers.shell"
local conf = require "dingtalk_sim.conf"

local argv = {}
for i, a in ipairs(arg or {}) do argv[i] = a end
local CALLGRIND = argv[1] == "callgrind" or argv[1] == "callgrind-loop"
local CG_LOOP = argv[1] == "callgrind-loop"
local SYSCALLS = argv[1] == "syscalls"
local ALLOC = argv[1] == "alloc"
local PAIRED = argv[1] == "paired"
local COUNTED = CALLGRIND or SYSCALLS or ALLOC or PAIRED -- the modes that drive with curl, not wrk
if COUNTED then table.remove(argv, 1) end
local ROUNDS = tonumber(argv[1]) or 5
local SECONDS = tonumber(argv[2]) or 3
local CONNS = tonumber(argv[3]) or 4
local CALLS = COUNTED and (tonumber(argv[1]) or (PAIRED and 20000 or 2000))
local SCENARIOS = {}
local scenarios = (COUNTED and argv[2] or argv[4]) or "http:1,https:1,http:10,https:10"
for scheme, nb in scenarios:gmatch("(%a+):(%d+)") do
  assert(scheme == "http" or scheme == "https", "a scenario is http:N or https:N")
  SCENARIOS[#SCENARIOS + 1] = { scheme = scheme, batches = tonumber(nb) }
end

local ok, why = nginx.available()
if not ok then
  io.stderr:write("bench/openresty.lua: ", why, "\n")
  os.exit(2)
end
if select(2, shell.sh("command -v wrk")) ~= 0 then
  io.stderr:write("bench/openresty.lua: wrk is not installed (apt-get install wrk)\n")
  os.exit(2)
end

local certs = shell.trim(shell.sh("mktemp -d ${TMPDIR:-/tmp}/dingtalk-bench-certs.XXXXXX"))
conf.certs(certs)
local TLS_PORT = require("spec.helpers.ports").claim()
local STANDIN = nginx.nq(nginx.root .. "bench/standin.lua")
local standin = nginx.start {
  workers = 1, shared_dicts = { standin = "1m" },
  http = "  keepalive_requests 1000000;",
  server = '    location / { content_by_lua_file ' .. STANDIN .. '; }\n  }\n  server {\n' ..
    '    listen 127.0.0.1:' .. TLS_PORT .. ' ssl;\n' ..
    '    ssl_certificate ' .. nginx.nq(certs .. "/server.pem") .. ';\n' ..
    '    ssl_certificate_key ' .. nginx.nq(certs .. "/server.key") .. ';\n' ..
    '    ssl_protocols TLSv1.2 TLSv1.3;\n' ..
    '    location / { content_by_lua_file ' .. STANDIN .. '; }',
}

-- the worker's module (bench/orbench.lua) and its parameters
-- DINGTALK_BENCH_JIT=FILE: LuaJIT's jit.v log of the worker (traces and
-- their aborts) in FILE; the jit.* modules come from LuaJIT's share dir.
local JITV = os.getenv("DINGTALK_BENCH_JIT")
if JITV == "" then JITV = nil end
local JIT_DIR = JITV and shell.trim(shell.sh("ls -d /usr/share/luajit-*/ 2>/dev/null | head -1")) or ""
local ORBENCH_CONF = ("return { port = %d, tls_port = %d, cgctl = %q, jitv = %s, jit_dir = %q }"):format(
  standin.port, TLS_PORT, CALLGRIND and certs .. "/cgctl.so" or "", JITV and ("%q"):format(JITV) or "nil", JIT_DIR)

local CG_DIR = CALLGRIND and certs .. "/callgrind"
local CALLGRIND_OPTS = os.getenv("DINGTALK_BENCH_CALLGRIND_OPTS") or ""
if CALLGRIND then
  shell.sh("mkdir -p " .. shell.quote(CG_DIR))
  local out, rc = shell.sh("cc -O2 -shared -fPIC -o " .. shell.quote(certs .. "/cgctl.so") .. " " ..
    shell.quote(nginx.root .. "bench/cgctl.c") .. " 2>&1")
  if rc ~= 0 or select(2, shell.sh("command -v valgrind")) ~= 0 then
    io.stderr:write("bench/openresty.lua: the callgrind mode needs valgrind and a C compiler: ", out, "\n")
    os.exit(2)
  end
end
local client = nginx.start {
  wrap = CALLGRIND and ("valgrind -q --tool=callgrind --vgdb=no " .. CALLGRIND_OPTS .. " --log-file=" ..
    shell.quote(CG_DIR .. "/vg.%p") .. " --callgrind-out-file=" .. shell.quote(CG_DIR .. "/cg.%p")) or nil,
  workers = 1, trusted_ca = certs .. "/ca.pem",
  modules = { orbench = shell.read_file(nginx.root .. "bench/orbench.lua"), orbench_conf = ORBENCH_CONF },
  server = '    location = /lib { content_by_lua_block { require("orbench").lib() } }\n' ..
    '    location = /bare { content_by_lua_block { require("orbench").bare() } }\n' ..
    '    location = /checked { content_by_lua_block { require("orbench").checked() } }\n' ..
    '    location = /transport { content_by_lua_block { require("orbench").transport() } }\n' ..
    '    location = /cg { content_by_lua_block { require("orbench").cg() } }\n' ..
    '    location = /mem { content_by_lua_block { require("orbench").mem() } }\n' ..
    '    location = /cpu { content_by_lua_block { require("orbench").cpu() } }\n' ..
    '    location = /nop { content_by_lua_block { require("orbench").nop() } }',
}

local function cleanup()
  client:stop()
  standin:stop()
  require("spec.helpers.ports").release(TLS_PORT)
  shell.sh("rm -rf " .. shell.quote(certs))
end

local function worker_pid()
  return shell.trim(shell.sh("pgrep -P " .. client:pid() .. " | head -1"))
end
local HZ = tonumber(shell.trim(shell.sh("getconf CLK_TCK"))) or 100

local function cpu(pid)
  local stat = shell.read_file("/proc/" .. pid .. "/stat")
  local rest = stat:match("%) (.*)$")
  local f = {}
  for w in rest:gmatch("%S+") do f[#f + 1] = w end
  local st = shell.read_file("/proc/" .. pid .. "/status")
  local switches = tonumber(st:match("\nvoluntary_ctxt_switches:%s*(%d+)")) +
    tonumber(st:match("nonvoluntary_ctxt_switches:%s*(%d+)"))
  -- the CPU time: the scheduler's own count, in ns (/proc/<pid>/schedstat's
  -- first field), where the kernel has it; utime + stime (fields 14, 15)
  -- come in clock ticks (10 ms: 0.5% of a 2 s run's CPU) and are kept for
  -- the user time; minor faults (field 10); context switches
  local ns = tonumber((shell.read_file("/proc/" .. pid .. "/schedstat") or ""):match("^(%d+)"))
  return ns and ns / 1e9 or (tonumber(f[12]) + tonumber(f[13])) / HZ, tonumber(f[12]) / HZ, tonumber(f[8]), switches
end

local function path(loc, sc)
  return "/" .. loc .. "?s=" .. sc.scheme .. "&b=" .. sc.batches
end

-- DINGTALK_BENCH_LOCATIONS=lib,bare: only those of the optional
-- locations (transport, checked) that it names; lib and bare always run
local ONLY = os.getenv("DINGTALK_BENCH_LOCATIONS")
local function locations(sc)
  if ONLY and ONLY ~= "" and sc.batches == 1 then
    local t = { "lib" }
    for _, l in ipairs { "transport", "checked" } do
      if ("," .. ONLY .. ","):find("," .. l .. ",", 1, true) then t[#t + 1] = l end
    end
    t[#t + 1] = "bare"
    return t
  end
  if sc.batches == 1 then return { "lib", "transport", "bare", "checked" } end
  return { "lib", "bare" }
end

-- Checks every location answers every key, then measures one: us of worker CPU per call.
for _, sc in ipairs(SCENARIOS) do
  for _, loc in ipairs(locations(sc)) do
    local status, body = client:request("GET", path(loc, sc))
    if status ~= 200 or body ~= tostring(20 * sc.batches) then
      io.stderr:write(path(loc, sc), " answered ", status, ": ", body, "\n", client:error_log(), "\n")
      cleanup()
      os.exit(1)
    end
  end
end

local function scenario_name(sc)
  return ("%s, %d batch%s"):format(sc.scheme, sc.batches, sc.batches == 1 and "" or "es")
end

-- The table of both modes: a row per scenario (name, lib, tr, bare, ck),
-- each figure with its ratio to bare; num: the figures' format.
local function print_table(rows, num)
  print(("%-18s %16s %18s %10s %18s"):format("call", "client:recall", "transport alone", "bare", "bare + checks"))
  local function cell(v, bare) return v and (num .. " %5.2fx"):format(v, v / bare) or "-" end
  for _, r in ipairs(rows) do
    print(("%-18s %16s %18s %10s %18s"):format(r.name, cell(r.lib, r.bare), cell(r.tr, r.bare), num:format(r.bare),
      cell(r.ck, r.bare)))
  end
end

-- The counting modes' table: a row per scenario of what count(sc) gives
-- ({location = figure}).
local function count_table(num, count)
  local rows = {}
  for _, sc in ipairs(SCENARIOS) do
    local r = count(sc)
    rows[#rows + 1] = { name = scenario_name(sc), lib = r.lib, tr = r.transport, bare = r.bare, ck = r.checked }
  end
  print_table(rows, num)
end

-- n requests for url, one after another on one connection (curl -K); url
-- may be a list: n requests for each, taking turns
local function drive(url, n)
  local cfg = certs .. "/curl.cfg"
  local f = assert(io.open(cfg, "w"))
  local urls = type(url) == "table" and url or { url }
  for _ = 1, n do
    for _, u in ipairs(urls) do f:write('url = "', u, '"\noutput = "/dev/null"\n') end
  end
  f:close()
  local out, rc = shell.sh("curl -sS --fail -K " .. shell.quote(cfg) .. " 2>&1")
  assert(rc == 0, table.concat(urls, " ") .. ": " .. out)
end

-- The syscalls mode: the worker's system calls per call, counted by
-- strace -c over CALLS calls of each location (after 300 to warm up): the
-- kernel's share of the CPU figure comes from them.
if SYSCALLS then
  local pid = worker_pid()
  local out = certs .. "/strace.out"
  print(("openresty worker system calls per recall() call (strace -c, %d calls a location, one request each)")
    :format(CALLS))
  for _, sc in ipairs(SCENARIOS) do
    for _, loc in ipairs(locations(sc)) do
      drive(client.url .. path(loc, sc), 300)
      shell.sh("rm -f " .. out .. "; (strace -q -c -p " .. pid .. " -o " .. out ..
        " </dev/null >/dev/null 2>&1 & echo $! >" .. out .. ".pid); sleep 0.5")
      drive(client.url .. path(loc, sc), CALLS)
      shell.sh("kill -INT $(cat " .. out .. ".pid); while kill -0 $(cat " .. out .. ".pid) 2>/dev/null; do " ..
        "sleep 0.1; done")
      local counts = {}
      for line in (shell.read_file(out) or ""):gmatch("[^\n]+") do
        local calls, name = line:match("^%s*[%d.]+%s+[%d.]+%s+%d+%s+(%d+)%s+%d*%s*(%a[%w_]*)%s*$")
        if calls and name ~= "total" and tonumber(calls) / CALLS >= 0.005 then
          counts[#counts + 1] = ("%s %.2f"):format(name, tonumber(calls) / CALLS)
        end
      end
      table.sort(counts)
      print(("%-16s %-10s %s"):format(scenario_name(sc), loc, table.concat(counts, ", ")))
    end
  end
  cleanup()
  os.exit(0)
end

-- The paired mode: the worker thread's CPU time around each call
-- (clock_gettime(CLOCK_THREAD_CPUTIME_ID) in the worker, ?m=cpu), with the
-- locations taking turns request by request on one connection, CALLS
-- calls each, one at a time: nothing else runs in the worker during a
-- call, and a slow second of the machine falls on every location alike.
-- The figure leaves out what nginx does for every request (reading it,
-- writing the answer: the same on every location); /nop, which only reads
-- the clock twice, gives the clock's own share, taken off.
if PAIRED then
  print(("openresty worker thread CPU per recall() call, around the call (%d calls a location, the locations" ..
    " taking turns request by request on one connection, the clock's own share taken off)"):format(CALLS))
  count_table("%9.2f", function(sc)
    local locs = locations(sc)
    locs[#locs + 1] = "nop"
    for _, loc in ipairs(locs) do drive(client.url .. path(loc, sc), 300) end
    assert(client:request("GET", "/cpu?op=reset") == 200)
    local urls = {}
    for _, loc in ipairs(locs) do urls[#urls + 1] = client.url .. path(loc, sc) .. "&m=cpu" end
    drive(urls, CALLS)
    local status, body = client:request("GET", "/cpu?op=get")
    assert(status == 200, "/cpu: " .. tostring(body))
    local per = {}
    for name, ns, n in body:gmatch("([%w_]+) (%d+) (%d+)") do per[name] = tonumber(ns) / tonumber(n) / 1000 end
    local clock = per.nop or 0
    local r = {}
    for _, loc in ipairs(locs) do r[loc] = per[loc] - clock end
    print(("  %s: the clock's own share %.2f us a call"):format(scenario_name(sc), clock))
    return r
  end)
  cleanup()
  os.exit(0)
end

-- The alloc mode: the bytes the worker's Lua heap grows by per call of
-- each location, the GC stopped over CALLS calls (after 300 to warm up):
-- what the collector will have to reclaim, its share of the CPU figure.
if ALLOC then
  print(("openresty worker Lua heap bytes allocated per recall() call (%d calls a location, one request each," ..
    " the GC stopped; nginx's share of a request included)"):format(CALLS))
  count_table("%9.0f", function(sc)
    local r = {}
    for _, loc in ipairs(locations(sc)) do
      drive(client.url .. path(loc, sc), 300)
      assert(client:request("GET", "/mem?op=start") == 200)
      drive(client.url .. path(loc, sc), CALLS)
      local status, body = client:request("GET", "/mem?op=stop")
      assert(status == 200 and tonumber(body), "/mem: " .. tostring(body))
      r[loc] = tonumber(body)
    end
    return r
  end)
  cleanup()
  os.exit(0)
end

-- The callgrind mode: instructions per call of each location, one table.
if CALLGRIND then
  local pid = worker_pid()
  local dumps = 0
  local function count(loc, sc)
    if CG_LOOP then
      assert(client:request("GET", path(loc, sc) .. "&n=200") == 200)
      local status, body = client:request("GET", path(loc, sc) .. "&m=cg&n=" .. CALLS, { timeout = 3600 })
      assert(status == 200 and body == tostring(20 * sc.batches), path(loc, sc) .. ": " .. tostring(body))
    else
      drive(client.url .. path(loc, sc), 300)
      assert(client:request("GET", "/cg?op=zero") == 200)
      drive(client.url .. path(loc, sc), CALLS)
      local status, body = client:request("GET", "/cg?op=dump", { timeout = 3600 })
      assert(status == 200 and tonumber(body) == CALLS, path(loc, sc) .. ": " .. tostring(body) .. " calls counted")
    end
    dumps = dumps + 1
    local text = shell.read_file(CG_DIR .. "/cg." .. pid .. "." .. dumps) or ""
    local events = text:match("\nevents:%s*([^\n]+)")
    local totals = text:match("\nsummary:%s*([^\n]+)") or text:match("\ntotals:%s*([^\n]+)")
    assert(events and totals, "no callgrind dump")
    local v, i = {}, 0
    for w in totals:gmatch("%d+") do v[#v + 1] = tonumber(w) end
    for e in events:gmatch("%S+") do i = i + 1; v[e] = v[i] end
    -- with --cache-sim=yes: the usual estimate of cycles (an L1 miss 10,
    -- a last-level miss 100 instructions' worth)
    if v.D1mr then
      return (v.Ir + 10 * (v.I1mr + v.D1mr + v.D1mw) + 100 * (v.ILmr + v.DLmr + v.DLmw)) / CALLS
    end
    return v.Ir / CALLS
  end
  local cache = CALLGRIND_OPTS:find("--cache-sim=yes", 1, true)
  print(("openresty worker %s per recall() call (callgrind, %d calls a location, %s, 20 keys a batch)")
    :format(cache and "estimated cycles (Ir + 10 x L1 misses + 100 x LL misses)" or "instructions", CALLS,
      CG_LOOP and "in one request's loop" or "one request each"))
  count_table("%9.0f", function(sc)
    local r = {}
    for _, loc in ipairs(locations(sc)) do r[loc] = count(loc, sc) end
    return r
  end)
  local keep = os.getenv("DINGTALK_BENCH_CALLGRIND_KEEP") -- a directory: the dumps, for callgrind_annotate
  if keep then shell.sh("cp " .. shell.quote(CG_DIR) .. "/cg." .. pid .. ".* " .. shell.quote(keep)) end
  cleanup()
  os.exit(0)
end

-- DINGTALK_BENCH_PIN=1 (with 2 or more cores): the client's worker on the
-- last core, the stand-in's and wrk on the others, so that the worker
-- measured shares its core's caches with no other process.
local WRK = "wrk"
-- PIN: the cores left to the stand-in and wrk, or nil (not pinned)
local PIN = os.getenv("DINGTALK_BENCH_PIN") == "1" and shell.pin_apart(worker_pid(), standin:pid()) or nil
if PIN then WRK = "taskset -c " .. PIN .. " wrk" end

-- DINGTALK_BENCH_PERF=DIR: perf record of the worker in each run, in
-- DIR/<location>-<scheme>-<round>.data (perf report --sort dso -i ...)
local PERF = os.getenv("DINGTALK_BENCH_PERF")
if PERF == "" then PERF = nil end
local function run(loc, sc, round)
  local pid = worker_pid()
  local c0, u0, m0, s0 = cpu(pid)
  if PERF then -- (in the background: it ends a second before wrk)
    shell.sh("(perf record -F 4999 -o " .. shell.quote(("%s/%s-%s-%d.data"):format(PERF, loc, sc.scheme, round)) ..
      " -p " .. pid .. " -- sleep " .. math.max(1, SECONDS - 1) .. " >/dev/null 2>&1 &)")
  end
  local out = shell.sh(WRK .. " -t1 -c" .. CONNS .. " -d" .. SECONDS .. "s '" .. client.url .. path(loc, sc) .. "'")
  local c1, u1, m1, s1 = cpu(pid)
  local n = tonumber(out:match("(%d+) requests in")) or 0
  local non2xx = tonumber(out:match("Non%-2xx or 3xx responses: (%d+)")) or 0
  if n == 0 or non2xx > 0 then
    io.stderr:write("wrk on ", path(loc, sc), " failed:\n", out, "\n", client:error_log(), "\n")
    cleanup()
    os.exit(1)
  end
  return (c1 - c0) * 1e6 / n, n / SECONDS, (u1 - u0) * 1e6 / n, (m1 - m0) / n, (s1 - s0) / n
end

local function median(t)
  table.sort(t)
  local n = #t
  if n % 2 == 1 then return t[(n + 1) / 2] end
  return (t[n / 2] + t[n / 2 + 1]) / 2
end

local function loadavg()
  return shell.trim(shell.sh("cut -d' ' -f1-3 /proc/loadavg"))
end

print(("openresty worker CPU per recall() call: %d rounds, wrk -t1 -c%d -d%ds, 20 keys a batch, loopback%s;"
  .. " load average %s"):format(ROUNDS, CONNS, SECONDS, PIN and ", worker pinned to its own core" or "", loadavg()))
local rows = {}
for _, sc in ipairs(SCENARIOS) do
  local name = scenario_name(sc)
  local res = {}
  local locs = locations(sc)
  local user = {}
  for _, loc in ipairs(locs) do res[loc], user[loc] = {}, {} end
  for r = 1, ROUNDS do
    local order = {}
    for i = 1, #locs do order[i] = locs[r % 2 == 1 and i or #locs + 1 - i] end
    for _, loc in ipairs(order) do
      local us, rps, u, mf, cs = run(loc, sc, r)
      res[loc][#res[loc] + 1], user[loc][#user[loc] + 1] = us, u
      print(("  %-16s round %d %-9s %8.1f us/call (user %5.1f)  %7.0f calls/s  %.3f faults, %.3f switches a call")
        :format(name, r, loc, us, u, rps, mf, cs))
    end
  end
  -- each round's own ratio to its bare run (the two ran side by side in
  -- time: a slower minute of the machine slows both), then their median
  local paired, paired_user = {}, {}
  for r = 1, ROUNDS do
    paired[r] = res.lib[r] / res.bare[r]
    paired_user[r] = user.bare[r] > 0 and user.lib[r] / user.bare[r] or 1
  end
  local lib, bare = median(res.lib), median(res.bare)
  local tr = res.transport and median(res.transport)
  local ck = res.checked and median(res.checked)
  rows[#rows + 1] = { name = name, lib = lib, bare = bare, tr = tr, ck = ck, paired = median(paired),
    paired_user = median(paired_user) }
  print(("  %s median: client:recall %.1f us (%.2fx)%s, bare cosocket + cjson %.1f us (1.00x)%s"):format(
    name, lib, lib / bare, tr and (", transport alone %.1f us (%.2fx)"):format(tr, tr / bare) or "", bare,
    ck and (", bare + checks %.1f us (%.2fx; client:recall %.2fx of it)"):format(ck, ck / bare, lib / ck) or ""))
end
cleanup()

print(("\nmedians (us of worker CPU per call; ratio to the bare baseline); load average after: %s"):format(loadavg()))
print_table(rows, "%9.1f")
local paired = {}
for _, r in ipairs(rows) do
  paired[#paired + 1] = ("%s %.2fx (user time alone %.2fx)"):format(r.name, r.paired, r.paired_user)
end
print("client:recall / bare, the median of each round's ratio: " .. table.concat(paired, ", "))
