-- Sans-I/O tests of the request side of dingtalk.recall.core: what build,
-- build_send, build_token and json_string produce, and the programmer
-- errors that raise (core_encode_spec: validation).
local core = require "dingtalk.recall.core"
local cjson = require "cjson"
local enc = require "spec.helpers.encode"

local TOKEN = enc.TOKEN
local req, opts, fails_with, has, utf8char = enc.req, enc.opts, enc.fails_with, enc.has, enc.utf8char

describe("core.build programmer errors raise", function()
  it("request not a table", function()
    assert.has_error(function() core.build("request", opts()) end)
    assert.has_error(function() core.build(nil, opts()) end)
    assert.has_error(function() core.build(42) end)
    assert.has_error(function() core.validate("request") end)
    assert.has_error(function() core.validate() end)
  end)

  it("options not a table", function()
    assert.has_error(function() core.build(req(), "token") end)
    assert.has_error(function() core.build(req(), 42) end)
    assert.has_error(function() core.build(req(), true) end)
    assert.has_error(function() core.validate(req(), "token") end)
  end)

  it("timeout a string", function()
    assert.has_error(function() core.build(req(), opts({ timeout = "10" })) end)
    assert.has_error(function() core.build(req(), opts({ connect_timeout = "3" })) end)
    assert.has_error(function() core.build(req(), opts({ max_response_bytes = "1024" })) end)
  end)

  it("timeouts that are not positive", function()
    assert.has_error(function() core.build(req(), opts({ timeout = 0 })) end)
    assert.has_error(function() core.build(req(), opts({ timeout = -1 })) end)
    assert.has_error(function() core.build(req(), opts({ connect_timeout = 0 / 0 })) end)
  end)

  it("endpoint a number or table", function()
    assert.has_error(function() core.build(req(), opts({ endpoint = 443 })) end)
    assert.has_error(function() core.build(req(), opts({ endpoint = {} })) end)
  end)

  it("access_token not a string", function()
    assert.has_error(function() core.build(req(), { access_token = 12345 }) end)
    assert.has_error(function() core.build(req(), { access_token = {} }) end)
  end)

  it("ca_file not a string", function()
    assert.has_error(function() core.build(req(), opts({ ca_file = 1 })) end)
    assert.has_error(function() core.build(req(), opts({ ca_file = "/tmp/ca\0.pem" })) end)
  end)

  it("json_string of a non-string", function()
    assert.has_error(function() core.json_string({}) end)
    assert.has_error(function() core.json_string() end)
  end)
end)

describe("core.build result", function()
  local built

  before_each(function()
    built = assert(core.build(req({ processQueryKeys = { "k1", "k2" } }), opts()))
  end)

  it("is a POST to endpoint .. path", function()
    assert.are.equal("POST", built.method)
    assert.are.equal("https://api.dingtalk.io/v1.0/robot/groupMessages/recall", built.url)
  end)

  it("carries the headers of the official SDK", function()
    local h = built.headers
    assert.are.equal("application/json; charset=utf-8", h["content-type"])
    assert.are.equal("application/json", h["accept"])
    assert.are.equal("dingtalk-recall/", h["user-agent"]:sub(1, 16))
    assert.are.equal("dingtalk-recall/" .. core._VERSION, h["user-agent"])
    assert.are.equal(TOKEN, h["x-acs-dingtalk-access-token"])
    local n = 0
    for k, v in pairs(h) do
      n = n + 1
      assert.is_string(k)
      assert.is_string(v)
      assert.are.equal(k:lower(), k)
    end
    assert.are.equal(4, n)
  end)

  it("writes the body fields in the SDK's order", function()
    assert.are.equal('{"openConversationId":"cidfCSxxxx","processQueryKeys":["k1","k2"],"robotCode":"dingxxxx"}',
      built.body)
    local a = built.body:find('"openConversationId"', 1, true)
    local b = built.body:find('"processQueryKeys"', 1, true)
    local c = built.body:find('"robotCode"', 1, true)
    assert.is_true(a < b and b < c)
  end)

  it("has a body cjson decodes to the request", function()
    local d = cjson.decode(built.body)
    assert.are.same({ openConversationId = "cidfCSxxxx", robotCode = "dingxxxx", processQueryKeys = { "k1", "k2" } }, d)
  end)

  it("writes a single key as a one-element array", function()
    local one = assert(core.build(req(), opts()))
    assert.truthy(has(one.body, '"processQueryKeys":["b5fe11095fxxxx"]'))
  end)

  it("carries the default timeouts and limit", function()
    assert.are.equal(10, built.timeout)
    assert.are.equal(3, built.connect_timeout)
    assert.are.equal(1048576, built.max_response_bytes)
    assert.is_nil(built.ca_file)
  end)

  it("carries given timeouts, limit and ca_file", function()
    local b = assert(core.build(req(), opts({ timeout = 2.5, connect_timeout = 0.5, max_response_bytes = 4096,
      ca_file = "/etc/ssl/private-ca.pem" })))
    assert.are.equal(2.5, b.timeout)
    assert.are.equal(0.5, b.connect_timeout)
    assert.are.equal(4096, b.max_response_bytes)
    assert.are.equal("/etc/ssl/private-ca.pem", b.ca_file)
  end)

  it("does not show the token in tostring()", function()
    local s = tostring(built)
    assert.is_falsy(has(s, TOKEN))
    assert.truthy(has(s, "POST"))
    assert.truthy(has(s, built.url))
  end)

  it("does not keep a reference to the caller's tables", function()
    local r = req({ processQueryKeys = { "k1" } })
    local b = assert(core.build(r, opts()))
    r.processQueryKeys[1] = "changed"
    r.openConversationId = "changed"
    assert.are.equal("k1", cjson.decode(b.body).processQueryKeys[1])
    assert.are.equal("cidfCSxxxx", cjson.decode(b.body).openConversationId)
  end)

  it("ignores unknown request fields", function()
    local b = assert(core.build(req({ extra = "x", robot = "y" }), opts()))
    local d = cjson.decode(b.body)
    assert.is_nil(d.extra)
    assert.is_nil(d.robot)
  end)
end)

