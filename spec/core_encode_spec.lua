-- Sans-I/O tests of the request side of dingtalk.recall.core: validate,
-- the token and endpoint checks of build (core_build_spec: the rest).
-- No network: only the encoder and its validation are exercised.
local core = require "dingtalk.recall.core"
local enc = require "spec.helpers.encode"

local RECALL_PATH = enc.RECALL_PATH
local req, opts, keys, fails_with, has = enc.req, enc.opts, enc.keys, enc.fails_with, enc.has

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
