-- luacheck: std lua54
-- Fuzz target "callback": signature checks of incoming bot callbacks.
--   core.verify_callback(timestamp, sign, secret [, now_ms])
--   core.sign_callback(timestamp, secret)
-- Fields: timestamp, sign, secret, now.  Flag bits pass the timestamp as
-- a number, drop arguments, use the secret raw (else marked "sk~~..." so
-- the leak check is exact), put now near the timestamp, or replace the
-- sign by the right one with one byte changed.  Invariants:
--   * never raises, except for a now_ms that is not a non-negative integer;
--   * exactly one of true and (nil, err), err well formed, one line, and
--     never holding the secret;
--   * sign_callback(ts, secret) is base64(HMAC-SHA256(secret, ts "\n"
--     secret)) computed by an independent HMAC (the harness's ref_hmac and
--     a Lua base64), for every valid timestamp and non-empty secret, and
--     refuses the rest;
--   * verify_callback accepts exactly that sign, within one hour of now,
--     and refuses any other sign and any timestamp more than 1 h away.
local dir, ref_hmac = ...
local C = dofile(dir .. "/check.lua")
local core, fail = C.core, C.fail

local WINDOW = 3600000
-- The reference base64 the sign specs use too (pure Lua, apart from the core).
local base64 = dofile(dir .. "/../spec/helpers/base64.lua").encode

local function bit(flags, n)
  return (flags >> n) & 1 == 1
end

-- The signed text and value of a timestamp, or nil when the core must
-- refuse it (written from the documented rule, not from the C code).
local function ts_of(ts)
  if math.type(ts) == "integer" then
    if ts < 0 then return nil end
    return string.format("%d", ts), ts
  elseif math.type(ts) == "float" then
    if not (ts >= 0 and ts < 2 ^ 63 and ts == math.floor(ts)) then return nil end
    local i = math.tointeger(ts)
    return string.format("%d", i), i
  elseif type(ts) == "string" then
    if #ts < 1 or #ts > 19 or ts:find("[^0-9]") then return nil end
    if #ts == 19 and ts > "9223372036854775807" then return nil end
    return ts, math.tointeger(tonumber(ts))
  end
  return nil
end

-- now_ms as the core takes it: nil, or a non-negative integral number.
local function now_ok(now)
  if now == nil then return true end
  if math.type(now) == "integer" then return now >= 0 end
  return now >= 0 and now < 2 ^ 63 and now == math.floor(now)
end

return function(flags, f)
  for i = #f + 1, 4 do f[i] = "" end
  local ts = f[1]
  if bit(flags, 0) then ts = tonumber(f[1]) end
  if bit(flags, 1) then ts = nil end
  local secret, secrets = f[3], {}
  if not bit(flags, 2) then
    secret = "sk~~" .. f[3]
    secrets = { secret }
  end
  if bit(flags, 3) then secret = nil end
  local text, ms = ts_of(ts)
  local now = nil
  if bit(flags, 4) then
    now = tonumber(f[4])
  elseif bit(flags, 5) and ms then
    -- near the timestamp: an offset of up to +-2^23 ms from the fields
    local off = ((#f[4] * 7919 + (f[4]:byte(1) or 0)) % (1 << 24)) - (1 << 23)
    if bit(flags, 6) then off = off * 400 end
    now = ms + off
    if now < 0 then now = 0 end
  end

  -- sign_callback against the reference.
  local ok, s, serr = pcall(core.sign_callback, ts, secret)
  if not ok then fail("sign_callback raised: %s", tostring(s)) end
  local want = nil
  if text and secret and secret ~= "" then want = base64(ref_hmac(secret, text .. "\n" .. secret)) end
  if C.one_of(s, serr, secrets) then
    if not want then fail("sign_callback signed an invalid timestamp or secret") end
    if s ~= want then fail("sign_callback gave %s, the reference %s", s, want) end
    local v, verr = core.verify_callback(ts, s, secret, ms)
    if v ~= true then fail("its own sign does not verify: %s", tostring(verr)) end
  elseif want then
    fail("sign_callback refused valid input: %s", tostring(serr))
  end

  -- verify_callback with the fuzzed sign (or the right one, one byte off).
  local sign = f[2]
  if bit(flags, 7) then sign = nil end
  if bit(flags, 8) and want then
    local pos = (#f[2] % 44) + 1
    local b = want:byte(pos) ~ ((f[2]:byte(1) or 1) % 255 + 1) & 0xff
    if bit(flags, 9) then b = want:byte(pos) end -- unchanged: must verify
    sign = want:sub(1, pos - 1) .. string.char(b) .. want:sub(pos + 1)
  end
  local vok, v, verr = pcall(core.verify_callback, ts, sign, secret, now)
  if not vok then
    if now_ok(now) then fail("verify_callback raised: %s", tostring(v)) end
    return
  end
  if not now_ok(now) then fail("verify_callback took a bad now_ms %s", tostring(now)) end
  if C.one_of(v, verr, secrets) then
    if v ~= true then fail("verify_callback returned %s", tostring(v)) end
    if not want or sign ~= want then fail("verify_callback accepted a wrong sign %q", tostring(sign)) end
    if now and math.abs(now - ms) > WINDOW then fail("accepted a timestamp %d ms away", math.abs(now - ms)) end
  elseif want and sign == want then
    local away = now and math.abs(now - ms) or 0
    if away <= WINDOW and verr.code ~= "callback.expired" then
      fail("refused the right sign: %s", tostring(verr))
    end
  end
end
