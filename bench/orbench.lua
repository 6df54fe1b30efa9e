-- bench/orbench.lua: the locations bench/openresty.lua measures, run in
-- the client nginx's one worker (written to its prefix as the module
-- `orbench`, beside `orbench_conf`: the stand-in's ports and, in the
-- callgrind mode, the path of cgctl.so).  Each location answers the number
-- of keys recalled; /cg zeroes and dumps callgrind's counters; /mem counts
-- the Lua heap's growth over the requests between op=start and op=stop,
-- the GC stopped meanwhile.
local cjson = require "cjson"
local conf = require "orbench_conf"
local PORT, TLS_PORT, CID, ROBOT, TOKEN = conf.port, conf.tls_port, "cidbench", "dingsimrobot", "sim-static-token"
local CGCTL = conf.cgctl
if conf.jitv then -- (DINGTALK_BENCH_JIT)
  package.path = package.path .. ";" .. conf.jit_dir .. "?.lua"
  require("jit.v").on(conf.jitv)
end
local CONCURRENCY = 4
local M = {}
local keys = { [1] = {}, [10] = {} }
for i = 1, 20 do keys[1][i] = "benchKey" .. i end
for i = 1, 200 do keys[10][i] = "benchKey" .. i end

local function args()
  local scheme, nb = ngx.var.arg_s or "http", tonumber(ngx.var.arg_b) or 1
  assert(keys[nb], "b must be 1 or 10")
  return scheme == "https", nb
end

-- ?n=N: the call made N times in one request (the callgrind mode).
local function reps()
  return tonumber(ngx.var.arg_n) or 1
end

local clients = {}
local function lib()
  local https, nb = args()
  local client = clients[https]
  if not client then
    client = assert(require("dingtalk.recall").client {
      endpoint = https and ("https://localhost:" .. TLS_PORT) or ("http://127.0.0.1:" .. PORT),
      access_token = TOKEN, robot_code = ROBOT, qps = 0, transport = "openresty", max_retries = 0,
      concurrency = CONCURRENCY })
    clients[https] = client
  end
  local rep = assert(client:recall(CID, keys[nb]))
  return #rep.recalled
end

-- The transport alone: a request built once by the core, then start,
-- poll and core.parse per request (no client, no engine).
local core = require "dingtalk.recall.core"
local T, built = nil, {}
local function transport()
  local https = args()
  if not T then T = require("dingtalk.recall.transport.openresty").new { shared_dict = false } end
  if not built[https] then
    built[https] = assert(core.build({ openConversationId = CID, robotCode = ROBOT, processQueryKeys = keys[1] },
      { endpoint = https and ("https://localhost:" .. TLS_PORT) or ("http://127.0.0.1:" .. PORT),
        access_token = TOKEN }))
  end
  assert(T:start(built[https], 1))
  local done = T:poll(1.0)
  while #done == 0 do done = T:poll(1.0) end
  local c = done[1]
  local res = assert(core.parse(c.status, c.headers, c.body, TOKEN))
  return #res.successResult
end

-- The baseline: the same exchange by hand, over a pooled cosocket (TLS
-- verified on a new connection), with cjson; a pooled connection the
-- server closed meanwhile is tried once more.  checked: the row "bare +
-- checks", the baseline plus what the client checks besides: every key
-- once, non-empty, at most 1024 bytes, without control characters and
-- UTF-8 when not ASCII (overlong forms aside); the status read before the
-- body; the answer's size capped; JSON that does not decode an error, not
-- a raise; every key of the batch found in successResult or failedResult.
local CAP = 1048576
local function utf8_ok(s)
  local i, n = 1, #s
  while i <= n do
    local c = s:byte(i)
    local len = c < 0x80 and 1 or (c >= 0xC2 and c <= 0xDF and 2) or (c >= 0xE0 and c <= 0xEF and 3)
      or (c >= 0xF0 and c <= 0xF4 and 4)
    if not len then return false end
    for j = i + 1, i + len - 1 do
      local b = s:byte(j)
      if not b or b < 0x80 or b > 0xBF then return false end
    end
    i = i + len
  end
  return true
