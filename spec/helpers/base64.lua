-- spec/helpers/base64.lua: a pure-Lua base64 (the standard alphabet,
-- padded), a reference written apart from the code under test: the sign
-- specs flip bits in signatures with it, and the callback fuzz target
-- (fuzz/callback.lua, by dofile) computes the expected sign.  Plain Lua
-- 5.1-5.4 and LuaJIT (arithmetic, no bit operators).
local M = {}

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

--- encode(bytes) -> base64 text (padded with =).
function M.encode(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local c1 = math.floor(n / 262144) % 64
    local c2 = math.floor(n / 4096) % 64
    local c3 = math.floor(n / 64) % 64
    local c4 = n % 64
    out[#out + 1] = B64:sub(c1 + 1, c1 + 1) .. B64:sub(c2 + 1, c2 + 1)
      .. (b and B64:sub(c3 + 1, c3 + 1) or "=") .. (c and B64:sub(c4 + 1, c4 + 1) or "=")
  end
  return table.concat(out)
end

--- decode(base64 text) -> bytes (padding ignored; the text must be valid).
function M.decode(s)
  local out, bits, nbits = {}, 0, 0
  for ch in s:gmatch("[^=]") do
    local v = B64:find(ch, 1, true) - 1
    bits = bits * 64 + v
    nbits = nbits + 6
    if nbits >= 8 then
      nbits = nbits - 8
      local p = 2 ^ nbits
      out[#out + 1] = string.char(math.floor(bits / p))
      bits = bits % p
    end
  end
  return table.concat(out)
end
M.ALPHABET = B64

return M
