-- The ledger of sent messages: one set of cases run against both stores
-- (the local journal and Redis); the cases of each store alone are in
-- ledger_store_spec.lua.
-- Recalls go to the simulator; expiry uses a fake clock.
local ledger = require "dingtalk.recall.ledger"
local recall = require "dingtalk.recall"
local core = require "dingtalk.recall.core"
local sim = require "spec.helpers.sim"
local redis_helper = require "spec.helpers.redis"
local nginx_helper = require "spec.helpers.nginx"
local cjson = require "cjson"

local sh, sh_quote = sim.sh, sim.sh_quote
local LUA = os.getenv("DINGTALK_RECALL_TEST_LUA") or "lua"
local CID_A, CID_B = "cidLedgerA", "cidLedgerB"

local lh = require "spec.helpers.ledger"
local shell = require "spec.helpers.shell"
local trim, read_file = shell.trim, shell.read_file
local count, keys_of, set_of, fake_client = lh.count, lh.keys_of, lh.set_of, lh.fake_client

local function urlencode(v)
  return (tostring(v):gsub("[^%w%-_.~]", function(c) return ("%%%02X"):format(c:byte()) end))
end

-- The location nginx serves for the OpenResty case: records a key through
-- the ledger and answers what it saw.
local NGINX_SERVER = [==[
location /record {
  content_by_lua_block {
    local ledger = require "dingtalk.recall.ledger"
    local a = ngx.req.get_uri_args()
    local l, err = ledger.open(a.loc, { prefix = a.prefix ~= "" and a.prefix or nil })
    if not l then return ngx.say("open: ", tostring(err)) end
    local ok, rerr = l:record { key = a.key, conversation = "cidNginx", robot = "r",
      tags = "nginx" }
    local e = l:get(a.key)
    local cosocket = l.backend.conn and l.backend.conn.ngx and "cosocket" or "-"
    l:close()
    ngx.say(ok and "ok" or tostring(rerr), " ", e and e.state or "none", " ", cosocket, " ", ngx.worker.pid())
  }
}
]==]

local has_socket = pcall(require, "socket")
local has_redis = redis_helper.available()

