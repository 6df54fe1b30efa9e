-- Sans-I/O tests of the request side of dingtalk.recall.core:
-- validate, build, build_send, build_token and json_string.
-- No network: only the encoder and its validation are exercised.
local core = require "dingtalk.recall.core"
local cjson = require "cjson"

local TOKEN = "tok-9f8e7d6c5b4a"
local RECALL_PATH = "/v1.0/robot/groupMessages/recall"

local function req(over)
  local r = { openConversationId = "cidfCSxxxx", robotCode = "dingxxxx", processQueryKeys = { "b5fe11095fxxxx" } }
  for k, v in pairs(over or {}) do
    r[k] = v
  end
  return r
end

local function opts(over)
  local o = { access_token = TOKEN }
  for k, v in pairs(over or {}) do
    o[k] = v
  end
  return o
end

local function keys(n, prefix)
  local t = {}
  for i = 1, n do
    t[i] = (prefix or "key") .. i
  end
  return t
end

-- Asserts a (nil, err) pair with the given code; returns the error.
local function fails_with(code, ok, err)
  assert.is_nil(ok)
  assert.is_true(core.is_error(err), "expected an error object")
  assert.are.equal(code, err.code)
  assert.is_string(err.message)
  assert.is_false(err.retryable)
  return err
end

local function has(s, sub)
  return string.find(s, sub, 1, true) ~= nil
end

-- Encodes one code point as UTF-8 (no bit library needed).
local function utf8char(cp)
  if cp < 0x80 then
    return string.char(cp)
  elseif cp < 0x800 then
    return string.char(0xC0 + math.floor(cp / 0x40), 0x80 + cp % 0x40)
  elseif cp < 0x10000 then
    return string.char(0xE0 + math.floor(cp / 0x1000), 0x80 + math.floor(cp / 0x40) % 0x40, 0x80 + cp % 0x40)
  end
  return string.char(0xF0 + math.floor(cp / 0x40000), 0x80 + math.floor(cp / 0x1000) % 0x40,
    0x80 + math.floor(cp / 0x40) % 0x40, 0x80 + cp % 0x40)
end

describe("core module", function()
  it("exposes its constants", function()
    assert.are.equal(20, core.MAX_KEYS)
    assert.are.equal("https://api.dingtalk.io", core.DEFAULT_ENDPOINT)
    assert.is_string(core._VERSION)
  end)
end)

