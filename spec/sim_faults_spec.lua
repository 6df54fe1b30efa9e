-- Tests of the DingTalk simulator itself (its faults); the rest is in
-- spec/sim_spec.lua (split so that the files run side by side).
local sim = require "spec.helpers.sim"

local H = require "spec.helpers.sim_http"
local SEND = H.SEND
local TOKEN = H.TOKEN
local http = H.http
local recall = H.recall
local function assert_error(r, status, code) return H.assert_error(assert, r, status, code) end

describe("dingtalk-sim over http: faults", function()
  local s

  setup(function() s = sim.start({ seed = 42 }) end)
  teardown(function() if s then s:stop() end end)
  before_each(function() H.clean(s) end)

  describe("faults", function()
    local function scripted(name, opts)
      s:script({ recall = { name } })
      local k = s:send("cidSpec")
      local r = recall(s, { k }, nil, opts)
      return r, k
    end

    it("system_error", function()
      local r, k = scripted("system_error")
      assert_error(r, 500, "system.error")
      assert.are.equal("sent", s:key(k).state)
      assert.are.equal(200, recall(s, { k }).status)
    end)

    it("throttle and throttle_api", function()
      assert_error(scripted("throttle"), 403, "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi")
      assert_error(scripted("throttle_api"), 403, "Forbidden.AccessDenied.QpsLimitForApi")
      assert.are.equal(2, s:stats().throttled)
    end)

    it("quota and invalid_token", function()
      assert_error(scripted("quota"), 403, "Forbidden.AccessDenied.ApiCountLimitForOrg")
      assert_error(scripted("invalid_token"), 400, "InvalidAuthentication")
    end)

    it("reset closes the connection without an answer and recalls nothing", function()
      local r, k = scripted("reset")
      assert.are.equal("empty", r.err, r.why) -- closed without a byte of an answer
      assert.is_nil(r.status)
      assert.are.equal("sent", s:key(k).state)
    end)

    it("reset_after recalls and then closes the connection", function()
      local r, k = scripted("reset_after")
      assert.are.equal("empty", r.err, r.why)
      assert.is_nil(r.status)
      assert.are.equal("recalled", s:key(k).state)
    end)

    it("html answers 502 text/html", function()
      local r = scripted("html")
      assert.are.equal(502, r.status)
      assert.matches("^text/html", r.headers["content-type"])
      assert.matches("<html>", r.body)
      assert.is_string(r.headers["x-acs-request-id"])
    end)

    it("ban answers 403 with an HTML page", function()
      local r = scripted("ban")
      assert.are.equal(403, r.status)
      assert.matches("^text/html", r.headers["content-type"])
      assert.is_nil(r.json)
    end)

    it("malformed answers 200 with truncated JSON and a matching Content-Length", function()
      local r, k = scripted("malformed")
      assert.is_nil(r.err, r.why)
      assert.are.equal(200, r.status)
      assert.is_nil(r.json)
      assert.are.equal(#r.body, tonumber(r.headers["content-length"]))
      assert.are.equal("recalled", s:key(k).state)
    end)

    it("truncated promises more than it sends", function()
      local r, k = scripted("truncated")
      assert.are.equal("partial", r.err) -- closed before the whole body
      assert.are.equal(200, r.status)
      assert.is_true(#r.body < tonumber(r.headers["content-length"]))
      assert.are.equal("recalled", s:key(k).state)
    end)

    it("huge answers a 2 MiB body", function()
      local r, k = scripted("huge")
      assert.are.equal(200, r.status)
      assert.is_true(#r.body >= 2 * 1024 * 1024)
      assert.are.same({ k }, r.json.successResult)
    end)

    it("trickle sends the headers then one byte a second", function()
      local r = scripted("trickle", { timeout = 2.5 })
      assert.are.equal("timeout", r.err)
      assert.are.equal(200, r.status)
      assert.is_true(#r.body >= 1 and #r.body <= 3, "got " .. #r.body .. " bytes")
    end)

    it("redirect answers 302 to another local path", function()
      local r = scripted("redirect")
      assert.are.equal(302, r.status)
      assert.are.equal("/_sim/redirected", r.headers["location"])
      assert.are.equal(0, s:stats().requests.other)
      r = http(s, "POST", "/_sim/redirected", "{}")
      assert.are.equal(404, r.status)
      local st = s:stats()
      assert.are.equal(1, st.requests.other)
      assert.are.equal(1, st.redirects_followed)
    end)

    it("slow answers normally after 5 s", function()
      local r, k = scripted("slow")
      assert.are.equal(200, r.status)
      assert.is_true(r.time >= 4.9)
      assert.are.same({ k }, r.json.successResult)
    end)

    it("capitalised answers with Code/Message/RequestId", function()
      local r = scripted("capitalised")
      assert.are.equal(400, r.status)
      assert.are.equal("InvalidAuthentication", r.json.Code)
      assert.is_string(r.json.Message)
      assert.are.equal(r.headers["x-acs-request-id"], r.json.RequestId)
      assert.is_nil(r.json.code)
    end)

    it("failed_key fails every key with SYSTEM_ERROR", function()
      local r, k = scripted("failed_key")
      assert.are.equal(200, r.status)
      assert.are.same({ [k] = "SYSTEM_ERROR" }, r.json.failedResult)
      assert.are.equal("sent", s:key(k).state)
    end)

    it("script queues are consumed one per call, 'ok' meaning a normal answer", function()
      s:script({ recall = { "ok", "system_error" } })
      assert.are.equal(200, recall(s, { "k" }).status)
      assert.are.equal(500, recall(s, { "k" }).status)
      assert.are.equal(200, recall(s, { "k" }).status)
    end)

    it("scripts for send and token", function()
      s:script({ send = { "system_error" }, token = { "throttle" } })
      local r = http(s, "POST", SEND, { msgKey = "sampleText", msgParam = "{}", openConversationId = "cidX",
        robotCode = s.robot })
      assert_error(r, 500, "system.error")
      r = http(s, "POST", TOKEN, { appKey = s.app_key, appSecret = s.app_secret })
      assert_error(r, 403, "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi")
      assert.are.equal(200, http(s, "POST", TOKEN, { appKey = s.app_key, appSecret = s.app_secret }).status)
    end)

    it("rejects unknown fault names", function()
      local v, status = s:admin("POST", "/_sim/script", { recall = { "nonsense" } })
      assert.are.equal(400, status)
      assert.matches("unknown", v.message)
      v, status = s:admin("POST", "/_sim/config", { faults = "nonsense=0.1" })
      assert.are.equal(400, status)
      assert.matches("unknown fault", v.message)
    end)

    it("random faults follow the configured rate and the seed", function()
      s:config({ faults = "system_error=1" })
      assert.are.equal(500, recall(s, { "k" }).status)
      local function run()
        s:config({ faults = "system_error=0.5", seed = 7 })
        local seq = {}
        for i = 1, 16 do seq[i] = recall(s, { "k" }).status end
        return table.concat(seq, ",")
      end
      local a = run()
      local b = run()
      assert.are.equal(a, b)
      local _, n500 = a:gsub("500", "")
      assert.is_true(n500 >= 2 and n500 <= 14, a)
      assert.is_true(s:stats().faults.system_error >= n500)
    end)

    it("failed_key as a rate", function()
      s:config({ faults = "failed_key=1" })
      local k = s:send("cidSpec")
      assert.are.same({ [k] = "SYSTEM_ERROR" }, recall(s, { k }).json.failedResult)
      s:config({ faults = "" })
      assert.are.same({ k }, recall(s, { k }).json.successResult)
    end)

    it("latency delays every API answer", function()
      s:config({ latency = 0.3 })
      local r = recall(s, { "k" })
      assert.are.equal(200, r.status)
      assert.is_true(r.time >= 0.29, tostring(r.time))
    end)
  end)

end)