describe("ledger", function()
  local s, rs, dir
  local n = 0

  setup(function()
    s = sim.start { latency = 0 }
    dir = trim(sh("mktemp -d ${TMPDIR:-/tmp}/dingtalk-ledger-spec.XXXXXX"))
    if has_redis and has_socket then rs = redis_helper.start() end
  end)
  teardown(function()
    if s then s:stop() end
    if rs then rs:stop() end
    if dir then sh("rm -rf " .. sh_quote(dir)) end
  end)
  before_each(function()
    s:reset()
    s:config { qps = 0, latency = 0, faults = "" }
  end)

  local function client(extra)
    local cfg = { robot_code = s.robot, endpoint = s.url, access_token = s.token, concurrency = 4, qps = 0,
      backoff_base = 0.01, backoff_max = 0.05, max_retries = 0 }
    for k, v in pairs(extra or {}) do cfg[k] = v end
    return assert(recall.client(cfg))
  end

  local BACKENDS = {
    {
      name = "file",
      ready = function() return true end,
      -- A fresh ledger per case; `same` reopens the previous one.
      location = function(same)
        if not same then n = n + 1 end
        return dir .. "/l" .. n .. "/ledger", {}
      end,
    },
    {
      name = "redis",
      ready = function()
        if not has_socket then return false, "luasocket is not installed for " .. _VERSION end
        if not has_redis then return false, "redis-server is not installed" end
        return true
      end,
      location = function(same)
        if not same then n = n + 1 end
        return rs.url, { prefix = "spec" .. n .. ":" }
      end,
    },
  }

  for _, B in ipairs(BACKENDS) do
    describe("(" .. B.name .. " store)", function()
      local now
      local function clock() return now end

      local function open(extra, same)
        local loc, opts = B.location(same)
        opts.clock = clock
        for k, v in pairs(extra or {}) do opts[k] = v end
        return assert(ledger.open(loc, opts))
      end

      before_each(function()
        now = os.time()
      end)

      local function guard()
        local ok, why = B.ready()
        if not ok then
          pending(why)
          return false
        end
        return true
      end

      it("records an entry and reads it back", function()
        if not guard() then return end
        local l = open()
        assert.is_true(l:record { key = "k1", conversation = CID_A, robot = "rb1",
          tags = " deploy, nightly ,deploy", ttl = 600, msg_key = "sampleText" })
        local e = l:get("k1")
        assert.are.same({ "deploy", "nightly" }, e.tags)
        assert.are.equal("k1", e.key)
        assert.are.equal(CID_A, e.conversation)
        assert.are.equal("rb1", e.robot)
        assert.are.equal(now, e.sent_at)
        assert.are.equal(600, e.ttl)
        assert.are.equal("sampleText", e.msg_key)
        assert.are.equal("sent", e.state)
        assert.are.equal(now, e.updated_at)
        assert.is_nil(e.reason)
        assert.is_nil(e.code)
        assert.is_nil(l:get("unknown"))
        assert.is_true(l:record { key = "k2", conversation = CID_A, robot = "rb1", sent_at = now - 5,
          tags = { "x" } })
        assert.are.equal(now - 5, l:get("k2").sent_at)
        assert.is_nil(l:get("k2").ttl)
        l:close()
      end)

      it("lists by conversation, robot, tag, time window, last N, state and due, newest first", function()
        if not guard() then return end
        local l = open()
        assert(l:record_many {
          { key = "a1", conversation = CID_A, robot = "r1", sent_at = now - 5000,
            tags = "deploy" },
          { key = "a2", conversation = CID_A, robot = "r2", sent_at = now - 400,
            tags = "deploy,alert", ttl = 300 },
          { key = "b1", conversation = CID_B, robot = "r1", sent_at = now - 300,
            ttl = 3600 },
          { key = "b2", conversation = CID_B, robot = "r1", sent_at = now - 100,
            tags = { "alert" }, ttl = 50 },
          { key = "a3", conversation = CID_A, robot = "r1", sent_at = now - 10 },
        })
        assert.are.same({ "a3", "b2", "b1", "a2", "a1" }, keys_of(l:list()))
        assert.are.same({ "a3", "a2", "a1" }, keys_of(l:list { conversation = CID_A }))
        assert.are.same({ "a3", "b2", "b1", "a1" }, keys_of(l:list { robot = "r1" }))
        assert.are.same({ "a2", "a1" }, keys_of(l:list { tag = "deploy" }))
        assert.are.same({ "b2", "a2" }, keys_of(l:list { tag = "alert" }))
        assert.are.same({ "a3", "b2", "b1" }, keys_of(l:list { since = 300 }))
        assert.are.same({ "a3", "b2" }, keys_of(l:list { last = 2 }))
        assert.are.same({ "a2" }, keys_of(l:list { conversation = CID_A, tag = "deploy", since = 600 }))
        assert.are.same({}, l:list { conversation = CID_B, tag = "deploy" })
        assert.are.same({ "b2" }, keys_of(l:list { conversation = CID_B, robot = "r1", last = 1 }))
        assert.are.same({ "a3", "b2" }, keys_of(l:list { robot = "r1", since = 350, last = 2 }))
        assert.are.same({}, l:list { robot = "r1", tag = "nope" })
        assert.are.same({ "b2", "a2" }, keys_of(l:list { due = true }))
        assert.are.same({}, l:list { last = 0 })
        -- states change through a recall
        local fc = fake_client { a2 = "SYSTEM_ERROR", b2 = core.error("system.error", "boom") }
        local rep = assert(l:recall(fc, { due = true }))
        assert.are.equal(2, rep.total)
        assert.are.same({ "a2" }, keys_of(l:list { state = "failed" }))
        assert.are.same({ "b2" }, keys_of(l:list { state = "error" }))
        assert.are.same({ "a3", "b1", "a1" }, keys_of(l:list { state = "sent" }))
        assert.are.same({}, l:list { due = true })
        now = now + 3600
        assert.are.same({ "b1" }, keys_of(l:list { due = true }))
        l:close()
      end)

      it("keeps the state when a key is recorded again", function()
        if not guard() then return end
        local l = open()
        assert(l:record { key = "k", conversation = CID_A, robot = "r1", tags = "old" })
        assert(l:recall(fake_client(), {}))
        assert(l:record { key = "k", conversation = CID_B, robot = "r2", tags = "new" })
        local e = l:get("k")
        assert.are.equal("recalled", e.state)
        assert.are.equal(CID_B, e.conversation)
        assert.are.same({ "new" }, e.tags)
        assert.are.same({}, l:list { tag = "old" })
        assert.are.same({}, l:list { conversation = CID_A })
        assert.are.same({ "k" }, keys_of(l:list { tag = "new", state = "recalled" }))
        l:close()
      end)

      it("is shared: a second ledger on the same location sees the first one's writes", function()
        if not guard() then return end
        local l1 = open()
        local l2 = open(nil, true)
        assert(l1:record { key = "k1", conversation = CID_A, robot = "r" })
        assert.are.equal("sent", l2:get("k1").state)
        assert(l2:record { key = "k2", conversation = CID_A, robot = "r", sent_at = now + 1 })
        assert.are.same({ "k2", "k1" }, keys_of(l1:list()))
        assert(l2:recall(fake_client(), { last = 1 }))
        assert.are.equal("recalled", l1:get("k2").state)
        assert.are.equal("sent", l1:get("k1").state)
        l1:close()
        l2:close()
      end)

      it("attaches to a client: every send is recorded, the previous hook still runs", function()
        if not guard() then return end
        local l = open()
        local seen = {}
        local c = client { on_sent = function(info) seen[#seen + 1] = info.key end }
        assert.are.equal(c, l:attach(c))
        local k1 = assert(c:send(CID_A, "sampleText", { content = "one" }, { tags = { "deploy" }, ttl = 60 }))
        local k2 = assert(c:send(CID_B, "sampleText", { content = "two" }, { tags = "deploy,x" }))
        local k3 = assert(c:send(CID_A, "sampleText", { content = "three" }))
        assert.are.same({ k1, k2, k3 }, seen)
        local e1 = l:get(k1)
        assert.are.equal(CID_A, e1.conversation)
        assert.are.equal(s.robot, e1.robot)
        assert.are.same({ "deploy" }, e1.tags)
        assert.are.equal(60, e1.ttl)
        assert.are.equal("sampleText", e1.msg_key)
        assert.are.same({ "deploy", "x" }, l:get(k2).tags)
        assert.are.same({}, l:get(k3).tags)
        assert.are.equal(3, #l:list())
        assert.are.equal(0, l.record_errors)
        c:close()
        l:close()
      end)

      it("select shows what recall then recalls: groups oldest first, expired apart, nothing sent", function()
        if not guard() then return end
        local l = open()
        local c = l:attach(client())
        local d1 = assert(c:send(CID_A, "sampleText", { content = "1" }, { tags = "sel" }))
        local d2 = assert(c:send(CID_B, "sampleText", { content = "2" }, { tags = "sel" }))
        assert(l:record { key = "old-one", conversation = CID_A, robot = s.robot,
          sent_at = os.time() - ledger.RECALL_WINDOW - 60, tags = { "sel" } })
        local calls = s:stats().recall_calls
        local sel = assert(l:select { tag = "sel" })
        assert.are.equal(calls, s:stats().recall_calls) -- select sends nothing
        assert.are.equal(3, sel.total)
        assert.are.same({ "old-one" }, sel.expired)
        local shown = {}
        for _, g in ipairs(sel.groups) do
          assert.are.equal(s.robot, g.robot)
          for _, k in ipairs(g.keys) do shown[#shown + 1] = k end
        end
        assert.are.same(set_of { d1, d2 }, set_of(shown))
        assert.are.equal("sent", l:get(d1).state)
        local rep = assert(l:recall(c, { tag = "sel" }))
        assert.are.same(set_of(shown), set_of(rep.recalled))
        assert.are.same(sel.expired, rep.expired)
        c:close()
        l:close()
      end)

      it("recalls what a filter selects through the simulator and updates states", function()
        if not guard() then return end
        local l = open()
        local c = l:attach(client())
        local d1 = assert(c:send(CID_A, "sampleText", { content = "1" }, { tags = "deploy" }))
        local d2 = assert(c:send(CID_A, "sampleText", { content = "2" }, { tags = "deploy" }))
        local d3 = assert(c:send(CID_B, "sampleText", { content = "3" }, { tags = "deploy" }))
        local other = assert(c:send(CID_A, "sampleText", { content = "4" }))
        local rep = assert(l:recall(c, { tag = "deploy" }))
        assert.are.same(set_of { d1, d2, d3 }, set_of(rep.recalled))
        assert.are.equal(3, rep.total)
        assert.is_true(rep.ok)
        assert.are.same({}, rep.expired)
        assert.are.equal(2, rep.requests) -- one per conversation
        for _, k in ipairs { d1, d2, d3 } do
          assert.are.equal("recalled", l:get(k).state)
          assert.are.equal("recalled", s:key(k).state)
        end
        assert.are.equal("sent", l:get(other).state)
        assert.are.equal("sent", s:key(other).state)
        assert.are.equal(3, s:stats().recalled)
        -- nothing left to recall for that filter: no request at all
        local calls = s:stats().recall_calls
        local again = assert(l:recall(c, { tag = "deploy" }))
        assert.are.equal(0, again.total)
        assert.is_true(again.ok)
        assert.are.equal(calls, s:stats().recall_calls)
        -- state = recalled selects nothing to send either
        assert.are.equal(0, assert(l:recall(c, { state = "recalled" })).total)
        c:close()
        l:close()
      end)

      it("groups keys by conversation and robot", function()
        if not guard() then return end
        local l = open()
        assert(l:record_many {
          { key = "a", conversation = CID_A, robot = "r1", sent_at = now - 3 },
          { key = "b", conversation = CID_A, robot = "r2", sent_at = now - 2 },
          { key = "c", conversation = CID_B, robot = "r1", sent_at = now - 1 },
          { key = "d", conversation = CID_A, robot = "r1", sent_at = now },
        })
        local fc = fake_client()
        local rep = assert(l:recall(fc, {}))
        local groups = {}
        for _, call in ipairs(fc.calls) do groups[call.cid .. "/" .. call.robot] = call.keys end
        assert.are.same({ [CID_A .. "/r1"] = { "a", "d" }, [CID_A .. "/r2"] = { "b" }, [CID_B .. "/r1"] = { "c" } },
          groups)
        assert.are.equal(3, rep.requests)
        assert.are.same(set_of { "a", "b", "c", "d" }, set_of(rep.recalled))
        l:close()
      end)

      it("marks failed keys with the server's reason and errors with their code; retries them", function()
        if not guard() then return end
        local l = open()
        local c = l:attach(client())
        local k1 = assert(c:send(CID_A, "sampleText", { content = "1" }))
        local k2 = assert(c:send(CID_A, "sampleText", { content = "2" }))
        assert(l:record { key = "kbad", conversation = CID_A, robot = "dingnosuchrobot" })
        s:config { faults = "failed_key=1" }
        local rep = assert(l:recall(c, {}))
        assert.is_false(rep.ok)
        assert.are.same({ [k1] = "SYSTEM_ERROR", [k2] = "SYSTEM_ERROR" }, rep.failed)
        assert.are.equal("invalidParameter.robotCode.notExsit", rep.errors.kbad.code)
        assert.are.equal("failed", l:get(k1).state)
        assert.are.equal("SYSTEM_ERROR", l:get(k1).reason)
        local eb = l:get("kbad")
        assert.are.equal("error", eb.state)
        assert.are.equal("invalidParameter.robotCode.notExsit", eb.code)
        assert.is_string(eb.reason)
        -- the default selection (sent) does not pick them again
        assert.are.equal(0, assert(l:recall(c, {})).total)
        s:config { faults = "" }
        rep = assert(l:recall(c, { state = "failed" }))
        assert.are.same(set_of { k1, k2 }, set_of(rep.recalled))
        assert.are.equal("recalled", l:get(k1).state)
        assert.is_nil(l:get(k1).reason)
        assert.are.equal(2, s:stats().recalled)
        c:close()
        l:close()
      end)

      it("reports keys older than 24 h as expired and never sends them", function()
        if not guard() then return end
        local l = open()
        local c = l:attach(client())
        local old1 = assert(c:send(CID_A, "sampleText", { content = "1" }))
        local old2 = assert(c:send(CID_B, "sampleText", { content = "2" }))
        now = os.time() + 86400 + 60
        local fresh = "kfresh"
        assert(l:record { key = fresh, conversation = CID_A, robot = "r" })
        local calls = s:stats().recall_calls
        local rep = assert(l:recall(fake_client(), {}))
        assert.are.same(set_of { old1, old2 }, set_of(rep.expired))
        assert.are.same({ fresh }, rep.recalled)
        assert.are.equal(3, rep.total)
        assert.is_false(rep.ok)
        assert.are.equal(calls, s:stats().recall_calls)
        assert.are.equal("expired", l:get(old1).state)
        assert.are.equal("sent", s:key(old1).state)
        assert.are.same(set_of { old1, old2 }, set_of(keys_of(l:list { state = "expired" })))
        c:close()
        l:close()
      end)

      it("resumes a recall interrupted midway: nothing lost, nothing reported twice", function()
        if not guard() then return end
        local l = open { chunk = 2 }
        local c = l:attach(client())
        local keys = {}
        for i = 1, 5 do
          now = now + 1
          keys[i] = assert(c:send(CID_A, "sampleText", { content = tostring(i) }))
          -- sent_at orders the chunks: keys[1..2], keys[3..4], keys[5]
          assert(l:record { key = keys[i], conversation = CID_A, robot = s.robot,
            sent_at = now })
        end
        -- The process "dies" right after the server recalled the second
        -- chunk: its transport raises when the second answer comes back.
        local curl = require("dingtalk.recall.transport.curl").new()
        local answers = 0
        local dying_transport = setmetatable({
          poll = function(_, wait)
            local done = curl:poll(wait)
            answers = answers + #done
            if answers >= 2 then error("killed") end
            return done
          end,
        }, { __index = curl })
        local dying = client { concurrency = 1, transport = dying_transport }
        assert.has_error(function() l:recall(dying, {}) end, nil)
        assert.are.equal(4, s:stats().recalled)
        assert.are.equal("recalled", l:get(keys[1]).state)
        assert.are.same(set_of { keys[3], keys[4] }, set_of(keys_of(l:list { state = "recalling" })))
        assert.are.equal("sent", l:get(keys[5]).state)
        -- the next call, even filtered on state = sent, finishes the job
        local rep = assert(l:recall(c, { state = "sent" }))
        assert.are.same(set_of { keys[3], keys[4], keys[5] }, set_of(rep.recalled))
        assert.are.same(set_of { keys[3], keys[4] }, set_of(rep.already_recalled))
        assert.are.same({}, rep.failed)
        assert.is_true(rep.ok)
        assert.are.equal(5, s:stats().recalled)
        for _, k in ipairs(keys) do assert.are.equal("recalled", l:get(k).state) end
        assert.are.equal(5, #l:list { state = "recalled" })
        c:close()
        l:close()
      end)

      it("counts a reason core.reasons calls already recalled as recalled", function()
        if not guard() then return end
        assert.is_true(ledger.ALREADY_RECALLED.ALREADY_RECALLED)
        assert.is_true(core.reasons.ALREADY_RECALLED.already_recalled)
        assert.has_error(function() ledger.ALREADY_RECALLED.GONE_ALREADY = true end)
        local l = open()
        assert(l:record { key = "k1", conversation = CID_A, robot = "r" })
        assert(l:record { key = "k2", conversation = CID_A, robot = "r" })
        local rep = assert(l:recall(fake_client { k1 = "ALREADY_RECALLED", k2 = "NOPE" }, {}))
        assert.are.same({ "k1" }, rep.recalled)
        assert.are.same({ "k1" }, rep.already_recalled)
        assert.are.same({ k2 = "NOPE" }, rep.failed)
        assert.are.equal("recalled", l:get("k1").state)
        assert.are.equal("failed", l:get("k2").state)
        l:close()
      end)

      it("calls on_progress and passes a recall that failed whole on to every key", function()
        if not guard() then return end
        local l = open { chunk = 2 }
        for i = 1, 5 do
          assert(l:record { key = "k" .. i, conversation = CID_A, robot = "r",
            sent_at = now + i })
        end
        local steps = {}
        local gone = { status = 400, code = "miss.openConversationId" }
        local broken = fake_client { k1 = gone, k3 = gone, k5 = gone }
        local rep = assert(l:recall(broken, {}, { on_progress = function(d, t) steps[#steps + 1] = d .. "/" .. t end }))
        assert.are.same({ "2/5", "4/5", "5/5" }, steps)
        assert.are.equal(5, count(rep.errors))
        assert.are.equal("miss.openConversationId", l:get("k3").code)
        l:close()
      end)

      it("is shared with nginx workers (OpenResty): they record, this process reads", function()
        if not guard() then return end
        local ok, why = nginx_helper.available()
        if not ok then return pending(why) end
        local loc, opts = B.location()
        local ng = nginx_helper.start { workers = 2, server = NGINX_SERVER }
        local good, answers = pcall(function()
          for i = 1, 20 do
            local status, body = ng:request("GET", "/record?loc=" .. urlencode(loc) .. "&prefix=" ..
              urlencode(opts.prefix or "") .. "&key=nk" .. i)
            assert.are.equal(200, status, body)
            local res, state, conn = body:match("^(%S+) (%S+) (%S+) %d+")
            assert.are.equal("ok", res, body)
            assert.are.equal("sent", state)
            assert.are.equal(B.name == "redis" and "cosocket" or "-", conn)
          end
          return true
        end)
        ng:stop()
        assert(good, answers)
        local l = open(nil, true)
        local list = l:list { tag = "nginx" }
        assert.are.equal(20, #list)
        assert.are.equal("cidNginx", list[1].conversation)
        l:close()
      end)

      it("loses no record when two processes append 1,000 each at once", function()
        if not guard() then return end
        local loc, opts = B.location()
        local go = dir .. "/go" .. n
        local child = "spec/fixtures/ledger_append_child.lua"
        local function run(tag)
          return LUA .. " " .. sh_quote(child) .. " " .. sh_quote(loc) .. " " .. sh_quote(opts.prefix or "") ..
            " " .. tag .. " 1000 " .. sh_quote(go)
        end
        local out, rc = sh(run("a") .. " & p1=$!; " .. run("b") .. " & p2=$!; sleep 0.3; touch " .. sh_quote(go) ..
          "; wait $p1; r1=$?; wait $p2; r2=$?; exit $((r1 + r2))")
        assert.are.equal(0, rc, out)
        local l = assert(ledger.open(loc, opts))
        local list = l:list()
        assert.are.equal(2000, #list)
        local seen = set_of(keys_of(list))
        for i = 1, 1000 do
          assert.is_true(seen["a-" .. i], "a-" .. i)
          assert.is_true(seen["b-" .. i], "b-" .. i)
        end
        if B.name == "file" then
          local lines, switches, last = 0, 0, nil
          for line in read_file(loc):gmatch("[^\n]+") do
            lines = lines + 1
            local ev = cjson.decode(line) -- every line whole
            local who = ev.k:sub(1, 1)
            if last and who ~= last then switches = switches + 1 end
            last = who
          end
          assert.are.equal(2000, lines)
          -- the two writers really ran at the same time
          assert.is_true(switches >= 2, "the writers did not overlap (" .. switches .. " switches)")
        end
        l:close()
      end)
    end)
  end
end)
