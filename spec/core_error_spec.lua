-- Sans-I/O tests of the response side of dingtalk.recall.core: the error
-- object (tostring, core.error, core.is_error), the programmer errors of
-- core.parse, parse_send and parse_token (core_decode_spec: core.parse of
-- recall answers).  Responses are given as (status, headers, body).
local core = require "dingtalk.recall.core"
local dec = require "spec.helpers.decode"

local has, count, fails, err_body = dec.has, dec.count, dec.fails, dec.err_body

describe("tostring of an error", function()
  it("names code, message, HTTP status and request id", function()
    local err = fails(core.parse(400, {}, err_body("bot.stopped", "robot disabled", "rid-1")))
    assert.are.equal("bot.stopped: robot disabled (HTTP 400, request_id rid-1)", tostring(err))
  end)

  it("leaves out what is absent", function()
    assert.are.equal("x.y: msg", tostring(core.error("x.y", "msg")))
    assert.are.equal("x.y", tostring(core.error("x.y")))
    assert.are.equal("x.y: m (HTTP 503)", tostring(core.error("x.y", "m", { status = 503 })))
    assert.are.equal("x.y: m (request_id r9)", tostring(core.error("x.y", "m", { request_id = "r9" })))
  end)

  it("is right for a response.invalid from an HTML page", function()
    local err = fails(core.parse(502, { ["x-acs-request-id"] = "gw" }, "<html></html>"))
    local s = tostring(err)
    assert.are.equal("response.invalid: ", s:sub(1, 18))
    assert.truthy(has(s, "(HTTP 502, request_id gw)"))
  end)

  it("is right for long server messages", function()
    local long = string.rep("m", 20000)
    local err = fails(core.parse(400, {}, err_body("bot.stopped", long, "rid-long")))
    assert.are.equal("bot.stopped: " .. long .. " (HTTP 400, request_id rid-long)", tostring(err))
  end)

  it("is one line even when the server's message has line breaks", function()
    local err = fails(core.parse(400, {}, err_body("bot.stopped", "first\nsecond\r\nthird", "r1")))
    local s = tostring(err)
    assert.is_nil(s:find("[\r\n]"), "tostring gave: " .. s)
    assert.truthy(has(s, "bot.stopped"))
    assert.truthy(has(s, "HTTP 400"))
    assert.truthy(has(s, "r1"))
  end)
end)

describe("core.parse programmer errors raise", function()
  it("status not a number", function()
    assert.has_error(function() core.parse({}, {}, "{}") end)
    assert.has_error(function() core.parse(nil, {}, "{}") end)
  end)

  it("headers not a table", function()
    assert.has_error(function() core.parse(200, "x-acs-request-id: 1", "{}") end)
  end)

  it("body not a string", function()
    assert.has_error(function() core.parse(200, {}, nil) end)
    assert.has_error(function() core.parse(200, {}, {}) end)
    assert.has_error(function() core.parse_token(200, {}) end)
    assert.has_error(function() core.parse_send(200, {}) end)
  end)
end)

describe("core.parse_send", function()
  it("returns the processQueryKey", function()
    local res = assert(core.parse_send(200, { ["x-acs-request-id"] = "s1" }, '{"processQueryKey":"pqk-123"}'))
    assert.are.equal("pqk-123", res.processQueryKey)
    assert.are.equal("s1", res.request_id)
    assert.is_false(core.is_error(res))
  end)

  it("a missing, empty or non-string key -> response.invalid", function()
    for _, body in ipairs({ "{}", '{"processQueryKey":""}', '{"processQueryKey":5}', '{"processQueryKey":null}',
      '{"successResult":["a"]}', "[]", "<html/>" }) do
      local err = fails(core.parse_send(200, {}, body))
      assert.are.equal("response.invalid", err.code, body)
      assert.are.equal(200, err.status)
    end
  end)

  it("parses error answers like parse", function()
    local err = fails(core.parse_send(400, {}, err_body("bot.stopped", "off", "r")))
    assert.are.equal("bot.stopped", err.code)
    assert.are.equal("The group bot has been disabled.", err.hint)
    assert.are.equal(400, err.status)
    err = fails(core.parse_send(302, {}, ""))
    assert.are.equal("response.redirect", err.code)
  end)
end)

