-- The engine's retries, fatal codes and single batches, with a fake
-- transport and a fake clock (no sockets, no sleeps): bounds of retries
-- and token refetches, the stop after a fatal code, and a single batch's
-- happy path (engine/init.lua) against what a run does with the same batch.
local core = require "dingtalk.recall.core"
local tokens = require "dingtalk.recall.token"
local fake = require "spec.helpers.fake_transport"
local invariant = require "spec.helpers.invariant"
local h = require "spec.helpers.engine"
local keys_of, client = h.keys_of, h.client

describe("engine", function()
  before_each(function() tokens.clear_cache() end)

  describe("retries", function()
    it("retries with exponential backoff and jitter, at most max_retries times", function()
      local T = fake.new { latency = 0.01, answer = function() return fake.code(500, "system.error") end }
      local rand = { 0, 1, 0.5 }
      local i = 0
      local c = client(T, { max_retries = 3, backoff_base = 1, backoff_max = 100, random = function()
        i = i + 1
        return rand[i]
      end })
      local rep = assert(c:recall("cidRetry", { "k1", "k2" }))
      assert.are.equal(4, #T.sent)
      assert.are.equal(3, rep.retries)
      assert.are.equal("system.error", rep.errors.k1.code)
      -- delays: base 1 * 2^(n-1), jittered in [base/2, base]: 0.5, 2, 3
      local gaps = {}
      for n = 2, 4 do gaps[n - 1] = T.sent[n].at - T.sent[n - 1].at - 0.01 end
      assert.is_true(math.abs(gaps[1] - 0.5) < 1e-6, gaps[1])
      assert.is_true(math.abs(gaps[2] - 2) < 1e-6, gaps[2])
      assert.is_true(math.abs(gaps[3] - 3) < 1e-6, gaps[3])
    end)

    it("takes an error's own retryable = false over its code's flag (a cosocket in the wrong phase)", function()
      assert.is_true(core.codes["transport.connect"].retryable)
      local T = fake.new { latency = 0.01, answer = function()
        return { error = core.error("transport.connect", "no cosockets here", { retryable = false }) }
      end }
      local rep = assert(client(T, { max_retries = 3 }):recall("cidNoRetry", { "k1" }))
      assert.are.equal(1, #T.sent)
      assert.are.equal(0, rep.retries)
      assert.are.equal("transport.connect", rep.errors.k1.code)
      -- and the same code without the override is retried, as its flag says
      T = fake.new { latency = 0.01, answer = function()
        return { error = core.error("transport.connect", "refused") }
      end }
      rep = assert(client(T, { max_retries = 2, backoff_base = 0.01 }):recall("cidRetry", { "k1" }))
      assert.are.equal(3, #T.sent)
      assert.are.equal(2, rep.retries)
    end)

    it("waits at least a second after a QPS-limit answer and counts it throttled", function()
      local T = h.answers { function() return fake.code(403, "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi") end,
        fake.ok }
      local rep = assert(client(T, { backoff_base = 0.01 }):recall("cidQps", { "k" }))
      assert.is_true(rep.ok)
      assert.are.equal(1, rep.throttled)
      assert.is_true(T.sent[2].at - T.sent[1].at >= 1.0, T.sent[2].at - T.sent[1].at)
    end)

    it("honours a server's retry_after, capped at retry_after_max", function()
      local saved = core.parse
      core.parse = function(...)
        local r, err = saved(...)
        if err then err.retry_after = 1e6 end
        return r, err
      end
      local T = h.answers { function() return fake.code(500, "system.error") end, fake.ok }
      local ok, rep = pcall(function()
        return assert(client(T, { retry_after_max = 7 }):recall("cidRA", { "k" }))
      end)
      core.parse = saved
      assert.is_true(ok, rep)
      assert.is_true(rep.ok)
      local gap = T.sent[2].at - T.sent[1].at
      assert.is_true(gap >= 7 and gap < 7.1, gap)
    end)

    it("counts an already-recalled answer after a lost answer as recalled, not before", function()
      local T = h.answers { function() return { error = core.error("transport.timeout", "lost") } end,
        function(req) return fake.ok(req, { k1 = "ALREADY_RECALLED" }) end }
      local rep = assert(client(T):recall("cidAmb", { "k1", "k2" }))
      assert.is_true(rep.ok)
      assert.are.same({ "k1" }, rep.already_recalled)
      assert.are.equal(2, #rep.recalled)
      -- without a lost answer, the same reason is a failure
      T = fake.new { answer = function(req) return fake.ok(req, { k1 = "ALREADY_RECALLED" }) end }
      rep = assert(client(T):recall("cidAmb", { "k1", "k2" }))
      assert.are.equal("ALREADY_RECALLED", rep.failed.k1)
      assert.are.same({}, rep.already_recalled)
      -- unless the caller says the keys may be gone already (the ledger, `recall KEY`)
      rep = assert(client(T):recall("cidAmb", { "k1", "k2" }, { ambiguous = true }))
      assert.are.same({ "k1" }, rep.already_recalled)
    end)

    it("names a key the server answered nowhere response.missing_key", function()
      local T = fake.new { answer = function()
        return { status = 200, headers = { ["content-type"] = "application/json" },
          body = '{"successResult":["k1"],"failedResult":{}}' }
      end }
      local rep = assert(client(T):recall("cidMiss", { "k1", "k2" }))
      assert.are.same({ "k1" }, rep.recalled)
      assert.are.equal("response.missing_key", rep.errors.k2.code)
    end)

    it("refetches the token once on InvalidAuthentication, then gives up", function()
      local T = fake.new { answer = function(req)
        if req.kind == "token" then return fake.token(req) end
        return fake.code(401, "InvalidAuthentication")
      end }
      local rep = assert(client(T, { app_key = "ak", app_secret = "as" }):recall("cidAuth", keys_of("a", 40)))
      assert.is_false(rep.ok)
      assert.are.equal("InvalidAuthentication", rep.errors.a1.code)
      assert.are.equal(2, #fake.recalls(T) / 2) -- two batches, each sent twice
      assert.is_true(rep.token_fetches <= 3, rep.token_fetches)
    end)

    it("fetches tokens a bounded number of times when the server's tokens expire at once", function()
      local T = fake.new { latency = 0.01, answer = function(req)
        if req.kind == "token" then return fake.token(req, 1e-9) end
        return fake.ok(req)
      end }
      local rep = assert(client(T, { app_key = "ak2", app_secret = "as", concurrency = 1 })
        :recall("cidExp", keys_of("e", 200)))
      -- A lifetime under 60 s is refused (a number from the network out of
      -- range): the run ends at once with every key accounted for.
      assert.is_true(rep.token_fetches <= 2, rep.token_fetches)
      local n = #rep.recalled
      for _ in pairs(rep.errors) do n = n + 1 end
      for _ in pairs(rep.failed) do n = n + 1 end
      assert.are.equal(200, n)
    end)
  end)

  describe("fatal codes", function()
    it("stops the run: nothing more is sent and every key is accounted for", function()
      local T = fake.new { latency = 0.05, answer = function()
        return fake.code(403, "Forbidden.AccessDenied.ApiCountLimitForOrg")
      end }
      local keys = keys_of("f", 400)
      local rep = assert(client(T, { concurrency = 2 }):recall("cidFatal", keys))
      assert.is_false(rep.ok)
      assert.are.equal(2, #T.sent) -- the two in flight when the first answer came
      for _, k in ipairs(keys) do assert.are.equal("Forbidden.AccessDenied.ApiCountLimitForOrg", rep.errors[k].code) end
      assert.are.equal("Forbidden.AccessDenied.ApiCountLimitForOrg", rep.stopped.code)
      invariant.assert(rep, keys)
    end)

    it("stops on bad credentials before any recall is sent", function()
      local T = fake.new { answer = function() return fake.code(400, "invalidClientIdOrSecret") end }
      local keys = keys_of("c", 45)
      local rep = assert(client(T, { app_key = "ak3", app_secret = "bad" }):recall("cidCreds", keys))
      assert.are.equal(0, #fake.recalls(T))
      assert.are.equal(1, #T.sent)
      for _, k in ipairs(keys) do assert.are.equal("invalidClientIdOrSecret", rep.errors[k].code) end
      invariant.assert(rep, keys)
    end)
  end)

  describe("a single batch", function()
    -- A report without its elapsed time and with error objects as their
    -- code and message, to compare two runs of the same batch.
    local function shape(rep)
      local out = {}
      for k, v in pairs(rep) do
        if k == "errors" then
          out.errors = {}
          for key, e in pairs(v) do out.errors[key] = { e.code, e.message, e.request_id } end
        elseif k == "stopped" then
          out.stopped = v.code
        elseif k ~= "elapsed" then
          out[k] = v
        end
      end
      return out
    end

    -- A transport's exchange_batch (the OpenResty transport's kind: the
    -- single batch sent and read at once), made of the fake's start and poll.
    local function exchange_batch(T)
      local n = 0
      T.exchange_batch = function(self, plan, keys, target, token)
        n = n + 1
        local built, err = core.build_batch(plan, 1, target, token)
        if not built then return nil, err, true end
        assert.are.equal(plan[1], keys)
        local ok, serr = self:start(built, "xb")
        if not ok then return nil, serr end
        local done = self:poll(1)
        while #done == 0 do done = self:poll(1) end
        assert.are.equal(1, #done)
        return done[1]
      end
      return function() return n end
    end

    -- The same batch through the single batch's path (no hooks), through
    -- it with a transport that has exchange_batch, and through a run (hooks
    -- = {}): the same requests at the same times, the same report.
    local function same_as_a_run(name, answers, extra, keys, opts)
      keys = keys or { "s1", "s2", "s3" }
      local reps, sent = {}, {}
      for mode = 1, 3 do
        tokens.clear_cache()
        local T = h.answers(answers, { latency = 0.01, refuse_start = extra and extra.refuse_start and
          extra.refuse_start() })
        local xb = mode == 3 and exchange_batch(T)
        local o = {}
        for k, v in pairs(extra or {}) do if k ~= "refuse_start" then o[k] = v end end
        local c = client(T, o)
        local plan = assert(core.plan("cidOne", "dingRobot", keys))
        local rep = c:engine("recall"):run({ plan }, mode == 2 and {} or nil, opts)
        reps[mode], sent[mode] = shape(rep), {}
        for i, r in ipairs(T.sent) do sent[mode][i] = { r.kind, r.at, r.token, r.keys and #r.keys } end
        invariant.assert(rep, keys)
        -- (a token to fetch first: the run does it all, without the fast path)
        if xb and not (extra and extra.app_key) then assert.are.equal(1, xb(), name) end
      end
      assert.are.same(sent[2], sent[1], name)
      assert.are.same(reps[2], reps[1], name)
      assert.are.same(sent[2], sent[3], name .. " (exchange_batch)")
      assert.are.same(reps[2], reps[3], name .. " (exchange_batch)")
      return reps[1], sent[1]
    end

    local ok = function(req) return fake.ok(req) end
    local function failed(reason) return function(req) return fake.ok(req, { s2 = reason }) end end
    local function code(status, c) return function() return fake.code(status, c) end end
    local function lost() return { error = core.error("transport.timeout", "lost") } end
    local function body(b) return function() return { status = 200, headers = {}, body = b } end end

    it("recalls the usual answer in one request, as a run does", function()
      local rep, sent = same_as_a_run("usual", { ok })
      assert.is_true(rep.ok)
      assert.are.same({ "s1", "s2", "s3" }, rep.recalled)
      assert.are.equal(1, rep.requests)
      assert.are.equal(1, #sent)
    end)

    it("hands every other answer to a run, which ends it as it would have", function()
      same_as_a_run("a per-key failure", { failed("NOT_FOUND") })
      same_as_a_run("already recalled, not ambiguous", { failed("ALREADY_RECALLED") })
      same_as_a_run("already recalled, ambiguous", { failed("ALREADY_RECALLED") }, nil, nil, { ambiguous = true })
      same_as_a_run("a key missing", { body('{"successResult":["s1","s3"],"failedResult":{}}') })
      same_as_a_run("out of order", { body('{"successResult":["s3","s1","s2"]}') })
      same_as_a_run("escaped", { body('{"successResult":["s1","s\\u0032","s3"],"failedResult":{}}') })
      same_as_a_run("not JSON", { body("<html>") })
      local rep = same_as_a_run("a retry after a server error", { code(500, "system.error"), ok })
      assert.is_true(rep.ok)
      assert.are.equal(1, rep.retries)
      rep = same_as_a_run("a lost answer, then already recalled", { lost, failed("ALREADY_RECALLED") })
      assert.are.same({ "s2" }, rep.already_recalled)
      same_as_a_run("a throttle", { code(403, "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi"), ok })
      rep = same_as_a_run("a fatal code", { code(403, "Forbidden.AccessDenied.ApiCountLimitForOrg") })
      assert.are.equal("Forbidden.AccessDenied.ApiCountLimitForOrg", rep.stopped)
      same_as_a_run("retries run out", { code(500, "system.error") }, { max_retries = 2 })
    end)

    it("hands a start the transport refuses, a token to fetch and a limiter's wait to a run", function()
      local function refuse_once()
        local n = 0
        return function()
          n = n + 1
          if n == 1 then return core.error("transport.connect", "refused") end
        end
      end
      local rep = same_as_a_run("a refused start", { ok }, { refuse_start = refuse_once })
      assert.is_true(rep.ok)
      assert.are.equal(1, rep.retries)
      local _, sent = same_as_a_run("a token to fetch", { fake.token, ok }, { app_key = "akOne", app_secret = "as" })
      assert.are.equal("token", sent[1][1])
      same_as_a_run("a bad token", { code(401, "InvalidAuthentication") }, { app_key = "akTwo", app_secret = "as" })
    end)

    it("asks the limiter for every start: a second call waits for the budget", function()
      local T = fake.new { latency = 0.01 }
      local c = client(T, { qps = 1, qps_window = 1 })
      assert.is_true(assert(c:recall("cidL", { "l1" })).ok)
      assert.is_true(assert(c:recall("cidL", { "l2" })).ok)
      assert.are.equal(2, #T.sent)
      assert.is_true(T.sent[2].at - T.sent[1].at >= 1, T.sent[2].at - T.sent[1].at)
    end)
  end)
end)
