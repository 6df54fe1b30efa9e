-- core.verify_callback / core.sign_callback: the signature of incoming bot
-- callbacks, sign = base64(HMAC-SHA256(key = secret, msg = ts .. "\n" .. secret)).
-- Known answers come from the openssl command line (never from the code
-- under test); a few are also pinned here so a host without openssl still
-- checks something.
local core = require("dingtalk.recall.core")

local WINDOW = 3600000

-- Pure-Lua base64 (standard alphabet, padded), for bit flips in the tests.
local base64 = require "spec.helpers.base64"
local B64, b64encode, b64decode = base64.ALPHABET, base64.encode, base64.decode

local function flip_bit(s, bit) -- bit: 0 .. 8*#s - 1
  local i = math.floor(bit / 8) + 1
  local m = 2 ^ (bit % 8)
  local b = s:byte(i)
  if math.floor(b / m) % 2 == 1 then b = b - m else b = b + m end
  return s:sub(1, i - 1) .. string.char(b) .. s:sub(i + 1)
end

local function hex(s)
  return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

local function shq(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- stdout only; raises when the child crashed (spec/helpers/shell.lua).
local function run(cmd)
  local out = require("spec.helpers.shell").sh(cmd .. " 2>/dev/null")
  return (out:gsub("%s+$", ""))
end

local have_openssl = run("openssl version 2>/dev/null") ~= ""

local function hexbytes(h)
  return (h:gsub("%x%x", function(x) return string.char(tonumber(x, 16)) end))
end

-- HMACs over exact bytes for many (ts, secret) pairs at once: each message
-- in a file, one shell and, per secret, one openssl with the key in hex
-- and one with the key as text (none for a secret with a NUL byte), each
-- over all of that secret's files.  -> { {hexkey = b64, text = b64}, ... }
-- (base64 by b64encode, which the pinned test ties to `openssl base64`).
local function openssl_signs(list)
  local dir = os.tmpname()
  local script, by_secret, order, files = {}, {}, {}, {}
  for i, v in ipairs(list) do
    local ts, secret = v[1], v[2]
    files[i] = dir .. "." .. i
    local f = assert(io.open(files[i], "wb"))
    f:write(ts .. "\n" .. secret)
    f:close()
    if not by_secret[secret] then
      by_secret[secret] = {}
      order[#order + 1] = secret
    end
    table.insert(by_secret[secret], shq(files[i]))
  end
  for _, secret in ipairs(order) do
    local fs = table.concat(by_secret[secret], " ")
    script[#script + 1] = "echo hexkey; openssl dgst -sha256 -mac HMAC -macopt hexkey:" .. hex(secret) .. " -r " .. fs
    if not secret:find("\0", 1, true) then
      script[#script + 1] = "echo text; openssl dgst -sha256 -hmac " .. shq(secret) .. " -r " .. fs
    end
  end
  local out = run(table.concat(script, "; "))
  for _, f in ipairs(files) do os.remove(f) end
  os.remove(dir)
  local by_file, recipe = {}, nil
  for line in out:gmatch("[^\n]+") do
    if line == "hexkey" or line == "text" then
      recipe = line
    else
      local h, path = line:match("^(%x+) %*(.+)$")
      assert(h and #h == 64, "openssl said: " .. line)
      by_file[path] = by_file[path] or {}
      by_file[path][recipe] = b64encode(hexbytes(h))
    end
  end
  local res = {}
  for i in ipairs(list) do res[i] = assert(by_file[files[i]], "no HMAC for vector " .. i) end
  return res
end

-- One HMAC, the key in hex: from one openssl_signs() over every pair this
-- file asks for (ALL_PAIRS), made at the first call; others on their own.
local ALL_PAIRS
local known
local function openssl_sign(ts, secret)
  if not known then
    known = {}
    for i, a in ipairs(openssl_signs(ALL_PAIRS)) do known[ALL_PAIRS[i][1] .. "\n" .. ALL_PAIRS[i][2]] = a end
  end
  local a = known[ts .. "\n" .. secret] or openssl_signs({ { ts, secret } })[1]
  return a.hexkey, a
end

-- The usual shell recipe (text secrets only: no NUL byte).
local function openssl_sign_shell(ts, secret)
  return run("ts=" .. shq(ts) .. "; secret=" .. shq(secret)
    .. [[; printf '%s\n%s' "$ts" "$secret" | openssl dgst -sha256 -hmac "$secret" -binary | openssl base64 -A]])
end

local function cli(name, fn)
  if have_openssl then it(name, fn) else pending(name .. " (no openssl command)") end
end

local SECRETS = {
  "secret",
  "it's a 100% \"secret\" $HOME `id` \\n",
  "密钥-🔑-ключ-clé",
  string.rep("k", 64),                                   -- exactly one SHA-256 block
  string.rep("k", 65),                                   -- hashed first by HMAC
  "SEC" .. string.rep("0123456789abcdef", 12) .. "é",     -- 196 bytes, UTF-8
  string.rep("🔑", 40),                                  -- 160 bytes of UTF-8
}
local BINARY_SECRET = "a\0b\255\1\n=" -- NUL and high bytes: hexkey path only

local TIMESTAMPS = { "1700000000000", "1577836800000", "0", "1", "007", "9223372036854775807" }

-- Pinned with: printf '%s\n%s' "$ts" "$secret" | openssl dgst -sha256 -hmac "$secret" -binary | base64
local PINNED = {
  { "1700000000000", "secret", "OuzzJR5+xZ4/EYwqtNt6sMYZQMTa/HEGvc9miJe7XzY=" },
}

ALL_PAIRS = { { "1700000000000", BINARY_SECRET }, { "1700000000000", string.rep("x", 100) } }
for _, secret in ipairs(SECRETS) do
  for _, ts in ipairs(TIMESTAMPS) do ALL_PAIRS[#ALL_PAIRS + 1] = { ts, secret } end
end

local function assert_err(code, ok, err)
  assert.is_nil(ok)
  assert.is_true(core.is_error(err), "an error object")
  assert.are.equal(code, err.code)
  assert.is_false(err.retryable)
  assert.are.equal("string", type(err.hint))
  assert.is_true(#err.hint > 0)
  assert.are.equal("string", type(err.message))
  assert.is_nil(err.status)
  return err
end

-- Nothing the caller sees may carry the secret.
local function assert_no_secret(secret, ...)
  for i = 1, select("#", ...) do
    local v = select(i, ...)
    if type(v) == "table" then
      assert.is_nil(tostring(v):find(secret, 1, true), "tostring(err) shows the secret")
      for k, field in pairs(v) do
        if type(field) == "string" then
          assert.is_nil(field:find(secret, 1, true), "err." .. tostring(k) .. " shows the secret")
        end
      end
    elseif type(v) == "string" then
      assert.is_nil(v:find(secret, 1, true), "a message shows the secret")
    end
  end
end

describe("core.verify_callback / core.sign_callback", function()
  describe("known answers from the openssl command line", function()
    it("matches the pinned vectors", function()
      for _, v in ipairs(PINNED) do
        assert.are.equal(v[3], core.sign_callback(v[1], v[2]))
        assert.is_true(core.verify_callback(v[1], v[3], v[2], tonumber(v[1])))
      end
    end)

    cli("the pinned vectors are what openssl computes", function()
      for _, v in ipairs(PINNED) do
        assert.are.equal(v[3], openssl_sign(v[1], v[2]))
        assert.are.equal(v[3], openssl_sign_shell(v[1], v[2]))
      end
    end)

    cli("agrees with openssl for several timestamps and secrets", function()
      local n = 0
      for _, secret in ipairs(SECRETS) do
        for _, ts in ipairs(TIMESTAMPS) do
          local want, a = openssl_sign(ts, secret)
          assert.are.equal(44, #want)
          assert.are.equal(want, a.text) -- the key as text: the same HMAC
          assert.are.equal(want, core.sign_callback(ts, secret))
          -- now = the timestamp itself (the largest one is not a double).
          local now = tonumber(ts) < 2 ^ 53 and tonumber(ts) or nil
          if now then
            assert.is_true(core.verify_callback(ts, want, secret, now))
          end
          n = n + 1
        end
      end
      assert.are.equal(#SECRETS * #TIMESTAMPS, n)
    end)

    cli("handles a secret with NUL and high bytes", function()
      local want = openssl_sign("1700000000000", BINARY_SECRET)
      assert.are.equal(want, core.sign_callback("1700000000000", BINARY_SECRET))
      assert.is_true(core.verify_callback("1700000000000", want, BINARY_SECRET, 1700000000000))
      local cut = assert_err("callback.bad_signature",
        core.verify_callback("1700000000000", want, "a", 1700000000000))
      assert.are.equal("the sign does not match", cut.message)
    end)

    cli("signs the timestamp's exact text (leading zeros kept)", function()
      assert.are.equal(openssl_sign("007", "secret"), core.sign_callback("007", "secret"))
      assert.are_not.equal(core.sign_callback("7", "secret"), core.sign_callback("007", "secret"))
      assert.is_true(core.verify_callback("007", openssl_sign("007", "secret"), "secret", 7))
    end)

    cli("takes the timestamp as a number too", function()
      local want = openssl_sign("1700000000000", "secret")
      assert.are.equal(want, core.sign_callback(1700000000000, "secret"))
      assert.is_true(core.verify_callback(1700000000000, want, "secret", 1700000000000))
      assert.is_true(core.verify_callback(1700000000000.0, want, "secret", 1700000000000.0))
    end)
  end)

  describe("the time window", function()
    local ts, secret = "1700000000000", "secret"
    local t = 1700000000000
    local sign = core.sign_callback(ts, secret)

    it("accepts exactly one hour either way", function()
      assert.is_true(core.verify_callback(ts, sign, secret, t + WINDOW))
      assert.is_true(core.verify_callback(ts, sign, secret, t - WINDOW))
      assert.is_true(core.verify_callback(ts, sign, secret, t))
    end)

    it("refuses one millisecond beyond", function()
      local e = assert_err("callback.expired", core.verify_callback(ts, sign, secret, t + WINDOW + 1))
      assert.truthy(e.message:find("3600001 ms before now", 1, true))
      e = assert_err("callback.expired", core.verify_callback(ts, sign, secret, t - WINDOW - 1))
      assert.truthy(e.message:find("3600001 ms after now", 1, true))
    end)

    it("refuses far away timestamps", function()
      assert_err("callback.expired", core.verify_callback("0", core.sign_callback("0", secret), secret, t))
      local big = "9223372036854775807"
      assert_err("callback.expired", core.verify_callback(big, core.sign_callback(big, secret), secret, 0))
      assert_err("callback.expired", core.verify_callback(big, core.sign_callback(big, secret), secret, t))
    end)

    it("uses the wall clock by default", function()
      local now = os.time()
      local fresh = string.format("%.0f", now * 1000)
      assert.is_true(core.verify_callback(fresh, core.sign_callback(fresh, secret), secret))
      assert.is_true(core.verify_callback(fresh, core.sign_callback(fresh, secret), secret, nil))
      local old = string.format("%.0f", (now - 7200) * 1000)
      assert_err("callback.expired", core.verify_callback(old, core.sign_callback(old, secret), secret))
      local future = string.format("%.0f", (now + 7200) * 1000)
      assert_err("callback.expired", core.verify_callback(future, core.sign_callback(future, secret), secret))
    end)

    it("checks the window before the sign", function()
      assert_err("callback.expired", core.verify_callback(ts, "garbage", secret, t + WINDOW + 1))
    end)
  end)

  describe("refusing a sign", function()
    local ts, secret, t = "1700000000000", "secret", 1700000000000
    local sign = core.sign_callback(ts, secret)

    local function refused(s, message)
      local e = assert_err("callback.bad_signature", core.verify_callback(ts, s, secret, t))
      if message then assert.are.equal(message, e.message) end
      return e
    end

    it("refuses every single flipped bit", function()
      local raw = b64decode(sign)
      assert.are.equal(32, #raw)
      assert.are.equal(sign, b64encode(raw))
      for bit = 0, 255 do
        refused(b64encode(flip_bit(raw, bit)), "the sign does not match")
      end
    end)

    it("refuses a truncated or padded sign", function()
      refused(sign:sub(1, 43))
      refused(sign:sub(1, 40))
      refused(sign:sub(1, 1))
      refused(sign .. "=")
      refused(sign .. "\n")
      refused(" " .. sign)
      refused(sign:sub(1, 43) .. "==")
      refused(b64encode(b64decode(sign):sub(1, 31)))
      refused(b64encode(b64decode(sign) .. "x"))
    end)

    it("refuses a missing sign", function()
      refused("", "the sign is missing")
      refused(nil, "the sign is missing")
    end)

    it("refuses garbage base64", function()
      refused(string.rep("!", 43) .. "=", "the sign is not valid base64")
      refused(string.rep("A", 44), "the sign is not valid base64")
      refused(string.rep("=", 44), "the sign is not valid base64")
      refused(sign:sub(1, 10) .. "\0" .. sign:sub(12), "the sign is not valid base64")
      refused(sign:sub(1, 10) .. "é" .. sign:sub(13), "the sign is not valid base64")
      refused(string.rep("A", 43) .. "=", "the sign does not match")
      refused(sign:lower() == sign and sign:upper() or sign:lower(), "the sign does not match")
    end)

    it("refuses the URL-safe alphabet", function()
      local t2, s2
      for i = 0, 200 do -- find a sign holding '+' or '/'
        t2 = tostring(t + i)
        s2 = core.sign_callback(t2, secret)
        if s2:find("[+/]") then break end
      end
      assert.truthy(s2:find("[+/]"))
      local url = s2:gsub("%+", "-"):gsub("/", "_")
      assert_err("callback.bad_signature", core.verify_callback(t2, url, secret, tonumber(t2)))
    end)

    it("refuses a non-canonical encoding of the right bytes", function()
      -- The last data character carries 2 padding bits that must be zero.
      local c = sign:sub(43, 43)
      local v = B64:find(c, 1, true) - 1
      assert.are.equal(0, v % 4)
      local odd = sign:sub(1, 42) .. B64:sub(v + 2, v + 2) .. "="
      assert.are.equal(b64decode(sign), b64decode(odd))
      refused(odd, "the sign does not match")
    end)

    it("refuses a sign made with another secret or timestamp", function()
      refused(core.sign_callback(ts, "secret2"))
      refused(core.sign_callback(ts, "Secret"))
      refused(core.sign_callback(ts, "secret "))
      refused(core.sign_callback(ts, string.rep("k", 65)))
      refused(core.sign_callback("1700000000001", secret))
      assert_err("callback.bad_signature", core.verify_callback(ts, sign, "secre", t))
      assert_err("callback.bad_signature", core.verify_callback("1700000000001", sign, secret, t))
    end)

    cli("refuses the sign of another long secret", function()
      local a, b = string.rep("x", 100), string.rep("x", 99) .. "y"
      local sa = openssl_sign(ts, a)
      assert.is_true(core.verify_callback(ts, sa, a, t))
      assert_err("callback.bad_signature", core.verify_callback(ts, sa, b, t))
    end)
  end)

  describe("bad timestamps", function()
    local secret, t = "secret", 1700000000000
    local BAD = {
      "abc", "", "12.5", "-1", "+1", "-0", " 1700000000000", "1700000000000 ", "1700000000000\n",
      "1e12", "0x10", "1_000", "1,000", "１２３", "1700000000000\0", "\0",
      "99999999999999999999", "9223372036854775808", string.rep("9", 400),
    }

    it("refuses text that is not a decimal integer", function()
      for _, ts in ipairs(BAD) do
        assert_err("callback.bad_timestamp", core.verify_callback(ts, "x", secret, t))
        assert_err("callback.bad_timestamp", core.sign_callback(ts, secret))
      end
    end)

    it("refuses numbers that are not non-negative integers", function()
      for _, ts in ipairs({ 12.5, -1, -0.5, 1 / 0, -1 / 0, 0 / 0, 2 ^ 63, 1e300 }) do
        assert_err("callback.bad_timestamp", core.verify_callback(ts, "x", secret, t))
        assert_err("callback.bad_timestamp", core.sign_callback(ts, secret))
      end
    end)

    it("refuses a missing timestamp", function()
      assert_err("callback.bad_timestamp", core.verify_callback(nil, "x", secret, t))
      assert_err("callback.bad_timestamp", core.sign_callback(nil, secret))
    end)
  end)

  describe("the secret", function()
    local ts, t = "1700000000000", 1700000000000

    it("answers callback.no_secret when it is nil or empty", function()
      local sign = core.sign_callback(ts, "secret")
      assert_err("callback.no_secret", core.verify_callback(ts, sign, nil, t))
      assert_err("callback.no_secret", core.verify_callback(ts, sign, "", t))
      assert_err("callback.no_secret", core.verify_callback(ts, sign))
      assert_err("callback.no_secret", core.sign_callback(ts, nil))
      assert_err("callback.no_secret", core.sign_callback(ts, ""))
      assert_err("callback.no_secret", core.sign_callback(ts))
      -- The missing secret is named before anything else.
      assert_err("callback.no_secret", core.verify_callback("abc", nil, nil, t))
    end)

    it("never shows in an error", function()
      local secret = "TOPSECRET-a1b2c3d4e5"
      local sign = core.sign_callback(ts, secret)
      local calls = {
        { ts, sign .. "x", secret, t },
        { ts, sign, secret, t + WINDOW + 1 },
        { "abc", sign, secret, t },
        { ts, string.rep("!", 43) .. "=", secret, t },
        { ts, core.sign_callback(ts, secret .. "!"), secret, t },
        { ts, secret, secret, t },                      -- the secret sent as the sign
        { secret, sign, secret, t },                    -- or as the timestamp
      }
      for _, args in ipairs(calls) do
        local ok, err = core.verify_callback(args[1], args[2], args[3], args[4])
        assert.is_nil(ok)
        assert_no_secret(secret, err)
      end
      assert_no_secret(secret, select(2, core.sign_callback("abc", secret)))
      assert_no_secret(secret, select(2, pcall(core.verify_callback, ts, {}, secret, t)))
      assert_no_secret(secret, select(2, pcall(core.verify_callback, {}, sign, secret, t)))
      assert_no_secret(secret, select(2, pcall(core.verify_callback, ts, sign, secret, "soon")))
    end)
  end)

  describe("argument types", function()
    local ts, secret, t = "1700000000000", "secret", 1700000000000
    local sign = core.sign_callback(ts, secret)

    it("raises for a wrong type", function()
      assert.has_error(function() core.verify_callback({}, sign, secret, t) end)
      assert.has_error(function() core.verify_callback(true, sign, secret, t) end)
      assert.has_error(function() core.verify_callback(ts, {}, secret, t) end)
      assert.has_error(function() core.verify_callback(ts, 42, secret, t) end)
      assert.has_error(function() core.verify_callback(ts, false, secret, t) end)
      assert.has_error(function() core.verify_callback(ts, sign, {}, t) end)
      assert.has_error(function() core.verify_callback(ts, sign, 42, t) end)
      assert.has_error(function() core.verify_callback(ts, sign, secret, "1700000000000") end)
      assert.has_error(function() core.verify_callback(ts, sign, secret, {}) end)
      assert.has_error(function() core.verify_callback(ts, sign, secret, -1) end)
      assert.has_error(function() core.verify_callback(ts, sign, secret, 1.5) end)
      assert.has_error(function() core.verify_callback(ts, sign, secret, 0 / 0) end)
      assert.has_error(function() core.sign_callback({}, secret) end)
      assert.has_error(function() core.sign_callback(ts, {}) end)
      assert.has_error(function() core.sign_callback(ts, 42) end)
    end)

    it("raises for a wrong type even when a value is also missing", function()
      assert.has_error(function() core.verify_callback(ts, {}, nil, t) end)
      assert.has_error(function() core.verify_callback({}, sign, nil, t) end)
    end)
  end)

  describe("round trips", function()
    it("verify_callback accepts what sign_callback makes", function()
      math.randomseed(12345)
      for _ = 1, 200 do
        local n = math.random(1, 150)
        local bytes = {}
        for i = 1, n do bytes[i] = string.char(math.random(0, 255)) end
        local secret = table.concat(bytes)
        local t = math.random(0, 2 ^ 30) * 1000 + math.random(0, 999)
        local ts = string.format("%.0f", t)
        local sign = core.sign_callback(ts, secret)
        assert.are.equal(44, #sign)
        assert.truthy(sign:find("^[A-Za-z0-9+/]+=$"))
        assert.is_true(core.verify_callback(ts, sign, secret, t))
        assert.is_true(core.verify_callback(t, sign, secret, t + math.random(-WINDOW, WINDOW)))
        assert_err("callback.bad_signature", core.verify_callback(ts, sign, secret .. "x", t))
      end
    end)
  end)
end)
