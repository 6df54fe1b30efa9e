--- Soak: is memory flat over a long run in one process (issue 6, item 4)?
--
--   1. 1,000,000 core.validate + core.build pairs over varied requests
--      (valid ones of 1 to 20 keys, and ones each check refuses: 21 keys,
--      empty or bad keys, a missing conversation, a bad endpoint, a missing
--      or malformed token...), a fresh key string every iteration;
--   2. 100,000 client:recall calls of one key each, through one client
--      (concurrency 1, so one HTTP request each) against the simulator,
--      every key a real one that the simulator recalls.  The keys are seeded
--      in rounds of 1,000 (one admin call each), so that the process never
--      holds more than a round's keys: memory the keys free cannot hide a
--      leak of the client.
-- RSS (VmRSS of /proc/self/status) and the Lua heap (collectgarbage "count")
-- are sampled 100 times a phase; the first 10% is warm-up.  The phase passes
-- when RSS at the end is less than 5% above RSS at the end of warm-up, and
-- (phase 2) when every key was recalled.
--
--   LUA_PATH="$PWD/lua/?.lua;$PWD/lua/?/init.lua;$PWD/?.lua;;" \
--   LUA_CPATH="$PWD/build/5.4/?.so;;" lua5.4 bench/soak.lua [options]
--
-- options: --quick (100,000 pairs, 10,000 recalls), --calls N, --recalls N,
-- --tls (the simulator over HTTPS), --json (one JSON line at the end too).
-- Needs the simulator's nginx (docs/simulator.md) for phase 2 (--recalls 0
-- skips it).  Exits 1 when a phase fails.  Figures: bench/README.md.
local core = require "dingtalk.recall.core"
local curl = require "dingtalk.recall.curl"

local function rss_kb()
  local f = io.open("/proc/self/status", "r")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return tonumber(s:match("VmRSS:%s*(%d+)")), tonumber(s:match("VmHWM:%s*(%d+)"))
end

local function shell(cmd)
  local p = io.popen(cmd .. " 2>/dev/null")
  local out = p and p:read("*a") or ""
  if p then p:close() end
  return (out:gsub("%s+$", ""))
end

local function now() return curl.now() end

---------------------------------------------------------------------------
-- options
---------------------------------------------------------------------------
local opts = { calls = 1000000, recalls = 100000, tls = false, json = false }
do
  local i = 1
  while arg[i] do
    local a = arg[i]
    if a == "--quick" then
      opts.calls, opts.recalls = 100000, 10000
    elseif a == "--calls" then
      i = i + 1
      opts.calls = assert(tonumber(arg[i]), "--calls N")
    elseif a == "--recalls" then
      i = i + 1
      opts.recalls = assert(tonumber(arg[i]), "--recalls N")
    elseif a == "--tls" then
      opts.tls = true
    elseif a == "--json" then
      opts.json = true
    else
      io.stderr:write("usage: lua bench/soak.lua [--quick] [--calls N] [--recalls N] [--tls] [--json]\n")
      os.exit(2)
    end
    i = i + 1
  end
end

