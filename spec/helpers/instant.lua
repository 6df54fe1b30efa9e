-- spec/helpers/instant.lua: what a memory measurement of a bulk run needs,
-- shared by spec/engine_memory_spec.lua and bench/rss.lua: keys like the
-- server's and a transport that answers at once (no clock, no sockets).
--
--   local instant = require "spec.helpers.instant"
--   local keys = instant.keys(n [, seed])   -- n random 44-character base64 keys
--   local T = instant.transport([on_start]) -- on_start(built) per request
local M = {}

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

--- n keys like the server's: 44 base64 characters, random from seed
-- (default n).  Sequential keys with a long common tail hash badly in
-- Lua 5.1 and are not what DingTalk hands out.
function M.keys(n, seed)
  math.randomseed(seed or n)
  local t, chars = {}, {}
  for i = 1, n do
    for j = 1, 43 do
      local r = math.random(1, 64)
      chars[j] = B64:sub(r, r)
    end
    t[i] = table.concat(chars) .. "="
  end
  return t
end

--- A transport that answers every request at once, every key recalled.
function M.transport(on_start)
  local pending = {}
  return {
    now = os.clock,
    start = function(_, built, tag)
      if on_start then on_start(built) end
      local ks = built.body:match('"processQueryKeys":(%b[])')
      pending[#pending + 1] = { tag = tag, status = 200, headers = { ["content-type"] = "application/json" },
        body = '{"successResult":' .. ks .. ',"failedResult":{}}' }
      return true
    end,
    poll = function()
      local done = pending
      pending = {}
      return done
    end,
  }
end

return M
