-- core.parse(status, headers, body, secrets, keys): the usual answer to a
-- batch read in place (csrc/dtr_answer.c).  Whatever the body, the result
-- must be the one the full decoder gives without keys; only the usual form
-- answers with the batch's own array as successResult (and only it makes
-- core.answered_all true).
local core = require "dingtalk.recall.core"

local KEYS = { "k1", "k2", "k3" }
local HDR = { ["content-type"] = "application/json", ["x-acs-request-id"] = "hdr-id" }

-- Parses body both ways; asserts the two agree and returns the keyed result.
local function both(body, status, secrets)
  local keys = { KEYS[1], KEYS[2], KEYS[3] }
  local full, ferr = core.parse(status or 200, HDR, body, secrets)
  local fast, err = core.parse(status or 200, HDR, body, secrets, keys)
  -- core.answered_all says yes exactly when parse answers with the batch's own array
  assert.are.equal(fast ~= nil and fast.successResult == keys, core.answered_all(status or 200, body, keys), body)
  if full == nil then
    assert.is_nil(fast, body)
    assert.are.same({ ferr.code, ferr.message, ferr.status, ferr.request_id },
      { err.code, err.message, err.status, err.request_id }, body)
    return nil, err, keys
  end
  assert.are.same(full, fast, body)
  return fast, nil, keys
end

describe("core.parse with the batch's keys", function()
  it("answers the usual form with the batch's own array, no copy", function()
    for _, body in ipairs {
      '{"successResult":["k1","k2","k3"],"failedResult":{}}',
      ' {\n\t"failedResult" : { } ,\r\n "successResult" : [ "k1" , "k2" , "k3" ] } \n',
      '{"successResult":["k1","k2","k3"]}',
      '{"successResult":["k1","k2","k3"],"failedResult":{},"requestid":"body-id"}',
    } do
      local res, _, keys = both(body)
      assert.are.equal(keys, res.successResult, body)
      assert.are.same({}, res.failedResult)
    end
  end)

  it("takes the request id from the body in the decoder's order, else from the header", function()
    local res = both('{"successResult":["k1","k2","k3"],"failedResult":{}}')
    assert.are.equal("hdr-id", res.request_id)
    res = both('{"requestId":"c","RequestId":"b","successResult":["k1","k2","k3"],"requestid":"a"}')
    assert.are.equal("a", res.request_id)
    res = both('{"requestId":"c","RequestId":"b","successResult":["k1","k2","k3"]}')
    assert.are.equal("b", res.request_id)
  end)

  it("redacts a secret the server echoes in the request id", function()
    local res, _, keys = both('{"successResult":["k1","k2","k3"],"requestid":"id-tok-secret-1"}', 200,
      { "tok-secret-1" })
    assert.are.equal(keys, res.successResult)
    assert.are.equal("id-***", res.request_id)
  end)

  it("leaves every other answer to the full decoder, with the same result", function()
    for _, body in ipairs {
      '{"successResult":["k1","k2"],"failedResult":{"k3":"NOT_FOUND"}}',
      '{"successResult":["k3","k1","k2"],"failedResult":{}}',
      '{"successResult":["k1","k2","k3","k4"],"failedResult":{}}',
      '{"successResult":["k1","k2"],"failedResult":{}}',
      '{"successResult":["k1","k\\u0032","k3"],"failedResult":{}}',
      '{"successResult":["k1","k2","k3"],"failedResult":null}',
      '{"successResult":null,"failedResult":{}}',
      '{"successResult":["k1","k2","k3"],"successResult":["k1"]}',
      '{"successResult":["k1","k2","k3"],"failedResult":{},"failedResult":{"k1":"X"}}',
      '{"successResult":["k1","k2","k3"],"requestid":"a","requestid":"b"}',
      '{"successResult":["k1","k2","k3"],"other":{"a":[1,2,{"b":null}]}}',
      '{"successResult":["k1","k2","k3"],"requestid":7}',
      '{"successResult":["k1","k2","k3"],"requestid":"a\\"b"}',
      '{"successResult":["k1","k2","k3"],"requestid":"a\1b"}',
      '{"successResult":["k1","k2","k3"],}',
      '{"successResult":["k1","k2","k3",]}',
      '{"successResult":["k1","k2","k3"]} x',
      '{"successResult":["k1","k2","k3"]',
      '{"successResult":["k1","k2","k3"]}{}',
      '["k1","k2","k3"]',
      '{}', '', 'null', '<html>',
    } do
      local res, _, keys = both(body)
      if res then assert.are_not.equal(keys, res.successResult, body) end
    end
  end)

  it("reads an error status in full, whatever the body", function()
    local _, err = both('{"successResult":["k1","k2","k3"]}', 500)
    assert.is_not_nil(err)
    _, err = both('{"code":"system.error","message":"m"}', 500)
    assert.are.equal("system.error", err.code)
    local res, _, keys = both('{"successResult":["k1","k2","k3"]}', 201)
    assert.are.equal(keys, res.successResult)
  end)

  it("compares whole keys, multibyte ones too, and raises on keys that are not a table", function()
    local keys = { "钉钉-1", "k2" }
    local res = core.parse(200, HDR, '{"successResult":["钉钉-1","k2"]}', nil, keys)
    assert.are.equal(keys, res.successResult)
    res = core.parse(200, HDR, '{"successResult":["钉钉-","k2"]}', nil, keys)
    assert.are_not.equal(keys, res.successResult)
    assert.are.same({ "钉钉-", "k2" }, res.successResult)
    assert.has_error(function() core.parse(200, HDR, "{}", nil, "k1") end)
    assert.is_true(core.answered_all(200, '{"successResult":["钉钉-1","k2"]}', keys))
    assert.is_false(core.answered_all(200, '{"successResult":["钉钉-","k2"]}', keys))
    assert.is_false(core.answered_all(302, '{"successResult":["钉钉-1","k2"]}', keys))
    assert.has_error(function() core.answered_all(200, "{}", "k1") end)
    assert.has_error(function() core.answered_all(200, nil, keys) end)
  end)
end)