---------------------------------------------------------------------------
-- sampling
---------------------------------------------------------------------------
-- A phase of n iterations: sample(i) after iteration i records RSS and the
-- heap 100 times; finish() reports.
local function tracker(name, n)
  local t = { name = name, n = n, samples = {}, every = math.max(1, math.floor(n / 100)),
    warm_at = math.max(1, math.floor(n / 10)) }
  t.rss0 = rss_kb()
  t.heap0 = collectgarbage("count")
  function t.sample(i)
    if i % t.every == 0 or i == n then
      local rss = rss_kb()
      t.samples[#t.samples + 1] = { i = i, rss = rss, heap = collectgarbage("count") }
      if i >= t.warm_at and not t.warm then
        t.warm = t.samples[#t.samples]
        -- the live heap at the end of warm-up (a full collection, once)
        collectgarbage("collect")
        t.warm.live = collectgarbage("count")
      end
    end
  end
  function t.finish(elapsed)
    local last = t.samples[#t.samples]
    local max_after = 0
    for _, s in ipairs(t.samples) do
      if s.i >= t.warm_at and s.rss > max_after then max_after = s.rss end
    end
    -- the live heap once everything collectable is gone
    collectgarbage("collect")
    collectgarbage("collect")
    local r = {
      phase = name, iterations = n, elapsed = elapsed, rate = n / elapsed,
      rss_start_kb = t.rss0, rss_warm_kb = t.warm.rss, rss_end_kb = last.rss, rss_max_after_warm_kb = max_after,
      heap_start_kb = t.heap0, heap_warm_kb = t.warm.heap, heap_end_kb = last.heap,
      heap_live_warm_kb = t.warm.live, heap_live_end_kb = collectgarbage("count"),
      growth_pct = (last.rss - t.warm.rss) / t.warm.rss * 100,
      max_growth_pct = (max_after - t.warm.rss) / t.warm.rss * 100,
      warm_up_iterations = t.warm_at,
    }
    r.pass = r.growth_pct < 5
    r.rss_samples_kb = {}
    for k, x in ipairs(t.samples) do r.rss_samples_kb[k] = x.rss end
    return r
  end
  return t
end

---------------------------------------------------------------------------
-- phase 1: validate + build
---------------------------------------------------------------------------
local function phase_calls(n)
  local base_keys = {}
  for i = 1, 20 do base_keys[i] = ("Base64Key%02d+/=_-abcdefghij"):format(i) end
  local long = string.rep("k", 1025) -- over the core's 1024 bytes a field
  -- kind -> function(i) returning request, options; "ok" tells whether the
  -- pair must succeed (checked, so the loop measures what it claims).
  local TOKEN = "soak-token-0123456789abcdef"
  local EP = "https://api.dingtalk.com"
  local kinds = {
    { true, function(i) return { openConversationId = "cidSoak", robotCode = "dingSoak",
      processQueryKeys = { ("k%09d"):format(i) } }, { access_token = TOKEN } end },
    { true, function(i)
      local keys = {}
      for j = 1, 20 do keys[j] = base_keys[j] end
      keys[20] = ("v%09d"):format(i)
      return { openConversationId = "cid" .. (i % 977), robotCode = "dingSoak", processQueryKeys = keys },
        { access_token = TOKEN, endpoint = EP, timeout = 5 }
    end },
    { true, function(i) return { openConversationId = "cid中文群" .. (i % 13), robotCode = "dingSoak",
      processQueryKeys = { ("u%09d"):format(i), "dup", "dup" } }, { access_token = TOKEN,
      endpoint = "http://127.0.0.1:8080" } end },
    { false, function(i)
      local keys = {}
      for j = 1, 21 do keys[j] = ("o%02d%09d"):format(j, i) end
      return { openConversationId = "cidSoak", robotCode = "dingSoak", processQueryKeys = keys },
        { access_token = TOKEN }
    end },
    { false, function(i) return { openConversationId = "cidSoak", robotCode = "dingSoak",
      processQueryKeys = { "", ("e%09d"):format(i) } }, { access_token = TOKEN } end },
    { false, function(i) return { openConversationId = "cidSoak", robotCode = "dingSoak",
      processQueryKeys = { ("bad\nkey%d"):format(i) } }, { access_token = TOKEN } end },
    { false, function(i) return { openConversationId = "cidSoak", robotCode = "dingSoak",
      processQueryKeys = { long .. i } }, { access_token = TOKEN } end },
    { false, function(i) return { robotCode = "dingSoak", processQueryKeys = { ("m%09d"):format(i) } },
      { access_token = TOKEN } end },
    { false, function(i) return { openConversationId = "cidSoak", robotCode = "",
      processQueryKeys = { ("r%09d"):format(i) } }, { access_token = TOKEN } end },
    { false, function(i) return { openConversationId = "cidSoak", robotCode = "dingSoak",
      processQueryKeys = {} }, { access_token = TOKEN .. i } end },
    { false, function(i) return { openConversationId = "cidSoak", robotCode = "dingSoak",
      processQueryKeys = { ("p%09d"):format(i) } }, { access_token = TOKEN, endpoint = "http://example.com" } end },
    { false, function(i) return { openConversationId = "cidSoak", robotCode = "dingSoak",
      processQueryKeys = { ("t%09d"):format(i) } }, { access_token = "bad token\n" .. i } end },
    { false, function(i) return { openConversationId = "cidSoak", robotCode = "dingSoak",
      processQueryKeys = { ("n%09d"):format(i) } }, {} end },
    { false, function(i) return { openConversationId = "cidSoak", robotCode = "dingSoak",
      processQueryKeys = { ("w%09d"):format(i), 42 } }, { access_token = TOKEN } end },
  }
  -- Half valid, half refused: the three valid kinds take turns between the refused ones.
  local plan, valid, v = {}, {}, 0
  for _, k in ipairs(kinds) do
    if k[1] then valid[#valid + 1] = k end
  end
  for _, k in ipairs(kinds) do
    if not k[1] then
      v = v % #valid + 1
      plan[#plan + 1] = valid[v]
      plan[#plan + 1] = k
    end
  end
  local nk = #plan
  local counts = { ok = 0, refused = 0, codes = {} }
  local t = tracker("validate+build", n)
  local t0 = now()
  for i = 1, n do
    local kind = plan[i % nk + 1]
    local req, o = kind[2](i)
    local okv, verr = core.validate(req, o)
    local built, berr = core.build(req, o)
    if kind[1] then
      if not (okv and built) then error(("iteration %d: a valid request was refused: %s"):format(i,
        tostring(verr or berr))) end
      counts.ok = counts.ok + 1
    else
      if built then error(("iteration %d (kind %d): an invalid request was built"):format(i, i % nk + 1)) end
      local code = (berr or verr).code
      counts.codes[code] = (counts.codes[code] or 0) + 1
      counts.refused = counts.refused + 1
    end
    t.sample(i)
  end
  local r = t.finish(now() - t0)
  r.built, r.refused, r.codes = counts.ok, counts.refused, counts.codes
  return r
end

---------------------------------------------------------------------------
-- phase 2: single-key recalls against the simulator
---------------------------------------------------------------------------
local function phase_recalls(n)
  local ok_sim, sim = pcall(require, "spec.helpers.sim")
  if not ok_sim then error("phase 2 needs spec/helpers/sim.lua on LUA_PATH ($PWD/?.lua): " .. tostring(sim)) end
  local recall = require "dingtalk.recall"
  local s = sim.start { tls = opts.tls }
  local ok, res = pcall(function()
    local cid = "cidSoak"
    local ROUND = 1000
    local keys, base = {}, 0
    local client = assert(recall.client { robot_code = s.robot, endpoint = s.url, ca_file = s.ca_file,
      access_token = s.token, concurrency = 1, qps = 0 })
    local t = tracker("recall (1 key each)", n)
    local t0 = now()
    local recalled, requests, retries, bad = 0, 0, 0, nil
    local one = {}
    for i = 1, n do
      if i > base + #keys then -- the next round of keys
        base = i - 1
        keys = s:seed_keys(math.min(ROUND, n - base), cid)
      end
      local key = keys[i - base]
      one[1] = key
      local report, err = client:recall(cid, one)
      if not report then
        bad = bad or ("recall %d: %s"):format(i, tostring(err))
      else
        requests = requests + report.requests
        retries = retries + report.retries
        if report.recalled[1] == key and report.total == 1 then
          recalled = recalled + 1
        elseif not bad then
          local _, e = next(report.errors)
          local _, f = next(report.failed)
          bad = ("recall %d: not recalled (%s)"):format(i, tostring(e or f))
        end
      end
      t.sample(i)
    end
    local r = t.finish(now() - t0)
    client:close()
    local st = s:stats()
    r.recalled, r.requests, r.retries, r.first_problem = recalled, requests, retries, bad
    r.server_recall_calls, r.server_recalled = st.recall_calls, st.recalled
    r.pass = r.pass and recalled == n and st.recalled == n
    r.transport = opts.tls and "https (TLS, keep-alive)" or "http (loopback, keep-alive)"
    return r
  end)
  s:stop()
  if not ok then error(res, 0) end
  return res
end

---------------------------------------------------------------------------
-- report
---------------------------------------------------------------------------
local function kb(v) return v and ("%.1f MiB"):format(v / 1024) or "-" end

local function print_phase(r)
  io.write(("\n== %s: %d iterations in %.1f s (%.0f/s)\n"):format(r.phase, r.iterations, r.elapsed, r.rate))
  io.write(("   RSS   start %s, end of warm-up (%d) %s, end %s, max after warm-up %s\n"):format(
    kb(r.rss_start_kb), r.warm_up_iterations, kb(r.rss_warm_kb), kb(r.rss_end_kb), kb(r.rss_max_after_warm_kb)))
  io.write(("   RSS growth after warm-up: %+.2f%% at the end, %+.2f%% at most -> %s\n"):format(
    r.growth_pct, r.max_growth_pct, r.pass and "PASS (< 5%)" or "FAIL"))
  io.write(("   Lua heap  start %.0f KiB, end of warm-up %.0f KiB, end %.0f KiB; live (after a full GC) "
    .. "%.0f KiB at the end of warm-up, %.0f KiB at the end\n"):format(r.heap_start_kb, r.heap_warm_kb,
    r.heap_end_kb, r.heap_live_warm_kb, r.heap_live_end_kb))
  if r.built then
    local codes = {}
    for c, k in pairs(r.codes) do codes[#codes + 1] = c .. " " .. k end
    table.sort(codes)
    io.write(("   built %d, refused %d:\n     %s\n"):format(r.built, r.refused, table.concat(codes, "\n     ")))
  end
  if r.recalled then
    io.write(("   recalled %d of %d over %s: %d requests, %d retries; the simulator counted %d calls, "
      .. "%d recalled\n"):format(r.recalled, r.iterations, r.transport, r.requests, r.retries,
      r.server_recall_calls, r.server_recalled))
    if r.first_problem then io.write("   first problem: ", r.first_problem, "\n") end
  end
end

local function json(v)
  local t = type(v)
  if t == "table" and #v > 0 then
    local parts = {}
    for i = 1, #v do parts[i] = json(v[i]) end
    return "[" .. table.concat(parts, ",") .. "]"
  elseif t == "table" then
    local parts = {}
    for k, x in pairs(v) do parts[#parts + 1] = core.json_string(tostring(k)) .. ":" .. json(x) end
    table.sort(parts)
    return "{" .. table.concat(parts, ",") .. "}"
  elseif t == "string" then
    return core.json_string(v)
  elseif t == "number" then
    if v ~= v or v == math.huge or v == -math.huge then return "null" end
    return ("%.6g"):format(v)
  elseif t == "boolean" then
    return tostring(v)
  end
  return "null"
end

local jit = rawget(_G, "jit")
local machine = {
  runtime = type(jit) == "table" and jit.version or _VERSION,
  curl = curl.version and curl.version() or "?",
  nproc = shell("nproc"), cpu = shell("lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1"),
  kernel = shell("uname -sr"), date = os.date("!%Y-%m-%dT%H:%M:%SZ"),
}
io.write(("soak: %s, libcurl %s, %s CPU(s): %s, %s\n"):format(machine.runtime, tostring(machine.curl),
  machine.nproc, machine.cpu, machine.kernel))

local results, pass = { machine = machine }, true
if opts.calls > 0 then
  results.calls = phase_calls(opts.calls)
  print_phase(results.calls)
  pass = pass and results.calls.pass
end
if opts.recalls > 0 then
  results.recalls = phase_recalls(opts.recalls)
  print_phase(results.recalls)
  pass = pass and results.recalls.pass
end
local _, hwm = rss_kb()
io.write(("\npeak RSS of the process (VmHWM): %s\n"):format(kb(hwm)))
io.write(pass and "soak: PASS\n" or "soak: FAIL\n")
if opts.json then io.write(json(results), "\n") end
os.exit(pass and 0 or 1)