describe("core.validate", function()
  it("accepts a well-formed request without options", function()
    assert.is_true(core.validate(req()))
  end)

  it("accepts a request with valid options", function()
    assert.is_true(core.validate(req(), opts()))
  end)

  describe("openConversationId", function()
    it("nil -> miss.openConversationId", function()
      local err = fails_with("miss.openConversationId", core.validate({ robotCode = "r", processQueryKeys = { "k" } }))
      assert.truthy(has(err.message, "openConversationId"))
      assert.are.equal("Missing openConversationId.", err.hint)
    end)

    it("empty string -> miss.openConversationId", function()
      local err = fails_with("miss.openConversationId", core.validate(req({ openConversationId = "" })))
      assert.truthy(has(err.message, "openConversationId"))
    end)

    it("is checked before robotCode and the keys", function()
      fails_with("miss.openConversationId", core.validate({}))
    end)
  end)

  describe("robotCode", function()
    it("nil -> miss.chatbotId", function()
      local err = fails_with("miss.chatbotId",
        core.validate({ openConversationId = "c", processQueryKeys = { "k" } }))
      assert.truthy(has(err.message, "robotCode"))
      assert.are.equal("Missing robotCode.", err.hint)
    end)

    it("empty string -> miss.chatbotId", function()
      fails_with("miss.chatbotId", core.validate(req({ robotCode = "" })))
    end)

    it("is checked before the keys", function()
      fails_with("miss.chatbotId", core.validate({ openConversationId = "c" }))
    end)
  end)

  describe("processQueryKeys", function()
    it("nil -> invalidParameter.processQueryKey.missing", function()
      local err = fails_with("invalidParameter.processQueryKey.missing",
        core.validate({ openConversationId = "c", robotCode = "r" }))
      assert.truthy(has(err.message, "processQueryKeys"))
      assert.are.equal("Missing processQueryKey.", err.hint)
    end)

    it("{} -> invalidParameter.processQueryKey.missing", function()
      fails_with("invalidParameter.processQueryKey.missing", core.validate(req({ processQueryKeys = {} })))
    end)

    it("accepts exactly 20 keys", function()
      assert.is_true(core.validate(req({ processQueryKeys = keys(20) })))
      assert.is_truthy(core.build(req({ processQueryKeys = keys(20) }), opts()))
    end)

    it("21 keys -> invalidParameter.processQueryKeys.overMax", function()
      local err = fails_with("invalidParameter.processQueryKeys.overMax",
        core.validate(req({ processQueryKeys = keys(21) })))
      assert.truthy(has(err.message, "21"))
      assert.truthy(has(err.message, "20"))
      assert.truthy(has(err.hint, "maximum limit of 20"))
      fails_with("invalidParameter.processQueryKeys.overMax", core.build(req({ processQueryKeys = keys(21) }), opts()))
    end)

    it("many keys -> overMax", function()
      fails_with("invalidParameter.processQueryKeys.overMax", core.validate(req({ processQueryKeys = keys(500) })))
    end)

    it("a string instead of a list -> invalidParameter.param.invalid", function()
      local err = fails_with("invalidParameter.param.invalid", core.validate(req({ processQueryKeys = "k1" })))
      assert.truthy(has(err.message, "processQueryKeys"))
    end)

    it("a number key -> invalidParameter.param.invalid naming the index", function()
      local err = fails_with("invalidParameter.param.invalid",
        core.validate(req({ processQueryKeys = { "a", 12345 } })))
      assert.truthy(has(err.message, "processQueryKeys[2]"))
    end)

    it("a boolean or table key -> invalidParameter.param.invalid", function()
      local err = fails_with("invalidParameter.param.invalid", core.validate(req({ processQueryKeys = { true } })))
      assert.truthy(has(err.message, "processQueryKeys[1]"))
      err = fails_with("invalidParameter.param.invalid",
        core.validate(req({ processQueryKeys = { "a", "b", { "c" } } })))
      assert.truthy(has(err.message, "processQueryKeys[3]"))
    end)

    it("a non-sequence table -> invalidParameter.param.invalid", function()
      local err = fails_with("invalidParameter.param.invalid",
        core.validate(req({ processQueryKeys = { first = "k1" } })))
      assert.truthy(has(err.message, "processQueryKeys"))
      fails_with("invalidParameter.param.invalid", core.validate(req({ processQueryKeys = { "k1", extra = "k2" } })))
      fails_with("invalidParameter.param.invalid", core.validate(req({ processQueryKeys = { [0] = "k0", "k1" } })))
      fails_with("invalidParameter.param.invalid", core.validate(req({ processQueryKeys = { [1.5] = "k" } })))
    end)

    it("a list with holes -> invalidParameter.param.invalid", function()
      local holes = { "k1" }
      holes[3] = "k3"
      fails_with("invalidParameter.param.invalid", core.validate(req({ processQueryKeys = holes })))
      local sparse = {}
      sparse[2] = "k2"
      fails_with("invalidParameter.param.invalid", core.validate(req({ processQueryKeys = sparse })))
      local big = { "a", "b", "c", "d" }
      big[10] = "j"
      fails_with("invalidParameter.param.invalid", core.validate(req({ processQueryKeys = big })))
    end)

    it("an empty-string key -> invalidParameter.param.invalid naming the index", function()
      local err = fails_with("invalidParameter.param.invalid",
        core.validate(req({ processQueryKeys = { "k1", "k2", "" } })))
      assert.truthy(has(err.message, "processQueryKeys[3]"))
    end)
  end)

  describe("text checks", function()
    local controls = {
      ["NUL"] = "a\0b",
      ["LF"] = "a\nb",
      ["CR"] = "a\rb",
      ["TAB"] = "a\tb",
      ["ESC"] = "a\27[31mred",
      ["DEL"] = "a\127b",
      ["C1 U+0085"] = "a\194\133b",
      ["C1 U+0080"] = "\194\128",
      ["C1 U+009F"] = "x\194\159",
      ["leading control"] = "\1abc",
    }
    local invalid = {
      ["lone continuation"] = "a\128b",
      ["overlong C0 80"] = "\192\128",
      ["overlong C1 BF"] = "\193\191",
      ["overlong E0 80 80"] = "\224\128\128",
      ["overlong F0 80 80 80"] = "\240\128\128\128",
      ["surrogate ED A0 80"] = "\237\160\128",
      ["surrogate ED BF BF"] = "\237\191\191",
      ["above U+10FFFF F4 90 80 80"] = "\244\144\128\128",
      ["F5 lead byte"] = "\245\128\128\128",
      ["FF byte"] = "a\255",
      ["truncated 2-byte at end"] = "abc\195",
      ["truncated 2-byte mid-string"] = "\195A",
      ["truncated 3-byte"] = "\226\130",
      ["truncated 3-byte mid-string"] = "\226\130x",
      ["truncated 4-byte"] = "\240\159\152",
      ["truncated 4-byte mid-string"] = "\240\159\152x",
    }

    for name, s in pairs(controls) do
      it("refuses a control character (" .. name .. ") in each field", function()
        local err = fails_with("invalidParameter.param.invalid", core.validate(req({ openConversationId = s })))
        assert.truthy(has(err.message, "openConversationId"))
        assert.truthy(has(err.message, "control"))
        err = fails_with("invalidParameter.param.invalid", core.validate(req({ robotCode = s })))
        assert.truthy(has(err.message, "robotCode"))
        err = fails_with("invalidParameter.param.invalid", core.validate(req({ processQueryKeys = { "ok", s } })))
        assert.truthy(has(err.message, "processQueryKeys[2]"))
        assert.truthy(has(err.message, "control"))
      end)
    end

    for name, s in pairs(invalid) do
      it("refuses invalid UTF-8 (" .. name .. ") in each field", function()
        local err = fails_with("invalidParameter.param.invalid", core.validate(req({ openConversationId = s })))
        assert.truthy(has(err.message, "openConversationId"))
        assert.truthy(has(err.message, "UTF-8"))
        err = fails_with("invalidParameter.param.invalid", core.validate(req({ robotCode = s })))
        assert.truthy(has(err.message, "robotCode"))
        err = fails_with("invalidParameter.param.invalid",
          core.validate(req({ processQueryKeys = { "a", "b", "c", s } })))
        assert.truthy(has(err.message, "processQueryKeys[4]"))
        assert.truthy(has(err.message, "UTF-8"))
      end)
    end

    it("accepts the edges of valid UTF-8", function()
      for _, s in ipairs({
        "\194\160",              -- U+00A0, first after the C1 block
        "\223\191",              -- U+07FF
        "\224\160\128",          -- U+0800
        "\237\159\191",          -- U+D7FF, just below the surrogates
        "\238\128\128",          -- U+E000
        "\239\191\191",          -- U+FFFF
        "\240\144\128\128",      -- U+10000
        "\244\143\191\191",      -- U+10FFFF
        "\226\128\168",          -- U+2028
        "\240\159\152\128",      -- U+1F600
        " leading and trailing spaces ",
        "~",
      }) do
        assert.is_true(core.validate(req({ openConversationId = s, robotCode = s, processQueryKeys = { s } })), s)
      end
    end)

    it("a number or boolean field -> invalidParameter.param.invalid naming the field", function()
      local err = fails_with("invalidParameter.param.invalid", core.validate(req({ openConversationId = 42 })))
      assert.truthy(has(err.message, "openConversationId"))
      err = fails_with("invalidParameter.param.invalid", core.validate(req({ robotCode = true })))
      assert.truthy(has(err.message, "robotCode"))
      err = fails_with("invalidParameter.param.invalid", core.validate(req({ robotCode = {} })))
      assert.truthy(has(err.message, "robotCode"))
    end)

    it("fields of 1024 bytes pass, 1025 bytes do not", function()
      local ok1024 = string.rep("a", 1024)
      local long = string.rep("a", 1025)
      assert.is_true(core.validate(req({ openConversationId = ok1024, robotCode = ok1024,
        processQueryKeys = { ok1024 } })))
      local err = fails_with("invalidParameter.param.invalid", core.validate(req({ openConversationId = long })))
      assert.truthy(has(err.message, "openConversationId"))
      assert.truthy(has(err.message, "1024"))
      err = fails_with("invalidParameter.param.invalid", core.validate(req({ robotCode = long })))
      assert.truthy(has(err.message, "robotCode"))
      err = fails_with("invalidParameter.param.invalid", core.validate(req({ processQueryKeys = { "a", long } })))
      assert.truthy(has(err.message, "processQueryKeys[2]"))
      assert.truthy(has(err.message, "1024"))
    end)

    it("the length limit counts bytes, not characters", function()
      local s = string.rep("\228\184\173", 342) -- 1026 bytes, 342 characters
      fails_with("invalidParameter.param.invalid", core.validate(req({ openConversationId = s })))
    end)
  end)

  describe("options", function()
    it("an empty options table -> AuthenticationFailed.MissingParameter", function()
      fails_with("AuthenticationFailed.MissingParameter", core.validate(req(), {}))
    end)

    it("checks the endpoint when options are given", function()
      fails_with("invalid.endpoint", core.validate(req(), opts({ endpoint = "http://evil.example" })))
    end)

    it("reports request errors before option errors", function()
      fails_with("miss.chatbotId", core.validate(req({ robotCode = "" }), {}))
    end)
  end)
end)

