-- dingtalk.recall.rules end to end: the commands and the TTL sweep with a
-- real ledger and client against the simulator (the parsing and
-- authorization, with a fake ledger: rules_spec.lua).
local rules = require "dingtalk.recall.rules"
local sim = require "spec.helpers.sim"
local chat = require "spec.helpers.chat"

local CID = chat.CID
local callback = chat.message

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