describe("core.parse_token", function()
  it("returns accessToken and expireIn", function()
    local res = assert(core.parse_token(200, {}, '{"accessToken":"fw8ef8we8f76e6f7s8df8s","expireIn":7200}'))
    assert.are.equal("fw8ef8we8f76e6f7s8df8s", res.accessToken)
    assert.are.equal(7200, res.expireIn)
    assert.is_false(core.is_error(res))
  end)

  local bad = {
    { "no accessToken", '{"expireIn":7200}' },
    { "empty accessToken", '{"accessToken":"","expireIn":7200}' },
    { "numeric accessToken", '{"accessToken":123,"expireIn":7200}' },
    { "no expireIn", '{"accessToken":"t"}' },
    { "null expireIn", '{"accessToken":"t","expireIn":null}' },
    { "string expireIn", '{"accessToken":"t","expireIn":"7200"}' },
    { "zero expireIn", '{"accessToken":"t","expireIn":0}' },
    { "negative expireIn", '{"accessToken":"t","expireIn":-5}' },
    { "tiny expireIn", '{"accessToken":"t","expireIn":1e-9}' },
    { "expireIn under a minute", '{"accessToken":"t","expireIn":59}' },
    { "expireIn over a day", '{"accessToken":"t","expireIn":86401}' },
    { "huge expireIn", '{"accessToken":"t","expireIn":1e300}' },
    { "overflowing expireIn", '{"accessToken":"t","expireIn":1e999}' },
    { "NaN expireIn", '{"accessToken":"t","expireIn":NaN}' },
    { "Infinity expireIn", '{"accessToken":"t","expireIn":Infinity}' },
    { "-Infinity expireIn", '{"accessToken":"t","expireIn":-Infinity}' },
    { "hex expireIn", '{"accessToken":"t","expireIn":0x1}' },
    { "not JSON", "<html>oops</html>" },
  }

  it("expireIn from 60 s to a day is accepted, fractions too", function()
    for _, v in ipairs { "60", "86400", "7199.5", "3600" } do
      local res = assert(core.parse_token(200, {}, '{"accessToken":"t","expireIn":' .. v .. "}"))
      assert.are.equal(tonumber(v), res.expireIn)
    end
  end)

  it("names the refused expireIn and the range", function()
    local err = fails(core.parse_token(200, {}, '{"accessToken":"secret-tok","expireIn":1e-9}', { "secret-tok" }))
    assert.matches("expireIn %(1e%-09%) is outside 60..86400 seconds", err.message)
    assert.is_true(core.codes[err.code].ambiguous)
  end)
  for _, case in ipairs(bad) do
    it(case[1] .. " -> response.invalid", function()
      local err = fails(core.parse_token(200, {}, case[2]))
      assert.are.equal("response.invalid", err.code)
      assert.are.equal(200, err.status)
    end)
  end

  it("parses invalidClientIdOrSecret", function()
    local err = fails(core.parse_token(400, {}, err_body("invalidClientIdOrSecret", "bad", "t-1")))
    assert.are.equal("invalidClientIdOrSecret", err.code)
    assert.are.equal(400, err.status)
    assert.are.equal("t-1", err.request_id)
    assert.is_false(err.retryable)
  end)

  it("marks a token call's 5xx as retryable", function()
    assert.is_true(fails(core.parse_token(503, {}, "unavailable")).retryable)
  end)
end)

