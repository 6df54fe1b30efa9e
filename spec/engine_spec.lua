-- The engine with a fake transport and a fake clock: fairness across
-- groups, keys validated once, hooks, limits, the ledger through the
-- engine (retries, fatal codes and single batches: engine_retry_spec.lua).
-- No sockets and no sleeps: every case runs in milliseconds.
local core = require "dingtalk.recall.core"
local engine = require "dingtalk.recall.engine"
local limiter = require "dingtalk.recall.limiter"
local tokens = require "dingtalk.recall.token"
local fake = require "spec.helpers.fake_transport"
local invariant = require "spec.helpers.invariant"
local h = require "spec.helpers.engine"
local keys_of, client, count_core = h.keys_of, h.client, h.count_core

describe("engine", function()
  before_each(function() tokens.clear_cache() end)

  describe("planning", function()
    it("validates each key once per run: one core.plan per group, one build_batch per request", function()
      local T = fake.new()
      local c = client(T)
      local keys = keys_of("k", 100)
      local counts, restore = count_core()
      local ok, rep = pcall(c.recall, c, "cidOnce", keys)
      restore()
      assert.is_true(ok, rep)
      assert.is_true(rep.ok)
      assert.are.equal(100, #rep.recalled)
      assert.are.equal(1, counts.plan)
      assert.are.equal(5, counts.build_batch)
      -- nothing checks a key again: no per-key validate, no build of a request table
      assert.are.equal(0, counts.validate)
      assert.are.equal(0, counts.build)
      assert.are.equal(5, #T.sent)
      -- and with several groups: one plan each, one build per batch
      counts, restore = count_core()
      ok, rep = pcall(c.recall_groups, c, { { conversation = "cidA", keys = keys_of("a", 45) },
        { conversation = "cidB", keys = keys_of("b", 3) } })
      restore()
      assert.is_true(ok, rep)
      assert.are.equal(2, counts.plan)
      assert.are.equal(4, counts.build_batch)
    end)

    it("sends every one-key group among the first 51 requests when a 2,000-key group comes first", function()
      local T = fake.new { latency = 0.2 }
      local c = client(T, { concurrency = 8 })
      local groups = { { conversation = "cidBig", keys = keys_of("big", 2000) } }
      for i = 1, 50 do groups[#groups + 1] = { conversation = "cidSmall" .. i, keys = { "small" .. i } } end
      local rep = assert(c:recall_groups(groups))
      assert.is_true(rep.ok)
      assert.are.equal(2050, #rep.recalled)
      local sent = fake.recalls(T)
      assert.are.equal(100 + 50, #sent)
      local small_seen = 0
      for i = 1, 51 do
        if sent[i].cid:find("^cidSmall") then small_seen = small_seen + 1 end
      end
      assert.are.equal(50, small_seen)
      assert.are.equal("cidBig", sent[1].cid)
      assert.are.equal("cidBig", sent[52].cid)
      assert.are.equal(8, T.peak)
    end)

    it("is fair round robin: the first batch of every plan before the second of any", function()
      local T = fake.new()
      local c = client(T, { concurrency = 2 })
      local rep = assert(c:recall_groups { { conversation = "c1", keys = keys_of("x", 60) },
        { conversation = "c2", keys = keys_of("y", 41) }, { conversation = "c3", keys = keys_of("z", 5) } })
      assert.is_true(rep.ok)
      local order = {}
      for _, r in ipairs(fake.recalls(T)) do order[#order + 1] = r.cid end
      assert.are.same({ "c1", "c2", "c3", "c1", "c2", "c1", "c2" }, order)
    end)

    it("drops a key already seen in an earlier group and counts it once", function()
      local T = fake.new()
      local rep = assert(client(T):recall_groups { { conversation = "c1", keys = { "a", "b" } },
        { conversation = "c2", keys = { "b", "c" } }, { conversation = "c3", keys = { "a" } } })
      assert.are.equal(3, rep.total)
      invariant.assert(rep, { "a", "b", "c" })
      assert.are.equal(2, #fake.recalls(T))
    end)

    it("puts keys the core refuses in errors, reported as batch 0, and sends the rest", function()
      local T = fake.new()
      local c = client(T)
      local done = {}
      local plan = assert(core.plan("cidBad", "dingRobot", { "good1", "bad\nkey", "good2", "" }))
      local rep = c:run({ plan }, { on_batch_done = function(_, i, keys, outcomes)
        done[#done + 1] = { i = i, n = #keys, first = outcomes[keys[1]] }
      end })
      assert.are.equal(4, rep.total)
      assert.are.equal(2, #rep.recalled)
      assert.are.equal("invalidParameter.param.invalid", rep.errors["bad\nkey"].code)
      assert.are.same({ { i = 0, n = 2, first = "error" }, { i = 1, n = 2, first = "recalled" } }, done)
      assert.are.equal(1, #T.sent)
    end)
  end)

  describe("hooks", function()
    it("calls on_batch_start before each batch's first attempt and on_batch_done once, in order", function()
      local T = h.answers { function() return fake.code(500, "system.error") end, fake.ok }
      local c = client(T, { concurrency = 1 })
      local events = {}
      local plan = assert(core.plan("cidHooks", "dingRobot", keys_of("h", 25)))
      local rep = c:run({ plan }, {
        on_batch_start = function(p, i, keys)
          assert.are.equal(plan, p)
          events[#events + 1] = "start " .. i .. " " .. #keys
        end,
        on_batch_done = function(_, i, keys, outcomes)
          for _, k in ipairs(keys) do assert.are.equal("recalled", outcomes[k]) end
          events[#events + 1] = "done " .. i
        end,
        on_progress = function(d, t) events[#events + 1] = d .. "/" .. t end,
      })
      assert.is_true(rep.ok)
      assert.are.equal(1, rep.retries)
      -- batch 1 failed once and waits its backoff while batch 2 goes; each
      -- batch starts once and is done once
      assert.are.same({ "start 1 20", "start 2 5", "done 2", "5/25", "done 1", "25/25" }, events)
    end)

    it("does not send a batch its on_batch_start refuses; its keys end in errors", function()
      local T = fake.new()
      local c = client(T)
      local plan = assert(core.plan("cidRefuse", "dingRobot", keys_of("r", 40)))
      local why = core.error("ledger.io", "disk full")
      local rep = c:run({ plan }, { on_batch_start = function(_, i)
        if i == 2 then return false, why end
      end })
      assert.are.equal(20, #rep.recalled)
      assert.are.equal(why, rep.errors.r21)
      assert.are.equal(1, #T.sent)
      invariant.assert(rep, keys_of("r", 40))
    end)
  end)

  describe("a refused batch and the QPS budget", function()
    it("asks on_batch_start before the limiter: a batch the hook refuses costs no start", function()
      local T = fake.new()
      local asked = 0
      local lim = { acquire = function() asked = asked + 1; return 0 end }
      local c = client(T, { limiter = lim })
      local plan = assert(core.plan("cidBudget", "dingRobot", keys_of("q", 100)))
      local rep = c:run({ plan }, { on_batch_start = function(_, i)
        if i % 2 == 0 then return false, core.error("ledger.elsewhere", "another host holds these") end
      end })
      assert.are.equal(3, #T.sent)      -- batches 1, 3 and 5
      assert.are.equal(3, asked)        -- one start of the budget each, none for 2 and 4
      assert.are.equal(60, #rep.recalled)
      invariant.assert(rep, keys_of("q", 100))
    end)
  end)

  describe("limits", function()
    it("never starts more than qps requests in any window, waiting without polling in a loop", function()
      local T = fake.new { latency = 0.001 }
      local rep = assert(client(T, { qps = 5, qps_window = 1, concurrency = 8 }):recall("cidQ", keys_of("q", 400)))
      assert.is_true(rep.ok)
      local s = fake.recalls(T)
      assert.are.equal(20, #s)
      for i = 6, #s do assert.is_true(s[i].at - s[i - 5].at >= 1 - 1e-9) end
      assert.is_true(T.polls < 100, T.polls) -- each wait is one poll, not a spin
    end)

    it("keeps at most `concurrency` in flight", function()
      local T = fake.new { latency = 0.3 }
      assert(client(T, { concurrency = 3 }):recall("cidC", keys_of("c", 300)))
      assert.are.equal(3, T.peak)
    end)

    it("keeps the per-key invariant under random faults (fake clock)", function()
      math.randomseed(7)
      for seed = 1, 20 do
        local rnd = seed
        local function r()
          rnd = (rnd * 1103515245 + 12345) % 2147483648
          return rnd / 2147483648
        end
        local T = fake.new { answer = function(req)
          local x = r()
          if req.kind == "token" then return fake.token(req) end
          if x < 0.1 then return fake.code(500, "system.error") end
          if x < 0.15 then return { error = core.error("transport.io", "reset") } end
          if x < 0.2 then return fake.code(403, "Forbidden.AccessDenied.QpsLimitForApi") end
          if x < 0.25 then return { status = 502, headers = {}, body = "<html>bad gateway</html>" } end
          if x < 0.3 then return fake.code(401, "InvalidAuthentication") end
          if x < 0.35 then return fake.ok(req, { [req.keys[1]] = "ALREADY_RECALLED" }) end
          return fake.ok(req)
        end, latency = 0.02 }
        local keys = keys_of("s" .. seed .. "-", 150)
        keys[#keys + 1] = keys[1]
        local rep = assert(client(T, { app_key = "k" .. seed, app_secret = "s", max_retries = 2, concurrency = 3 })
          :recall("cidRand", keys))
        invariant.assert(rep, keys)
        assert.is_true(#T.sent <= 8 * 3 + 8 * 2 * 3, #T.sent)
      end
    end)
  end)

  describe("the ledger through the engine", function()
    local ledger = require "dingtalk.recall.ledger"
    local dir
    setup(function()
      dir = os.tmpname()
      os.remove(dir)
    end)
    teardown(function()
      os.execute("rm -rf '" .. dir .. "'")
    end)

    it("reaches the configured concurrency with 8 conversations, fair across them", function()
      local l = assert(ledger.open(dir .. "/peak/ledger"))
      local now = os.time()
      local entries = {}
      for c = 1, 8 do
        for k = 1, 100 do
          entries[#entries + 1] = { key = "c" .. c .. "k" .. k, conversation = "cidPeak" .. c, robot = "dingRobot",
            sent_at = now - 1000 + c }
        end
      end
      assert(l:record_many(entries))
      local T = fake.new { latency = 0.2 }
      local dones = 0
      local rep = assert(l:recall(client(T, { concurrency = 6 }), {}, { on_progress = function(d, t)
        dones = dones + 1
        assert.are.equal(800, t)
        assert.is_true(d <= t)
      end }))
      assert.is_true(rep.ok)
      assert.are.equal(800, #rep.recalled)
      assert.are.equal(6, T.peak)
      assert.are.equal(40, dones)
      -- the first 8 requests go to 8 different conversations
      local first = {}
      for i = 1, 8 do first[fake.recalls(T)[i].cid] = true end
      for c = 1, 8 do assert.is_true(first["cidPeak" .. c], "conversation " .. c .. " not among the first 8") end
      for _, e in ipairs(entries) do assert.are.equal("recalled", l:get(e.key).state) end
      assert.are.equal(40, #T.sent)
      l:close()
    end)

    it("marks a plan's keys recalling before its first batch is sent", function()
      local l = assert(ledger.open(dir .. "/mark/ledger", { chunk = 30 }))
      local entries = {}
      for k = 1, 45 do entries[k] = { key = "m" .. k, conversation = "cidMark", robot = "dingRobot" } end
      assert(l:record_many(entries))
      local seen = {}
      local T = fake.new { answer = function(req)
        for _, k in ipairs(req.keys) do seen[#seen + 1] = l:get(k).state end
        return fake.ok(req)
      end }
      assert(l:recall(client(T, { concurrency = 1 }), {}))
      assert.are.equal(45, #seen)
      for _, st in ipairs(seen) do assert.are.equal("recalling", st) end
      assert.are.equal("recalled", l:get("m45").state)
      l:close()
    end)
  end)

  describe("the ledger with a client that only has recall", function()
    local ledger = require "dingtalk.recall.ledger"
    it("calls it once per chunk, in order, and persists every outcome", function()
      local dir = os.tmpname()
      os.remove(dir)
      local l = assert(ledger.open(dir .. "/ledger", { chunk = 40 }))
      local entries = {}
      local t0 = os.time() - 1000
      for k = 1, 100 do
        entries[k] = { key = "d" .. k, conversation = "cidDuck", robot = "dingRobot", sent_at = t0 + k }
      end
      assert(l:record_many(entries))
      local T = fake.new { answer = function(req) return fake.ok(req, { d7 = "NOPE" }) end }
      local real = client(T)
      local calls = {}
      local duck = { recall = function(_, cid, keys, o)
        calls[#calls + 1] = #keys
        assert.are.equal("cidDuck", cid)
        assert.are.equal("dingRobot", o.robot_code)
        for _, k in ipairs(keys) do assert.are.equal("recalling", l:get(k).state) end
        return real:recall(cid, keys, o)
      end }
      local rep = assert(l:recall(duck, {}))
      assert.are.same({ 40, 40, 20 }, calls)
      assert.are.equal(99, #rep.recalled)
      assert.are.equal("NOPE", rep.failed.d7)
      assert.are.equal(100, rep.total)
      assert.are.equal("failed", l:get("d7").state)
      assert.are.equal("recalled", l:get("d100").state)
      l:close()
      os.execute("rm -rf '" .. dir .. "'")
    end)
  end)

  describe("engine.new", function()
    it("raises on wrong settings from the programmer", function()
      local T = fake.new()
      local tm = assert(tokens.new { access_token = "t" })
      assert.has_error(function() engine.new { transport = T } end)
      assert.has_error(function() engine.new { transport = T, tokens = tm, concurrency = 0 } end)
      assert.has_error(function() engine.new { transport = T, tokens = tm, concurrency = 0 / 0 } end)
      assert.has_error(function() engine.new { transport = T, tokens = tm, max_retries = 11 } end)
      assert.is_table(engine.new { transport = T, tokens = tm, limiter = limiter.new(5) })
    end)
  end)
end)

describe("limiter", function()
  it("acquire takes a start or answers the wait, never more than rate in a window", function()
    local lim = limiter.new(3, 1)
    assert.are.equal(0, lim:acquire(0))
    assert.are.equal(0, lim:acquire(0.1))
    assert.are.equal(0, lim:acquire(0.2))
    assert.is_true(math.abs(lim:acquire(0.5) - 0.5) < 1e-9)
    assert.are.equal(0, lim:acquire(1.0))
    assert.is_true(lim:acquire(1.05) > 0)
    assert.are.equal(0, limiter.new(0):acquire(0))
    for _, bad in ipairs { -1, 2.5, 0 / 0, math.huge, "5" } do
      assert.has_error(function() limiter.new(bad) end)
    end
    assert.has_error(function() limiter.new(1, 0) end)
  end)

  it("wraps a delay/take limiter in acquire", function()
    local taken = 0
    local old = { delay = function(_, t) return t < 1 and 1 - t or 0 end, take = function() taken = taken + 1 end }
    local w = limiter.wrap(old)
    assert.are.equal(0.5, w:acquire(0.5))
    assert.are.equal(0, taken)
    assert.are.equal(0, w:acquire(1))
    assert.are.equal(1, taken)
  end)
end)
