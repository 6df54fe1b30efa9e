-- The C core end to end against the simulator: each of the spec's 14
-- codes as the server answers them, throttling, TLS with and without the
-- CA, and the token absent from every error.  curl.recall is build +
-- libcurl + parse; curl.perform sends a body the builder would refuse, so
-- the server's own answer to it can be parsed.
local sim = require "spec.helpers.sim"
local core = require "dingtalk.recall.core"
local curl = require "dingtalk.recall.curl"

local SPEC_HINTS = {
  ["invalid.openConversationId"] = "Invalid openConversationId. Verify that the openConversationId is correct.",
  ["invalidParameter.robotCode"] = "Invalid robotCode. Verify that the bot is in the group.",
  ["invalidParameter.processQueryKeys.overMax"] = "processQueryKeys exceeds the maximum limit of 20. Split " ..
    "processQueryKeys into multiple arrays of no more than 20 entries each and call this API in batches.",
  ["not.allowed.robotCode"] = "Unauthorized robotCode.",
  ["invalidParameter.param.invalid"] = "Invalid parameter. Verify that no parameter is empty.",
  ["invalidParameter.robotCode.notExsit"] = "The bot does not exist. Verify that the bot corresponding to " ..
    "the robotCode is installed in the chat.",
  ["miss.chatbotId"] = "Missing robotCode.",
  ["invalidParameter.processQueryKey.missing"] = "Missing processQueryKey.",
  ["invalid.processQueryKey"] = "Invalid processQueryKey. Verify that the processQueryKey is correct.",
  ["miss.openConversationId"] = "Missing openConversationId.",
  ["bot.stopped"] = "The group bot has been disabled.",
  ["template.not.existed"] = "The bot template does not exist.",
  ["template.stopped"] = "The bot template has been disabled.",
  ["system.error"] = "Unknown system error.",
}

