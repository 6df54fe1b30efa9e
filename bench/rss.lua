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
local instant = require "spec.helpers.instant"
-- Like the server's keys (random base64), and a transport that answers
-- every request at once: success for every key.
local keys = instant.keys(n, 7)
local T = instant.transport()
local c = assert(recall.client { robot_code = "dingBench", access_token = "t", transport = T, qps = 0,
  concurrency = 8 })
if mode == "recall" then
  local rep = assert(c:recall("cidBench", keys))
  assert(#rep.recalled == n and rep.ok)
end
io.write("hwm_kb=", hwm_kb(), "\n")
