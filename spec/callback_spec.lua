-- dingtalk.recall.callback: verifying a whole callback request (headers +
-- JSON body), size refusal before parsing, and replay refusal.
-- Known signatures come from the openssl command line (pinned below).
local callback = require "dingtalk.recall.callback"

local SECRET = "sim-app-secret"
local TS = 1700000000000
-- printf '1700000000000\nsim-app-secret' | openssl dgst -sha256 -hmac sim-app-secret -binary | base64
local SIGN = "icBRv5zTIpZET1gGR840rgWsu6Kz1Ffh11ZcnusALYE="
local BODY = '{"msgtype":"text","text":{"content":" /recall last 2"},"conversationId":"cidX",' ..
  '"conversationType":"2","senderStaffId":"staff1","senderNick":"Ann","isAdmin":false,"robotCode":"dingbot"}'

local function headers(ts, sign)
  return { timestamp = tostring(ts), sign = sign, ["Content-Type"] = "application/json" }
end

local function opts(extra)
  local o = { app_secret = SECRET, now_ms = TS + 1000 }
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

describe("callback.verify", function()
  it("accepts a request signed as DingTalk signs it, and returns the decoded body", function()
    local msg, err = callback.verify(headers(TS, SIGN), BODY, opts())
    assert.is_nil(err)
    assert.are.equal("cidX", msg.conversationId)
    assert.are.equal(" /recall last 2", msg.text.content)
    assert.are.equal(false, msg.isAdmin)
  end)

  it("matches further openssl vectors through callback.sign", function()
    -- printf '1700000000000\nsecret' | openssl dgst -sha256 -hmac secret -binary | base64
    assert.are.equal("OuzzJR5+xZ4/EYwqtNt6sMYZQMTa/HEGvc9miJe7XzY=", callback.sign("1700000000000", "secret"))
    -- printf '1577836800000\nThisIsATestSecret-=+/' | openssl dgst -sha256 -hmac 'ThisIsATestSecret-=+/' ...
    assert.are.equal("5wf5LtXT0ZEazRbdYa3uAoj//18KZx0drQFA99Ao7vw=",
      callback.sign("1577836800000", "ThisIsATestSecret-=+/"))
    assert.are.equal(SIGN, callback.sign(TS, SECRET))
  end)

  it("finds the headers whatever their case", function()
    local msg = callback.verify({ TimeStamp = tostring(TS), SIGN = SIGN }, BODY, opts())
    assert.are.equal("staff1", msg.senderStaffId)
  end)

  it("refuses a wrong signature, a wrong secret and a missing sign", function()
    local bad = SIGN:sub(1, 10) .. (SIGN:sub(11, 11) == "A" and "B" or "A") .. SIGN:sub(12)
    local msg, err = callback.verify(headers(TS, bad), BODY, opts())
    assert.is_nil(msg)
    assert.are.equal("callback.bad_signature", err.code)
    msg, err = callback.verify(headers(TS, SIGN), BODY, opts { app_secret = "other-secret" })
    assert.is_nil(msg)
    assert.are.equal("callback.bad_signature", err.code)
    msg, err = callback.verify({ timestamp = tostring(TS) }, BODY, opts())
    assert.is_nil(msg)
    assert.are.equal("callback.bad_signature", err.code)
    assert.are.equal(401, callback.http_status(err))
  end)

  it("refuses a timestamp over an hour away, and a malformed one", function()
    local msg, err = callback.verify(headers(TS, SIGN), BODY, opts { now_ms = TS + 3600001 })
    assert.is_nil(msg)
    assert.are.equal("callback.expired", err.code)
    msg, err = callback.verify(headers(TS, SIGN), BODY, opts { now_ms = TS - 3600001 })
    assert.is_nil(msg)
    assert.are.equal("callback.expired", err.code)
    -- exactly at the edge is still accepted
    assert.is_table((callback.verify(headers(TS, SIGN), BODY, opts { now_ms = TS + 3600000 })))
    msg, err = callback.verify(headers("17e11", SIGN), BODY, opts())
    assert.is_nil(msg)
    assert.are.equal("callback.bad_timestamp", err.code)
    msg, err = callback.verify({ sign = SIGN }, BODY, opts())
    assert.is_nil(msg)
    assert.are.equal("callback.bad_timestamp", err.code)
  end)

  it("refuses repeated headers (arrays) instead of picking one", function()
    local msg, err = callback.verify({ timestamp = { tostring(TS), tostring(TS) }, sign = SIGN }, BODY, opts())
    assert.is_nil(msg)
    assert.are.equal("callback.bad_timestamp", err.code)
    msg, err = callback.verify({ timestamp = tostring(TS), sign = { SIGN, SIGN } }, BODY, opts())
    assert.is_nil(msg)
    assert.are.equal("callback.bad_signature", err.code)
  end)

  it("refuses without an app secret", function()
    local msg, err = callback.verify(headers(TS, SIGN), BODY, { now_ms = TS })
    assert.is_nil(msg)
    assert.are.equal("callback.no_secret", err.code)
  end)

  it("refuses an oversized body before looking at it (even signed, even not JSON)", function()
    local big = string.rep("x", 70000)
    local msg, err = callback.verify(headers(TS, SIGN), big, opts())
    assert.is_nil(msg)
    assert.are.equal("callback.too_large", err.code)
    assert.are.equal(413, callback.http_status(err))
    -- with an unsigned request too: size comes first
    msg, err = callback.verify({}, big, opts())
    assert.is_nil(msg)
    assert.are.equal("callback.too_large", err.code)
    -- max_body is configurable
    msg, err = callback.verify(headers(TS, SIGN), BODY, opts { max_body = 10 })
    assert.is_nil(msg)
    assert.are.equal("callback.too_large", err.code)
    assert.is_table((callback.verify(headers(TS, SIGN), BODY, opts { max_body = #BODY })))
  end)

  it("refuses a body that is not a JSON object", function()
    for _, body in ipairs { "", "not json", "[1,2]", '"str"', "{" } do
      local msg, err = callback.verify(headers(TS, SIGN), body, opts())
      assert.is_nil(msg, body)
      assert.are.equal("callback.bad_body", err.code, body)
      assert.are.equal(400, callback.http_status(err))
    end
  end)

  it("never puts the secret in an error", function()
    local secret = "TopSecretValue123"
    for _, h in ipairs { headers(TS, SIGN), {}, { timestamp = "x", sign = "y" } } do
      local _, err = callback.verify(h, BODY, { app_secret = secret, now_ms = TS })
      assert.is_nil(tostring(err):find(secret, 1, true))
      assert.is_nil(tostring(err.message):find(secret, 1, true))
    end
  end)

  it("raises on wrong argument types", function()
    assert.has_error(function() callback.verify(nil, BODY, opts()) end)
    assert.has_error(function() callback.verify({}, 42, opts()) end)
    assert.has_error(function() callback.verify({}, BODY) end)
    assert.has_error(function() callback.verify({}, BODY, { app_secret = 1 }) end)
    assert.has_error(function() callback.verify({}, BODY, opts { replay_store = "x" }) end)
  end)

  it("builds signed headers for a client (callback.headers)", function()
    local h = callback.headers(SECRET, TS)
    assert.are.equal(tostring(TS), h.timestamp)
    assert.are.equal(SIGN, h.sign)
    -- and a fresh one verifies against the real clock
    local now = callback.headers(SECRET)
    assert.is_table((callback.verify(now, BODY, { app_secret = SECRET })))
  end)
end)

describe("callback replay refusal", function()
  it("accepts a signature once, then refuses it while it could still verify", function()
    local t = 1000
    local store = callback.memory_store { clock = function() return t end }
    local o = opts { replay_store = store }
    assert.is_table((callback.verify(headers(TS, SIGN), BODY, o)))
    local msg, err = callback.verify(headers(TS, SIGN), BODY, o)
    assert.is_nil(msg)
    assert.are.equal("callback.replayed", err.code)
    assert.are.equal(401, callback.http_status(err))
    -- a replay with another body is refused all the same (the sign covers the timestamp only)
    msg, err = callback.verify(headers(TS, SIGN), '{"text":{"content":"/recall all"}}', o)
    assert.is_nil(msg)
    assert.are.equal("callback.replayed", err.code)
    -- another timestamp is another signature
    local ts2 = TS + 5
    assert.is_table((callback.verify(headers(ts2, callback.sign(ts2, SECRET)), BODY, o)))
  end)

  it("remembers a signature until its timestamp leaves the window, then forgets it", function()
    local t = 0
    local store = callback.memory_store { clock = function() return t end }
    -- received 1 s after the timestamp: the signature verifies for 3599 s more
    local o = opts { replay_store = store, now_ms = TS + 1000 }
    assert.is_table((callback.verify(headers(TS, SIGN), BODY, o)))
    t = 3599
    assert.are.equal(false, (store:add("dtr:cb:" .. SIGN, true, 1)))
    t = 3601
    assert.is_nil(store:get("dtr:cb:" .. SIGN))
  end)

  it("does not spend the signature on a request it refuses", function()
    local store = callback.memory_store()
    local o = opts { replay_store = store }
    local _, err = callback.verify(headers(TS, SIGN), "not json", o)
    assert.are.equal("callback.bad_body", err.code)
    assert.is_table((callback.verify(headers(TS, SIGN), BODY, o)))
  end)

  it("works with any store that has add(key, value, ttl) (an ngx.shared.DICT)", function()
    local calls = {}
    local dict = { data = {} }
    function dict:add(k, v, ttl)
      calls[#calls + 1] = { k, v, ttl }
      if self.data[k] then return false, "exists" end
      self.data[k] = v
      return true
    end
    local o = opts { replay_store = dict, now_ms = TS + 1000 }
    assert.is_table((callback.verify(headers(TS, SIGN), BODY, o)))
    local _, err = callback.verify(headers(TS, SIGN), BODY, o)
    assert.are.equal("callback.replayed", err.code)
    assert.are.equal(2, #calls)
    -- ttl: until TS + 1 h, seen 1 s after TS, plus a second of slack
    assert.are.equal(3600, calls[1][3])
  end)

  it("reports a failing store instead of letting the request through", function()
    local store = { add = function() return nil, "no memory" end }
    local msg, err = callback.verify(headers(TS, SIGN), BODY, opts { replay_store = store })
    assert.is_nil(msg)
    assert.are.equal("callback.store", err.code)
    assert.matches("no memory", err.message, 1, true)
  end)

  it("memory_store refuses new keys when full of live ones, and frees expired ones", function()
    local t = 0
    local store = callback.memory_store { max = 2, clock = function() return t end }
    assert.is_true(store:add("a", true, 10))
    assert.is_true(store:add("b", true, 20))
    local ok, why = store:add("c", true, 10)
    assert.are.equal(false, ok)
    assert.are.equal("full", why)
    t = 15 -- "a" expired
    assert.is_true(store:add("c", true, 10))
    ok, why = store:add("b", true, 10)
    assert.are.equal(false, ok)
    assert.are.equal("exists", why)
  end)
end)
