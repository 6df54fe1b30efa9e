-- Tests of the DingTalk simulator itself (bin/dingtalk-sim, lua/dingtalk_sim/), driven
-- over HTTP in-process (spec/helpers/sim_http.lua), and through the curl CLI
-- where an independent client counts (throttling, concurrent requests); its faults
-- and its launcher are in sim_faults_spec.lua and sim_launcher_spec.lua (split so
-- that the files run side by side).
local sim = require "spec.helpers.sim"
local json = sim.json
local sh, q = sim.sh, sim.sh_quote

local H = require "spec.helpers.sim_http"
local RECALL = H.RECALL
local SEND = H.SEND
local TOKEN = H.TOKEN
local CORP_TOKEN = H.CORP_TOKEN
local http = H.http
local recall = H.recall
local function assert_error(r, status, code) return H.assert_error(assert, r, status, code) end

local function count_keys(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end

describe("dingtalk-sim over http", function()
  local s

  setup(function() s = sim.start({ seed = 42 }) end)
  teardown(function() if s then s:stop() end end)
  before_each(function() H.clean(s) end)

  describe("access tokens", function()
    it("issues a token for good app credentials", function()
      local r = http(s, "POST", TOKEN, { appKey = s.app_key, appSecret = s.app_secret }, { headers = {} })
      assert.are.equal(200, r.status)
      assert.is_string(r.json.accessToken)
      assert.are.equal(7200, r.json.expireIn)
      assert.is_string(r.headers["x-acs-request-id"])
      local key = s:send("cidSpec", s.robot, r.json.accessToken)
      assert.is_string(key)
      assert.are.equal(1, s:stats().token_fetches)
    end)

    it("answers invalidClientIdOrSecret for bad or missing credentials", function()
      assert_error(http(s, "POST", TOKEN, { appKey = s.app_key, appSecret = "nope" }), 400, "invalidClientIdOrSecret")
      assert_error(http(s, "POST", TOKEN, { appKey = "nobody", appSecret = "x" }), 400, "invalidClientIdOrSecret")
      assert_error(http(s, "POST", TOKEN, {}), 400, "invalidClientIdOrSecret")
    end)

    it("issues corp tokens for suite credentials", function()
      local r = http(s, "POST", CORP_TOKEN, { suiteKey = s.app_key, suiteSecret = s.app_secret,
        authCorpId = "dingcorp", suiteTicket = "ticket" })
      assert.are.equal(200, r.status)
      assert.is_string(r.json.accessToken)
      assert.are.equal(7200, r.json.expireIn)
      assert_error(http(s, "POST", CORP_TOKEN, { suiteKey = s.app_key, suiteSecret = s.app_secret,
        authCorpId = "", suiteTicket = "ticket" }), 400, "invalidClientIdOrSecret")
      assert_error(http(s, "POST", CORP_TOKEN, { suiteKey = s.app_key, suiteSecret = "bad",
        authCorpId = "c", suiteTicket = "t" }), 400, "invalidClientIdOrSecret")
    end)

    it("checks the token header on send and recall", function()
      assert_error(recall(s, { "k" }, nil, { headers = {} }), 400, "AuthenticationFailed.MissingParameter")
      assert_error(recall(s, { "k" }, nil, { headers = { ["x-acs-dingtalk-access-token"] = "bogus" } }),
        400, "InvalidAuthentication")
      local r = http(s, "POST", SEND, { msgKey = "sampleText", msgParam = "{}", openConversationId = "cidX",
        robotCode = s.robot }, { headers = {} })
      assert_error(r, 400, "AuthenticationFailed.MissingParameter")
    end)

    it("expires all tokens on /_sim/expire_tokens and accepts a new static token", function()
      local tok = s:fetch_token()
      s:expire_tokens()
      assert_error(recall(s, { "k" }), 400, "InvalidAuthentication")
      assert_error(recall(s, { "k" }, nil, { headers = { ["x-acs-dingtalk-access-token"] = tok } }),
        400, "InvalidAuthentication")
      s:expire_tokens("static-two")
      assert.are.equal(200, recall(s, { "k" }).status)
      s:reset()
      s.token = "sim-static-token"
      assert.are.equal(200, recall(s, { "k" }).status)
    end)

    it("lets tokens expire after token_ttl #timing", function()
      s:config({ token_ttl = 1 })
      local r = http(s, "POST", TOKEN, { appKey = s.app_key, appSecret = s.app_secret })
      assert.are.equal(1, r.json.expireIn)
      local h = { headers = { ["x-acs-dingtalk-access-token"] = r.json.accessToken } }
      assert.are.equal(200, recall(s, { "k" }, nil, h).status)
      sh("sleep 1.3")
      assert_error(recall(s, { "k" }, nil, h), 400, "InvalidAuthentication")
    end)
  end)

  describe("send", function()
    it("returns a fresh processQueryKey and remembers it", function()
      local k1, k2 = s:send("cidSpec"), s:send("cidSpec")
      assert.are_not.equal(k1, k2)
      assert.matches("^[A-Za-z0-9+/=_%-]+$", k1)
      local rec = s:key(k1)
      assert.are.equal("cidSpec", rec.openConversationId)
      assert.are.equal(s.robot, rec.robotCode)
      assert.are.equal("sent", rec.state)
      assert.are.equal(2, s:stats().sent)
    end)

    it("validates like recall", function()
      local base = { msgKey = "sampleText", msgParam = '{"content":"x"}', openConversationId = "cidX",
        robotCode = s.robot }
      local function with(over)
        local b = {}
        for k, v in pairs(base) do b[k] = v end
        for k, v in pairs(over) do b[k] = v end
        return b
      end
      assert_error(http(s, "POST", SEND, with({ openConversationId = json.null })), 400, "miss.openConversationId")
      assert_error(http(s, "POST", SEND, with({ robotCode = json.null })), 400, "miss.chatbotId")
      assert_error(http(s, "POST", SEND, with({ openConversationId = "nocid" })), 400, "invalid.openConversationId")
      assert_error(http(s, "POST", SEND, with({ robotCode = "dingnobody" })), 400,
        "invalidParameter.robotCode.notExsit")
      assert_error(http(s, "POST", SEND, with({ msgParam = "not json" })), 400, "invalidParameter.param.invalid")
      assert_error(http(s, "POST", SEND, with({ msgKey = "" })), 400, "invalidParameter.param.invalid")
      assert_error(http(s, "POST", SEND, "]]"), 400, "invalidParameter.param.invalid")
    end)
  end)

  describe("recall", function()
    it("recalls, then reports ALREADY_RECALLED", function()
      local k = s:send("cidSpec")
      local r = recall(s, { k })
      assert.are.equal(200, r.status)
      assert.are.same({ k }, r.json.successResult)
      assert.are.equal('{"successResult":["' .. k .. '"],"failedResult":{}}', r.body)
      assert.are.equal("recalled", s:key(k).state)
      r = recall(s, { k })
      assert.are.equal('{"successResult":[],"failedResult":{"' .. k .. '":"ALREADY_RECALLED"}}', r.body)
      local st = s:stats()
      assert.are.equal(1, st.recalled)
      assert.are.equal(2, st.recall_calls)
      assert.are.equal(2, st.recall_keys)
    end)

    it("gives per-key reasons in input order and answers duplicates once", function()
      local old = s:send("cidSpec")
      s:age(86401)
      local good = s:send("cidSpec")
      local other = s:send("cidOther")
      local fresh = s:send("cidSpec")
      local r = recall(s, { "neverIssued", other, good, old, good, fresh })
      assert.are.equal(200, r.status)
      assert.are.same({ good, fresh }, r.json.successResult)
      assert.are.same({ neverIssued = "PROCESS_QUERY_KEY_NOT_EXIST", [other] = "CONVERSATION_OR_ROBOT_MISMATCH",
        [old] = "RECALL_TIME_EXPIRED" }, r.json.failedResult)
      -- failedResult keeps the input order too
      local a = r.body:find("neverIssued", 1, true)
      local b = r.body:find(other, 1, true)
      local c = r.body:find(old, 1, true)
      assert.is_true(a < b and b < c)
      local _, n = r.body:gsub(good:gsub("%p", "%%%0"), "")
      assert.are.equal(1, n)
    end)

    it("reports a robot mismatch", function()
      s:set_app({ key = "appTwo", secret = "s2" })
      s:set_robot({ code = "dingrobot2", app = s.app_key })
      local k = s:send("cidSpec")
      local r = recall(s, { k }, { robotCode = "dingrobot2" })
      assert.are.same({ [k] = "CONVERSATION_OR_ROBOT_MISMATCH" }, r.json.failedResult)
    end)

    it("accepts at most 20 keys", function()
      local keys = {}
      for i = 1, 20 do keys[i] = "key" .. i end
      assert.are.equal(200, recall(s, keys).status)
      keys[21] = "key21"
      assert_error(recall(s, keys), 400, "invalidParameter.processQueryKeys.overMax")
    end)
  end)

  describe("error codes of the spec", function()
    local function setup_other_app()
      s:set_app({ key = "otherapp", secret = "othersecret" })
      s:set_robot({ code = "dingotherrobot", app = "otherapp" })
    end
    local keys21 = {}
    for i = 1, 21 do keys21[i] = "k" .. i end
    local cases = {
      { "invalid.openConversationId", 400, function() return recall(s, { "k" }, { openConversationId = "chat1" }) end },
      { "invalidParameter.robotCode", 400, function()
        s:set_robot({ code = s.robot, exclude = { "cidNotHere" } })
        return recall(s, { "k" }, { openConversationId = "cidNotHere" })
      end },
      { "invalidParameter.processQueryKeys.overMax", 400, function() return recall(s, keys21) end },
      { "not.allowed.robotCode", 400, function()
        setup_other_app()
        return recall(s, { "k" }, { robotCode = "dingotherrobot" })
      end },
      { "invalidParameter.param.invalid", 400, function() return http(s, "POST", RECALL, "this is not json") end },
      { "invalidParameter.param.invalid", 400, function() return http(s, "POST", RECALL, "[1,2]") end },
      { "invalidParameter.param.invalid", 400, function() return recall(s, { "k" }, { robotCode = "" }) end },
      { "invalidParameter.param.invalid", 400, function() return recall(s, { "k", "" }) end },
      { "invalidParameter.param.invalid", 400, function() return recall(s, { "k", 5 }) end },
      { "invalidParameter.param.invalid", 400, function() return recall(s, "k") end },
      { "invalidParameter.param.invalid", 400, function() return recall(s, { "k" }, { openConversationId = 7 }) end },
      { "invalidParameter.robotCode.notExsit", 400, function()
        return recall(s, { "k" }, { robotCode = "dingnobody" })
      end },
      { "miss.chatbotId", 400, function() return recall(s, { "k" }, { robotCode = json.null }) end },
      { "invalidParameter.processQueryKey.missing", 400, function() return recall(s, {}) end },
      { "invalidParameter.processQueryKey.missing", 400, function() return recall(s, json.null) end },
      { "invalid.processQueryKey", 400, function() return recall(s, { "has space" }) end },
      { "invalid.processQueryKey", 400, function() return recall(s, { string.rep("a", 129) }) end },
      { "miss.openConversationId", 400, function() return recall(s, { "k" }, { openConversationId = json.null }) end },
      { "bot.stopped", 400, function()
        s:set_robot({ code = s.robot, stopped = true })
        return recall(s, { "k" })
      end },
      { "template.not.existed", 400, function()
        s:set_robot({ code = s.robot, template = "missing" })
        return recall(s, { "k" })
      end },
      { "template.stopped", 400, function()
        s:set_robot({ code = s.robot, template = "stopped" })
        return recall(s, { "k" })
      end },
      { "system.error", 500, function()
        s:script({ recall = { "system_error" } })
        return recall(s, { "k" })
      end },
      { "Forbidden.AccessDenied.AccessTokenPermissionDenied", 403, function()
        s:set_app({ key = s.app_key, recall_permission = false })
        return recall(s, { "k" })
      end },
    }
    for i, c in ipairs(cases) do
      it("#" .. i .. " " .. c[1], function()
        assert_error(c[3](), c[2], c[1])
        local st = s:stats()
        assert.are.equal(1, st.codes[c[1]])
      end)
    end

    it("reaches all 14 codes of the spec page", function()
      local seen = {}
      for _, c in ipairs(cases) do seen[c[1]] = true end
      for _, code in ipairs({ "invalid.openConversationId", "invalidParameter.robotCode",
        "invalidParameter.processQueryKeys.overMax", "not.allowed.robotCode", "invalidParameter.param.invalid",
        "invalidParameter.robotCode.notExsit", "miss.chatbotId", "invalidParameter.processQueryKey.missing",
        "invalid.processQueryKey", "miss.openConversationId", "bot.stopped", "template.not.existed",
        "template.stopped", "system.error" }) do
        assert.is_true(seen[code], code)
      end
    end)

    it("answers 404 JSON for unknown paths and 405 for wrong methods", function()
      assert_error(http(s, "POST", "/v1.0/robot/nothing", {}), 404, "InvalidAction.NotFound")
      local r = http(s, "GET", RECALL)
      assert_error(r, 405, "MethodNotAllowed")
    end)
  end)

  describe("throttling", function()
    it("answers QpsLimitForAppkeyAndApi over the per-app qps #timing", function()
      s:config({ qps = 3 })
      local body = json.encode({ openConversationId = "cidSpec", robotCode = s.robot, processQueryKeys = { "k" } })
      -- one curl, ten requests on one keep-alive connection: a few ms, at most two windows
      local cmd = "curl -s -w '%{http_code}\\n' -X POST -H 'x-acs-dingtalk-access-token: " ..
        s.token .. "' --data-binary " .. q(body)
      for _ = 1, 10 do cmd = cmd .. " -o /dev/null " .. q(s.url .. RECALL) end
      local out = sh(cmd)
      local ok, throttled = 0, 0
      for code in out:gmatch("%d+") do
        if code == "200" then ok = ok + 1 elseif code == "403" then throttled = throttled + 1 end
      end
      assert.are.equal(10, ok + throttled)
      assert.is_true(ok >= 3 and ok <= 6, "ok=" .. ok)
      local st = s:stats()
      assert.are.equal(throttled, st.throttled)
      assert.are.equal(throttled, st.codes["Forbidden.AccessDenied.QpsLimitForAppkeyAndApi"])
      assert.is_true(st.max_recall_calls_in_any_1s >= 5, "max in 1 s: " .. st.max_recall_calls_in_any_1s)
      sh("sleep 1.1")
      assert.are.equal(200, recall(s, { "k" }).status)
    end)

    it("counts recall calls in a sliding one-second window #timing", function()
      for _ = 1, 4 do recall(s, { "k" }) end
      sh("sleep 1.2")
      recall(s, { "k" })
      local st = s:stats()
      assert.are.equal(4, st.max_recall_calls_in_any_1s)
      assert.are.equal(5, st.recall_calls)
    end)
  end)

  describe("stats and admin", function()
    it("counts requests, codes and the peak of concurrent requests", function()
      s:config({ latency = 0.5 })
      local body = json.encode({ openConversationId = "cidSpec", robotCode = s.robot, processQueryKeys = { "k" } })
      local one = "curl -s -o /dev/null -X POST -H 'x-acs-dingtalk-access-token: " .. s.token ..
        "' --data-binary " .. q(body) .. " " .. q(s.url .. RECALL)
      sh(one .. " & " .. one .. " & " .. one .. " & " .. one .. " & wait")
      local st = s:stats()
      assert.are.equal(4, st.requests.recall)
      assert.are.equal(4, st.codes.ok)
      assert.are.equal(4, st.status["200"])
      assert.is_true(st.max_in_flight >= 3, "max_in_flight=" .. st.max_in_flight)
      assert.are.equal(0, st.in_flight)
      for _, f in ipairs({ "requests", "codes", "throttled", "token_fetches", "recall_calls", "recall_keys",
        "max_recall_calls_in_any_1s", "max_in_flight", "sent", "recalled" }) do
        assert.is_not_nil(st[f], f)
      end
    end)

    it("reset clears state and counters but keeps config", function()
      s:config({ qps = 77 })
      local k = s:send("cidSpec")
      s:reset()
      assert.is_nil(s:key(k))
      local st = s:stats()
      assert.are.equal(0, st.sent)
      assert.are.equal(0, count_keys(st.codes))
      assert.are.equal(77, s:admin("GET", "/_sim/config").qps)
      s:reset(true)
      assert.are.equal(0, s:admin("GET", "/_sim/config").qps)
    end)

    it("seeds many keys fast and ages messages", function()
      local t0 = os.time()
      local keys = s:seed_keys(20000, "cidSeed")
      assert.are.equal(20000, #keys)
      assert.is_true(os.time() - t0 <= 5)
      local r = recall(s, { keys[1], keys[2] }, { openConversationId = "cidSeed" })
      assert.are.same({ keys[1], keys[2] }, r.json.successResult)
      s:age(86400 + 5)
      r = recall(s, { keys[3] }, { openConversationId = "cidSeed" })
      assert.are.same({ [keys[3]] = "RECALL_TIME_EXPIRED" }, r.json.failedResult)
      assert.is_true(s:key(keys[3]).age > 86400)
      assert.are.equal(20000, s:stats().seeded)
    end)

    it("answers the views of many keys in one call (POST /_sim/keys)", function()
      local keys = s:seed_keys(3, "cidViews")
      assert.are.equal(200, recall(s, { keys[2] }, { openConversationId = "cidViews" }).status)
      local v, st = s:admin("POST", "/_sim/keys", { keys = { keys[1], "neverIssued", keys[2], keys[3] } })
      assert.are.equal(200, st)
      assert.are.same({ "neverIssued" }, v.missing)
      local one, batch = s:key(keys[1]), v.keys[keys[1]]
      one.age, batch.age = nil, nil -- (measured at each answer)
      assert.are.same(one, batch)
      assert.are.equal("sent", v.keys[keys[1]].state)
      assert.are.equal("recalled", v.keys[keys[2]].state)
      assert.are.equal("cidViews", v.keys[keys[3]].openConversationId)
      assert.is_nil(v.keys.neverIssued)
      -- the helper's s:keys (views by key, unknown ones absent)
      local views = s:keys({ keys[2], "neverIssued" })
      assert.are.equal("recalled", views[keys[2]].state)
      assert.is_nil(views.neverIssued)
      v, st = s:admin("POST", "/_sim/keys", { keys = {} })
      assert.are.equal(200, st)
      assert.are.same({}, v.missing)
      local _
      _, st = s:admin("POST", "/_sim/keys", {})
      assert.are.equal(400, st)
      _, st = s:admin("POST", "/_sim/keys", { keys = { keys[1], 7 } })
      assert.are.equal(400, st)
      local many = {}
      for i = 1, 10001 do many[i] = "k" .. i end
      _, st = s:admin("POST", "/_sim/keys", { keys = many })
      assert.are.equal(400, st)
      _, st = s:admin("GET", "/_sim/keys")
      assert.are.equal(405, st)
    end)

    it("robot exclusions can be lifted", function()
      s:set_robot({ code = s.robot, exclude = { "cidAway" } })
      assert_error(recall(s, { "k" }, { openConversationId = "cidAway" }), 400, "invalidParameter.robotCode")
      s:set_robot({ code = s.robot, include = { "cidAway" } })
      assert.are.equal(200, recall(s, { "k" }, { openConversationId = "cidAway" }).status)
    end)

    it("answers 404/405/400 on admin misuse", function()
      local _, st = s:admin("GET", "/_sim/nothing")
      assert.are.equal(404, st)
      _, st = s:admin("GET", "/_sim/reset")
      assert.are.equal(405, st)
      _, st = s:admin("POST", "/_sim/config", { qps = -1 })
      assert.are.equal(400, st)
      _, st = s:admin("POST", "/_sim/age", {})
      assert.are.equal(400, st)
    end)
  end)
end)
