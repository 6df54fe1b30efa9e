-- Memory safety beyond the sanitizers' reach (issue 10, class 8): tables
-- that answer through __index with a fresh string after a full
-- collection.  Such a string is held by nothing but the C function's
-- stack, so a pointer kept after popping it dangles.  Each case checks
-- the result byte for byte; under `make asan` (ASAN_SPECS=spec/core_gc_spec.lua)
-- a use after free is reported as well.
local core = require "dingtalk.recall.core"
local curl = require "dingtalk.recall.curl"
local cjson = require "cjson"

-- Over 40 bytes: Lua never interns these, every copy is its own object.
local LONG = ("z"):rep(60)

-- A proxy over t: every read collects garbage, then returns a fresh copy
-- of a string field.  `seen` counts the reads.
local function proxy(t, seen)
  return setmetatable({}, { __index = function(_, k)
    collectgarbage()
    if seen then seen[k] = (seen[k] or 0) + 1 end
    local v = t[k]
    if type(v) == "string" then return (v .. "#"):sub(1, -2) end
    return v
  end })
end

-- Same, in the issue's own words: a generated value per key.
local function generated(prefix)
  return setmetatable({}, { __index = function(_, k)
    collectgarbage()
    return ("x"):rep(3) .. prefix .. k .. LONG
  end })
end

local CID, ROBOT, TOKEN = "cid" .. LONG, "ding" .. LONG, "tok" .. LONG
local EP = "http://127.0.0.1:9/" .. LONG

local function keys(n)
  local t = {}
  for i = 1, n do t[i] = "key" .. i .. LONG end
  return t
end

describe("proxy tables and forced collections", function()
  it("core.build reads request and options through proxies", function()
    local ks = keys(20)
    local seen = {}
    local built = assert(core.build(proxy({ openConversationId = CID, robotCode = ROBOT, processQueryKeys = ks }, seen),
      proxy({ access_token = TOKEN, endpoint = EP, ca_file = "/tmp/ca" .. LONG, timeout = 3 }, seen)))
    local want = assert(core.build({ openConversationId = CID, robotCode = ROBOT, processQueryKeys = ks },
      { access_token = TOKEN, endpoint = EP, ca_file = "/tmp/ca" .. LONG, timeout = 3 }))
    assert.are.equal(want.body, built.body)
    assert.are.equal(want.url, built.url)
    assert.are.equal(TOKEN, built.headers["x-acs-dingtalk-access-token"])
    assert.are.equal("/tmp/ca" .. LONG, built.ca_file)
    assert.is_true(seen.openConversationId >= 1 and seen.access_token >= 1 and seen.endpoint >= 1)
  end)

  it("core.build with generated values (the issue's proxy)", function()
    local req = generated("r")
    rawset(req, "processQueryKeys", keys(3))
    local built = assert(core.build(req, { access_token = TOKEN }))
    local body = cjson.decode(built.body)
    assert.are.equal("xxxropenConversationId" .. LONG, body.openConversationId)
    assert.are.equal("xxxrrobotCode" .. LONG, body.robotCode)
  end)

  it("core.validate, build_send and build_token through proxies", function()
    assert.is_true(core.validate(proxy { openConversationId = CID, robotCode = ROBOT, processQueryKeys = keys(2) },
      proxy { access_token = TOKEN }))
    local sent = assert(core.build_send(proxy { openConversationId = CID, robotCode = ROBOT, msgKey = "sampleText",
      msgParam = '{"content":"' .. LONG .. '"}' }, proxy { access_token = TOKEN, endpoint = EP }))
    local b = cjson.decode(sent.body)
    assert.are.equal(CID, b.openConversationId)
    assert.are.equal('{"content":"' .. LONG .. '"}', b.msgParam)
    local tok = assert(core.build_token(proxy { appKey = "ak" .. LONG, appSecret = "as" .. LONG },
      proxy { endpoint = EP }))
    assert.are.same({ appKey = "ak" .. LONG, appSecret = "as" .. LONG }, cjson.decode(tok.body))
    local corp = assert(core.build_token(generated("c"), nil))
    assert.are.equal("xxxcsuiteTicket" .. LONG, cjson.decode(corp.body).suiteTicket)
  end)

  it("core.target copies what it keeps", function()
    local t = assert(core.target(proxy { endpoint = EP, ca_file = "/tmp/ca" .. LONG, timeout = 2 }))
    collectgarbage()
    collectgarbage()
    assert.are.equal(EP, t.endpoint)
    assert.are.equal("/tmp/ca" .. LONG, t.ca_file)
    local plan = assert(core.plan(CID, ROBOT, keys(25)))
    for i = 1, plan.nbatches do
      local b = assert(core.build_batch(plan, i, t, TOKEN))
      assert.are.equal("/tmp/ca" .. LONG, b.ca_file)
      assert.are.same(plan[i], cjson.decode(b.body).processQueryKeys)
    end
  end)

  it("curl.perform and multi:add read a built request through a proxy", function()
    local built = assert(core.build({ openConversationId = CID, robotCode = ROBOT, processQueryKeys = keys(20) },
      { access_token = TOKEN, endpoint = "http://127.0.0.1:1/" .. LONG, ca_file = "/tmp/ca" .. LONG,
        timeout = 2, connect_timeout = 1 }))
    local plain = { headers = {} }
    for k, v in pairs(built) do plain[k] = v end
    for k, v in pairs(built.headers) do plain.headers[k] = v end
    -- Nothing listens on port 1: connect fails after setopt has read all.
    local res, err = curl.perform(proxy(plain))
    assert.is_nil(res)
    assert.are.equal("transport.connect", err.code)
    local m = curl.multi()
    for _ = 1, 3 do assert.is_number(m:add(proxy(plain), "tag")) end
    local got = {}
    for _ = 1, 200 do
      local done = m:perform(0.05)
      for _, d in ipairs(done) do got[#got + 1] = d end
      if #got == 3 then break end
    end
    m:close()
    assert.are.equal(3, #got)
    for _, d in ipairs(got) do
      assert.are.equal("tag", d.tag)
      assert.are.equal("transport.connect", d.error.code)
    end
  end)

  it("a proxy that returns a different headers table each read is checked once", function()
    local built = assert(core.build({ openConversationId = CID, robotCode = ROBOT, processQueryKeys = { "k" } },
      { access_token = TOKEN, endpoint = "http://127.0.0.1:1/" }))
    local n = 0
    local p = setmetatable({}, { __index = function(_, k)
      if k == "headers" then
        n = n + 1
        -- the first read is clean, later reads would inject a header
        if n == 1 then return { accept = "application/json" } end
        return { accept = "x\r\nInjected: 1" }
      end
      return built[k]
    end })
    local res, err = curl.perform(p)
    assert.is_nil(res)
    assert.are.equal("transport.connect", err.code)
    assert.are.equal(1, n)
  end)
end)