describe("core against the simulator", function()
  local s, opts
  local CID = "cidCoreSim"

  setup(function()
    s = sim.start { tls = true }
    opts = { access_token = s.token, endpoint = s.url, ca_file = s.ca_file, timeout = 5 }
  end)
  teardown(function() if s then s:stop() end end)
  before_each(function() s:reset() end)

  local function req(keys, cid, robot)
    return { openConversationId = cid or CID, robotCode = robot or s.robot, processQueryKeys = keys }
  end

  -- Sends `body` (a JSON string) as a recall with the right headers.
  local function raw(body)
    local built = assert(core.build(req { "placeholder" }, opts))
    built.body = body
    local status, headers, rbody = curl.perform(built)
    assert.is_number(status, tostring(headers))
    return core.parse(status, headers, rbody, s.token)
  end

  local function expect(code, status, result, err)
    assert.is_nil(result)
    assert.is_true(core.is_error(err))
    assert.are.equal(code, err.code, tostring(err))
    assert.are.equal(status, err.status)
    assert.are.equal(SPEC_HINTS[code], err.hint)
    assert.is_string(err.request_id)
    assert.are.equal(code == "system.error", err.retryable)
    local line = tostring(err)
    assert.is_nil(line:find("\n"))
    assert.truthy(line:find(code, 1, true))
    assert.truthy(line:find("HTTP " .. status, 1, true))
    assert.is_nil(line:find(s.token, 1, true))
  end

  it("recalls over verified TLS and mirrors the wire", function()
    local keys = s:seed_keys(3, CID)
    local res = assert(curl.recall(req { keys[1], keys[2], keys[3], "neverIssued" }, opts))
    assert.are.same(keys, res.successResult)
    assert.are.same({ neverIssued = "PROCESS_QUERY_KEY_NOT_EXIST" }, res.failedResult)
    assert.is_string(res.request_id)
  end)

  it("answers invalid.openConversationId", function()
    expect("invalid.openConversationId", 400, curl.recall(req({ "k1" }, "groupWithoutPrefix"), opts))
  end)
  it("answers invalidParameter.robotCode when the bot is not in the group", function()
    s:set_robot { code = s.robot, exclude = { CID } }
    expect("invalidParameter.robotCode", 400, curl.recall(req { "k1" }, opts))
  end)
  it("answers invalidParameter.processQueryKeys.overMax (21 keys, sent raw)", function()
    local keys = {}
    for i = 1, 21 do keys[i] = ("%q"):format("k" .. i) end
    expect("invalidParameter.processQueryKeys.overMax", 400, raw(
      '{"openConversationId":"' .. CID .. '","processQueryKeys":[' .. table.concat(keys, ",") ..
      '],"robotCode":"' .. s.robot .. '"}'))
  end)
  it("answers not.allowed.robotCode for another app's robot", function()
    s:set_app { key = "dingotherapp", secret = "other-secret" }
    s:set_robot { code = "dingotherrobot", app = "dingotherapp" }
    expect("not.allowed.robotCode", 400, curl.recall(req({ "k1" }, CID, "dingotherrobot"), opts))
  end)
  it("answers invalidParameter.param.invalid for an empty key (sent raw)", function()
    expect("invalidParameter.param.invalid", 400, raw(
      '{"openConversationId":"' .. CID .. '","processQueryKeys":[""],"robotCode":"' .. s.robot .. '"}'))
  end)
  it("answers invalidParameter.robotCode.notExsit", function()
    expect("invalidParameter.robotCode.notExsit", 400, curl.recall(req({ "k1" }, CID, "dingNoSuchRobot"), opts))
  end)
  it("answers miss.chatbotId (sent raw)", function()
    expect("miss.chatbotId", 400, raw('{"openConversationId":"' .. CID .. '","processQueryKeys":["k"]}'))
  end)
  it("answers invalidParameter.processQueryKey.missing (sent raw)", function()
    expect("invalidParameter.processQueryKey.missing", 400,
      raw('{"openConversationId":"' .. CID .. '","robotCode":"' .. s.robot .. '"}'))
  end)
  it("answers invalid.processQueryKey", function()
    expect("invalid.processQueryKey", 400, curl.recall(req { "not a key!" }, opts))
  end)
  it("answers miss.openConversationId (sent raw)", function()
    expect("miss.openConversationId", 400, raw('{"processQueryKeys":["k"],"robotCode":"' .. s.robot .. '"}'))
  end)
  it("answers bot.stopped", function()
    s:set_robot { code = s.robot, stopped = true }
    expect("bot.stopped", 400, curl.recall(req { "k1" }, opts))
  end)
  it("answers template.not.existed", function()
    s:set_robot { code = s.robot, template = "missing" }
    expect("template.not.existed", 400, curl.recall(req { "k1" }, opts))
  end)
  it("answers template.stopped", function()
    s:set_robot { code = s.robot, template = "stopped" }
    expect("template.stopped", 400, curl.recall(req { "k1" }, opts))
  end)
  it("answers system.error, retryable", function()
    s:script { recall = { "system_error" } }
    expect("system.error", 500, curl.recall(req { "k1" }, opts))
  end)

  it("answers throttling with the real code, retryable after a second", function()
    s:script { recall = { "throttle" } }
    local res, err = curl.recall(req { "k1" }, opts)
    assert.is_nil(res)
    assert.are.equal("Forbidden.AccessDenied.QpsLimitForAppkeyAndApi", err.code)
    assert.are.equal(403, err.status)
    assert.is_true(err.retryable)
    assert.are.equal(1, err.retry_after)
  end)

  it("answers InvalidAuthentication for a wrong token, without echoing it", function()
    local bad = {}
    for k, v in pairs(opts) do bad[k] = v end
    bad.access_token = "wrong-token-QUUX-1234"
    local res, err = curl.recall(req { "k1" }, bad)
    assert.is_nil(res)
    assert.are.equal("InvalidAuthentication", err.code)
    assert.are.equal(400, err.status)
    assert.is_false(err.retryable)
    for _, v in pairs(err) do assert.is_nil(tostring(v):find("QUUX", 1, true)) end
  end)

  it("refuses the server's certificate without the CA", function()
    local no_ca = { access_token = s.token, endpoint = s.url, timeout = 5 }
    local res, err = curl.recall(req { "k1" }, no_ca)
    assert.is_nil(res)
    assert.are.equal("transport.tls", err.code)
    assert.is_false(err.retryable)
    assert.are.equal(0, s:stats().requests.recall)
  end)

  it("refuses a redirect and does not follow it", function()
    s:script { recall = { "redirect" } }
    local res, err = curl.recall(req { "k1" }, opts)
    assert.is_nil(res)
    assert.are.equal("response.redirect", err.code)
    assert.are.equal(0, s:stats().redirects_followed or 0)
  end)

  it("drops an answer over max_response_bytes", function()
    s:script { recall = { "huge" } }
    local small = {}
    for k, v in pairs(opts) do small[k] = v end
    small.max_response_bytes = 65536
    local res, err = curl.recall(req { "k1" }, small)
    assert.is_nil(res)
    assert.are.equal("response.too_large", err.code)
  end)

  it("times out on a slow answer", function()
    s:script { recall = { "slow" } }
    local quick = {}
    for k, v in pairs(opts) do quick[k] = v end
    quick.timeout = 0.5
    local t0 = curl.now()
    local res, err = curl.recall(req { "k1" }, quick)
    assert.is_nil(res)
    assert.are.equal("transport.timeout", err.code)
    assert.is_true(err.retryable)
    assert.is_true(curl.now() - t0 < 3)
  end)

  it("reports a closed connection as transport.io, retryable", function()
    -- A new connection each time, so libcurl cannot replay it quietly.
    s:script { recall = { "reset" } }
    local built = assert(core.build(req { "k1" }, opts))
    built.headers.connection = "close"
    local m = curl.multi()
    m:add(built, "x")
    local done
    repeat done = m:perform(1) until #done > 0
    m:close()
    assert.are.equal("transport.io", done[1].error.code)
    assert.is_true(done[1].error.retryable)
  end)

  it("reports a refused connection as transport.connect", function()
    local res, err = curl.recall(req { "k1" }, { access_token = "t", endpoint = "http://127.0.0.1:1" })
    assert.is_nil(res)
    assert.are.equal("transport.connect", err.code)
    assert.is_true(err.retryable)
  end)
end)
