-- The client against the simulator: batching, concurrency, the QPS limit,
-- retries, tokens and the per-key invariant under random faults.
local sim = require "spec.helpers.sim"
local recall = require "dingtalk.recall"

local CID = "cidClientSpec"

local invariant = require "spec.helpers.invariant"

-- Every unique input key is in exactly one of recalled, failed, errors,
-- and the client's report always says how many unique keys it had.
local function assert_invariant(report, keys)
  invariant.assert(report, keys)
  assert.is_number(report.total)
end

describe("client", function()
  local s

  setup(function() s = sim.start { latency = 0 } end)
  teardown(function() if s then s:stop() end end)
  before_each(function() s:fresh() end) -- clean server, no token cached

  local function client(extra)
    local cfg = { robot_code = s.robot, endpoint = s.url, access_token = s.token, concurrency = 4, qps = 0,
      backoff_base = 0.01, backoff_max = 0.05 }
    for k, v in pairs(extra or {}) do cfg[k] = v end
    if cfg.app_key or cfg.suite_key or cfg.token_provider or cfg.access_token == false then
      cfg.access_token = nil
    end
    return assert(recall.client(cfg))
  end

  describe("batching", function()
    for _, n in ipairs { 1, 20, 21, 45, 1000 } do
      it("recalls " .. n .. " keys in ceil(n/20) requests", function()
        local keys = s:seed_keys(n, CID)
        local c = client()
        local report = assert(c:recall(CID, keys))
        assert.are.equal(n, #report.recalled)
        assert.is_true(report.ok)
        assert.are.equal(math.ceil(n / 20), report.requests)
        assert.are.equal(math.ceil(n / 20), s:stats().recall_calls)
        assert.are.equal(n, s:stats().recalled)
        assert_invariant(report, keys)
        c:close()
      end)
    end

    it("removes duplicates before batching", function()
      local keys = s:seed_keys(30, CID)
      local input = {}
      for _, k in ipairs(keys) do input[#input + 1] = k end
      for i = 1, 15 do input[#input + 1] = keys[i] end
      local report = assert(client():recall(CID, input))
      assert.are.equal(30, #report.recalled)
      assert.are.equal(2, report.requests)
      assert.are.equal(30, s:stats().recall_keys)
      assert_invariant(report, input)
    end)

    it("reports the server's per-key reasons and keeps answers in their lists", function()
      local keys = s:seed_keys(3, CID)
      local c = client()
      assert(c:recall(CID, { keys[1] }))
      local report = assert(c:recall(CID, { keys[1], keys[2], "neverIssuedKey" }))
      assert.are.same({ keys[2] }, report.recalled)
      assert.are.equal("ALREADY_RECALLED", report.failed[keys[1]])
      assert.are.equal("PROCESS_QUERY_KEY_NOT_EXIST", report.failed.neverIssuedKey)
      assert.is_false(report.ok)
    end)

    it("puts keys the API would refuse in errors without sending them", function()
      local keys = s:seed_keys(2, CID)
      local input = { keys[1], "bad\nkey", keys[2] }
      local report = assert(client():recall(CID, input))
      assert.are.equal(2, #report.recalled)
      assert.are.equal("invalidParameter.param.invalid", report.errors["bad\nkey"].code)
      assert.are.equal(1, s:stats().recall_calls)
      assert_invariant(report, input)
    end)

    -- Issue 10 class 4: a non-string or a hole used to be dropped or put in
    -- errors one by one; the whole array is refused before anything is sent.
    it("refuses a key array holding a non-string or a hole before sending anything", function()
      local keys = s:seed_keys(2, CID)
      for _, input in ipairs { { keys[1], 42, keys[2] }, { [1] = keys[1], [3] = keys[2] }, { keys[1], 0 / 0 } } do
        local report, err = client():recall(CID, input)
        assert.is_nil(report)
        assert.are.equal("invalidParameter.param.invalid", err.code)
      end
      assert.are.equal(0, s:stats().requests.recall)
    end)

    it("calls on_progress up to the total", function()
      local keys = s:seed_keys(45, CID)
      local calls, last = 0, nil
      local report = assert(client():recall(CID, keys, {
        on_progress = function(done, total)
          calls = calls + 1
          assert.are.equal(45, total)
          last = done
        end,
      }))
      assert.are.equal(3, calls)
      assert.are.equal(45, last)
      assert.is_true(report.ok)
    end)
  end)

  describe("arguments", function()
    it("returns nil, err before sending for a missing conversation or keys", function()
      local c = client()
      local r, err = c:recall(nil, { "k" })
      assert.is_nil(r)
      assert.are.equal("miss.openConversationId", err.code)
      r, err = c:recall(CID, nil)
      assert.is_nil(r)
      assert.are.equal("invalidParameter.processQueryKey.missing", err.code)
      r, err = c:recall(CID, "k1,k2")
      assert.is_nil(r)
      assert.are.equal("invalidParameter.param.invalid", err.code)
      r, err = c:recall(CID, {})
      assert.is_nil(r)
      assert.are.equal("invalidParameter.processQueryKey.missing", err.code)
      r, err = c:recall("cid\r\nX: y", { "k" })
      assert.is_nil(r)
      assert.are.equal("invalidParameter.param.invalid", err.code)
      assert.are.equal(0, s:stats().requests.recall)
    end)

    it("refuses bad client options", function()
      local c, err = recall.client { robot_code = "r", access_token = "t", endpoint = "http://example.com" }
      assert.is_nil(c)
      assert.are.equal("invalid.endpoint", err.code)
      c, err = recall.client { robot_code = "r", access_token = "t", app_key = "k", app_secret = "s" }
      assert.is_nil(c)
      assert.are.equal("invalidParameter.param.invalid", err.code)
      assert.has_error(function() recall.client { robot_code = "r", access_token = "t", qps = "20" } end)
      assert.has_error(function() recall.client "r" end)
    end)
  end)

  describe("concurrency", function()
    it("overlaps requests up to the limit", function()
      s:config { latency = 0.3 }
      local keys = s:seed_keys(160, CID) -- 8 batches
      local c = client { concurrency = 4 }
      local report = assert(c:recall(CID, keys))
      assert.is_true(report.ok)
      local st = s:stats()
      assert.are.equal(4, st.max_in_flight)
      -- 8 batches of 0.3 s at 4 in flight: two rounds, not eight.
      assert.is_true(report.elapsed < 8 * 0.3 * 0.6, "elapsed " .. report.elapsed)
    end)

    it("never has more than `concurrency` in flight", function()
      s:config { latency = 0.1 }
      local keys = s:seed_keys(200, CID)
      local report = assert(client { concurrency = 2 }:recall(CID, keys))
      assert.is_true(report.ok)
      assert.are.equal(2, s:stats().max_in_flight)
    end)
  end)

  describe("QPS limit", function()
    it("never starts more than qps requests in any one-second window", function()
      s:config { qps = 10 }
      local keys = s:seed_keys(600, CID) -- 30 requests at 10/s
      -- A transport that notes when each request starts.
      local curl = require("dingtalk.recall.transport.curl").new()
      local starts = {}
      local logging = setmetatable({
        start = function(_, built, tag)
          starts[#starts + 1] = curl.now()
          return curl:start(built, tag)
        end,
      }, { __index = curl })
      local report = assert(client { concurrency = 8, qps = 10, transport = logging }:recall(CID, keys))
      assert.is_true(report.ok)
      assert.are.equal(30, #starts)
      for i = 11, #starts do
        assert.is_true(starts[i] - starts[i - 10] >= 0.999, "11 starts within " .. (starts[i] - starts[i - 10]) .. " s")
      end
      assert.is_true(report.elapsed >= 2, "too fast for 10/s: " .. report.elapsed)
    end)

    -- The server counts requests when it gets to them: on a loaded machine
    -- (or under valgrind) it may bunch them, so this one is tagged timing.
    it("keeps the server's count within the limit #timing", function()
      s:config { qps = 10 }
      local keys = s:seed_keys(600, CID)
      local report = assert(client { concurrency = 8, qps = 10 }:recall(CID, keys))
      local st = s:stats()
      local _, failure = next(report.failed)
      local _, err = next(report.errors)
      assert.is_true(report.ok, ("report not ok: %d throttled, %d retries, a failure: %s, an error: %s"):format(
        st.throttled, report.retries, tostring(failure), tostring(err)))
      assert.is_true(st.max_recall_calls_in_any_1s <= 11, "max in 1 s: " .. st.max_recall_calls_in_any_1s)
      assert.are.equal(0, st.throttled)
    end)

    it("waits at least a second after a throttled answer, then succeeds", function()
      local keys = s:seed_keys(5, CID)
      s:script { recall = { "throttle", "ok" } }
      local report = assert(client():recall(CID, keys))
      assert.is_true(report.ok)
      assert.are.equal(1, report.throttled)
      assert.are.equal(1, report.retries)
      assert.is_true(report.elapsed >= 1.0, "retried after " .. report.elapsed)
    end)
  end)

  describe("retries", function()
    it("retries a retryable error, then succeeds", function()
      local keys = s:seed_keys(20, CID)
      s:script { recall = { "system_error", "reset", "ok" } }
      local report = assert(client():recall(CID, keys))
      assert.is_true(report.ok)
      -- libcurl itself replays a request whose reused connection closed
      -- before any answer, so the reset may not reach the engine.
      assert.is_true(report.retries >= 1 and report.retries <= 2)
      assert.are.equal(3, s:stats().requests.recall)
    end)

    it("gives up after max_retries with the last error on every key", function()
      local keys = s:seed_keys(20, CID)
      s:script { recall = { "system_error", "system_error", "system_error" } }
      local report = assert(client { max_retries = 2 }:recall(CID, keys))
      assert.is_false(report.ok)
      assert.are.equal(3, report.requests)
      for _, k in ipairs(keys) do
        assert.are.equal("system.error", report.errors[k].code)
        assert.are.equal(500, report.errors[k].status)
      end
      assert_invariant(report, keys)
    end)

    it("does not retry a non-retryable error", function()
      local keys = s:seed_keys(20, CID)
      local report = assert(client { robot_code = "dingNoSuchRobot" }:recall(CID, keys))
      assert.are.equal(1, report.requests)
      assert.are.equal(0, report.retries)
      assert.are.equal("invalidParameter.robotCode.notExsit", report.errors[keys[1]].code)
      assert.is_false(report.errors[keys[1]].retryable)
    end)

    it("retries an HTML 502", function()
      local keys = s:seed_keys(20, CID)
      s:script { recall = { "html", "ok" } }
      local report = assert(client { concurrency = 1 }:recall(CID, keys))
      assert.is_true(report.ok)
      assert.are.equal(1, report.retries)
      assert.are.equal(2, report.requests)
    end)

    -- core.codes calls a redirect fatal (the endpoint is wrong: no later
    -- request can succeed), so it stops the run: nothing more is sent and
    -- every key not recalled carries the redirect.
    it("stops the run on a redirect, every key accounted for", function()
      local keys = s:seed_keys(60, CID)
      s:script { recall = { "redirect" } }
      local report = assert(client { concurrency = 1 }:recall(CID, keys))
      assert.are.equal(1, s:stats().requests.recall)
      assert.are.equal("response.redirect", report.stopped.code)
      for _, k in ipairs(keys) do assert.are.equal("response.redirect", report.errors[k].code) end
      assert_invariant(report, keys)
    end)
  end)

  describe("tokens", function()
    it("fetches one token for all batches in flight", function()
      local keys = s:seed_keys(200, CID)
      local c = client { app_key = s.app_key, app_secret = s.app_secret, concurrency = 8 }
      local report = assert(c:recall(CID, keys))
      assert.is_true(report.ok)
      assert.are.equal(1, report.token_fetches)
      assert.are.equal(1, s:stats().token_fetches)
      -- cached for the next call, and shared with another client of the app
      assert(c:recall(CID, s:seed_keys(20, CID)))
      local c2 = client { app_key = s.app_key, app_secret = s.app_secret }
      assert(c2:recall(CID, s:seed_keys(20, CID)))
      assert.are.equal(1, s:stats().token_fetches)
    end)

    it("fetches a new token once on InvalidAuthentication, then retries", function()
      local c = client { app_key = s.app_key, app_secret = s.app_secret, concurrency = 4 }
      assert(c:recall(CID, s:seed_keys(20, CID)))
      s:expire_tokens()
      local keys = s:seed_keys(100, CID)
      local report = assert(c:recall(CID, keys))
      assert.is_true(report.ok)
      assert.are.equal(2, s:stats().token_fetches)
    end)

    it("uses the third-party app endpoint for suite credentials", function()
      local c = client { suite_key = s.app_key, suite_secret = s.app_secret, auth_corp_id = "dingcorp",
        suite_ticket = "ticket", access_token = false }
      local report = assert(c:recall(CID, s:seed_keys(3, CID)))
      assert.is_true(report.ok)
      assert.are.equal(1, s:stats().requests.corpAccessToken)
    end)

    it("puts every key in errors with the token error for bad credentials", function()
      local keys = s:seed_keys(45, CID)
      local secret = "wrong-secret-XYZZY"
      local report = assert(client { app_key = s.app_key, app_secret = secret }:recall(CID, keys))
      assert.is_false(report.ok)
      for _, k in ipairs(keys) do
        assert.are.equal("invalidClientIdOrSecret", report.errors[k].code)
        assert.is_nil(tostring(report.errors[k]):find(secret, 1, true))
      end
      assert.are.equal(0, s:stats().requests.recall)
      assert_invariant(report, keys)
    end)

    it("calls a token provider and keeps its token", function()
      local calls = 0
      local c = client { token_provider = function()
        calls = calls + 1
        return s.token, 7200
      end, access_token = false }
      assert(c:recall(CID, s:seed_keys(60, CID)))
      assert(c:recall(CID, s:seed_keys(20, CID)))
      assert.are.equal(1, calls)
    end)

    it("never shows a fixed token in errors", function()
      local token = "secret-token-PLUGH"
      local report = assert(client { access_token = token }:recall(CID, s:seed_keys(2, CID)))
      for _, e in pairs(report.errors) do
        assert.are.equal("InvalidAuthentication", e.code)
        assert.is_nil(tostring(e):find(token, 1, true))
        assert.is_nil((e.message or ""):find(token, 1, true))
      end
    end)
  end)

  describe("send", function()
    it("returns a processQueryKey that recall accepts, and calls on_sent", function()
      local seen
      local c = client { on_sent = function(info) seen = info end }
      local key = assert(c:send(CID, "sampleText", { content = "hello" }, { tags = { "deploy" }, ttl = 60 }))
      assert.are.equal(key, seen.key)
      assert.are.equal(CID, seen.conversation)
      assert.are.equal(s.robot, seen.robot)
      assert.are.same({ "deploy" }, seen.tags)
      local report = assert(c:recall(CID, { key }))
      assert.are.same({ key }, report.recalled)
    end)

    it("returns nil, err for a bad send", function()
      local key, err = client():send("", "sampleText", { content = "x" })
      assert.is_nil(key)
      assert.are.equal("miss.openConversationId", err.code)
      key, err = client { robot_code = "dingNoSuchRobot" }:send(CID, "sampleText", { content = "x" })
      assert.is_nil(key)
      assert.are.equal("invalidParameter.robotCode.notExsit", err.code)
    end)
  end)

  describe("random faults", function()
    it("keeps every key in exactly one list, whatever the server does", function()
      local faults = "system_error=0.15,reset=0.1,throttle=0.03,html=0.08,malformed=0.08,truncated=0.05," ..
        "failed_key=0.05"
      for seed = 1, 6 do
        s:reset()
        s:config { faults = faults, seed = seed }
        local keys = s:seed_keys(200, CID)
        keys[#keys + 1] = keys[1]
        keys[#keys + 1] = "neverIssued" .. seed
        local report = assert(client { concurrency = 4, max_retries = 2 }:recall(CID, keys))
        assert_invariant(report, keys)
        -- what the client calls recalled, the server did recall
        local views = s:keys(report.recalled)
        for _, k in ipairs(report.recalled) do
          assert.are.equal("recalled", (views[k] or {}).state, k)
        end
      end
    end)
  end)

  -- (the same simulator: one a file)
  describe("client:recall_groups", function()
    it("recalls in many conversations in one run with one report", function()
      local groups, all = {}, {}
      for i = 1, 5 do
        local cid = "cidGroup" .. i
        local keys = s:seed_keys(25, cid)
        groups[#groups + 1] = { conversation = cid, keys = keys }
        for _, k in ipairs(keys) do all[#all + 1] = k end
      end
      local c = assert(recall.client { robot_code = s.robot, endpoint = s.url, access_token = s.token, qps = 0 })
      local report = assert(c:recall_groups(groups))
      assert.is_true(report.ok)
      assert.are.equal(125, #report.recalled)
      assert.are.equal(10, report.requests) -- 25 keys a group: two batches each
      assert_invariant(report, all)
      local r2, err = c:recall_groups { { conversation = "", keys = { "k" } } }
      assert.is_nil(r2)
      assert.are.equal("miss.openConversationId", err.code)
    end)
  end)
end)
