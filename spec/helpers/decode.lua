-- spec/helpers/decode.lua: what the response-side specs of the core share
-- (core_decode_spec, core_error_spec).
local core = require "dingtalk.recall.core"
local cjson = require "cjson"
local assert = require "luassert"

local M = {}

function M.has(s, sub)
  return string.find(s, sub, 1, true) ~= nil
end

function M.count(t)
  local n = 0
  for _ in pairs(t) do
    n = n + 1
  end
  return n
end

-- Asserts a (nil, err) pair; returns the error.
function M.fails(ok, err)
  assert.is_nil(ok)
  assert.is_true(core.is_error(err), "expected an error object")
  assert.is_string(err.code)
  assert.is_string(err.message)
  assert.is_boolean(err.retryable)
  assert.is_string(err.hint)
  return err
end

function M.err_body(code, message, requestid)
  return cjson.encode({ code = code, message = message, requestid = requestid })
end

return M
