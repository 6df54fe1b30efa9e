-- core.json_string, the escaping every request body and journal key line
-- is written with (dtr_json_string: runs of plain bytes taken sixteen at a
-- time with SSE2, the last sixteen overlapping, then eight at a time, the
-- rest byte by byte), against a reference written here byte by byte: every
-- byte value at every position of strings around the words and blocks.
-- And the other way: core.parse reading the usual answer in place
-- (dtr_answer.c's strings, also eight bytes at a time) agrees with the
-- full decoder whatever byte a key of the answer holds.
local core = require "dingtalk.recall.core"

local NAMED = { [0x22] = '\\"', [0x5c] = "\\\\", [0x0a] = "\\n", [0x0d] = "\\r", [0x09] = "\\t",
  [0x08] = "\\b", [0x0c] = "\\f" }

local function reference(s)
  local out = { '"' }
  for i = 1, #s do
    local b = s:byte(i)
    if NAMED[b] then
      out[#out + 1] = NAMED[b]
    elseif b < 0x20 or b == 0x7f then
      out[#out + 1] = ("\\u%04x"):format(b)
    else
      out[#out + 1] = string.char(b)
    end
  end
  out[#out + 1] = '"'
  return table.concat(out)
end

describe("core.json_string", function()
  it("escapes every byte value at every position of strings of 1 to 25 bytes, the edges up to 50", function()
    -- printable, no byte to escape; 50 bytes: three blocks of 16 and a tail
    local base = "Os7XgjYm5aRLQ9Zqm7iHPvwRe" .. "s8fcQCyCPG899TAssL1ZXJ+ig"
    -- past 25 bytes: the bytes at the edges of what needs escaping
    local EDGES = { 0, 1, 0x08, 0x0a, 0x1f, 0x20, 0x21, 0x22, 0x5b, 0x5c, 0x5d, 0x7e, 0x7f, 0x80, 0xff }
    local ALL = {}
    for b = 0, 255 do ALL[#ALL + 1] = b end
    local bad = 0
    for len = 1, 50 do
      local plain = base:sub(1, len)
      assert.are.equal('"' .. plain .. '"', core.json_string(plain))
      for pos = 1, len do
        for _, b in ipairs(len <= 25 and ALL or EDGES) do
          local s = plain:sub(1, pos - 1) .. string.char(b) .. plain:sub(pos + 1)
          if core.json_string(s) ~= reference(s) then bad = bad + 1 end
        end
      end
    end
    assert.are.equal(0, bad)
  end)

  it("two bytes to escape in one eight-byte word, and a 44-character key with '+' and '/'", function()
    for _, s in ipairs { 'ab"cd\\ef', '\\\\\\\\\\\\\\\\', '""""""""x', "\127\127abcdefgh\0", "é中文abcdefgh\"",
      "s8fcQCyCPG899TAssL1ZXJ+igeKw51IumG43X+oqXAU=", "" } do
      assert.are.equal(reference(s), core.json_string(s))
    end
  end)

  it("core.parse of the usual answer agrees with the full decoder, any byte anywhere in a key", function()
    local HDR = { ["content-type"] = "application/json" }
    local key = "Os7XgjYm5aRLQ9Zqm7iHPvwRe" -- 25 bytes: three words and a tail
    local other = "s8fcQCyCPG899TAssL1ZXJ+igeKw51IumG43X+oqXAU="
    local bad, own = 0, 0
    for pos = 1, #key do
      for b = 0, 255 do
        local k = key:sub(1, pos - 1) .. string.char(b) .. key:sub(pos + 1)
        local raw = key:sub(1, pos - 1) .. (b == 0x22 and '\\"' or b == 0x5c and "\\\\" or string.char(b))
          .. key:sub(pos + 1)
        local body = '{"successResult":["' .. other .. '","' .. raw .. '"],"failedResult":{}}'
        local keys = { other, k }
        local full, ferr = core.parse(200, HDR, body, nil)
        local fast, err = core.parse(200, HDR, body, nil, keys)
        if full == nil then
          if fast ~= nil or err.code ~= ferr.code then bad = bad + 1 end
        elseif fast == nil or fast.successResult[2] ~= full.successResult[2] or #fast.successResult ~= 2 then
          bad = bad + 1
        elseif fast.successResult == keys then
          own = own + 1
        end
      end
    end
    assert.are.equal(0, bad)
    -- every plain byte (not a control, '"' or '\\') was read in place
    assert.is_true(own >= #key * (256 - 34), "read in place: " .. own)
  end)
end)
