-- Security of the front-ends: the CLI and the example bot never show the
-- access token or the app secret, whatever fails; the bot refuses replayed,
-- out-of-window and oversized callbacks, and chat text cannot forge or
-- colour its log lines.  The library itself: spec/security_spec.lua.
--
-- 1. The CLI (in-process through spec/helpers/cli.lua, and a few runs of
--    bin/dingtalk-recall as a child process): every subcommand, with
--    wrong credentials, --json, --dry-run, --help, config files holding the
--    secret ("...SENTINEL...", spec/helpers/sentinels.lua), an unreachable
--    endpoint and an echoing server (spec/helpers/faulty_server.lua);
--    stdout, stderr and the ledger files it wrote are searched.
-- 2. The bot (examples/bot.lua, a child process) over HTTP: replays and
--    out-of-window timestamps refused, oversized bodies refused before
--    they are read, log lines escaped, no secret in its log or answers.
local sim = require "spec.helpers.sim"
local cli = require "spec.helpers.cli"
local callback = require "dingtalk.recall.callback"
local ledger = require "dingtalk.recall.ledger"
local sentinels = require "spec.helpers.sentinels"
local shell = require "spec.helpers.shell"

local TOKEN, TOKEN_BAD, SECRET, SECRET_BAD = sentinels.TOKEN, sentinels.TOKEN_BAD, sentinels.SECRET,
  sentinels.SECRET_BAD
local APP_KEY, CID = sentinels.APP_KEY, sentinels.CID
local find_leak, faulty_for = sentinels.find_leak, sentinels.faulty_for
local trim, read, write = shell.trim, shell.read_file, shell.write_file
local q = shell.quote
local REDIS_PW = sentinels.REDIS_PW
local LUA = os.getenv("DINGTALK_RECALL_TEST_LUA") or "lua"
local has_socket = pcall(require, "socket")