end
local function key_ok(k)
  if type(k) ~= "string" or #k == 0 or #k > 1024 or k:find("[%z\1-\31\127]") then return false end
  return not k:find("[\128-\255]") or utf8_ok(k)
end

local function exchange(https, batch, checked)
  local seen
  if checked then
    local send = {}
    seen = {}
    for _, k in ipairs(batch) do
      assert(key_ok(k), "a key is not valid")
      if not seen[k] then
        seen[k] = true
        send[#send + 1] = k
      end
    end
    batch = send
  end
  local sock = ngx.socket.tcp()
  sock:settimeouts(3000, 3000, 3000)
  assert(sock:connect("127.0.0.1", https and TLS_PORT or PORT, { pool = https and "bare-tls" or "bare" }))
  if https and sock:getreusedtimes() == 0 then assert(sock:sslhandshake(false, "localhost", true)) end
  local body = cjson.encode { openConversationId = CID, robotCode = ROBOT, processQueryKeys = batch }
  assert(sock:send("POST /v1.0/robot/groupMessages/recall HTTP/1.1\r\nHost: " ..
    (https and ("localhost:" .. TLS_PORT) or ("127.0.0.1:" .. PORT)) ..
    "\r\nContent-Type: application/json\r\nAccept: application/json\r\n" ..
    "x-acs-dingtalk-access-token: " .. TOKEN .. "\r\nContent-Length: " .. #body .. "\r\n\r\n" .. body))
  local status = assert(sock:receive("*l"))
  if checked then assert(status:find("^HTTP/1%.[01] 200 "), status) end
  local len
  while true do
    local l = assert(sock:receive("*l"))
    if l == "" then break end
    local n = l:match("^[Cc]ontent%-[Ll]ength:%s*(%d+)")
    if n then len = tonumber(n) end
  end
  local data
  if len then
    assert(not checked or len <= CAP, "too large")
    data = assert(sock:receive(len))
  else -- chunked (the stand-in streams its answer)
    local parts, total = {}, 0
    while true do
      local size = tonumber(assert(sock:receive("*l")):match("^%x+"), 16)
      if size == 0 then assert(sock:receive("*l")) break end
      total = total + size
      assert(not checked or total <= CAP, "too large")
      parts[#parts + 1] = assert(sock:receive(size))
      assert(sock:receive("*l"))
    end
    data = table.concat(parts)
  end
  sock:setkeepalive(30000, 32)
  if not checked then
    local doc = cjson.decode(data)
    assert(status:find(" 200 ", 1, true))
    return #doc.successResult
  end
  local ok, doc = pcall(cjson.decode, data)
  assert(ok and type(doc) == "table" and type(doc.successResult) == "table", "not a recall answer")
  local failed = type(doc.failedResult) == "table" and doc.failedResult or {}
  local got, n = {}, 0
  for _, k in ipairs(doc.successResult) do got[k] = true end
  for _, k in ipairs(batch) do
    assert(got[k] or failed[k] ~= nil, "a key the answer does not name")
    if got[k] then n = n + 1 end
  end
  return n
end

local function batch_of(nb, b)
  if nb == 1 then return keys[1] end
  local batch = {}
  for i = 1, 20 do batch[i] = keys[nb][(b - 1) * 20 + i] end
  return batch
end

local function one(https, batch, checked)
  local ok, n = pcall(exchange, https, batch, checked)
  if not ok then n = exchange(https, batch, checked) end
  return n
end

local function checked()
  local https = args()
  return one(https, keys[1], true)
end

-- ten batches, CONCURRENCY light threads taking the next one (apart from
-- bare(): its closures would keep LuaJIT from compiling the one-batch call)
local function bare_many(https, nb)
  local nextb, total = 0, 0
  local function worker()
    while nextb < nb do
      nextb = nextb + 1
      local n = one(https, batch_of(nb, nextb)) -- (total is read after the exchange yields)
      total = total + n
    end
  end
  local threads = {}
  for i = 1, CONCURRENCY do threads[i] = ngx.thread.spawn(worker) end
  for i = 1, CONCURRENCY do assert(ngx.thread.wait(threads[i])) end
  return total
end

local function bare()
  local https, nb = args()
  if nb == 1 then return one(https, keys[1]) end
  return bare_many(https, nb)
end

-- ?m=cg: callgrind's counters zeroed before the calls and dumped after
-- (bench/cgctl.c through the FFI).
local cg
local function callgrind(what)
  if not cg then
    local ffi = require "ffi"
    ffi.cdef "void dtr_bench_cg_zero(void); void dtr_bench_cg_dump(void);"
    cg = ffi.load(CGCTL)
  end
  if what == "zero" then cg.dtr_bench_cg_zero() else cg.dtr_bench_cg_dump() end
end

-- ?m=cpu: the worker thread's CPU time around the call (one request a
-- call, so nothing else runs in between when requests come one at a
-- time), summed per location; /cpu?op=get answers the sums, op=reset
-- zeroes them.  The two clock reads are in every sum: /nop measures them.
local thread_ns
do
  local ffi = require "ffi"
  ffi.cdef [[
    struct dtr_bench_timespec { long tv_sec; long tv_nsec; };
    int clock_gettime(int clk, struct dtr_bench_timespec *ts);
  ]]
  local ts = ffi.new("struct dtr_bench_timespec")
  local CLOCK_THREAD_CPUTIME_ID = 3
  thread_ns = function()
    ffi.C.clock_gettime(CLOCK_THREAD_CPUTIME_ID, ts)
    return tonumber(ts.tv_sec) * 1e9 + tonumber(ts.tv_nsec)
  end
end
local cpu_sum, cpu_calls = {}, {}

local function nop()
  local _, nb = args()
  return 20 * nb
end

local calls = 0 -- since the counters were last zeroed (/cg?op=zero)
for name, f in pairs { lib = lib, transport = transport, checked = checked, bare = bare, nop = nop } do
  M[name] = function()
    local n, m = nil, ngx.var.arg_m
    if m == "cpu" then
      local t0 = thread_ns()
      n = f()
      cpu_sum[name] = (cpu_sum[name] or 0) + (thread_ns() - t0)
      cpu_calls[name] = (cpu_calls[name] or 0) + 1
    else
      if m == "cg" then callgrind("zero") end
      for _ = 1, reps() do n = f() end
      if m == "cg" then callgrind("dump") end
    end
    calls = calls + 1
    ngx.print(n)
  end
end
function M.cpu()
  if ngx.var.arg_op == "reset" then
    cpu_sum, cpu_calls = {}, {}
    ngx.print(0)
  else
    local out = {}
    for name, ns in pairs(cpu_sum) do out[#out + 1] = ("%s %.0f %d"):format(name, ns, cpu_calls[name]) end
    ngx.print(table.concat(out, "\n"))
  end
end
function M.cg()
  if ngx.var.arg_op == "zero" then
    callgrind("zero")
    calls = 0
    ngx.print(0)
  else
    callgrind("dump")
    ngx.print(calls)
  end
end
-- /mem?op=start: a full collection, the GC stopped and the heap's size
-- noted; /mem?op=stop: the bytes the heap grew by since, per call made
-- meanwhile, and the GC restarted (the handler's own share is in it: the
-- same on every location).
local heap0, calls0
function M.mem()
  if ngx.var.arg_op == "start" then
    collectgarbage("collect")
    collectgarbage("stop")
    heap0, calls0 = collectgarbage("count"), calls
    ngx.print(0)
  else
    local grew, n = (collectgarbage("count") - heap0) * 1024, calls - calls0
    collectgarbage("restart")
    ngx.print(("%.0f"):format(n > 0 and grew / n or 0))
  end
end
return M