describe("core.build access token", function()
  it("no options -> AuthenticationFailed.MissingParameter", function()
    local err = fails_with("AuthenticationFailed.MissingParameter", core.build(req()))
    assert.truthy(has(err.message, "access_token"))
    assert.is_nil(err.status)
  end)

  it("options without a token -> AuthenticationFailed.MissingParameter", function()
    fails_with("AuthenticationFailed.MissingParameter", core.build(req(), { endpoint = "https://x.example" }))
  end)

  it("an empty token -> AuthenticationFailed.MissingParameter", function()
    fails_with("AuthenticationFailed.MissingParameter", core.build(req(), { access_token = "" }))
  end)

  local bad_tokens = {
    ["CR"] = "secretTOKENvalue\rX",
    ["LF"] = "secretTOKENvalue\nX-Injected: 1",
    ["CRLF"] = "secretTOKENvalue\r\nHost: evil",
    ["NUL"] = "secretTOKENvalue\0tail",
    ["space"] = "secretTOKENvalue tail",
    ["tab"] = "secretTOKENvalue\ttail",
    ["DEL"] = "secretTOKENvalue\127",
    ["non-ASCII"] = "secretTOKENvalue\195\169",
    ["too long"] = "secretTOKENvalue" .. string.rep("x", 1100),
  }
  for name, tok in pairs(bad_tokens) do
    it("refuses a token with " .. name .. " and never echoes it", function()
      local ok, err = core.build(req(), { access_token = tok })
      fails_with("invalidParameter.param.invalid", ok, err)
      assert.truthy(has(err.message, "access_token"))
      assert.is_falsy(has(err.message, "secretTOKENvalue"))
      assert.is_falsy(has(tostring(err), "secretTOKENvalue"))
      assert.is_falsy(has(err.hint, "secretTOKENvalue"))
      -- validate applies the same rule
      fails_with("invalidParameter.param.invalid", core.validate(req(), { access_token = tok }))
    end)
  end

  it("accepts a 1024-byte printable token", function()
    local tok = string.rep("A", 1024)
    local built = assert(core.build(req(), { access_token = tok }))
    assert.are.equal(tok, built.headers["x-acs-dingtalk-access-token"])
  end)
end)

