--- The client's own memory share for 100,000 keys, without the network:
-- peak RSS of a process that loads the caller's keys and recalls them all
-- through the client over a fake transport that answers at once, against
-- the same process loading the keys and making a client only.
--
--   LUA_PATH="$PWD/lua/?.lua;$PWD/lua/?/init.lua;$PWD/?.lua;;" LUA_CPATH="$PWD/build/5.4/?.so;;" \
--   lua5.4 bench/rss.lua [KEYS]          # prints both peaks and the difference
local mode, n = arg[1], tonumber(arg[2] or arg[1]) or 100000

local function hwm_kb()
  local f = assert(io.open("/proc/self/status", "r"))
  local s = f:read("*a")
  f:close()
  return tonumber(s:match("VmHWM:%s*(%d+)"))
end

if mode ~= "base" and mode ~= "recall" then
  -- the driver: runs both modes in child processes of the same interpreter
  local lua = arg[-1] or "lua"
  local function run(m)
    local p = assert(io.popen(lua .. " " .. arg[0] .. " " .. m .. " " .. n))
    local out = p:read("*a")
    p:close()
    return tonumber(out:match("hwm_kb=(%d+)")), out
  end
  local base, b_out = run("base")
  local full, f_out = run("recall")
  assert(base and full, (b_out or "") .. (f_out or ""))
  print(("%s, %d keys: baseline (keys + client) %.1f MB, after recalling them all %.1f MB, client's share %.1f MB")
    :format(_VERSION .. (rawget(_G, "jit") and (" " .. rawget(_G, "jit").version) or ""), n, base / 1024,
      full / 1024, (full - base) / 1024))
  return
end

local recall = require "dingtalk.recall"
local keys = {}
-- Like the server's keys: 44 base64 characters, random (sequential keys
-- with a long common tail hash badly in Lua 5.1 and are not what DingTalk
-- hands out).
math.randomseed(7)
local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local chars = {}
for i = 1, n do
  for j = 1, 43 do
    local r = math.random(1, 64)
    chars[j] = B64:sub(r, r)
  end
  keys[i] = table.concat(chars) .. "="
end
-- A transport that answers every request at once: success for every key.
local pending = {}
local T = {
  now = os.clock,
  start = function(_, built, tag)
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
local c = assert(recall.client { robot_code = "dingBench", access_token = "t", transport = T, qps = 0,
  concurrency = 8 })
if mode == "recall" then
  local rep = assert(c:recall("cidBench", keys))
  assert(#rep.recalled == n and rep.ok)
end
io.write("hwm_kb=", hwm_kb(), "\n")