describe("core.error", function()
  it("builds the same shape as parse", function()
    local err = core.error("bot.stopped", "stopped")
    assert.is_true(core.is_error(err))
    assert.are.equal("bot.stopped", err.code)
    assert.are.equal("stopped", err.message)
    assert.is_false(err.retryable)
    assert.are.equal("The group bot has been disabled.", err.hint)
    assert.is_nil(err.status)
    assert.is_nil(err.request_id)
    local parsed = fails(core.parse(400, {}, err_body("bot.stopped", "stopped")))
    assert.are.equal(getmetatable(parsed), getmetatable(err))
  end)

  it("defaults the message to empty", function()
    local err = core.error("x.y")
    assert.are.equal("", err.message)
  end)

  it("defaults retryable from the code", function()
    assert.is_true(core.error("system.error", "x").retryable)
    assert.is_true(core.error("transport.timeout", "x").retryable)
    assert.is_true(core.error("transport.connect", "x").retryable)
    assert.is_false(core.error("transport.tls", "x").retryable)
    assert.is_false(core.error("invalid.processQueryKey", "x").retryable)
  end)

  it("defaults retryable and hint from the status", function()
    local err = core.error("x.y", "m", { status = 503 })
    assert.is_true(err.retryable)
    assert.are.equal(503, err.status)
    assert.truthy(#err.hint > 0)
    assert.is_true(core.error("x.y", "m", { status = 429 }).retryable)
    assert.is_false(core.error("x.y", "m", { status = 404 }).retryable)
  end)

  it("gives QPS codes retry_after = 1", function()
    local err = core.error("Forbidden.AccessDenied.QpsLimitForAppkeyAndApi", "slow")
    assert.is_true(err.retryable)
    assert.are.equal(1, err.retry_after)
    assert.are.equal(5, core.error("Forbidden.AccessDenied.QpsLimitForApi", "slow", { retry_after = 5 }).retry_after)
  end)

  it("keeps given retryable, hint and extra fields", function()
    local err = core.error("system.error", "m", { retryable = false, hint = "custom hint", key = "k1", attempt = 3,
      status = 500, request_id = "r" })
    assert.is_false(err.retryable)
    assert.are.equal("custom hint", err.hint)
    assert.are.equal("k1", err.key)
    assert.are.equal(3, err.attempt)
    assert.are.equal(500, err.status)
    assert.are.equal("r", err.request_id)
    assert.are.equal("system.error: m (HTTP 500, request_id r)", tostring(err))
  end)

  it("lets the arguments win over code and message in fields", function()
    local err = core.error("a.b", "real", { code = "c.d", message = "other" })
    assert.are.equal("a.b", err.code)
    assert.are.equal("real", err.message)
  end)

  it("does not modify the fields table", function()
    local fields = { status = 500 }
    local err = core.error("x.y", "m", fields)
    assert.are.same({ status = 500 }, fields)
    assert.are_not.equal(fields, err)
    assert.is_false(core.is_error(fields))
  end)

  it("raises on wrong argument types", function()
    assert.has_error(function() core.error() end)
    assert.has_error(function() core.error({}) end)
    assert.has_error(function() core.error("x", "m", "fields") end)
  end)
end)

describe("core.is_error", function()
  it("is true for error objects from every source", function()
    assert.is_true(core.is_error(core.error("x", "y")))
    assert.is_true(core.is_error(select(2, core.parse(400, {}, err_body("bot.stopped", "m")))))
    assert.is_true(core.is_error(select(2, core.parse(502, {}, "<html/>"))))
    assert.is_true(core.is_error(select(2, core.validate({}))))
    assert.is_true(core.is_error(select(2, core.build({ openConversationId = "c", robotCode = "r",
      processQueryKeys = { "k" } }))))
  end)

  it("is false for plain values", function()
    assert.is_false(core.is_error({ code = "x", message = "y", retryable = false, hint = "h" }))
    assert.is_false(core.is_error(setmetatable({ code = "x" }, { __tostring = function() return "x" end })))
    assert.is_false(core.is_error(nil))
    assert.is_false(core.is_error())
    assert.is_false(core.is_error("system.error"))
    assert.is_false(core.is_error(42))
    assert.is_false(core.is_error(true))
    assert.is_false(core.is_error(print))
    assert.is_false(core.is_error(assert(core.parse(200, {}, "{}"))))
  end)

  it("is false for a built request", function()
    local built = assert(core.build({ openConversationId = "c", robotCode = "r", processQueryKeys = { "k" } },
      { access_token = "t" }))
    assert.is_false(core.is_error(built))
  end)

  it("error objects hold only the documented fields", function()
    local err = fails(core.parse(403, { ["x-acs-request-id"] = "r" },
      err_body("Forbidden.AccessDenied.QpsLimitForApi", "slow")))
    local allowed = { code = true, message = true, status = true, request_id = true, retryable = true, hint = true,
      retry_after = true }
    for k in pairs(err) do
      assert.truthy(allowed[k], "unexpected field " .. tostring(k))
    end
    assert.are.equal(7, count(err))
  end)
end)