describe("core.build endpoint", function()
  local accepted = {
    { "https://api.dingtalk.com", "https://api.dingtalk.com", false },
    { "https://api.dingtalk.io", "https://api.dingtalk.io", false },
    { "https://oapi.example.org:8443", "https://oapi.example.org:8443", false },
    { "https://gw.example.org/prefix", "https://gw.example.org/prefix", false },
    { "https://10.1.2.3", "https://10.1.2.3", false },
    { "https://[2001:db8::1]:443", "https://[2001:db8::1]:443", false },
    { "HTTPS://API.EXAMPLE.ORG", "HTTPS://API.EXAMPLE.ORG", false },
    { "https://127.0.0.1:8443", "https://127.0.0.1:8443", true },
    { "http://127.0.0.1", "http://127.0.0.1", true },
    { "http://127.0.0.1:8080", "http://127.0.0.1:8080", true },
    { "http://127.255.255.254:9", "http://127.255.255.254:9", true },
    { "http://127.1.2.3/base", "http://127.1.2.3/base", true },
    { "http://localhost", "http://localhost", true },
    { "http://localhost:9000", "http://localhost:9000", true },
    { "http://LocalHost:9000", "http://LocalHost:9000", true },
    { "http://[::1]", "http://[::1]", true },
    { "http://[::1]:8080", "http://[::1]:8080", true },
  }
  for _, case in ipairs(accepted) do
    it("accepts " .. case[1], function()
      local built, err = core.build(req(), opts({ endpoint = case[1] }))
      assert.is_nil(err)
      assert.are.equal(case[2] .. RECALL_PATH, built.url)
      assert.are.equal(case[3], built.loopback)
    end)
  end

  it("strips trailing slashes", function()
    local built = assert(core.build(req(), opts({ endpoint = "https://api.example.org/" })))
    assert.are.equal("https://api.example.org" .. RECALL_PATH, built.url)
    built = assert(core.build(req(), opts({ endpoint = "http://127.0.0.1:8080///" })))
    assert.are.equal("http://127.0.0.1:8080" .. RECALL_PATH, built.url)
    built = assert(core.build(req(), opts({ endpoint = "https://gw.example.org/base/" })))
    assert.are.equal("https://gw.example.org/base" .. RECALL_PATH, built.url)
  end)

  it("defaults to https://api.dingtalk.io", function()
    local built = assert(core.build(req(), opts()))
    assert.are.equal("https://api.dingtalk.io" .. RECALL_PATH, built.url)
    assert.is_false(built.loopback)
  end)

  local refused = {
    "http://127.0.0.1.evil.com",
    "http://localhost.evil.com",
    "http://127.0.0.1@evil.com",
    "http://user:pw@127.0.0.1",
    "http://evil.com#@127.0.0.1",
    "http://evil.com?@127.0.0.1",
    "http://evil.com\\@127.0.0.1",
    "http://[::2]",
    "http://[::1",
    "http://[::1]evil.com",
    "http://[0:0:0:0:0:0:0:2]",
    "http://evil.com",
    "http://10.0.0.1",
    "http://128.0.0.1",
    "http://127.0.0.256",
    "http://127.0.0",
    "http://127.0.0.1.",
    "http://0x7f.0.0.1",
    "http://127.0.0.1:",
    "http://127.0.0.1:0",
    "http://127.0.0.1:65536",
    "http://127.0.0.1:80x",
    "http://:8080",
    "ftp://api.dingtalk.io",
    "ftp://127.0.0.1",
    "file:///etc/passwd",
    "gopher://127.0.0.1",
    "api.dingtalk.io",
    "//api.dingtalk.io",
    "127.0.0.1:8080",
    "https://",
    "https:///",
    "https://api.dingtalk.io?x=1",
    "https://api.dingtalk.io/path?x=1",
    "https://api.dingtalk.io#frag",
    "https://user@api.dingtalk.io",
    "https://api.dingtalk .io",
    " https://api.dingtalk.io",
    "https://api.dingtalk.io\r\nX: y",
    "https://api.dingtalk.io\0",
    "https://api.dingtalk.io/\195\169",
    "",
    "/",
    "https://" .. string.rep("a", 1100) .. ".example",
  }
  for _, ep in ipairs(refused) do
    it(string.format("refuses %q", ep), function()
      local ok, err = core.build(req(), opts({ endpoint = ep }))
      fails_with("invalid.endpoint", ok, err)
      assert.truthy(has(err.hint, "https://"))
    end)
  end

  -- libcurl reads IPv4 parts with a leading zero as octal (http://0127.0.0.1
  -- connects to 87.0.0.1) and "08" as a host name to resolve, so a leading
  -- zero must not count as loopback for plain http.
  it("refuses IPv4 hosts with leading zeros (libcurl reads them as octal or as a name)", function()
    -- libcurl turns http://0127.0.0.1 into 87.0.0.1 and resolves
    -- "127.0.0.08" through DNS: neither is provably loopback.
    for _, ep in ipairs({ "http://0127.0.0.1", "http://0127.0.0.1:8080", "http://127.0.0.08", "http://127.0.0.09" }) do
      local ok, err = core.build(req(), opts({ endpoint = ep }))
      assert.is_nil(ok, ep .. " was accepted as loopback")
      assert.are.equal("invalid.endpoint", err.code)
    end
  end)
end)

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
