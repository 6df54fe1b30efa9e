-- The OpenResty transport across the workers of one nginx: one access
-- token and one QPS budget for all of them through the lua_shared_dict
-- (and the control: per-worker limiters go over).  Runs under any Lua
-- against the simulator, driving nginx with the curl CLI.
local nginx = require "spec.helpers.nginx"
local sim = require "spec.helpers.sim"
local json = sim.json
local ortest = require "spec.helpers.ortest"

local available, why = nginx.available()

-- The simulator, and an nginx of two workers with the shared dict.
describe("openresty transport with 2 workers", function()
  if not available then return pending("nginx is missing: " .. tostring(why)) end
  local s, n2
  setup(function()
    s = sim.start { tls = true }
    local o = ortest.conf { workers = 2 }
    o.trusted_ca = s.ca_file
    n2 = nginx.start(o)
  end)
  teardown(function()
    if n2 then n2:stop() end
    if s then s:stop() end
  end)
  before_each(function() ortest.fresh(s) end)

  local function base(extra) return ortest.base(s, extra) end

  local gen = 0
  local function on_both(job_for)
    gen = gen + 1
    local status, body = n2:request("POST", "/qps/start", { body = json.encode {
      gen = gen, jobs = { ["0"] = job_for(0), ["1"] = job_for(1) } } })
    assert.are.equal(200, status, body)
    local deadline = os.time() + 60
    while true do
      local st, out = n2:request("GET", "/qps/result?gen=" .. gen .. "&n=2")
      if st == 200 then
        local res = json.decode(out)
        for _, r in ipairs(res) do assert.is_nil(r.err, out) end
        assert.are_not.equal(res[1].pid, res[2].pid)
        return res
      end
      assert(os.time() <= deadline, "the workers did not finish")
      nginx.sh("sleep 0.1")
    end
  end

  it("share one access token", function()
    local opts = base { app_key = s.app_key, app_secret = s.app_secret }
    opts.access_token = nil
    s:reset()
    local function round()
      local keys = { s:seed_keys(2, "cidTok0", s.robot), s:seed_keys(2, "cidTok1", s.robot) }
      local res = on_both(function(id) return { client = opts, cid = "cidTok" .. id, keys = keys[id + 1] } end)
      for _, r in ipairs(res) do
        assert.are.equal("timer", r.phase)
        assert.are.equal("openresty", r.transport)
        assert.is_true(r.report.ok)
      end
      return res
    end
    round()
    -- both workers started cold at the same moment: one fetch, or one each
    local fetched = s:stats().token_fetches
    assert.is_true(fetched >= 1 and fetched <= 2)
    for _, r in ipairs(round()) do assert.are.equal(0, r.report.token_fetches) end
    assert.are.equal(fetched, s:stats().token_fetches)
  end)

  it("keep the app's QPS together #timing", function()
    local qps = 4
    -- warm up: pooled connections in both workers, so that every measured
    -- call goes out as soon as it starts (no TLS handshake in between)
    local warm = base { concurrency = 4, qps = 0 }
    local wkeys = { s:seed_keys(80, "cidQps0", s.robot), s:seed_keys(80, "cidQps1", s.robot) }
    on_both(function(id) return { client = warm, cid = "cidQps" .. id, keys = wkeys[id + 1] } end)
    s:reset()
    local opts = base { qps = qps, concurrency = 4 }
    local keys = { s:seed_keys(120, "cidQps0", s.robot), s:seed_keys(120, "cidQps1", s.robot) }
    local res = on_both(function(id)
      return { client = opts, cid = "cidQps" .. id, keys = keys[id + 1], record = "qps" }
    end)
    local st = s:stats()
    for _, r in ipairs(res) do
      assert.is_true(r.report.ok, json.encode(r.report))
      assert.are.equal(120, #r.report.recalled)
    end
    assert.are.equal(12, st.recall_calls)
    -- the limiter's promise, on the clients' clock: no qps + 1 starts
    -- (of both workers together) within 1.1 s
    local _, body = n2:request("GET", "/starts?key=qps")
    local starts = json.decode(body)
    table.sort(starts)
    assert.are.equal(12, #starts)
    local rel = {}
    for i, t in ipairs(starts) do rel[i] = ("%.3f"):format(t - starts[1]) end
    rel = "starts at " .. table.concat(rel, " ")
    for i = 1, #starts - qps do
      assert.is_true(starts[i + qps] - starts[i] >= 1.1 - 1e-6,
        ("%d starts within %.3f s; %s"):format(qps + 1, starts[i + qps] - starts[i], rel))
    end
    -- and what the server saw
    print(("\n  2 workers, qps %d: %d calls, at most %d in any 1 s at the simulator, %.2f s and %.2f s"):format(
      qps, st.recall_calls, st.max_recall_calls_in_any_1s, res[1].report.elapsed, res[2].report.elapsed))
    assert.is_true(st.max_recall_calls_in_any_1s <= qps,
      "max_recall_calls_in_any_1s " .. st.max_recall_calls_in_any_1s .. " > " .. qps .. "; " .. rel)
    assert.are.equal(0, st.throttled)
  end)

  it("logged no Lua error", function()
    ortest.clean_log(n2:error_log())
  end)

  it("would go over the QPS with per-worker limiters (the control) #timing", function()
    local qps = 4
    local opts = base { qps = qps, concurrency = 4, shared_dict = false }
    s:reset()
    local keys = { s:seed_keys(100, "cidQps0", s.robot), s:seed_keys(100, "cidQps1", s.robot) }
    on_both(function(id) return { client = opts, cid = "cidQps" .. id, keys = keys[id + 1] } end)
    local st = s:stats()
    assert.are.equal(10, st.recall_calls)
    assert.is_true(st.max_recall_calls_in_any_1s > qps, "the control stayed within the QPS: at most " ..
      st.max_recall_calls_in_any_1s .. " in any 1 s")
  end)
end)
