-- A fleet on one Redis: several plain-Lua hosts and the CLI recall for the
-- same app at once, against the simulator's own count of arrivals.  Real
-- time (about 12 s a case): tagged #timing.  On a loaded 2-core machine the
-- arrival spread can grow past the limiter's 50 ms guard; the tests are
-- not loosened for it.
local redis_helper = require "spec.helpers.redis"
local sim = require "spec.helpers.sim"
local fleet = require "spec.helpers.fleet"
local shell = require "spec.helpers.shell"
local clock = require "dingtalk.recall.clock"
local ledger = require "dingtalk.recall.ledger"
local cjson = require("cjson").new()

local trim = shell.trim
local has_socket = pcall(require, "socket")
local has_redis = redis_helper.available()

local CID = "cidFleet"

describe("a fleet on one Redis #timing", function()
  local rs, s, f, ng
  setup(function()
    if not (has_redis and has_socket) then return end
    rs = redis_helper.start()
    s = sim.start { qps = 20 }
    f = fleet.start { redis = rs, sim = s, cid = CID }
    ng = f.ng
  end)
  teardown(function()
    if f then f:stop() end
    if rs then rs:stop() end
    if s then s:stop() end
  end)

  local function hosts() return f:hosts() end

  -- Every host (the nginx workers too) recalled its own share, no error.
  local function check_hosts(outs, per)
    for _, o in ipairs(outs) do
      local r = f:result(o)
      if o.cli then
        local n = r.recalled and (type(r.recalled) == "table" and #r.recalled or r.recalled)
          or (r.report and #r.report.recalled)
        assert.are.equal(per, n, shell.read_file(o.out))
      else
        assert.are.equal(per, r.recalled, o.log and shell.read_file(o.log) or cjson.encode(r))
        assert.are.equal(0, r.errors)
        assert.are.equal(0, r.failed)
      end
    end
  end

  it("3 plain-Lua hosts, the CLI and 2 nginx workers keep to 20 a second together and fetch one token", function()
    if not rs then return pending("redis-server or luasocket missing") end
    s:reset()
    s:config { qps = 20 }
    rs:flush()
    local per = 4800 / hosts() -- 240 requests in all, 12 s at 20 a second
    local keys = s:seed_keys(hosts() * per, CID)
    local t0 = clock.now()
    local run = f:launch(keys, { share = 1 / hosts() })
    assert(f:finish(run, 90))
    local took = clock.now() - t0
    local outs = run.outs
    local st = s:stats()
    assert.is_true(st.max_recall_calls_in_any_1s <= 20, "max in 1 s: " .. st.max_recall_calls_in_any_1s)
    assert.are.equal(0, st.throttled)
    assert.are.equal(1, st.tokens_issued)
    assert.are.equal(hosts() * per, st.recalled)      -- no key lost
    assert.are.equal(hosts() * per, st.recall_keys)   -- none sent twice
    assert.are.equal(240, st.recall_calls)
    check_hosts(outs, per)
    assert.is_true(took >= 11, "the budget was not shared: " .. took .. " s")
    for i = 1, 3 do assert.are.equal("", trim(shell.read_file(outs[i].log) or "")) end
    if not ng then pending("nginx is not installed: the fleet ran without its 2 nginx workers") end
  end)

  it("goes on when Redis is down for 3 s: every key accounted for, fallback and return logged", function()
    if not rs then return pending("redis-server or luasocket missing") end
    s:reset()
    s:config { qps = 20 }
    rs:flush()
    local per = 6000 / hosts() -- 300 requests: about 9 s of them left after the restart
    local keys = s:seed_keys(hosts() * per, CID)
    -- every host alone at its share of the budget: within 20 a second together
    local run = f:launch(keys, { share = 1 / hosts() })
    local outs = run.outs
    clock.sleep(3)
    rs:kill()
    clock.sleep(3)
    rs:restart()
    assert(f:finish(run, 120))
    local st = s:stats()
    assert.are.equal(hosts() * per, st.recalled)
    assert.are.equal(hosts() * per, st.recall_keys)
    assert.are.equal(1, st.tokens_issued)
    assert.is_true(st.max_recall_calls_in_any_1s <= 20, "max in 1 s: " .. st.max_recall_calls_in_any_1s)
    check_hosts(outs, per)
    for _, o in ipairs(outs) do
      if o.nginx then break end -- the nginx workers log to nginx's error log: below
      local log = shell.read_file(o.log) or ""
      local _, down = log:gsub("the shared QPS budget in Redis is unreachable", "")
      local _, back = log:gsub("the shared QPS budget in Redis answers again", "")
      assert.are.equal(1, down, log)  -- said once per outage, per limiter
      if o.cli then
        -- the CLI probes every 3 s (the default): it may finish alone before
        assert.is_true(back <= 1, log)
      else
        assert.are.equal(1, back, log)
      end
      if not o.cli then
        local r = f:result(o)
        assert.are.equal(1, r.outages)
        assert.is_true(r.fallback > 0, "no start through the fallback limiter: " .. cjson.encode(r))
      end
    end
    if ng then
      for i = 5, 6 do
        local r = f:result(outs[i])
        assert.are.equal(per, r.recalled, cjson.encode(r))
        assert.are.equal(1, r.outages)
      end
      local log = ng:error_log()
      local _, down = log:gsub("the shared QPS budget in Redis is unreachable", "")
      local _, back = log:gsub("the shared QPS budget in Redis answers again", "")
      assert.are.equal(2, down, log)
      assert.are.equal(2, back, log)
    end
  end)

  it("two sweeps on one ledger, one killed midway: every due key recalled exactly once", function()
    if not rs then return pending("redis-server or luasocket missing") end
    s:reset()
    s:config { qps = 20 }
    rs:flush()
    local N = 800
    local keys = s:seed_keys(N, CID)
    local l = assert(ledger.open(rs.url, { prefix = "fleet:" }))
    local entries = {}
    for i, k in ipairs(keys) do
      entries[i] = { key = k, conversation = CID, robot = s.robot,
        sent_at = os.time() - 100, ttl = 10 }
    end
    assert(l:record_many(entries))
    local function out(name) return { out = f.dir .. "/sweep-" .. name, log = f.dir .. "/sweep-" .. name .. ".log" } end
    local go = f.dir .. "/sweep-go"
    local function sweep(name, lease, env)
      return f:child("sweep", { tostring(lease), out(name).out }, "sweep-" .. name, env)
    end
    -- a and b begin at once, whatever their start-up takes on a loaded machine
    local env = "GO=" .. shell.quote(go) .. " "
    local a, b = sweep("a", 3, env), sweep("b", 3, env)
    local deadline = clock.now() + 30
    while not (shell.exists(out("a").out .. ".ready") and shell.exists(out("b").out .. ".ready")) do
      assert.is_true(clock.now() < deadline, "the sweeps did not get ready")
      clock.sleep(0.02)
    end
    shell.write_file(go, "go")
    -- a is killed once a quarter is recalled and a has claimed a batch
    -- (a.claimed).  The sweep that starts first can spend the whole
    -- second's budget (20 requests in about 25 ms here) while the other
    -- still waits for the token the first one fetched: the quarter alone
    -- left a killed before it claimed anything (CI: 'the two sweeps did not
    -- run at once', 1 run in 12 here).  b goes through every batch in
    -- order, so it reaches each one a claimed: a's finished ones are
    -- `recalled`, its unfinished ones leased to a for 3 s; either way b
    -- leaves them (elsewhere).
    while true do
      local recalled, claimed = s:stats().recalled, shell.exists(out("a").out .. ".claimed")
      if recalled >= N / 4 and claimed then break end
      assert.is_true(clock.now() < deadline, ("no progress: %d recalled, a claimed %s"):format(
        recalled, claimed and "a batch" or "none"))
      clock.sleep(0.05)
    end
    shell.sh("kill -9 " .. a)
    local killed_at = clock.now()
    assert(f:wait({ b }, 60))
    local rb = f:result(out("b"))
    -- what a had claimed and not finished waits for its lease, then a third sweep takes it over
    local left = #assert(l:list { state = "recalling" })
    local wait = killed_at + 3.2 - clock.now()
    if wait > 0 then clock.sleep(wait) end
    local c = sweep("c", 3)
    assert(f:wait({ c }, 60))
    local rc = f:result(out("c"))
    local st = s:stats()
    assert.are.equal(N, st.recalled) -- the server recalled each key once
    assert.are.equal(N, #assert(l:list { state = "recalled" }))
    assert.are.same({}, assert(l:list { state = "recalling" }))
    -- no key was sent by two live sweeps: only a's unfinished claims were sent again
    assert.is_true(st.recall_keys - N <= left, ("sent %d for %d keys, %d left by the killed sweep"):format(
      st.recall_keys, N, left))
    local seen = {}
    for _, r in ipairs { rb, rc } do
      for _, k in ipairs(r.recalled) do
        assert.is_nil(seen[k], "reported twice: " .. k)
        seen[k] = true
      end
    end
    assert.are.equal(left, #rc.recalled)
    assert.is_true(#rb.elsewhere > 0, "the two sweeps did not run at once")
    l:close()
  end)
end)
