-- Issue 10, class 6: the example bot (examples/bot.lua) as a server.  A
-- slow client (one header byte a second) must not delay /healthz from
-- another connection; a 50 MB header line is refused with 431 while the
-- bot's resident memory stays small; a huge body is refused by its
-- Content-Length before it is read; too many connections get 503; the bot
-- keeps serving after each.  Clients are LuaSocket connections of this
-- process to the bot on 127.0.0.1.
local shell = require "spec.helpers.shell"
local has_socket, socket = pcall(require, "socket")

local q, sh, trim = shell.quote, shell.sh, shell.trim
local LUA = os.getenv("DINGTALK_RECALL_TEST_LUA") or "lua"

local describe_socket = has_socket and describe or pending

describe_socket("examples/bot.lua under slow and huge requests (class 6)", function()
  local dir
  local bots = {}

  setup(function() dir = trim(sh("mktemp -d ${TMPDIR:-/tmp}/dtr-hbot.XXXXXX")) end)
  teardown(function()
    for _, b in ipairs(bots) do
      sh("kill " .. b.pid .. " 2>/dev/null; true")
      b.pipe:close()
    end
    if dir and dir:match("dtr%-hbot") then sh("rm -rf " .. q(dir)) end
  end)

  -- Starts the bot (no API server needed: nothing here reaches the API).
  local function start_bot(env)
    local name = "bot" .. (#bots + 1)
    local vars = { DINGTALK_ENDPOINT = "http://127.0.0.1:9", DINGTALK_APP_KEY = "hbotKey",
      DINGTALK_APP_SECRET = "hbotSecret", DINGTALK_ROBOT_CODE = "hbotRobot",
      DINGTALK_RECALL_LEDGER = dir .. "/" .. name .. ".ledger", XDG_CONFIG_HOME = dir .. "/xdg",
      BOT_SWEEP_EVERY = "0" }
    for k, v in pairs(env or {}) do vars[k] = v end
    local parts = { "env -u DINGTALK_ACCESS_TOKEN -u DINGTALK_CA_FILE -u DINGTALK_RECALL_CONFIG" }
    for k, v in pairs(vars) do parts[#parts + 1] = k .. "=" .. q(v) end
    local log = dir .. "/" .. name .. ".log"
    local pipe = assert(io.popen("echo $$; exec " .. table.concat(parts, " ") .. " " .. LUA ..
      " examples/bot.lua --port 0 2>" .. q(log), "r"))
    local pid = assert(pipe:read("*l"))
    local line = pipe:read("*l") or ""
    local b = { pid = pid, pipe = pipe, log = log }
    bots[#bots + 1] = b
    b.port = tonumber(line:match("^bot listening on http://127%.0%.0%.1:(%d+)/$"))
    assert(b.port, "the bot did not start: " .. line .. "\n" .. shell.read_file(log))
    return b
  end

  local function rss_kb(b)
    local st = shell.read_file("/proc/" .. b.pid .. "/status")
    return tonumber(st:match("VmRSS:%s*(%d+)")) or error("no VmRSS for " .. b.pid)
  end

  local function connect(b)
    local c = assert(socket.tcp())
    c:settimeout(5)
    assert(c:connect("127.0.0.1", b.port))
    return c
  end

  -- The status of the answer on c (nil when the connection closed first).
  local function status_of(c, timeout)
    c:settimeout(timeout or 5)
    local line = c:receive("*l")
    return line and tonumber(line:match("^HTTP/1%.1 (%d+)")), line
  end

  -- GET /healthz on a new connection; returns status, seconds.
  local function healthz(b)
    local t0 = socket.gettime()
    local c = connect(b)
    c:send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    local st = status_of(c, 10)
    c:close()
    return st, socket.gettime() - t0
  end

  local function alive(b)
    return select(2, sh("kill -0 " .. b.pid .. " 2>/dev/null")) == 0
  end

  it("a slow-loris client (a header byte a second) does not delay /healthz #timing", function()
    local b = start_bot { BOT_HEADER_TIMEOUT = "4" }
    local slow = connect(b)
    local req = "GET /healthz HTTP/1.1\r\nX-Slow: abcdefghijklmnop\r\n\r\n"
    local t0 = socket.gettime()
    for i = 1, 3 do
      assert(slow:send(req:sub(i, i)))
      local st, took = healthz(b)
      assert.are.equal(200, st)
      assert.is_true(took < 1, "/healthz took " .. took .. " s behind the slow client")
      socket.sleep(1)
    end
    -- the slow client is cut off at its header deadline (4 s) with 408
    local st = status_of(slow, 6)
    local cut = socket.gettime() - t0
    slow:close()
    assert.are.equal(408, st)
    assert.is_true(cut < 6, "cut after " .. cut .. " s")
    assert.are.equal(200, (healthz(b)))
  end)

  it("twenty idle connections at once do not delay /healthz", function()
    local b = start_bot()
    local idle = {}
    for i = 1, 20 do
      idle[i] = connect(b)
      idle[i]:send("POST / HTTP/1.1\r\n")
    end
    local st, took = healthz(b)
    for _, c in ipairs(idle) do c:close() end
    assert.are.equal(200, st)
    assert.is_true(took < 1, "took " .. took)
  end)

  it("a 50 MB header line is refused with 431; resident memory stays under 64 MB", function()
    local b = start_bot()
    local before = rss_kb(b)
    local c = connect(b)
    c:settimeout(0.5)
    assert(c:send("GET /healthz HTTP/1.1\r\nX-Huge: "))
    local chunk = ("a"):rep(65536)
    local sent, status = 0, nil
    while sent < 50 * 1048576 do
      local ok = c:send(chunk)
      if not ok then break end
      sent = sent + #chunk
      local r = socket.select({ c }, nil, 0)
      if r[c] then
        status = status_of(c, 2)
        break
      end
    end
    if not status then status = status_of(c, 5) end
    c:close()
    local after = rss_kb(b)
    assert.are.equal(431, status)
    assert.is_true(sent < 8 * 1048576, "the bot read " .. sent .. " bytes before refusing")
    assert.is_true(after < 64 * 1024, "VmRSS " .. after .. " kB")
    assert.is_true(after - before < 16 * 1024, "VmRSS grew from " .. before .. " to " .. after .. " kB")
    assert.is_true(alive(b))
    assert.are.equal(200, (healthz(b)))
  end)

  it("too many header lines or header bytes are refused with 431", function()
    local b = start_bot()
    local c = connect(b)
    c:send("GET /healthz HTTP/1.1\r\n" .. ("X-A: b\r\n"):rep(100) .. "\r\n")
    assert.are.equal(431, (status_of(c)))
    c:close()
    c = connect(b)
    c:send("GET /healthz HTTP/1.1\r\n" .. ("X-Long: " .. ("v"):rep(4000) .. "\r\n"):rep(5) .. "\r\n")
    assert.are.equal(431, (status_of(c)))
    c:close()
    assert.are.equal(200, (healthz(b)))
  end)

  it("a huge body is refused by its Content-Length before it is read", function()
    local b = start_bot()
    for _, len in ipairs { 104857600, 65537, 1e15 } do
      local c = connect(b)
      local t0 = socket.gettime()
      c:send(("POST / HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: %.0f\r\n\r\n"):format(len))
      -- no byte of the body is sent: the answer must come anyway
      local st = status_of(c, 3)
      c:close()
      assert.are.equal(413, st, tostring(len))
      assert.is_true(socket.gettime() - t0 < 2)
    end
    local c = connect(b)
    c:send("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n")
    assert.are.equal(411, (status_of(c)))
    c:close()
    c = connect(b)
    c:send("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert.are.equal(411, (status_of(c)))
    c:close()
    assert.are.equal(200, (healthz(b)))
  end)

  it("a body that never comes is cut at the request deadline", function()
    local b = start_bot { BOT_REQUEST_TIMEOUT = "1" }
    local c = connect(b)
    c:send("POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\n{\"partial\":")
    local t0 = socket.gettime()
    local st = status_of(c, 5)
    c:close()
    assert.are.equal(408, st)
    assert.is_true(socket.gettime() - t0 < 4)
    assert.are.equal(200, (healthz(b)))
  end)

  it("connections over BOT_MAX_CONNECTIONS get 503; /healthz answers once the idle ones time out", function()
    local b = start_bot { BOT_MAX_CONNECTIONS = "4", BOT_HEADER_TIMEOUT = "1.5" }
    local idle = {}
    local t0 = socket.gettime() -- (before the bot accepts any of them)
    for i = 1, 4 do idle[i] = connect(b) end
    socket.sleep(0.2)
    local c = connect(b)
    c:send("GET /healthz HTTP/1.1\r\n\r\n")
    assert.are.equal(503, (status_of(c)))
    c:close()
    -- 200 once the idle ones reach their header deadline (1.5 s), not before
    local st
    repeat
      socket.sleep(0.1)
      st = healthz(b)
    until st == 200 or socket.gettime() - t0 > 6
    assert.are.equal(200, st)
    assert.is_true(socket.gettime() - t0 >= 1.4, "a slot was free before the idle connections timed out")
    for _, x in ipairs(idle) do x:close() end
  end)

  it("answers a request split into many small writes, and refuses a bad request line", function()
    local b = start_bot()
    local c = connect(b)
    for ch in ("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"):gmatch(".") do c:send(ch) end
    assert.are.equal(200, (status_of(c)))
    c:close()
    c = connect(b)
    c:send("NOT HTTP\r\n\r\n")
    assert.are.equal(400, (status_of(c)))
    c:close()
    assert.is_true(alive(b))
  end)

  it("refuses bad limit settings at start", function()
    local _, rc = sh("env DINGTALK_APP_KEY=k DINGTALK_APP_SECRET=s DINGTALK_RECALL_LEDGER=" ..
      q(dir .. "/bad.ledger") .. " XDG_CONFIG_HOME=" .. q(dir .. "/xdg") ..
      " BOT_HEADER_TIMEOUT=nan timeout 10 " .. LUA .. " examples/bot.lua --port 0 >/dev/null 2>&1")
    assert.are.equal(1, rc)
  end)
end)