describe("security", function()
  local w, s, dir

  setup(function()
    w = sentinels.start("security-fe")
    s, dir = w.sim, w.dir
  end)
  teardown(function() sentinels.stop(w) end)
  before_each(function() sentinels.fresh(w) end)

  -------------------------------------------------------------------------
  describe("the CLI through every subcommand and error path", function()
    local outputs = {}
    local fast

    setup(function()
      -- a config file without credentials that turns retries off (the CLI has no flag for it);
      -- its timeout bounds a hang and is not tested here: at 2 s, a TLS handshake under valgrind
      -- on a loaded machine timed out once, and with no retry the recall's exit code was 3
      fast = dir .. "/fast-config"
      write(fast, "max_retries = 0\ntimeout = 30\n", "600")
    end)

    -- run(args, env [, how]) -> rc, stdout, stderr; env values false remove a
    -- variable.  In-process (spec/helpers/cli.lua), or bin/dingtalk-recall
    -- as a child when how is "spawn".
    local function run(args, envv, how)
      local e = { XDG_CONFIG_HOME = dir .. "/xdg", HOME = dir .. "/home", DINGTALK_CA_FILE = s.ca_file,
        DINGTALK_ENDPOINT = s.url, DINGTALK_RECALL_LEDGER = dir .. "/cli-ledger", DINGTALK_RECALL_CONFIG = fast }
      for k, v in pairs(envv or {}) do e[k] = v or nil end
      local r = (how == "spawn" and cli.spawn or cli.run)(args, { env = e })
      outputs[#outputs + 1] = r.stdout
      outputs[#outputs + 1] = r.stderr
      return r.code, r.stdout, r.stderr
    end

    -- Every subcommand, plain and --json, plus --dry-run and --help.
    local function every_command(envv)
      local key = "kCliSec1"
      local cmds = {
        { "recall", "--conversation", CID, "--robot", s.robot, key, "kCliSec2" },
        { "recall", "--dry-run", "--conversation", CID, "--robot", s.robot, key },
        { "undo", "--conversation", CID, "--last", "2" },
        { "undo", "--dry-run", "--conversation", CID },
        { "send", "--conversation", CID, "--robot", s.robot, "--text", "hello", "--tag", "t1", "--ttl", "1s" },
        { "send", "--dry-run", "--conversation", CID, "--robot", s.robot, "--text", "hello" },
        { "sweep" },
        { "sweep", "--dry-run" },
        { "ledger", "list" },
        { "ledger", "show", key },
        { "token" },
        { "token", "--dry-run" },
        { "recall", "--help" },
        { "help", "token" },
        { "recall", "--conversation", CID, "--robot", s.robot, "bad key!" },
        { "bogus-command" },
      }
      local rcs = {}
      for _, c in ipairs(cmds) do
        rcs[#rcs + 1] = run(c, envv)
        local j = {}
        for i, a in ipairs(c) do j[i] = a end
        j[#j + 1] = "--json"
        run(j, envv)
      end
      return rcs
    end

    -- seeds the ledger with a due entry, so that undo and sweep send something
    local function seed_ledger(path)
      local l = assert(ledger.open(path))
      for _, k in ipairs(s:seed_keys(2, CID)) do
        assert(l:record { key = k, conversation = CID, robot = s.robot, ttl = 0,
          sent_at = os.time() - 5 })
      end
      l:close()
    end

    local function no_leak(extra_files)
      local texts = {}
      for i, t in ipairs(outputs) do texts[i] = t end
      for _, p in ipairs(extra_files or {}) do texts[#texts + 1] = read(p) end
      assert.is_true(#texts > 10)
      local leak = find_leak(texts)
      assert.is_nil(leak, leak)
    end

    it("valid and wrong credentials from the environment", function()
      seed_ledger(dir .. "/cli-ledger")
      local rcs = every_command { DINGTALK_ACCESS_TOKEN = TOKEN }
      assert.are.equal(1, rcs[1]) -- keys the server never issued: failed, exit 1
      every_command { DINGTALK_APP_KEY = APP_KEY, DINGTALK_APP_SECRET = SECRET }
      seed_ledger(dir .. "/cli-ledger")
      rcs = every_command { DINGTALK_ACCESS_TOKEN = TOKEN_BAD }
      assert.are.equal(3, rcs[1]) -- a rejected token: nothing could be done
      rcs = every_command { DINGTALK_APP_KEY = APP_KEY, DINGTALK_APP_SECRET = SECRET_BAD }
      assert.are.equal(3, rcs[1])
      assert.are.equal(3, rcs[11]) -- token: the credentials do not work
      -- bin/dingtalk-recall as a process too: its real stdout and stderr
      for _, c in ipairs {
        { { DINGTALK_ACCESS_TOKEN = TOKEN }, 1, 0 },
        { { DINGTALK_APP_KEY = APP_KEY, DINGTALK_APP_SECRET = SECRET }, 1, 0 },
        { { DINGTALK_ACCESS_TOKEN = TOKEN_BAD }, 3, 0 }, -- (a static token is reported, not checked)
        { { DINGTALK_APP_KEY = APP_KEY, DINGTALK_APP_SECRET = SECRET_BAD }, 3, 3 },
      } do
        assert.are.equal(c[2], (run({ "recall", "--conversation", CID, "--robot", s.robot, "kCliSec1", "--json" },
          c[1], "spawn")))
        assert.are.equal(c[3], (run({ "token" }, c[1], "spawn")))
      end
      no_leak { dir .. "/cli-ledger" }
    end)

    it("credentials from config files (0600 used, 0644 refused), and a ledger URL with a password", function()
      local cfgdir = dir .. "/xdg/dingtalk-recall"
      sim.sh("mkdir -p " .. q(cfgdir))
      local cfgfile = cfgdir .. "/config.lua"
      finally(function() os.remove(cfgfile) end)
      local xdg = { DINGTALK_RECALL_CONFIG = false } -- the default file, under $XDG_CONFIG_HOME
      write(cfgfile, "access_token = " .. TOKEN_BAD .. "\nendpoint = " .. s.url .. "\nmax_retries = 0\n", "600")
      every_command(xdg)
      write(cfgfile, "app_key = " .. APP_KEY .. "\napp_secret = \"" .. SECRET .. "\"\nmax_retries = 0\n", "600")
      every_command(xdg)
      write(cfgfile, "return { app_key = '" .. APP_KEY .. "', app_secret = '" .. SECRET_BAD ..
        "', max_retries = 0 }\n", "600")
      every_command(xdg)
      write(cfgfile, "app_key = " .. APP_KEY .. "\napp_secret = " .. SECRET .. "\n", "644")
      local rcs = every_command(xdg)
      assert.are.equal(3, rcs[1])
      -- --config FILE too, and a broken one
      local other = dir .. "/other-config"
      write(other, "app_secret = " .. SECRET .. " {{\n", "600")
      run({ "token", "--config", other })
      run({ "token", "--config", other, "--json" })
      write(other, "access_token = '" .. TOKEN .. "'\nendpoint = 'http://127.0.0.1:1'\n", "600")
      run({ "recall", "--config", other, "--conversation", CID, "--robot", s.robot, "k1" })
      run({ "send", "--config", other, "--conversation", CID, "--robot", s.robot, "--text", "x", "--json" })
      -- a Redis ledger whose password must not be shown
      local url = "redis://:" .. REDIS_PW .. "@127.0.0.1:1/0"
      for _, c in ipairs { { "ledger", "list" }, { "undo", "--conversation", CID }, { "sweep", "--json" },
        { "send", "--conversation", CID, "--robot", s.robot, "--text", "x" } } do
        local rc = run(c, { DINGTALK_ACCESS_TOKEN = TOKEN, DINGTALK_RECALL_LEDGER = url })
        assert.are.equal(3, rc)
      end
      no_leak()
    end)

    it("an unreachable endpoint and a server that echoes the token and secret", function()
      every_command { DINGTALK_ACCESS_TOKEN = TOKEN, DINGTALK_ENDPOINT = "http://127.0.0.1:1" }
      for _, mode in ipairs { "echo", "echo_code", "echo_html" } do
        local f = faulty_for(mode, "echo_secret")
        local asked = f:requests()
        local path = dir .. "/cli-ledger-" .. mode
        seed_ledger(path)
        every_command { DINGTALK_ACCESS_TOKEN = TOKEN, DINGTALK_ENDPOINT = f.url, DINGTALK_RECALL_LEDGER = path }
        seed_ledger(path)
        every_command { DINGTALK_APP_KEY = APP_KEY, DINGTALK_APP_SECRET = SECRET, DINGTALK_ENDPOINT = f.url,
          DINGTALK_RECALL_LEDGER = path }
        assert.is_true(f:requests() - asked >= 10, "the echoing server was not asked")
        no_leak { path }
      end
    end)
  end)


  -------------------------------------------------------------------------
  describe("the bot (examples/bot.lua)", function()
    local bot
    local socket = has_socket and require("socket")

    -- Starts the bot as a child on a free port; its stderr is its log.
    local function start_bot()
      local b = { dir = dir .. "/bot", log = dir .. "/bot/stderr" }
      sim.sh("rm -rf " .. q(b.dir) .. " && mkdir -p " .. q(b.dir .. "/xdg"))
      local envs = {
        DINGTALK_ACCESS_TOKEN = TOKEN, DINGTALK_CALLBACK_SECRET = SECRET, DINGTALK_ENDPOINT = s.url,
        DINGTALK_CA_FILE = s.ca_file, DINGTALK_ROBOT_CODE = s.robot, DINGTALK_RECALL_LEDGER = b.dir .. "/ledger",
        BOT_ADMINS = "staff1", BOT_SWEEP_EVERY = "0", XDG_CONFIG_HOME = b.dir .. "/xdg", HOME = b.dir,
      }
      local parts = {}
      for k, v in pairs(envs) do parts[#parts + 1] = k .. "=" .. q(v) end
      local child = "echo $$ > " .. q(b.dir .. "/pid") .. "; exec env -u DINGTALK_APP_KEY -u DINGTALK_APP_SECRET " ..
        table.concat(parts, " ") .. " " .. LUA .. " examples/bot.lua --port 0"
      os.execute("nohup sh -c " .. q(child) .. " </dev/null >" .. q(b.dir .. "/stdout") .. " 2>" ..
        q(b.log) .. " &")
      for _ = 1, 100 do
        b.port = tonumber(read(b.dir .. "/stdout"):match("listening on http://127%.0%.0%.1:(%d+)/"))
        if b.port then break end
        sim.sh("sleep 0.05")
      end
      b.pid = trim(read(b.dir .. "/pid"))
      if b.pid:match("^%d+$") then -- stop it when this process is gone, whatever happens
        os.execute("nohup sh -c " .. q("while kill -0 " .. sim.sh("echo $PPID"):gsub("%s+", "") ..
          " 2>/dev/null && kill -0 " .. b.pid .. " 2>/dev/null; do sleep 1; done; kill " .. b.pid ..
          " 2>/dev/null") .. " </dev/null >/dev/null 2>&1 &")
      end
      assert(b.port, "the bot did not start: " .. read(b.log))
      return b
    end

    setup(function()
      if has_socket then bot = start_bot() end
    end)
    teardown(function()
      if bot and bot.pid:match("^%d+$") then sim.sh("kill " .. bot.pid .. " 2>/dev/null; true") end
    end)

    -- Sends raw bytes, returns the answer's status, body and seconds taken.
    local function raw(text)
      local c = assert(socket.tcp())
      c:settimeout(10)
      local t0 = socket.gettime()
      assert(c:connect("127.0.0.1", bot.port))
      c:send(text)
      local data, _, partial = c:receive("*a")
      data = data or partial or ""
      c:close()
      local body = data:match("\r\n\r\n(.*)$") or ""
      return tonumber(data:match("^HTTP/1%.1 (%d+)")), body, socket.gettime() - t0
    end

    local function post(headers, body)
      local h = { "POST / HTTP/1.1", "Host: 127.0.0.1", "Content-Length: " .. #body }
      for k, v in pairs(headers) do h[#h + 1] = k .. ": " .. v end
      return raw(table.concat(h, "\r\n") .. "\r\n\r\n" .. body)
    end

    -- Each callback gets a timestamp of its own (a signature is accepted once).
    local last_ts = 0
    local function next_ts()
      last_ts = math.max(math.floor(socket.gettime() * 1000), last_ts + 1)
      return last_ts
    end
    local function chat(text, staff, at_ms)
      at_ms = at_ms or next_ts()
      local body = require("cjson").encode { msgtype = "text", text = { content = text }, conversationId = CID,
        conversationType = "2", senderStaffId = staff or "staff1", isAdmin = false, robotCode = s.robot }
      return post(callback.headers(SECRET, at_ms), body)
    end

    local function log_lines()
      local lines = {}
      for l in read(bot.log):gmatch("([^\n]*)\n") do lines[#lines + 1] = l end
      return lines
    end

    it("refuses a replayed callback and one out of its window, over HTTP", function()
      if not bot then return pending("luasocket is not installed for " .. _VERSION) end
      local h = callback.headers(SECRET, next_ts())
      local body = '{"msgtype":"text","text":{"content":"hello"},"conversationId":"' .. CID .. '"}'
      assert.are.equal(200, (post(h, body)))
      local status, answer = post(h, body)
      assert.are.equal(401, status)
      assert.matches("callback.replayed", answer)
      local now = math.floor(socket.gettime() * 1000)
      for _, skew in ipairs { -3700000, 3700000 } do
        status, answer = post(callback.headers(SECRET, now + skew), body)
        assert.are.equal(401, status)
        assert.matches("callback.expired", answer)
      end
      status, answer = post({ timestamp = string.format("%d", now), sign = "AAAA" }, body)
      assert.are.equal(401, status)
      assert.matches("callback.bad_signature", answer)
    end)

    it("refuses an oversized body from its Content-Length, before reading it", function()
      if not bot then return pending("luasocket is not installed for " .. _VERSION) end
      -- announces 100 MB and sends none of it: a bot that read the body would wait out its 5 s timeout
      local status, _, took = raw("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n")
      assert.are.equal(413, status)
      assert.is_true(took < 2, "took " .. took .. " s")
      status = post(callback.headers(SECRET, next_ts()), string.rep("[", callback.MAX_BODY))
      assert.are.equal(400, status) -- at the limit it is read, verified, then found not JSON
    end)

    it("chat text with newlines cannot forge a log line", function()
      if not bot then return pending("luasocket is not installed for " .. _VERSION) end
      local before = #log_lines()
      for _, text in ipairs { "/recall last 1\nFAKE-LOG-LINE audit {\"event\":\"recalled\"}",
        "/recall tag a\r\nFAKE-LOG-LINE", "/recall since 5m\rFAKE-LOG-LINE", "/recall\n\n\nhelp" } do
        assert.are.equal(200, (chat(text)))
      end
      local lines = log_lines()
      assert.is_true(#lines > before, "the bot logged nothing")
      for i = before + 1, #lines do
        assert.matches("^%d%d%d%d%-%d%d%-%d%dT", lines[i], 1) -- every line is one of the bot's
        assert.is_nil(lines[i]:find("FAKE-LOG-LINE", 1, true), lines[i])
        assert.is_nil(lines[i]:find("[%c\127]"), ("%q"):format(lines[i]))
      end
    end)

    it("chat text with ANSI escapes reaches the log raw", function()
      -- Fix (examples/bot.lua): escape control characters in log():
      --   local function clean(v)
      --     return (tostring(v):gsub("[%c\127]", function(c) return ("\\x%02x"):format(c:byte()) end))
      --   end
      --   local function log(...)
      --     local parts = { ... }
      --     for i = 1, select("#", ...) do parts[i] = clean(parts[i]) end
      --     io.stderr:write(os.date("!%Y-%m-%dT%H:%M:%SZ "), table.concat(parts), "\n")
      --     io.stderr:flush()
      --   end
      -- (the "command from ..." line logs the first line of the reply, which
      -- quotes the unknown command or duration the user typed)
      if not bot then return pending("luasocket is not installed for " .. _VERSION) end
      local before = #log_lines()
      for _, text in ipairs { "/recall \27[31mFAKE\27[0m", "/recall since 5\27[2J", "/recall \7\8\127" } do
        assert.are.equal(200, (chat(text)))
      end
      local lines = log_lines()
      assert.is_true(#lines >= before + 3, "the bot logged nothing")
      for i = before + 1, #lines do
        assert.is_nil(lines[i]:find("[%c\127]"), ("raw control character in the log: %q"):format(lines[i]))
      end
    end)

    it("never logs or answers with the token or the secret", function()
      if not bot then return pending("luasocket is not installed for " .. _VERSION) end
      local _, a1 = chat("/say hello")
      local _, a2 = chat("/recall last 1")
      local _, a3 = post({ timestamp = "1", sign = SECRET }, "{}")
      local leak = find_leak { read(bot.log), read(bot.dir .. "/stdout"), a1, a2, a3, read(bot.dir .. "/ledger") }
      assert.is_nil(leak, leak)
    end)
  end)

end)
