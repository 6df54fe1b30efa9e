-- bench/openresty.lua: worker CPU per request of a one-batch recall (20
-- keys) inside one nginx worker, through the library's OpenResty transport
-- ("lib": client:recall; "transport": the transport's start/poll and
-- core.parse alone) and through a bare cosocket written by hand with cjson ("bare":
-- the baseline), against the stand-in (bench/standin.lua) in a second
-- nginx over plain http on loopback.  wrk drives each location in turn;
-- the client worker's utime+stime (/proc/<pid>/stat) over the run, divided
-- by the requests wrk completed, is the figure.  Rounds alternate lib and
-- bare; the medians and their ratio are printed.
--
--   LUA_PATH="lua/?.lua;lua/?/init.lua;./?.lua;;" LUA_CPATH="build/5.4/?.so;;" \
--     lua5.4 bench/openresty.lua [rounds (5)] [seconds per run (3)] [connections (4)]
--
-- Needs nginx + libnginx-mod-http-lua + lua-resty-core, wrk, and the 5.1
-- core (made when missing).  Plain Lua 5.1-5.4; uses spec/helpers/nginx.lua.
local nginx = require "spec.helpers.nginx"
local shell = require "spec.helpers.shell"

local ROUNDS = tonumber(arg and arg[1]) or 5
local SECONDS = tonumber(arg and arg[2]) or 3
local CONNS = tonumber(arg and arg[3]) or 4

local ok, why = nginx.available()
if not ok then
  io.stderr:write("bench/openresty.lua: ", why, "\n")
  os.exit(2)
end
if select(2, shell.sh("command -v wrk")) ~= 0 then
  io.stderr:write("bench/openresty.lua: wrk is not installed (apt-get install wrk)\n")
  os.exit(2)
end

local standin = nginx.start {
  workers = 1, shared_dicts = { standin = "1m" },
  server = '    location / { content_by_lua_file ' .. nginx.nq(nginx.root .. "bench/standin.lua") .. '; }',
}