describe("JSON escaping in built bodies", function()
  local printable = {}
  for b = 0x20, 0x7e do
    printable[#printable + 1] = string.char(b)
  end
  printable = table.concat(printable)

  local samples = {
    'quote " inside',
    '""',
    "back\\slash",
    "\\\\",
    "\\u0041 looks like an escape",
    '\\"',
    "slash / and </script>",
    printable,
    "caf\195\169",
    "\228\184\173\230\150\135\231\190\164",
    "emoji \240\159\152\128 and \240\159\145\141\240\159\143\189",
    "line sep \226\128\168 para sep \226\128\169",
    "\239\187\191bom",
    "\244\143\191\191",
    "nbsp\194\160here",
    string.rep("x", 1024),
    string.rep("\240\159\152\128", 256),
    string.rep('"', 1024),
    string.rep("\\", 1024),
  }

  for i, s in ipairs(samples) do
    it("round-trips sample " .. i .. " through cjson", function()
      local built = assert(core.build({ openConversationId = s, robotCode = s, processQueryKeys = { s, "k" } }, opts()))
      local d = cjson.decode(built.body)
      assert.are.equal(s, d.openConversationId)
      assert.are.equal(s, d.robotCode)
      assert.are.equal(s, d.processQueryKeys[1])
      assert.are.equal("k", d.processQueryKeys[2])
    end)
  end

  it("round-trips build_send fields too", function()
    for _, s in ipairs(samples) do
      local built = assert(core.build_send({ openConversationId = s, robotCode = s, msgKey = "sampleText",
        msgParam = { content = s } }, opts()))
      local d = cjson.decode(built.body)
      assert.are.equal(s, d.openConversationId)
      assert.are.equal(s, cjson.decode(d.msgParam).content)
    end
  end)

  it("round-trips a few thousand random valid UTF-8 strings (fixed seed)", function()
    math.randomseed(20240611)
    local ranges = {
      { 0x20, 0x7e }, { 0x20, 0x7e }, { 0x22, 0x22 }, { 0x5c, 0x5c }, { 0x2f, 0x2f },
      { 0xa0, 0x7ff }, { 0x800, 0xd7ff }, { 0xe000, 0xffff }, { 0x10000, 0x10ffff },
      { 0x2028, 0x2029 },
    }
    for n = 1, 3000 do
      local parts = {}
      for j = 1, math.random(1, 40) do
        local r = ranges[math.random(1, #ranges)]
        parts[j] = utf8char(math.random(r[1], r[2]))
      end
      local s = table.concat(parts)
      local built, err = core.build({ openConversationId = s, robotCode = "r", processQueryKeys = { s } }, opts())
      assert(built, "string " .. n .. " refused: " .. tostring(err and err.message))
      local d = cjson.decode(built.body)
      if d.openConversationId ~= s or d.processQueryKeys[1] ~= s then
        error(string.format("round trip %d failed for %q", n, s))
      end
      local j = core.json_string(s)
      if cjson.decode(j) ~= s then
        error(string.format("json_string round trip %d failed for %q", n, s))
      end
    end
  end)
end)

describe("core.json_string", function()
  it("writes exact escapes", function()
    assert.are.equal('""', core.json_string(""))
    assert.are.equal('"abc"', core.json_string("abc"))
    assert.are.equal('"a\\"b"', core.json_string('a"b'))
    assert.are.equal('"a\\\\b"', core.json_string("a\\b"))
    assert.are.equal('"\\n\\r\\t\\b\\f"', core.json_string("\n\r\t\b\f"))
    assert.are.equal('"\\u0000"', core.json_string("\0"))
    assert.are.equal('"a\\u0000b"', core.json_string("a\0b"))
    assert.are.equal('"\\u0001\\u001f"', core.json_string("\1\31"))
    assert.are.equal('"\\u001b"', core.json_string("\27"))
    assert.are.equal('"\\u007f"', core.json_string("\127"))
    assert.are.equal('"caf\195\169"', core.json_string("caf\195\169"))
    assert.are.equal('"123"', core.json_string(123))
  end)

  it("escapes every control byte and round-trips every byte 0..127", function()
    for b = 0, 127 do
      local s = string.char(b)
      local j = core.json_string(s)
      assert.are.equal(s, cjson.decode(j), "byte " .. b)
      local inner = j:sub(2, -2)
      if b < 0x20 or b == 0x7f then
        assert.is_nil(inner:find("[%z\1-\31\127]"), "raw control byte " .. b)
        local ok = inner:match("^\\u00%x%x$") or inner:match('^\\[nrtbf]$')
        assert.truthy(ok, "byte " .. b .. " written as " .. j)
        if inner:match("^\\u") then
          assert.are.equal(b, tonumber(inner:sub(5), 16))
        end
      elseif b == 0x22 or b == 0x5c then
        assert.are.equal("\\" .. s, inner)
      else
        assert.are.equal(s, inner)
      end
    end
  end)

  it("round-trips all bytes 0..127 in one string", function()
    local t = {}
    for b = 0, 127 do
      t[#t + 1] = string.char(b)
    end
    local s = table.concat(t)
    assert.are.equal(s, cjson.decode(core.json_string(s)))
  end)

  it("round-trips random ASCII strings with control characters (fixed seed)", function()
    math.randomseed(7)
    for _ = 1, 2000 do
      local t = {}
      for j = 1, math.random(0, 30) do
        t[j] = string.char(math.random(0, 127))
      end
      local s = table.concat(t)
      local out = cjson.decode(core.json_string(s))
      if out ~= s then
        error(string.format("json_string round trip failed for %q", s))
      end
    end
  end)
end)

describe("core.build_send", function()
  local function send_req(over)
    local r = { openConversationId = "cid1", robotCode = "robot1", msgKey = "sampleText",
      msgParam = { content = "hello" } }
    for k, v in pairs(over or {}) do
      r[k] = v
    end
    return r
  end

  it("builds the send call", function()
    local b = assert(core.build_send(send_req(), opts()))
    assert.are.equal("POST", b.method)
    assert.are.equal("https://api.dingtalk.io/v1.0/robot/groupMessages/send", b.url)
    assert.are.equal(TOKEN, b.headers["x-acs-dingtalk-access-token"])
    assert.are.equal("application/json; charset=utf-8", b.headers["content-type"])
    local d = cjson.decode(b.body)
    assert.are.equal("sampleText", d.msgKey)
    assert.are.equal("cid1", d.openConversationId)
    assert.are.equal("robot1", d.robotCode)
    assert.is_string(d.msgParam)
    assert.are.same({ content = "hello" }, cjson.decode(d.msgParam))
    assert.is_falsy(has(tostring(b), TOKEN))
  end)

  it("writes fields in the order msgKey, msgParam, openConversationId, robotCode", function()
    local b = assert(core.build_send(send_req(), opts()))
    local p1 = b.body:find('"msgKey"', 1, true)
    local p2 = b.body:find('"msgParam"', 1, true)
    local p3 = b.body:find('"openConversationId"', 1, true)
    local p4 = b.body:find('"robotCode"', 1, true)
    assert.is_true(p1 < p2 and p2 < p3 and p3 < p4)
  end)

  it("takes msgParam as a JSON string as it is", function()
    local b = assert(core.build_send(send_req({ msgParam = '{"content":"hi\\nthere"}' }), opts()))
    assert.are.equal('{"content":"hi\\nthere"}', cjson.decode(b.body).msgParam)
  end)

  it("uses the recall codes for missing ids", function()
    fails_with("miss.openConversationId", core.build_send(send_req({ openConversationId = "" }), opts()))
    fails_with("miss.chatbotId", core.build_send(send_req({ robotCode = "" }), opts()))
  end)

  it("refuses a missing msgKey or msgParam", function()
    local err = fails_with("invalidParameter.param.invalid", core.build_send(send_req({ msgKey = "" }), opts()))
    assert.truthy(has(err.message, "msgKey"))
    local r = send_req()
    r.msgParam = nil
    err = fails_with("invalidParameter.param.invalid", core.build_send(r, opts()))
    assert.truthy(has(err.message, "msgParam"))
    err = fails_with("invalidParameter.param.invalid", core.build_send(send_req({ msgParam = 5 }), opts()))
    assert.truthy(has(err.message, "msgParam"))
  end)

  it("refuses a msgParam that is not valid UTF-8", function()
    local err = fails_with("invalidParameter.param.invalid",
      core.build_send(send_req({ msgParam = '{"content":"\255"}' }), opts()))
    assert.truthy(has(err.message, "msgParam"))
  end)

  it("refuses a msgParam table cjson cannot encode", function()
    local err = fails_with("invalidParameter.param.invalid",
      core.build_send(send_req({ msgParam = { f = function() end } }), opts()))
    assert.truthy(has(err.message, "msgParam"))
  end)

  it("needs a token", function()
    fails_with("AuthenticationFailed.MissingParameter", core.build_send(send_req()))
    fails_with("AuthenticationFailed.MissingParameter", core.build_send(send_req(), {}))
  end)

  it("applies the endpoint rules", function()
    fails_with("invalid.endpoint", core.build_send(send_req(), opts({ endpoint = "http://evil.example" })))
    local b = assert(core.build_send(send_req(), opts({ endpoint = "http://localhost:8080/" })))
    assert.are.equal("http://localhost:8080/v1.0/robot/groupMessages/send", b.url)
  end)

  it("raises on a request that is not a table", function()
    assert.has_error(function() core.build_send("x", opts()) end)
  end)
end)

describe("core.build_token", function()
  it("builds the internal app token call", function()
    local b = assert(core.build_token({ appKey = "dingAPPKEY", appSecret = "S3CRET-value" }))
    assert.are.equal("POST", b.method)
    assert.are.equal("https://api.dingtalk.io/v1.0/oauth2/accessToken", b.url)
    assert.are.equal('{"appKey":"dingAPPKEY","appSecret":"S3CRET-value"}', b.body)
    assert.is_nil(b.headers["x-acs-dingtalk-access-token"])
    assert.are.equal("application/json; charset=utf-8", b.headers["content-type"])
    assert.are.equal("dingtalk-recall/", b.headers["user-agent"]:sub(1, 16))
    assert.is_falsy(has(tostring(b), "S3CRET-value"))
  end)

  it("builds the third-party corp token call", function()
    local b = assert(core.build_token({ suiteKey = "sk", suiteSecret = "ss", authCorpId = "corp", suiteTicket = "tk" },
      { endpoint = "http://127.0.0.1:9999" }))
    assert.are.equal("http://127.0.0.1:9999/v1.0/oauth2/corpAccessToken", b.url)
    assert.are.equal('{"suiteKey":"sk","suiteSecret":"ss","authCorpId":"corp","suiteTicket":"tk"}', b.body)
    assert.is_true(b.loopback)
  end)

  it("does not need an access token", function()
    assert.is_truthy(core.build_token({ appKey = "k", appSecret = "s" }, {}))
  end)

  it("refuses missing or bad credentials without echoing them", function()
    local err = fails_with("invalidParameter.param.invalid", core.build_token({ appKey = "k" }))
    assert.truthy(has(err.message, "appSecret"))
    err = fails_with("invalidParameter.param.invalid", core.build_token({ appKey = "k", appSecret = "" }))
    assert.truthy(has(err.message, "appSecret"))
    err = fails_with("invalidParameter.param.invalid",
      core.build_token({ appKey = "k", appSecret = "VERYsecret\nvalue" }))
    assert.is_falsy(has(err.message, "VERYsecret"))
    assert.is_falsy(has(tostring(err), "VERYsecret"))
    err = fails_with("invalidParameter.param.invalid",
      core.build_token({ suiteKey = "sk", suiteSecret = "ss", authCorpId = "corp" }))
    assert.truthy(has(err.message, "suiteTicket"))
  end)

  it("applies the endpoint rules", function()
    fails_with("invalid.endpoint", core.build_token({ appKey = "k", appSecret = "s" },
      { endpoint = "http://127.0.0.1@evil.com" }))
  end)

  it("raises on wrong argument types", function()
    assert.has_error(function() core.build_token("k") end)
    assert.has_error(function() core.build_token({ appKey = "k", appSecret = "s" }, "opts") end)
    assert.has_error(function() core.build_token({ appKey = "k", appSecret = "s" }, { timeout = "1" }) end)
  end)
end)
