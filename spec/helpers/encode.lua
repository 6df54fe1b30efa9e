-- spec/helpers/encode.lua: what the request-side specs of the core share
-- (core_encode_spec, core_build_spec): a sample request and options,
-- key arrays, and checks of (nil, err) answers.
local core = require "dingtalk.recall.core"
local assert = require "luassert"

local M = {}

M.TOKEN = "tok-9f8e7d6c5b4a"
M.RECALL_PATH = "/v1.0/robot/groupMessages/recall"

function M.req(over)
  local r = { openConversationId = "cidfCSxxxx", robotCode = "dingxxxx", processQueryKeys = { "b5fe11095fxxxx" } }
  for k, v in pairs(over or {}) do
    r[k] = v
  end
  return r
end

function M.opts(over)
  local o = { access_token = M.TOKEN }
  for k, v in pairs(over or {}) do
    o[k] = v
  end
  return o
end

function M.keys(n, prefix)
  local t = {}
  for i = 1, n do
    t[i] = (prefix or "key") .. i
  end
  return t
end

-- Asserts a (nil, err) pair with the given code; returns the error.
function M.fails_with(code, ok, err)
  assert.is_nil(ok)
  assert.is_true(core.is_error(err), "expected an error object")
  assert.are.equal(code, err.code)
  assert.is_string(err.message)
  assert.is_false(err.retryable)
  return err
end

function M.has(s, sub)
  return string.find(s, sub, 1, true) ~= nil
end

-- Encodes one code point as UTF-8 (no bit library needed).
function M.utf8char(cp)
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

return M
