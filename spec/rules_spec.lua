-- dingtalk.recall.rules: chat-command parsing and authorization, the
-- /recall all confirmation and the hooks, with a fake ledger that records
-- what it is asked.  Against a real ledger and the simulator:
-- rules_sim_spec.lua; the example bot: example_bot_spec.lua.
local rules = require "dingtalk.recall.rules"
local chat = require "spec.helpers.chat"

local CID = chat.CID
local callback = chat.message

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

  it("audit gives one plain record per event, with the report's counts, and none for an empty sweep", function()
    local err = setmetatable({ code = "ledger.io" }, { __tostring = function() return "ledger.io: disk full" end })
    local report = { recalled = { "k1" }, failed = { k2 = "SYSTEM_ERROR" }, errors = { k3 = {} }, total = 3 }
    assert.are.same({ event = "failed", command = "last", sender = "staff1", conversation = CID,
      err = "ledger.io: disk full", recalled = 1, not_recalled = 2 },
      rules.audit { event = "failed", command = "last", sender = "staff1", conversation = CID, err = err,
        report = report, args = { action = "last" } })
    assert.are.same({ event = "refused", sender = "mallory", reason = "not an admin" },
      rules.audit { event = "refused", sender = "mallory", reason = "not an admin" })
    assert.is_nil(rules.audit { event = "swept", report = { recalled = {}, total = 0 } })
    assert.are.equal(1, rules.audit({ event = "swept", report = { recalled = { "k" }, total = 1 } }).recalled)
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
