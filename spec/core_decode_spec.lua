-- Sans-I/O tests of the response side of dingtalk.recall.core: core.parse
-- of recall answers (core_error_spec: the error object, parse_send,
-- parse_token).  Responses are given as (status, headers, body); no network.
local core = require "dingtalk.recall.core"
local cjson = require "cjson"
local dec = require "spec.helpers.decode"

local has, fails, err_body = dec.has, dec.fails, dec.err_body

-- The spec's error table: code, HTTP status, description.
local SPEC_CODES = {
  { "invalid.openConversationId", 400,
    "Invalid openConversationId. Verify that the openConversationId is correct." },
  { "invalidParameter.robotCode", 400, "Invalid robotCode. Verify that the bot is in the group." },
  { "invalidParameter.processQueryKeys.overMax", 400,
    "processQueryKeys exceeds the maximum limit of 20. Split processQueryKeys into multiple arrays of no more "
      .. "than 20 entries each and call this API in batches." },
  { "not.allowed.robotCode", 400, "Unauthorized robotCode." },
  { "invalidParameter.param.invalid", 400, "Invalid parameter. Verify that no parameter is empty." },
  { "invalidParameter.robotCode.notExsit", 400,
    "The bot does not exist. Verify that the bot corresponding to the robotCode is installed in the chat." },
  { "miss.chatbotId", 400, "Missing robotCode." },
  { "invalidParameter.processQueryKey.missing", 400, "Missing processQueryKey." },
  { "invalid.processQueryKey", 400, "Invalid processQueryKey. Verify that the processQueryKey is correct." },
  { "miss.openConversationId", 400, "Missing openConversationId." },
  { "bot.stopped", 400, "The group bot has been disabled." },
  { "template.not.existed", 400, "The bot template does not exist." },
  { "template.stopped", 400, "The bot template has been disabled." },
  { "system.error", 500, "Unknown system error." },
}

describe("core.parse success (200)", function()
  it("returns successResult, failedResult and request_id from the body", function()
    local res, err = core.parse(200, {}, cjson.encode({
      successResult = { "k1", "k2" },
      failedResult = { k3 = "SYSTEM_ERROR", k4 = "NOT_FOUND" },
      requestid = "req-body-1",
    }))
    assert.is_nil(err)
    assert.are.same({ "k1", "k2" }, res.successResult)
    assert.are.same({ k3 = "SYSTEM_ERROR", k4 = "NOT_FOUND" }, res.failedResult)
    assert.are.equal("req-body-1", res.request_id)
    assert.is_false(core.is_error(res))
  end)

  it("parses the spec's response example", function()
    local res = assert(core.parse(200, { ["content-type"] = "application/json" },
      '{\n  "successResult" : [ "b5fe11095fxxxx" ],\n  "failedResult" : { }\n}'))
    assert.are.same({ "b5fe11095fxxxx" }, res.successResult)
    assert.are.same({}, res.failedResult)
    assert.is_nil(res.request_id)
  end)

  it("takes the request id from the x-acs-request-id header", function()
    local res = assert(core.parse(200, { ["x-acs-request-id"] = "hdr-42" }, '{"successResult":["a"]}'))
    assert.are.equal("hdr-42", res.request_id)
  end)

  it("prefers the body's requestid to the header", function()
    local res = assert(core.parse(200, { ["x-acs-request-id"] = "hdr" },
      '{"successResult":[],"failedResult":{},"requestid":"body"}'))
    assert.are.equal("body", res.request_id)
  end)

  it("accepts RequestId and requestId spellings in the body", function()
    assert.are.equal("R1", assert(core.parse(200, {}, '{"RequestId":"R1"}')).request_id)
    assert.are.equal("R2", assert(core.parse(200, {}, '{"requestId":"R2"}')).request_id)
  end)

  it("accepts headers = nil", function()
    local res = assert(core.parse(200, nil, '{"successResult":["a"]}'))
    assert.are.same({ "a" }, res.successResult)
  end)

  it("turns null lists into empty ones", function()
    local res = assert(core.parse(200, {}, '{"successResult":null,"failedResult":null}'))
    assert.are.same({}, res.successResult)
    assert.are.same({}, res.failedResult)
    assert.are.equal("table", type(res.successResult))
  end)

  it("turns absent lists into empty ones", function()
    local res = assert(core.parse(200, {}, "{}"))
    assert.are.same({}, res.successResult)
    assert.are.same({}, res.failedResult)
  end)

  it("accepts an empty successResult written as {}", function()
    local res = assert(core.parse(200, {}, '{"successResult":{},"failedResult":{}}'))
    assert.are.same({}, res.successResult)
  end)

  it("keeps every key of a large answer", function()
    local succ, failed = {}, {}
    for i = 1, 10 do
      succ[i] = "s" .. i
      failed["f" .. i] = "SYSTEM_ERROR"
    end
    local res = assert(core.parse(200, {}, cjson.encode({ successResult = succ, failedResult = failed })))
    assert.are.same(succ, res.successResult)
    assert.are.same(failed, res.failedResult)
  end)

  it("keeps a failed key whose reason is not text, as UNKNOWN", function()
    local res = assert(core.parse(200, {}, '{"successResult":[],"failedResult":{"k1":5,"k2":null,"k3":"X"}}'))
    assert.are.same({ k1 = "UNKNOWN", k2 = "UNKNOWN", k3 = "X" }, res.failedResult)
  end)

  it("treats any 2xx as success", function()
    local res = assert(core.parse(201, {}, '{"successResult":["a"]}'))
    assert.are.same({ "a" }, res.successResult)
  end)

  it("ignores unknown fields", function()
    local res = assert(core.parse(200, {}, '{"successResult":["a"],"extra":{"x":1}}'))
    assert.is_nil(res.extra)
    assert.are.same({ "a" }, res.successResult)
  end)

  it("decodes with a private cjson: the caller's settings do not matter", function()
    cjson.decode_max_depth(2)
    local ok, res = pcall(core.parse, 200, {}, '{"successResult":["a"],"failedResult":{"b":"c"},"x":[[[1]]]}')
    cjson.decode_max_depth(1000)
    assert.is_true(ok)
    assert.are.same({ "a" }, res.successResult)
  end)
end)

