-- The ledger of sent messages, run against both stores (the local
-- journal and Redis; spec/helpers/ledger_stores.lua): records, queries and
-- sharing a ledger between processes and nginx workers.  Recalls are in
-- ledger_recall_spec.lua, the cases of each store alone in
-- ledger_store_spec.lua.  Expiry uses a fake clock.
local ledger = require "dingtalk.recall.ledger"
local core = require "dingtalk.recall.core"
local nginx_helper = require "spec.helpers.nginx"
local cjson = require "cjson"

local shell = require "spec.helpers.shell"
local lh = require "spec.helpers.ledger"
local sh, sh_quote, read_file = shell.sh, shell.quote, shell.read_file
local keys_of, set_of, fake_client = lh.keys_of, lh.set_of, lh.fake_client
local LUA = os.getenv("DINGTALK_RECALL_TEST_LUA") or "lua"
local CID_A, CID_B = "cidLedgerA", "cidLedgerB"

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

describe("ledger", function()
  local env = require("spec.helpers.ledger_stores").harness {
    setup = setup, teardown = teardown, before_each = before_each, describe = describe, pending = pending }

  env.each_store(function(B, t)
      local open, guard, client = t.open, t.guard, t.client

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
        assert.are.equal(t.now, e.sent_at)
        assert.are.equal(600, e.ttl)
        assert.are.equal("sampleText", e.msg_key)
        assert.are.equal("sent", e.state)
        assert.are.equal(t.now, e.updated_at)
        assert.is_nil(e.reason)
        assert.is_nil(e.code)
        assert.is_nil(l:get("unknown"))
        assert.is_true(l:record { key = "k2", conversation = CID_A, robot = "rb1", sent_at = t.now - 5,
          tags = { "x" } })
        assert.are.equal(t.now - 5, l:get("k2").sent_at)
        assert.is_nil(l:get("k2").ttl)
        l:close()
      end)

      it("lists by conversation, robot, tag, time window, last N, state and due, newest first", function()
        if not guard() then return end
        local l = open()
        assert(l:record_many {
          { key = "a1", conversation = CID_A, robot = "r1", sent_at = t.now - 5000,
            tags = "deploy" },
          { key = "a2", conversation = CID_A, robot = "r2", sent_at = t.now - 400,
            tags = "deploy,alert", ttl = 300 },
          { key = "b1", conversation = CID_B, robot = "r1", sent_at = t.now - 300,
            ttl = 3600 },
          { key = "b2", conversation = CID_B, robot = "r1", sent_at = t.now - 100,
            tags = { "alert" }, ttl = 50 },
          { key = "a3", conversation = CID_A, robot = "r1", sent_at = t.now - 10 },
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
        t.now = t.now + 3600
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

      it("selects oldest first whatever the order of record, a key recorded again at its new time", function()
        if not guard() then return end
        local l = open()
        for i, k in ipairs { "a", "b", "c" } do
          assert(l:record { key = k, conversation = CID_A, robot = "r1", sent_at = t.now - 10 + i })
        end
        local sel = assert(l:select())
        assert.are.same({ "a", "b", "c" }, sel.groups[1].keys) -- in order of record: kept
        assert(l:record { key = "c", conversation = CID_A, robot = "r1", sent_at = t.now - 20 })
        sel = assert(l:select())
        assert.are.same({ "c", "a", "b" }, sel.groups[1].keys)
        assert.are.same({}, sel.expired)
        assert(l:record { key = "b", conversation = CID_A, robot = "r1", sent_at = t.now - ledger.RECALL_WINDOW - 1 })
        sel = assert(l:select())
        assert.are.same({ "c", "a" }, sel.groups[1].keys)
        assert.are.same({ "b" }, sel.expired)
        assert.are.equal(3, sel.total)
        l:close()
      end)

      it("is shared: a second ledger on the same location sees the first one's writes", function()
        if not guard() then return end
        local l1 = open()
        local l2 = open(nil, true)
        assert(l1:record { key = "k1", conversation = CID_A, robot = "r" })
        assert.are.equal("sent", l2:get("k1").state)
        assert(l2:record { key = "k2", conversation = CID_A, robot = "r", sent_at = t.now + 1 })
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
        assert.are.equal(t.s.robot, e1.robot)
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
        local go = env.dir .. "/go" .. env.n
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
end)
