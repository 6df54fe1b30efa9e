-- dingtalk.recall.rules: chat-command parsing and authorization (with a
-- fake ledger that records what it is asked), then the commands and the
-- TTL sweep end to end: a real ledger and client against the simulator.
local rules = require "dingtalk.recall.rules"
local sim = require "spec.helpers.sim"

local CID = "cidRulesSpec"

local function callback(text, extra)
  local m = {
    msgtype = "text", text = { content = text }, conversationId = CID, conversationType = "2",
    senderStaffId = "staff1", senderNick = "Ann", isAdmin = false, robotCode = "dingsimrobot",
  }
  for k, v in pairs(extra or {}) do m[k] = v end
  return m
end

-- A ledger that records the filters it gets and recalls nothing for real.
local function fake_ledger(entries)
  local l = { lists = {}, recalls = {} }
  function l:list(filter)
    self.lists[#self.lists + 1] = filter
    return entries or {}
  end
  function l:recall(client, filter)
    assert(client)
    self.recalls[#self.recalls + 1] = filter
    local keys = {}
    for _, e in ipairs(entries or {}) do keys[#keys + 1] = e.key end
    return { recalled = keys, failed = {}, errors = {}, expired = {}, ok = true, total = #keys }
  end
  return l
end

local ENTRIES = { { key = "k1" }, { key = "k2" } }

describe("rules.parse", function()
  it("reads the commands", function()
    assert.are.same({ action = "last", n = 1 }, rules.parse("/recall last"))
    assert.are.same({ action = "last", n = 5 }, rules.parse("  /recall last 5 "))
    assert.are.same({ action = "last", n = 3 }, rules.parse("@RecallBot /RECALL Last 3"))
    assert.are.same({ action = "since", seconds = 600 }, rules.parse("/recall since 10m"))
    assert.are.same({ action = "since", seconds = 5400 }, rules.parse("/recall since 1h30m"))
    assert.are.same({ action = "tag", tag = "deploy-42" }, rules.parse("/recall tag deploy-42"))
    assert.are.same({ action = "all" }, rules.parse("/recall all"))
    assert.are.same({ action = "confirm", code = "AB12" }, rules.parse("/recall all confirm ab12"))
    assert.are.same({ action = "help" }, rules.parse("/recall"))
    assert.are.same({ action = "help" }, rules.parse("/recall help"))
  end)

  it("ignores what is not a /recall command", function()
    for _, t in ipairs { "hello", "", "recall last", "/recallx last", "please /recall last", nil } do
      local cmd, why = rules.parse(t)
      assert.is_nil(cmd)
      assert.is_nil(why)
    end
  end)

  it("explains malformed commands", function()
    for _, t in ipairs { "/recall last 0", "/recall last -1", "/recall last x", "/recall last 1.5",
      "/recall last 100000", "/recall last 1 2", "/recall since", "/recall since 10x", "/recall since 0",
      "/recall tag", "/recall tag a b", "/recall all now", "/recall all confirm", "/recall frobnicate" } do
      local cmd, why = rules.parse(t)
      assert.is_nil(cmd, t)
      assert.is_string(why, t)
    end
  end)

  it("parses durations", function()
    assert.are.equal(45, rules.parse_duration("45"))
    assert.are.equal(45, rules.parse_duration("45s"))
    assert.are.equal(600, rules.parse_duration("10m"))
    assert.are.equal(7200, rules.parse_duration("2h"))
    assert.are.equal(86400 + 3600, rules.parse_duration("1d1h"))
    assert.are.equal(90, rules.parse_duration("1.5m"))
    assert.is_nil(rules.parse_duration("10 minutes"))
    assert.is_nil(rules.parse_duration("m"))
    assert.is_nil(rules.parse_duration(""))
    assert.is_nil(rules.parse_duration(-1))
  end)
end)

describe("rules authorization", function()
  it("lets listed staff run commands, with the filter each command means", function()
    local l = fake_ledger(ENTRIES)
    local r = rules.new { ledger = l, client = {}, admins = { "staff1" } }
    local res = r:handle(callback("/recall last 3"))
    assert.is_false(res.refused)
    assert.are.same({ conversation = CID, robot = "dingsimrobot", last = 3 }, l.recalls[1])
    assert.are.equal("Recalled 2 messages.", res.reply)
    assert.are.same({ "k1", "k2" }, res.report.recalled)
    r:handle(callback("/recall since 10m"))
    assert.are.same({ conversation = CID, robot = "dingsimrobot", since = 600 }, l.recalls[2])
    r:handle(callback("/recall tag release"))
    assert.are.same({ conversation = CID, robot = "dingsimrobot", tag = "release" }, l.recalls[3])
  end)

  it("refuses anyone else, recalls nothing, and fires 'refused'", function()
    local l = fake_ledger(ENTRIES)
    local r = rules.new { ledger = l, client = {}, admins = { "staff1" } }
    local seen = {}
    r:on("refused", function(ev) seen[#seen + 1] = ev end)
    for _, text in ipairs { "/recall last 3", "/recall all", "/recall all confirm ABCD", "/recall tag x",
      "/recall help", "/recall bogus" } do
      local res = r:handle(callback(text, { senderStaffId = "intruder" }))
      assert.is_true(res.refused, text)
      assert.is_nil(res.report)
      assert.matches("not allowed", res.reply)
    end
    assert.are.equal(0, #l.recalls)
    assert.are.equal(0, #l.lists)
    assert.are.equal(6, #seen)
    assert.are.equal("intruder", seen[1].sender)
    assert.are.equal(CID, seen[1].conversation)
  end)

  it("lets group admins in (isAdmin), unless allow_group_admins = false", function()
    local l = fake_ledger(ENTRIES)
    local r = rules.new { ledger = l, client = {}, admins = {} }
    assert.is_false(r:handle(callback("/recall last", { senderStaffId = "boss", isAdmin = true })).refused)
    -- only a real boolean true counts
    assert.is_true(r:handle(callback("/recall last", { senderStaffId = "boss", isAdmin = "true" })).refused)
    local strict = rules.new { ledger = l, client = {}, admins = { "staff1" }, allow_group_admins = false }
    assert.is_true(strict:handle(callback("/recall last", { senderStaffId = "boss", isAdmin = true })).refused)
    assert.is_false(strict:handle(callback("/recall last")).refused)
    assert.are.equal(2, #l.recalls)
  end)

  it("accepts admins as a set too", function()
    local r = rules.new { ledger = fake_ledger(ENTRIES), client = {}, admins = { staff1 = true } }
    assert.is_false(r:handle(callback("/recall last")).refused)
  end)

  it("returns nil for messages that are not commands (the bot's other business)", function()
    local r = rules.new { ledger = fake_ledger(ENTRIES), client = {}, admins = { "staff1" } }
    assert.is_nil(r:handle(callback("good morning")))
    assert.is_nil(r:handle({ msgtype = "picture", content = {} }))
    assert.is_nil(r:handle({ msgtype = "text" }))
  end)

  it("answers help and usage errors to allowed senders without recalling", function()
    local l = fake_ledger(ENTRIES)
    local r = rules.new { ledger = l, client = {}, admins = { "staff1" } }
    local res = r:handle(callback("/recall"))
    assert.matches("/recall last", res.reply, 1, true)
    res = r:handle(callback("/recall last zero"))
    assert.matches("usage", res.reply)
    assert.are.equal(0, #l.recalls)
  end)

  it("works in group chats only", function()
    local l = fake_ledger(ENTRIES)
    local r = rules.new { ledger = l, client = {}, admins = { "staff1" } }
    local res = r:handle(callback("/recall last", { conversationType = "1" }))
    assert.matches("group", res.reply)
    assert.is_nil(res.report)
    assert.are.equal(0, #l.recalls)
  end)

  it("match_robot = false recalls what any robot sent to the group", function()
    local l = fake_ledger(ENTRIES)
    local r = rules.new { ledger = l, client = {}, admins = { "staff1" }, match_robot = false }
    r:handle(callback("/recall last 2"))
    assert.are.same({ conversation = CID, last = 2 }, l.recalls[1])
  end)

  it("says so when nothing matches", function()
    local l = fake_ledger({})
    local r = rules.new { ledger = l, client = {}, admins = { "staff1" } }
    local res = r:handle(callback("/recall last 2"))
    assert.are.equal("Nothing to recall.", res.reply)
    res = r:handle(callback("/recall all"))
    assert.are.equal("Nothing to recall.", res.reply)
    assert.is_false(res.needs_confirmation)
  end)
end)

describe("rules /recall all", function()
  local t
  local function new(l)
    t = 1000
    return rules.new { ledger = l, client = {}, admins = { "staff1", "staff2" }, clock = function() return t end }
  end

  it("asks first, and runs only on the same sender's confirm with the code", function()
    local l = fake_ledger(ENTRIES)
    local r = new(l)
    local confirms = {}
    r:on("confirm", function(ev) confirms[#confirms + 1] = ev end)
    local ask = r:handle(callback("/recall all"))
    assert.is_true(ask.needs_confirmation)
    assert.is_nil(ask.report)
    assert.matches("^[A-Z2-9]+$", ask.code)
    assert.matches("/recall all confirm " .. ask.code, ask.reply, 1, true)
    assert.matches("2 recorded messages", ask.reply, 1, true)
    assert.are.equal(0, #l.recalls)
    assert.are.equal(1, #confirms)
    -- the ask counted only what is still sent
    assert.are.equal("sent", l.lists[1].state)

    -- another allowed sender cannot confirm it
    local other = r:handle(callback("/recall all confirm " .. ask.code, { senderStaffId = "staff2" }))
    assert.is_nil(other.report)
    assert.are.equal(0, #l.recalls)
    -- a wrong code does nothing
    local wrong = r:handle(callback("/recall all confirm ZZZZ"))
    assert.is_nil(wrong.report)
    assert.matches("does not match", wrong.reply)
    assert.are.equal(0, #l.recalls)
    -- the right one runs it, over the whole group
    local done = r:handle(callback("/recall all confirm " .. ask.code:lower()))
    assert.are.same({ "k1", "k2" }, done.report.recalled)
    assert.are.same({ conversation = CID, robot = "dingsimrobot" }, l.recalls[1])
    -- and only once
    local again = r:handle(callback("/recall all confirm " .. ask.code))
    assert.is_nil(again.report)
    assert.are.equal(1, #l.recalls)
  end)

  it("expires the confirmation after 2 minutes", function()
    local l = fake_ledger(ENTRIES)
    local r = new(l)
    local ask = r:handle(callback("/recall all"))
    t = t + 121
    local late = r:handle(callback("/recall all confirm " .. ask.code))
    assert.is_nil(late.report)
    assert.matches("expired", late.reply)
    assert.are.equal(0, #l.recalls)
    -- within the window it works
    ask = r:handle(callback("/recall all"))
    t = t + 119
    assert.is_table(r:handle(callback("/recall all confirm " .. ask.code)).report)
  end)

  it("keeps confirmations of different groups apart", function()
    local l = fake_ledger(ENTRIES)
    local r = new(l)
    local ask = r:handle(callback("/recall all"))
    local res = r:handle(callback("/recall all confirm " .. ask.code, { conversationId = "cidOther" }))
    assert.is_nil(res.report)
    assert.are.equal(0, #l.recalls)
  end)
end)

describe("rules hooks", function()
  it("fires command, recalled and failed; module-level hooks see every rule set", function()
    local l = fake_ledger(ENTRIES)
    function l.recall()
      return { recalled = { "k1" }, failed = { k2 = "SYSTEM_ERROR" }, errors = {}, expired = {}, ok = false,
        total = 2 }
    end
    local r = rules.new { ledger = l, client = {}, admins = { "staff1" } }
    local events = {}
    local g = rules.on("recalled", function(ev) events[#events + 1] = "global:" .. ev.event end)
    r:on("command", function(ev) events[#events + 1] = ev.event .. ":" .. ev.command end)
    r:on("recalled", function(ev) events[#events + 1] = ev.event .. ":" .. #ev.report.recalled end)
    r:on("failed", function(ev) events[#events + 1] = ev.event .. ":" .. ev.report.failed.k2 end)
    local res = r:handle(callback("/recall last 2"))
    assert.is_true(rules.off("recalled", g))
    assert.are.same({ "command:last", "global:recalled", "recalled:1", "failed:SYSTEM_ERROR" }, events)
    assert.are.equal("Recalled 1 of 2 messages; 1 could not be recalled (SYSTEM_ERROR).", res.reply)
  end)

  it("catches a failing hook and reports it, the command still runs", function()
    local l = fake_ledger(ENTRIES)
    local r = rules.new { ledger = l, client = {}, admins = { "staff1" } }
    r:on("command", function() error("audit log is down") end)
    local res = r:handle(callback("/recall last"))
    assert.are.equal(1, #l.recalls)
    assert.are.equal(1, #res.hook_errors)
    assert.matches("audit log is down", res.hook_errors[1])
  end)

  it("refuses unknown events and non-functions", function()
    assert.has_error(function() rules.on("nope", function() end) end)
    assert.has_error(function() rules.new({}):on("recalled", "x") end)
  end)

  it("reports a ledger that cannot recall", function()
    local l = fake_ledger(ENTRIES)
    function l.recall() return nil, { code = "ledger.io", message = "disk full" } end
    local r = rules.new { ledger = l, client = {}, admins = { "staff1" } }
    local failed
    r:on("failed", function(ev) failed = ev end)
    local res = r:handle(callback("/recall last"))
    assert.are.equal("ledger.io", res.err.code)
    assert.matches("disk full", res.reply)
    assert.are.equal("ledger.io", failed.err.code)
  end)
end)

-- One simulator for the file (the rules and the bot), started when a test
-- that needs it first runs.
local s
setup(function() s = sim.start {} end)
teardown(function() if s then s:stop() end end)

describe("rules against the simulator", function()
  local recall, ledger
  local dir
  setup(function()
    recall = require "dingtalk.recall"
    ledger = require "dingtalk.recall.ledger"
    dir = (sim.sh("mktemp -d ${TMPDIR:-/tmp}/dtr-rules-spec.XXXXXX"):gsub("%s+$", ""))
  end)
  teardown(function()
    if dir and dir:match("dtr%-rules%-spec") then sim.sh("rm -rf " .. sim.sh_quote(dir)) end
  end)

  local n = 0
  local function setup_pair(clock)
    n = n + 1
    local l = assert(ledger.open(dir .. "/ledger" .. n, { clock = clock }))
    local c = assert(recall.client { robot_code = s.robot, endpoint = s.url, access_token = s.token, qps = 0 })
    l:attach(c)
    return l, c
  end

  local function send(c, text, opts)
    return assert(c:send(CID, "sampleText", { content = text }, opts))
  end

  local function state(k) return s:key(k).state end

  it("/recall last, since, tag and all recall the right messages", function()
    local l, c = setup_pair()
    local r = rules.new { ledger = l, client = c, admins = { "staff1" } }
    local a = send(c, "a", { tags = { "release" } })
    local b = send(c, "b")
    local d = send(c, "d", { tags = { "release" } })
    local e = send(c, "e")

    local res = r:handle(callback("/recall last 1"))
    assert.are.equal("Recalled 1 message.", res.reply)
    assert.are.equal("recalled", state(e))
    assert.are.equal("sent", state(d))

    res = r:handle(callback("/recall tag release"))
    assert.are.equal("Recalled 2 messages.", res.reply)
    assert.are.equal("recalled", state(a))
    assert.are.equal("recalled", state(d))
    assert.are.equal("sent", state(b))

    -- an unauthorised sender changes nothing
    res = r:handle(callback("/recall all", { senderStaffId = "mallory" }))
    assert.is_true(res.refused)
    res = r:handle(callback("/recall since 1h", { senderStaffId = "mallory" }))
    assert.is_true(res.refused)
    assert.are.equal("sent", state(b))

    local ask = r:handle(callback("/recall all"))
    assert.matches("the 1 recorded message ", ask.reply, 1, true)
    res = r:handle(callback("/recall all confirm " .. ask.code))
    assert.are.equal("Recalled 1 message.", res.reply)
    assert.are.equal("recalled", state(b))
    assert.are.equal("recalled", l:get(b).state)

    res = r:handle(callback("/recall since 1h"))
    assert.are.equal("Nothing to recall.", res.reply)
    l:close()
    c:close()
  end)

  it("reports keys the server could not recall", function()
    local l, c = setup_pair()
    local r = rules.new { ledger = l, client = c, admins = { "staff1" } }
    send(c, "x")
    s:script { recall = { "system_error", "system_error", "system_error", "system_error" } }
    local c2 = assert(recall.client { robot_code = s.robot, endpoint = s.url, access_token = s.token, qps = 0,
      max_retries = 0 })
    r.client = c2
    local res = r:handle(callback("/recall last"))
    assert.matches("^Recalled 0 of 1 message; 1 could not be recalled %(system.error%)%.$", res.reply)
    s:reset()
    l:close()
    c:close()
    c2:close()
  end)

  it("sweep recalls messages once their ttl elapses (fake clock)", function()
    local t = os.time()
    local l, c = setup_pair(function() return t end)
    local short = send(c, "short", { ttl = 60 })
    local long = send(c, "long", { ttl = 3600 })
    local keep = send(c, "forever")
    local swept = {}
    local h = rules.on("swept", function(ev) swept[#swept + 1] = ev.report end)

    local rep = assert(rules.sweep(l, c))
    assert.are.equal(0, rep.total)
    assert.are.equal("sent", state(short))

    t = t + 61
    rep = assert(rules.sweep(l, c))
    assert.are.same({ short }, rep.recalled)
    assert.are.equal("recalled", state(short))
    assert.are.equal("sent", state(long))

    t = t + 3600
    local r = rules.new { ledger = l, client = c }
    rep = assert(r:sweep())
    assert.are.same({ long }, rep.recalled)
    assert.are.equal("recalled", state(long))
    assert.are.equal("sent", state(keep))
    rules.off("swept", h)
    assert.are.equal(3, #swept)

    -- nothing left due
    t = t + 86000
    rep = assert(rules.sweep(l, c))
    assert.are.equal(0, rep.total)
    assert.are.equal("sent", state(keep))
    l:close()
    c:close()
  end)
end)

describe("examples/bot.lua against the simulator", function()
  local LUA = os.getenv("DINGTALK_RECALL_TEST_LUA") or "lua"
  local q = sim.sh_quote
  local dir
  local bots = {}

  local function trim(x) return (x:gsub("^%s+", ""):gsub("%s+$", "")) end

  setup(function()
    dir = trim(sim.sh("mktemp -d ${TMPDIR:-/tmp}/dtr-bot-spec.XXXXXX"))
  end)
  teardown(function()
    for _, b in ipairs(bots) do
      os.execute("kill " .. b.pid .. " 2>/dev/null")
      b.pipe:close()
    end
    if dir and dir:match("dtr%-bot%-spec") then sim.sh("rm -rf " .. q(dir)) end
  end)

  -- Starts the bot as a child; returns {pid, port, pipe, ledger, log}.
  local function start_bot(name, env)
    local vars = {
      DINGTALK_ENDPOINT = s.url, DINGTALK_APP_KEY = s.app_key, DINGTALK_APP_SECRET = s.app_secret,
      DINGTALK_ROBOT_CODE = s.robot, DINGTALK_RECALL_LEDGER = dir .. "/" .. name .. ".ledger",
      XDG_CONFIG_HOME = dir .. "/xdg", BOT_ADMINS = "staff1,staff9",
    }
    for k, v in pairs(env or {}) do vars[k] = v end
    local parts = { "env -u DINGTALK_ACCESS_TOKEN -u DINGTALK_CA_FILE -u DINGTALK_RECALL_CONFIG" }
    for k, v in pairs(vars) do parts[#parts + 1] = k .. "=" .. q(v) end
    local log = dir .. "/" .. name .. ".log"
    -- popen's shell prints its pid, then becomes the bot
    local cmd = "echo $$; exec " .. table.concat(parts, " ") .. " " .. LUA .. " examples/bot.lua --port 0 2>" ..
      q(log)
    local pipe = assert(io.popen(cmd, "r"))
    local pid = assert(pipe:read("*l"))
    local line = pipe:read("*l") or ""
    local b = { pid = pid, pipe = pipe, ledger = vars.DINGTALK_RECALL_LEDGER, log = log }
    bots[#bots + 1] = b
    b.port = assert(line:match("^bot listening on http://127%.0%.0%.1:(%d+)/$"),
      "the bot did not start: " .. line .. "\n" .. (sim.sh("cat " .. q(log))))
    b.url = "http://127.0.0.1:" .. b.port .. "/"
    return b
  end

  -- examples/post-callback.lua -> exit code, output
  local function post(b, text, extra)
    local out, rc = sim.sh(LUA .. " examples/post-callback.lua --url " .. q(b.url) .. " --secret " ..
      q(s.app_secret) .. " --conversation cidBotSpec " .. (extra or "") .. " " .. q(text))
    return rc, trim(out)
  end

  local function entries(b)
    local l = assert(require("dingtalk.recall.ledger").open(b.ledger))
    local list = assert(l:list { conversation = "cidBotSpec" })
    l:close()
    return list
  end

  it("verifies callbacks, runs the rules, replies, and recalls", function()
    local b = start_bot("main")
    for _, t in ipairs { "/say one", "/say two", "/say three" } do
      local rc, out = post(b, t, "--staff staff1")
      assert.are.equal(0, rc, out)
    end
    local list = entries(b)
    assert.are.equal(3, #list)
    for _, e in ipairs(list) do assert.are.equal("sent", s:key(e.key).state) end

    -- someone else: refused, nothing recalled
    local rc, out = post(b, "/recall last 2", "--staff mallory")
    assert.are.equal(0, rc)
    assert.matches("not allowed", out)
    for _, e in ipairs(list) do assert.are.equal("sent", s:key(e.key).state) end

    rc, out = post(b, "/recall last 2", "--staff staff1")
    assert.are.equal(0, rc)
    assert.are.equal("Recalled 2 messages.", out)
    assert.are.equal("recalled", s:key(list[1].key).state) -- newest first
    assert.are.equal("recalled", s:key(list[2].key).state)
    assert.are.equal("sent", s:key(list[3].key).state)

    -- a group admin may, and /recall all asks first
    rc, out = post(b, "/recall all", "--staff boss --admin")
    assert.are.equal(0, rc)
    local code = out:match("/recall all confirm (%w+)")
    assert.is_string(code, out)
    assert.are.equal("sent", s:key(list[3].key).state)
    rc, out = post(b, "/recall all confirm " .. code, "--staff boss --admin")
    assert.are.equal(0, rc)
    assert.are.equal("Recalled 1 message.", out)
    assert.are.equal("recalled", s:key(list[3].key).state)

    -- the audit log has the story
    local log = sim.sh("cat " .. q(b.log))
    assert.matches('"event":"refused"', log, 1, true)
    assert.matches('"event":"recalled"', log, 1, true)
    assert.is_nil(log:find(s.app_secret, 1, true))
  end)

  it("refuses bad signatures, stale timestamps and replays with 401", function()
    local b = start_bot("strict")
    local rc, out = post(b, "/say hi", "--staff staff1 --timestamp 1700000000000")
    assert.are.equal(1, rc)
    assert.matches("HTTP 401", out)
    assert.matches("callback.expired", out)
    local body = '{"msgtype":"text","text":{"content":"/say replayed"},"conversationId":"cidBotSpec",' ..
      '"conversationType":"2","senderStaffId":"staff1","isAdmin":false,"robotCode":"' .. s.robot .. '"}'
    local h = require("dingtalk.recall.callback").headers(s.app_secret)
    local function curl(ts, sign)
      return trim((sim.sh("curl -s -o /dev/null -w '%{http_code}' -H " .. q("timestamp: " .. ts) .. " -H " ..
        q("sign: " .. sign) .. " -H 'content-type: application/json' --data-binary " .. q(body) .. " " ..
        q(b.url))))
    end
    assert.are.equal("401", curl(h.timestamp, "AAAA" .. h.sign:sub(5)))
    assert.are.equal(0, #entries(b))
    assert.are.equal("200", curl(h.timestamp, h.sign))
    assert.are.equal(1, #entries(b))
    assert.are.equal("401", curl(h.timestamp, h.sign)) -- the same request again
    assert.are.equal(1, #entries(b))
    -- too large: refused before it is read
    local big = string.rep("x", 70000)
    local code = trim((sim.sh("curl -s -o /dev/null -w '%{http_code}' -H " .. q("timestamp: " .. h.timestamp) ..
      " -H " .. q("sign: " .. h.sign) .. " --data-binary " .. q(big) .. " " .. q(b.url))))
    assert.are.equal("413", code)
  end)

  it("sweeps messages sent with a ttl", function()
    local b = start_bot("ttl", { BOT_TTL = "1s", BOT_SWEEP_EVERY = "1" })
    local rc = post(b, "/say short-lived", "--staff staff1")
    assert.are.equal(0, rc)
    local key = entries(b)[1].key
    local state
    for _ = 1, 40 do
      sim.sh("sleep 0.25")
      state = s:key(key).state
      if state == "recalled" then break end
    end
    assert.are.equal("recalled", state)
  end)
end)