describe("core.parse wrong shapes -> response.invalid", function()
  local cases = {
    { "successResult a string", '{"successResult":"k1"}' },
    { "successResult a number", '{"successResult":5}' },
    { "successResult holding a number", '{"successResult":["a",5]}' },
    { "successResult holding null", '{"successResult":["a",null,"b"]}' },
    { "successResult holding an object", '{"successResult":[{"k":"v"}]}' },
    { "successResult a non-empty object", '{"successResult":{"k1":"v"}}' },
    { "failedResult a string", '{"failedResult":"k1"}' },
    { "failedResult an array", '{"failedResult":["k1"]}' },
    { "failedResult a boolean", '{"failedResult":true}' },
    { "the body a JSON string", '"ok"' },
    { "the body a number", "200" },
    { "the body null", "null" },
    { "the body a non-empty JSON array", '["k1"]' },
    { "the body empty", "" },
    { "the body truncated", '{"successResult":["k1"' },
    { "the body HTML", "<html><body>OK</body></html>" },
  }
  for _, case in ipairs(cases) do
    it(case[1], function()
      local err = fails(core.parse(200, { ["x-acs-request-id"] = "hdr-7" }, case[2]))
      assert.are.equal("response.invalid", err.code)
      assert.are.equal(200, err.status)
      assert.are.equal("hdr-7", err.request_id)
      assert.is_false(err.retryable)
      assert.truthy(#err.message > 0)
    end)
  end

  it("status outside 1xx..5xx", function()
    local err = fails(core.parse(600, {}, "{}"))
    assert.are.equal("response.invalid", err.code)
    assert.are.equal(600, err.status)
    err = fails(core.parse(0, {}, "{}"))
    assert.are.equal("response.invalid", err.code)
    err = fails(core.parse(101, {}, "{}"))
    assert.are.equal("response.invalid", err.code)
    assert.are.equal(101, err.status)
  end)
end)

describe("core.parse the spec's error codes", function()
  for _, spec in ipairs(SPEC_CODES) do
    local code, status, description = spec[1], spec[2], spec[3]
    it(code .. " at HTTP " .. status, function()
      local err = fails(core.parse(status, {}, err_body(code, "server says " .. code, "rid-" .. code)))
      assert.are.equal(code, err.code)
      assert.are.equal("server says " .. code, err.message)
      assert.are.equal(status, err.status)
      assert.are.equal("rid-" .. code, err.request_id)
      assert.are.equal(description, err.hint)
      assert.are.equal(code == "system.error", err.retryable)
      assert.is_nil(err.retry_after)
    end)
  end

  it("keeps the code's retryability when the status differs", function()
    assert.is_true(fails(core.parse(400, {}, err_body("system.error", "x"))).retryable)
    assert.is_false(fails(core.parse(400, {}, err_body("bot.stopped", "x"))).retryable)
  end)

  it("gives an unknown 4xx code a generic hint, not retryable", function()
    local err = fails(core.parse(400, {}, err_body("some.new.code", "new")))
    assert.are.equal("some.new.code", err.code)
    assert.are.equal("new", err.message)
    assert.is_false(err.retryable)
    assert.is_string(err.hint)
    assert.truthy(#err.hint > 0)
  end)

  it("parses the gateway's authentication codes", function()
    local err = fails(core.parse(400, {}, err_body("InvalidAuthentication", "token expired")))
    assert.are.equal("InvalidAuthentication", err.code)
    assert.is_false(err.retryable)
    err = fails(core.parse(400, {}, err_body("AuthenticationFailed.MissingParameter", "no token")))
    assert.is_false(err.retryable)
    err = fails(core.parse(403, {}, err_body("Forbidden.AccessDenied.AccessTokenPermissionDenied", "no")))
    assert.are.equal(403, err.status)
    assert.is_false(err.retryable)
    err = fails(core.parse(403, {}, err_body("Forbidden.AccessDenied.ApiCountLimitForOrg", "quota")))
    assert.is_false(err.retryable)
    assert.is_nil(err.retry_after)
  end)

  it("uses an empty message when the server sends none", function()
    local err = fails(core.parse(400, {}, '{"code":"bot.stopped"}'))
    assert.are.equal("", err.message)
    err = fails(core.parse(400, {}, '{"code":"bot.stopped","message":null}'))
    assert.are.equal("", err.message)
  end)

  it("takes the request id from the header when the body has none", function()
    local err = fails(core.parse(400, { ["x-acs-request-id"] = "hdr-9" }, err_body("bot.stopped", "m")))
    assert.are.equal("hdr-9", err.request_id)
    err = fails(core.parse(400, { ["x-acs-request-id"] = "hdr-9" }, err_body("bot.stopped", "m", "body-9")))
    assert.are.equal("body-9", err.request_id)
  end)

  it("an error body without a code -> response.invalid keeping status", function()
    local err = fails(core.parse(400, { ["x-acs-request-id"] = "h" }, '{"message":"what"}'))
    assert.are.equal("response.invalid", err.code)
    assert.are.equal(400, err.status)
    assert.are.equal("h", err.request_id)
    assert.is_false(err.retryable)
    err = fails(core.parse(400, {}, '{"code":""}'))
    assert.are.equal("response.invalid", err.code)
  end)
end)

describe("core.parse QPS limits", function()
  local qps = { "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi", "Forbidden.AccessDenied.QpsLimitForApi" }
  for _, code in ipairs(qps) do
    it(code .. " is retryable after 1 s", function()
      local err = fails(core.parse(403, {}, err_body(code, "qps limit", "rq")))
      assert.are.equal(code, err.code)
      assert.are.equal(403, err.status)
      assert.is_true(err.retryable)
      assert.are.equal(1, err.retry_after)
      assert.truthy(has(err.hint, "1 s"))
      err = fails(core.parse(429, {}, err_body(code, "qps limit")))
      assert.is_true(err.retryable)
      assert.are.equal(1, err.retry_after)
    end)
  end
end)

describe("core.parse capitalised keys", function()
  it("reads {Code, Message, RequestId}", function()
    local err = fails(core.parse(400, {}, '{"Code":"bot.stopped","Message":"Bot is off","RequestId":"CAP-1"}'))
    assert.are.equal("bot.stopped", err.code)
    assert.are.equal("Bot is off", err.message)
    assert.are.equal("CAP-1", err.request_id)
    assert.are.equal(400, err.status)
    assert.are.equal("The group bot has been disabled.", err.hint)
  end)

  it("prefers the lower-case keys when both are present", function()
    local err = fails(core.parse(400, {}, '{"code":"bot.stopped","Code":"other","message":"a","Message":"b"}'))
    assert.are.equal("bot.stopped", err.code)
    assert.are.equal("a", err.message)
  end)

  it("reads capitalised QPS answers as retryable", function()
    local err = fails(core.parse(403, {}, '{"Code":"Forbidden.AccessDenied.QpsLimitForApi","Message":"slow down"}'))
    assert.is_true(err.retryable)
    assert.are.equal(1, err.retry_after)
  end)
end)

describe("core.parse non-JSON and status classes", function()
  local html = "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"

  it("an HTML 502 -> response.invalid, status 502, retryable", function()
    local err = fails(core.parse(502, { ["content-type"] = "text/html", ["x-acs-request-id"] = "gw-1" }, html))
    assert.are.equal("response.invalid", err.code)
    assert.are.equal(502, err.status)
    assert.is_true(err.retryable)
    assert.are.equal("gw-1", err.request_id)
  end)

  it("an HTML 403 (IP ban page) -> response.invalid, not retryable", function()
    local err = fails(core.parse(403, { ["content-type"] = "text/html" }, "<html><body>Access denied</body></html>"))
    assert.are.equal("response.invalid", err.code)
    assert.are.equal(403, err.status)
    assert.is_false(err.retryable)
    assert.is_nil(err.retry_after)
  end)

  it("never puts the raw HTML into the message", function()
    local err = fails(core.parse(502, {}, html))
    assert.is_falsy(has(err.message, "<html>"))
  end)

  for _, status in ipairs({ 300, 301, 302, 303, 307, 308 }) do
    it(status .. " -> response.redirect", function()
      local err = fails(core.parse(status, { location = "https://evil.example/" }, ""))
      assert.are.equal("response.redirect", err.code)
      assert.are.equal(status, err.status)
      assert.is_false(err.retryable)
      -- even with a JSON body
      err = fails(core.parse(status, {}, '{"successResult":["a"]}'))
      assert.are.equal("response.redirect", err.code)
    end)
  end

  for _, status in ipairs({ 500, 501, 502, 503, 504, 599 }) do
    it(status .. " is retryable whatever the body", function()
      assert.is_true(fails(core.parse(status, {}, "<html>down</html>")).retryable)
      assert.is_true(fails(core.parse(status, {}, "")).retryable)
      assert.is_true(fails(core.parse(status, {}, err_body("gateway.busy", "busy"))).retryable)
      assert.is_true(fails(core.parse(status, {}, '{"no":"code"}')).retryable)
      local err = fails(core.parse(status, {}, err_body("unknown.thing", "x")))
      assert.are.equal(status, err.status)
      assert.are.equal("unknown.thing", err.code)
    end)
  end

  it("429 is retryable, JSON or not", function()
    local err = fails(core.parse(429, {}, err_body("Throttling", "too many")))
    assert.are.equal("Throttling", err.code)
    assert.are.equal(429, err.status)
    assert.is_true(err.retryable)
    err = fails(core.parse(429, {}, "Too Many Requests"))
    assert.are.equal("response.invalid", err.code)
    assert.is_true(err.retryable)
  end)

  for _, status in ipairs({ 400, 401, 403, 404, 409, 413 }) do
    it(status .. " with an unknown code is not retryable", function()
      assert.is_false(fails(core.parse(status, {}, err_body("x.y", "m"))).retryable)
      assert.is_false(fails(core.parse(status, {}, "nope")).retryable)
    end)
  end
end)

describe("core.parse redaction", function()
  local SECRET = "tok-SECRET-1234567890"

  it("redacts a secret string from the server's message", function()
    local body = err_body("InvalidAuthentication", "token " .. SECRET .. " is invalid")
    local err = fails(core.parse(400, {}, body, SECRET))
    assert.is_falsy(has(err.message, SECRET))
    assert.is_falsy(has(tostring(err), SECRET))
    assert.truthy(has(err.message, "token "))
    assert.truthy(has(err.message, " is invalid"))
  end)

  it("redacts every occurrence of every secret in a list", function()
    local msg = "a=" .. SECRET .. " b=APPSECRET-xyz again " .. SECRET
    local err = fails(core.parse(400, {}, err_body("invalidClientIdOrSecret", msg), { SECRET, "APPSECRET-xyz" }))
    assert.is_falsy(has(err.message, SECRET))
    assert.is_falsy(has(err.message, "APPSECRET-xyz"))
    assert.truthy(has(err.message, "a="))
    assert.truthy(has(err.message, "again"))
  end)

  it("treats secrets as plain text, not patterns", function()
    local secret = "s3c.r%t+(x)"
    local err = fails(core.parse(400, {}, err_body("bot.stopped", "leak " .. secret .. " end"), secret))
    assert.is_falsy(has(err.message, secret))
    assert.truthy(has(err.message, "leak "))
    err = fails(core.parse(400, {}, err_body("bot.stopped", "leak sXc-r%t+(x) end"), secret))
    assert.are.equal("leak sXc-r%t+(x) end", err.message)
  end)

  it("leaves the message alone when it holds no secret", function()
    local err = fails(core.parse(400, {}, err_body("bot.stopped", "plain message"), { SECRET }))
    assert.are.equal("plain message", err.message)
  end)

  it("redacts in parse_token and parse_send too", function()
    local err = fails(core.parse_token(400, {}, err_body("invalidClientIdOrSecret", "bad " .. SECRET), SECRET))
    assert.is_falsy(has(err.message, SECRET))
    err = fails(core.parse_send(400, {}, err_body("InvalidAuthentication", "bad " .. SECRET), { SECRET }))
    assert.is_falsy(has(err.message, SECRET))
  end)
end)