local MOD = ([==[
local cjson = require "cjson"
local PORT, CID, ROBOT = %d, "cidbench", "dingsimrobot"
local M = {}
local keys = {}
for i = 1, 20 do keys[i] = "benchKey" .. i end

local client
function M.lib()
  if not client then
    client = assert(require("dingtalk.recall").client {
      endpoint = "http://127.0.0.1:" .. PORT, access_token = "sim-static-token", robot_code = ROBOT,
      qps = 0, transport = "openresty", max_retries = 0 })
  end
  local rep = assert(client:recall(CID, keys))
  ngx.print(#rep.recalled)
end

-- The transport alone: a request built once by the core, then start,
-- poll and core.parse per request (no client, no engine).
local T, built
function M.transport()
  local core = require "dingtalk.recall.core"
  if not T then
    T = require("dingtalk.recall.transport.openresty").new { shared_dict = false }
    built = assert(core.build({ openConversationId = CID, robotCode = ROBOT, processQueryKeys = keys },
      { endpoint = "http://127.0.0.1:" .. PORT, access_token = "sim-static-token" }))
  end
  assert(T:start(built, 1))
  local done = T:poll(1.0)
  while #done == 0 do done = T:poll(1.0) end
  local c = done[1]
  local res = assert(core.parse(c.status, c.headers, c.body, "sim-static-token"))
  ngx.print(#res.successResult)
end

-- The baseline: the same exchange by hand, over a pooled cosocket, with
-- cjson; a pooled connection the server closed meanwhile is tried once more.
local function exchange()
  local sock = ngx.socket.tcp()
  sock:settimeouts(3000, 3000, 3000)
  assert(sock:connect("127.0.0.1", PORT, { pool = "bare" }))
  local body = cjson.encode { openConversationId = CID, robotCode = ROBOT, processQueryKeys = keys }
  assert(sock:send("POST /v1.0/robot/groupMessages/recall HTTP/1.1\r\nHost: 127.0.0.1:" .. PORT ..
    "\r\nContent-Type: application/json\r\nAccept: application/json\r\n" ..
    "x-acs-dingtalk-access-token: sim-static-token\r\nContent-Length: " .. #body .. "\r\n\r\n" .. body))
  local status = assert(sock:receive("*l"))
  local len
  while true do
    local l = assert(sock:receive("*l"))
    if l == "" then break end
    local n = l:match("^[Cc]ontent%%-[Ll]ength:%%s*(%%d+)")
    if n then len = tonumber(n) end
  end
  local data
  if len then
    data = assert(sock:receive(len))
  else -- chunked (the stand-in streams its answer)
    local parts = {}
    while true do
      local size = tonumber(assert(sock:receive("*l")):match("^%%x+"), 16)
      if size == 0 then assert(sock:receive("*l")) break end
      parts[#parts + 1] = assert(sock:receive(size))
      assert(sock:receive("*l"))
    end
    data = table.concat(parts)
  end
  local doc = cjson.decode(data)
  sock:setkeepalive(30000, 32)
  assert(status:find(" 200 ", 1, true))
  return #doc.successResult
end

function M.bare()
  local ok, n = pcall(exchange)
  if not ok then n = exchange() end
  ngx.print(n)
end
return M
]==]):format(standin.port)

local client = nginx.start {
  workers = 1, modules = { orbench = MOD },
  server = '    location = /lib { content_by_lua_block { require("orbench").lib() } }\n' ..
    '    location = /bare { content_by_lua_block { require("orbench").bare() } }\n' ..
    '    location = /transport { content_by_lua_block { require("orbench").transport() } }',
}

local function cleanup()
  client:stop()
  standin:stop()
end

local function worker_pid()
  return shell.trim(shell.sh("pgrep -P " .. client:pid() .. " | head -1"))
end
local HZ = tonumber(shell.trim(shell.sh("getconf CLK_TCK"))) or 100

local function cpu(pid)
  local stat = shell.read_file("/proc/" .. pid .. "/stat")
  local rest = stat:match("%) (.*)$")
  local f = {}
  for w in rest:gmatch("%S+") do f[#f + 1] = w end
  return (tonumber(f[12]) + tonumber(f[13])) / HZ -- utime, stime (fields 14, 15)
end

-- Checks both answer 20, then measures one location: us of worker CPU per request.
for _, loc in ipairs { "lib", "transport", "bare" } do
  local status, body = client:request("GET", "/" .. loc)
  if status ~= 200 or body ~= "20" then
    io.stderr:write("/", loc, " answered ", status, ": ", body, "\n", client:error_log(), "\n")
    cleanup()
    os.exit(1)
  end
end

local function run(loc)
  local pid = worker_pid()
  local c0 = cpu(pid)
  local out = shell.sh("wrk -t1 -c" .. CONNS .. " -d" .. SECONDS .. "s " .. client.url .. "/" .. loc)
  local c1 = cpu(pid)
  local n = tonumber(out:match("(%d+) requests in")) or 0
  local non2xx = tonumber(out:match("Non%-2xx or 3xx responses: (%d+)")) or 0
  if n == 0 or non2xx > 0 then
    io.stderr:write("wrk on /", loc, " failed:\n", out, "\n", client:error_log(), "\n")
    cleanup()
    os.exit(1)
  end
  return (c1 - c0) * 1e6 / n, n / SECONDS
end

local res = { lib = {}, bare = {}, transport = {} }
print(("openresty per-request worker CPU: %d rounds, wrk -t1 -c%d -d%ds, 20 keys a request, http loopback"):format(
  ROUNDS, CONNS, SECONDS))
for r = 1, ROUNDS do
  for _, loc in ipairs(r % 2 == 1 and { "lib", "transport", "bare" } or { "bare", "transport", "lib" }) do
    local us, rps = run(loc)
    res[loc][#res[loc] + 1] = us
    print(("  round %d %-4s %7.1f us/request  %7.0f requests/s"):format(r, loc, us, rps))
  end
end
cleanup()

local function median(t)
  table.sort(t)
  local n = #t
  if n % 2 == 1 then return t[(n + 1) / 2] end
  return (t[n / 2] + t[n / 2 + 1]) / 2
end
local lib, bare, tr = median(res.lib), median(res.bare), median(res.transport)
print(("median: client:recall %.1f us/request (%.2fx), transport start/poll/parse alone %.1f us/request (%.2fx),"
  .. " bare cosocket + cjson %.1f us/request (1.00x)"):format(lib, lib / bare, tr, tr / bare, bare))
