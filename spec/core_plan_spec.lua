-- Sans-I/O tests of core.plan, core.target, core.build_batch and the one
-- catalogue of codes (core.codes, core.reasons).
local core = require "dingtalk.recall.core"
local cjson = require "cjson"

local CID, ROBOT, TOKEN = "cidPlan", "dingPlan", "tok-plan-123456"
local RECALL_PATH = "/v1.0/robot/groupMessages/recall"

local function keys(n, prefix)
  local t = {}
  for i = 1, n do t[i] = (prefix or "k") .. i end
  return t
end

local function fails_with(code, pattern, ok, err)
  assert.is_nil(ok)
  assert.is_true(core.is_error(err), "expected an error object")
  assert.are.equal(code, err.code)
  if pattern then assert.matches(pattern, err.message) end
  return err
end

local function all_keys(plan)
  local out = {}
  for i = 1, plan.nbatches do
    for _, k in ipairs(plan[i]) do out[#out + 1] = k end
  end
  return out
end

describe("core.plan", function()
  for _, n in ipairs { 1, 19, 20, 21, 40, 45 } do
    it("cuts " .. n .. " keys into batches of at most 20, in input order", function()
      local ks = keys(n)
      local plan = assert(core.plan(CID, ROBOT, ks))
      assert.are.equal(n, plan.total)
      assert.are.equal(math.ceil(n / 20), plan.nbatches)
      assert.are.equal(0, plan.duplicates)
      assert.are.equal(0, plan.ninvalid)
      assert.are.same({}, plan.invalid)
      for i = 1, plan.nbatches do
        assert.is_true(#plan[i] >= 1 and #plan[i] <= 20)
        if i < plan.nbatches then assert.are.equal(20, #plan[i]) end
      end
      assert.is_nil(plan[plan.nbatches + 1])
      assert.are.same(ks, all_keys(plan))
      assert.are.equal(CID, plan.conversation)
      assert.are.equal(ROBOT, plan.robot)
      assert.are.equal("dingtalk.recall.plan", getmetatable(plan).__name)
    end)
  end

  it("0 keys: keys is empty", function()
    fails_with("invalidParameter.processQueryKey.missing", "empty", core.plan(CID, ROBOT, {}))
  end)

  it("nil keys: keys is missing", function()
    fails_with("invalidParameter.processQueryKey.missing", "missing", core.plan(CID, ROBOT, nil))
  end)

  it("drops duplicates and keeps the first occurrence's order", function()
    local plan = assert(core.plan(CID, ROBOT, { "a", "b", "a", "c", "b", "a" }))
    assert.are.equal(3, plan.total)
    assert.are.equal(3, plan.duplicates)
    assert.are.equal(1, plan.nbatches)
    assert.are.same({ "a", "b", "c" }, plan[1])
  end)

  it("dedupes across batch boundaries (45 keys, 25 unique)", function()
    local ks = keys(25)
    for i = 1, 20 do ks[#ks + 1] = "k" .. i end
    local plan = assert(core.plan(CID, ROBOT, ks))
    assert.are.equal(25, plan.total)
    assert.are.equal(20, plan.duplicates)
    assert.are.equal(2, plan.nbatches)
    assert.are.same(keys(25), all_keys(plan))
  end)

  it("a sparse array is refused, naming the hole", function()
    local err = fails_with("invalidParameter.param.invalid", "sparse", core.plan(CID, ROBOT, { [1] = "a", [3] = "b" }))
    assert.matches("keys%[2%]", err.message)
    fails_with("invalidParameter.param.invalid", "keys%[1%]", core.plan(CID, ROBOT, { [2] = "a" }))
    local t = keys(30); t[25] = nil
    fails_with("invalidParameter.param.invalid", "keys%[25%]", core.plan(CID, ROBOT, t))
  end)

  it("a map or odd indexes are refused", function()
    fails_with("invalidParameter.param.invalid", "string index", core.plan(CID, ROBOT, { "a", x = "b" }))
    fails_with("invalidParameter.param.invalid", "1.5", core.plan(CID, ROBOT, { [1.5] = "a" }))
    fails_with("invalidParameter.param.invalid", "index 0", core.plan(CID, ROBOT, { [0] = "a", "b" }))
    fails_with("invalidParameter.param.invalid", "index %-1", core.plan(CID, ROBOT, { [-1] = "a" }))
    fails_with("invalidParameter.param.invalid", "index", core.plan(CID, ROBOT, { [1e300] = "a" }))
    fails_with("invalidParameter.param.invalid", "index", core.plan(CID, ROBOT, { [math.huge] = "a" }))
  end)

  it("a non-string key is refused, naming its index (NaN included)", function()
    fails_with("invalidParameter.param.invalid", "keys%[2%] is not a string", core.plan(CID, ROBOT, { "a", 42 }))
    fails_with("invalidParameter.param.invalid", "keys%[3%] is not a string %(a number%)",
      core.plan(CID, ROBOT, { "a", "b", 0 / 0 }))
    fails_with("invalidParameter.param.invalid", "keys%[1%].*table", core.plan(CID, ROBOT, { {}, "a" }))
    fails_with("invalidParameter.param.invalid", "keys%[2%].*boolean", core.plan(CID, ROBOT, { "a", true }))
    -- the lowest index of several, whatever order the table is walked in
    local many = { "a", "b" }
    for i = 3, 40 do many[i] = i % 2 == 0 and i or "k" .. i end
    fails_with("invalidParameter.param.invalid", "keys%[4%] is not a string %(a number%)", core.plan(CID, ROBOT, many))
  end)

  it("keys refused on content go to plan.invalid, the rest is planned", function()
    local long = ("x"):rep(1025)
    local plan = assert(core.plan(CID, ROBOT, { "good1", "", "bad\nkey", long, "\255\254", "good2", "bad\nkey" }))
    assert.are.equal(2, plan.total)
    assert.are.equal(4, plan.ninvalid)
    assert.are.equal(1, plan.duplicates)
    assert.are.same({ "good1", "good2" }, plan[1])
    for k, why in pairs { [""] = "empty", ["bad\nkey"] = "control", [long] = "longer", ["\255\254"] = "UTF%-8" } do
      local e = plan.invalid[k]
      assert.is_true(core.is_error(e))
      assert.are.equal("invalidParameter.param.invalid", e.code)
      assert.matches(why, e.message)
    end
    assert.matches("keys%[2%]", plan.invalid[""].message)
  end)

  it("a plan that refused no key shares one empty plan.invalid, which no one can fill", function()
    local p1 = assert(core.plan(CID, ROBOT, { "a", "b" }))
    local p2 = assert(core.plan(CID, ROBOT, { "c" }))
    assert.are.equal(p1.invalid, p2.invalid)
    assert.is_nil(next(p1.invalid))
    assert.has_error(function() p1.invalid.x = 1 end)
    assert.is_false(getmetatable(p1.invalid))
    assert.is_nil(next(p2.invalid))
    local p3 = assert(core.plan(CID, ROBOT, { "d", "" }))
    assert.are_not.equal(p1.invalid, p3.invalid)
    assert.is_nil(p1.invalid[""])
  end)

  it("every key invalid: a plan with no batches", function()
    local plan = assert(core.plan(CID, ROBOT, { "", "a\0b" }))
    assert.are.equal(0, plan.total)
    assert.are.equal(0, plan.nbatches)
    assert.are.equal(2, plan.ninvalid)
  end)

  it("conversation and robot: missing, empty, bad content", function()
    fails_with("miss.openConversationId", nil, core.plan(nil, ROBOT, { "a" }))
    fails_with("miss.openConversationId", nil, core.plan("", ROBOT, { "a" }))
    fails_with("miss.chatbotId", nil, core.plan(CID, nil, { "a" }))
    fails_with("miss.chatbotId", nil, core.plan(CID, "", { "a" }))
    fails_with("invalidParameter.param.invalid", "conversation", core.plan("c\r\nid", ROBOT, { "a" }))
    fails_with("invalidParameter.param.invalid", "robot", core.plan(CID, ("r"):rep(2000), { "a" }))
  end)

  it("wrong Lua types raise", function()
    assert.has_error(function() core.plan(42, ROBOT, { "a" }) end)
    assert.has_error(function() core.plan(CID, {}, { "a" }) end)
    assert.has_error(function() core.plan(CID, ROBOT, "a") end)
    assert.has_error(function() core.plan(CID, ROBOT, 7) end)
  end)

  it("dedupes long keys by content (distinct string objects of equal bytes)", function()
    local ks = {}
    for i = 1, 300 do ks[i] = table.concat { ("x"):rep(60), "-", tostring(i % 7) } end
    ks[301] = ("x"):rep(60) .. "-" -- a prefix of the others: not a duplicate
    local plan = assert(core.plan(CID, ROBOT, ks))
    assert.are.equal(8, plan.total)
    assert.are.equal(293, plan.duplicates)
    local want = {}
    for i = 1, 7 do want[i] = ks[i] end
    want[8] = ks[301]
    assert.are.same(want, all_keys(plan))
  end)

  it("100,000 keys with duplicates", function()
    local ks = {}
    for i = 1, 100000 do ks[i] = "key" .. (i % 50000) end
    local plan = assert(core.plan(CID, ROBOT, ks))
    assert.are.equal(50000, plan.total)
    assert.are.equal(50000, plan.duplicates)
    assert.are.equal(2500, plan.nbatches)
  end)

  it("checks every byte of a few keys: a bad byte anywhere in a 20-byte key is found", function()
    for pos = 1, 20 do
      for _, bad in ipairs { "\1", "\31", "\127", "\128", "\255", "\n" } do
        local k = ("a"):rep(pos - 1) .. bad .. ("b"):rep(20 - pos)
        local plan = assert(core.plan("cid", "robot", { "ok1", k, "ok2" }))
        assert.are.equal(1, plan.ninvalid, ("byte %q at %d"):format(bad, pos))
        assert.is_table(plan.invalid[k])
        assert.are.same({ "ok1", "ok2" }, core.batch(plan, 1))
      end
    end
    assert.are.equal(0, assert(core.plan("cid", "robot", { (" ~"):rep(20), ("é"):rep(9) })).ninvalid)
  end)

  it("a plan of one batch keeps it as plan[1] (its keys array, no copy); core.batch gives that", function()
    local plan = assert(core.plan("cid", "robot", { "a", "b", "a", "c" }))
    assert.are.same({ "a", "b", "c" }, rawget(plan, 1))
    assert.are.equal(rawget(plan, 1), core.batch(plan, 1))
    assert.are.equal(rawget(plan, 1), plan[1])
    assert.is_nil(core.batch(plan, 2))
    local two = assert(core.plan("cid", "robot", (function()
      local t = {}
      for i = 1, 21 do t[i] = "k" .. i end
      return t
    end)()))
    assert.is_nil(rawget(two, 1))
  end)

  it("tells apart few keys that share their first and last eight bytes, and finds their copies", function()
    local alike = {}
    for i = 1, 16 do alike[i] = "12345678" .. string.char(64 + i) .. "abcdefgh" end
    alike[17], alike[18], alike[19] = alike[3], "short", "short"
    local plan = assert(core.plan("cid", "robot", alike))
    assert.are.equal(17, plan.total)
    assert.are.equal(2, plan.duplicates)
    local batch = core.batch(plan, 1)
    for i = 1, 16 do assert.are.equal(alike[i], batch[i]) end
    assert.are.equal("short", batch[17])
  end)

  it("32 keys alike but in their middle (the most the stack set takes), and 33", function()
    for _, n in ipairs { 32, 33 } do
      local alike = {}
      for i = 1, n do alike[i] = ("12345678%03dabcdefgh"):format(i % 30) end -- 30 distinct, the rest copies
      local plan = assert(core.plan("cid", "robot", alike))
      assert.are.equal(30, plan.total)
      assert.are.equal(n - 30, plan.duplicates)
      local seen = {}
      for b = 1, plan.nbatches do
        for _, k in ipairs(core.batch(plan, b)) do
          assert.is_nil(seen[k])
          seen[k] = true
        end
      end
    end
  end)
end)

describe("core.target", function()
  it("defaults", function()
    local t = assert(core.target())
    assert.are.equal(core.DEFAULT_ENDPOINT, t.endpoint)
    assert.is_true(t.https)
    assert.are.equal("api.dingtalk.io", t.host)
    assert.are.equal(443, t.port)
    assert.are.equal("api.dingtalk.io", t.authority)
    assert.is_false(t.loopback)
    assert.are.equal(10, t.timeout)
    assert.are.equal(3, t.connect_timeout)
    assert.are.equal(1048576, t.max_response_bytes)
    assert.is_nil(t.ca_file)
  end)

  it("reads every field, read-only", function()
    local t = assert(core.target { endpoint = "http://127.0.0.1:8080/base/", timeout = 2.5, connect_timeout = 1,
      max_response_bytes = 4096, ca_file = "/tmp/ca.pem" })
    assert.are.equal("http://127.0.0.1:8080/base", t.endpoint)
    assert.is_false(t.https)
    assert.are.equal("127.0.0.1", t.host)
    assert.are.equal(8080, t.port)
    assert.are.equal("127.0.0.1:8080", t.authority)
    assert.are.equal("/base", t.path)
    assert.is_true(t.loopback)
    assert.are.equal(2.5, t.timeout)
    assert.are.equal(4096, t.max_response_bytes)
    assert.are.equal("/tmp/ca.pem", t.ca_file)
    assert.has_error(function() t.timeout = 5 end)
    assert.matches("^dingtalk.recall.target", tostring(t))
    local v6 = assert(core.target { endpoint = "http://[::1]:9/" })
    assert.are.equal("::1", v6.host)
    assert.are.equal("[::1]:9", v6.authority)
  end)

  it("NaN, inf, negative, zero and huge numbers: nil, err", function()
    for _, name in ipairs { "timeout", "connect_timeout", "max_response_bytes" } do
      for _, v in ipairs { 0 / 0, math.huge, -math.huge, -1, 0, 1e300 } do
        local ok, err = core.target { [name] = v }
        fails_with("invalidParameter.param.invalid", name, ok, err)
      end
    end
    fails_with("invalidParameter.param.invalid", nil, core.target { timeout = 86401 })
    assert(core.target { timeout = 86400 })
  end)

  it("endpoints the core refuses", function()
    for _, ep in ipairs { "http://example.com", "http://0127.0.0.1", "http://127.0.0.01", "ftp://x",
      "https://u@h", "https://h/?q", "https://h:0", "https://h:65536", "https:// h" } do
      fails_with("invalid.endpoint", nil, core.target { endpoint = ep })
    end
  end)

  it("ca_file with a NUL: nil, err; wrong types raise", function()
    fails_with("invalidParameter.param.invalid", nil, core.target { ca_file = "/tmp/a\0b" })
    assert.has_error(function() core.target { timeout = "5" } end)
    assert.has_error(function() core.target { endpoint = 443 } end)
    assert.has_error(function() core.target "https://x" end)
  end)
end)

describe("core.build_batch", function()
  local target
  before_each(function()
    target = assert(core.target { endpoint = "http://127.0.0.1:9999/pre", timeout = 4, ca_file = "/tmp/ca.pem" })
  end)

  it("builds the same body, byte for byte, as core.build", function()
    local ks = { "k1", "é\"quote\\", "k3" }
    for i = 4, 45 do ks[i] = "key" .. i end
    local plan = assert(core.plan(CID, ROBOT, ks))
    for i = 1, plan.nbatches do
      local b = assert(core.build_batch(plan, i, target, TOKEN))
      local ref = assert(core.build({ openConversationId = CID, robotCode = ROBOT, processQueryKeys = plan[i] },
        { endpoint = "http://127.0.0.1:9999/pre", timeout = 4, ca_file = "/tmp/ca.pem", access_token = TOKEN }))
      assert.are.equal(ref.body, b.body)
      assert.are.equal(ref.url, b.url)
      assert.are.same(ref.headers, b.headers)
      assert.are.equal(ref.timeout, b.timeout)
      assert.are.equal(ref.ca_file, b.ca_file)
      assert.are.equal(ref.loopback, b.loopback)
      assert.are.equal("/pre" .. RECALL_PATH, b.path)
      assert.are.equal("http://127.0.0.1:9999/pre" .. RECALL_PATH, b.url)
      assert.are.same(plan[i], cjson.decode(b.body).processQueryKeys)
      assert.is_nil(tostring(b):find(TOKEN, 1, true))
    end
  end)

  it("checks the token, not the keys", function()
    local plan = assert(core.plan(CID, ROBOT, { "a" }))
    fails_with("AuthenticationFailed.MissingParameter", nil, core.build_batch(plan, 1, target, nil))
    fails_with("AuthenticationFailed.MissingParameter", nil, core.build_batch(plan, 1, target, ""))
    local ok, err = core.build_batch(plan, 1, target, "tok\r\nX-Evil: 1")
    fails_with("invalidParameter.param.invalid", nil, ok, err)
    assert.is_nil(err.message:find("Evil", 1, true))
    assert.has_error(function() core.build_batch(plan, 1, target, 42) end)
  end)

  it("refuses what is not a plan, a batch or a target", function()
    local plan = assert(core.plan(CID, ROBOT, { "a" }))
    assert.has_error(function() core.build_batch({ { "a" }, conversation = CID, robot = ROBOT }, 1, target, TOKEN) end)
    assert.has_error(function() core.build_batch(plan, 2, target, TOKEN) end)
    assert.has_error(function() core.build_batch(plan, 0, target, TOKEN) end)
    assert.has_error(function() core.build_batch(plan, 1, { endpoint = "http://127.0.0.1" }, TOKEN) end)
    plan[1][1] = 42
    assert.has_error(function() core.build_batch(plan, 1, target, TOKEN) end)
  end)

  it("core.batch_payload: the head, the body's length, the tail and build_batch's body, in one string", function()
    local ks = { "k1", "é\"quote\\", "k3" }
    for i = 4, 45 do ks[i] = "key" .. i end
    for i = 46, 60 do ks[i] = ("long" .. i):rep(60) end -- a batch over the stack buffer
    local plan = assert(core.plan(CID, ROBOT, ks))
    local head, tail = "POST /x HTTP/1.1\r\nContent-Length: ", "\r\nA: b\r\n\r\n"
    for i = 1, plan.nbatches do
      local b = assert(core.build_batch(plan, i, target, TOKEN))
      local p = assert(core.batch_payload(plan, core.batch(plan, i), target, TOKEN, head, tail))
      assert.are.equal(head .. #b.body .. tail .. b.body, p)
    end
    assert.is_true(#core.batch_payload(plan, core.batch(plan, 3), target, TOKEN, head, tail) > 2048)
    -- the token is checked as build_batch checks it; wrong arguments raise
    fails_with("AuthenticationFailed.MissingParameter", nil,
      core.batch_payload(plan, core.batch(plan, 1), target, "", head, tail))
    local ok, err = core.batch_payload(plan, core.batch(plan, 1), target, "tok\r\nX-Evil: 1", head, tail)
    fails_with("invalidParameter.param.invalid", nil, ok, err)
    assert.has_error(function() core.batch_payload(plan, core.batch(plan, 1), target, TOKEN, head) end)
    assert.has_error(function() core.batch_payload(plan, 1, target, TOKEN, head, tail) end)
    assert.has_error(function() core.batch_payload(plan, { 42 }, target, TOKEN, head, tail) end)
    assert.has_error(function() core.batch_payload({}, core.batch(plan, 1), target, TOKEN, head, tail) end)
    assert.has_error(function() core.batch_payload(plan, core.batch(plan, 1), {}, TOKEN, head, tail) end)
  end)

  it("core.build accepts a target as options (build_token needs no token)", function()
    local b = assert(core.build_token({ appKey = "ak", appSecret = "as" }, target))
    assert.are.equal("http://127.0.0.1:9999/pre/v1.0/oauth2/accessToken", b.url)
    local req = { openConversationId = CID, robotCode = ROBOT, processQueryKeys = { "a" } }
    fails_with("AuthenticationFailed.MissingParameter", nil, core.build(req, target))
  end)
end)

describe("core.codes and core.reasons", function()
  it("holds the spec's codes with their status", function()
    assert.are.equal(400, core.codes["invalidParameter.processQueryKeys.overMax"].status)
    assert.are.equal(500, core.codes["system.error"].status)
    assert.is_true(core.codes["system.error"].retryable)
    assert.is_string(core.codes["miss.chatbotId"].hint)
  end)

  it("flags", function()
    local c = core.codes
    for _, code in ipairs { "transport.io", "transport.timeout", "response.invalid", "response.too_large" } do
      assert.is_true(c[code].ambiguous, code)
    end
    assert.is_false(c["transport.connect"].ambiguous)
    assert.is_true(c["Forbidden.AccessDenied.QpsLimitForAppkeyAndApi"].throttle)
    assert.is_true(c["Forbidden.AccessDenied.QpsLimitForApi"].throttle)
    assert.is_true(c["Forbidden.AccessDenied.QpsLimitForApi"].retryable)
    assert.is_true(c.InvalidAuthentication.auth)
    for _, code in ipairs { "invalidClientIdOrSecret", "Forbidden.AccessDenied.ApiCountLimitForOrg",
      "Forbidden.AccessDenied.AccessTokenPermissionDenied" } do
      assert.is_true(c[code].fatal, code)
      assert.is_false(c[code].retryable, code)
    end
    for code, info in pairs(c) do
      for _, f in ipairs { "retryable", "ambiguous", "throttle", "fatal", "auth" } do
        assert.is_boolean(info[f], code .. "." .. f)
      end
      assert.is_string(info.hint, code)
      assert.is_true(info.status == nil or info.status % 1 == 0)
    end
  end)

  it("error objects take their hint and retryable from it", function()
    for code, info in pairs(core.codes) do
      local e = core.error(code, "m")
      assert.are.equal(info.hint, e.hint)
      if info.retryable then assert.is_true(e.retryable, code) end
    end
    assert.are.equal(1, core.error("Forbidden.AccessDenied.QpsLimitForApi", "x").retry_after)
  end)

  it("has every code the Lua code makes", function()
    local seen = {}
    for _, dir in ipairs { "lua", "bin" } do
      -- core.error("code", ...) and every quoted code of the project's own
      -- namespaces (errors made through a helper such as the Redis client's)
      local p = io.popen("grep -rhoE 'core\\.error\\(\"[A-Za-z_.]+\"|\"(redis|ledger|token|config|transport|" ..
        "response|callback|async|cli)\\.[a-z_]+\"' " .. dir .. " 2>/dev/null")
      for line in p:lines() do seen[line:match('"([^"]+)"')] = true end
      p:close()
    end
    assert.is_not_nil(next(seen), "grep found nothing")
    for code in pairs(seen) do
      assert.is_table(core.codes[code], "core.codes lacks " .. code)
    end
  end)

  it("ALREADY_RECALLED is a reason that counts as recalled", function()
    assert.is_true(core.reasons.ALREADY_RECALLED.already_recalled)
    assert.is_string(core.reasons.ALREADY_RECALLED.hint)
    assert.is_false(core.reasons.PROCESS_QUERY_KEY_NOT_EXIST.already_recalled)
  end)
end)
