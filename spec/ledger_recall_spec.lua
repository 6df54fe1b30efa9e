-- The ledger's recalls, run against both stores (the local journal and
-- Redis; spec/helpers/ledger_stores.lua) through the simulator: select,
-- recall, grouping, failures, expiry, resuming an interrupted recall,
-- progress.  Expiry uses a fake clock.
local ledger = require "dingtalk.recall.ledger"
local core = require "dingtalk.recall.core"
local lh = require "spec.helpers.ledger"
local count, keys_of, set_of, fake_client = lh.count, lh.keys_of, lh.set_of, lh.fake_client
local CID_A, CID_B = "cidLedgerA", "cidLedgerB"

describe("ledger recall", function()
  local env = require("spec.helpers.ledger_stores").harness {
    setup = setup, teardown = teardown, before_each = before_each, describe = describe, pending = pending }

  env.each_store(function(_, t)
      local open, guard, client = t.open, t.guard, t.client

      it("select shows what recall then recalls: groups oldest first, expired apart, nothing sent", function()
        if not guard() then return end
        local l = open()
        local c = l:attach(client())
        local d1 = assert(c:send(CID_A, "sampleText", { content = "1" }, { tags = "sel" }))
        local d2 = assert(c:send(CID_B, "sampleText", { content = "2" }, { tags = "sel" }))
        assert(l:record { key = "old-one", conversation = CID_A, robot = t.s.robot,
          sent_at = os.time() - ledger.RECALL_WINDOW - 60, tags = { "sel" } })
        local calls = t.s:stats().recall_calls
        local sel = assert(l:select { tag = "sel" })
        assert.are.equal(calls, t.s:stats().recall_calls) -- select sends nothing
        assert.are.equal(3, sel.total)
        assert.are.same({ "old-one" }, sel.expired)
        local shown = {}
        for _, g in ipairs(sel.groups) do
          assert.are.equal(t.s.robot, g.robot)
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
          assert.are.equal("recalled", t.s:key(k).state)
        end
        assert.are.equal("sent", l:get(other).state)
        assert.are.equal("sent", t.s:key(other).state)
        assert.are.equal(3, t.s:stats().recalled)
        -- nothing left to recall for that filter: no request at all
        local calls = t.s:stats().recall_calls
        local again = assert(l:recall(c, { tag = "deploy" }))
        assert.are.equal(0, again.total)
        assert.is_true(again.ok)
        assert.are.equal(calls, t.s:stats().recall_calls)
        -- state = recalled selects nothing to send either
        assert.are.equal(0, assert(l:recall(c, { state = "recalled" })).total)
        c:close()
        l:close()
      end)

      it("groups keys by conversation and robot", function()
        if not guard() then return end
        local l = open()
        assert(l:record_many {
          { key = "a", conversation = CID_A, robot = "r1", sent_at = t.now - 3 },
          { key = "b", conversation = CID_A, robot = "r2", sent_at = t.now - 2 },
          { key = "c", conversation = CID_B, robot = "r1", sent_at = t.now - 1 },
          { key = "d", conversation = CID_A, robot = "r1", sent_at = t.now },
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
        t.s:config { faults = "failed_key=1" }
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
        t.s:config { faults = "" }
        rep = assert(l:recall(c, { state = "failed" }))
        assert.are.same(set_of { k1, k2 }, set_of(rep.recalled))
        assert.are.equal("recalled", l:get(k1).state)
        assert.is_nil(l:get(k1).reason)
        assert.are.equal(2, t.s:stats().recalled)
        c:close()
        l:close()
      end)

      it("reports keys older than 24 h as expired and never sends them", function()
        if not guard() then return end
        local l = open()
        local c = l:attach(client())
        local old1 = assert(c:send(CID_A, "sampleText", { content = "1" }))
        local old2 = assert(c:send(CID_B, "sampleText", { content = "2" }))
        t.now = os.time() + 86400 + 60
        local fresh = "kfresh"
        assert(l:record { key = fresh, conversation = CID_A, robot = "r" })
        local calls = t.s:stats().recall_calls
        local rep = assert(l:recall(fake_client(), {}))
        assert.are.same(set_of { old1, old2 }, set_of(rep.expired))
        assert.are.same({ fresh }, rep.recalled)
        assert.are.equal(3, rep.total)
        assert.is_false(rep.ok)
        assert.are.equal(calls, t.s:stats().recall_calls)
        assert.are.equal("expired", l:get(old1).state)
        assert.are.equal("sent", t.s:key(old1).state)
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
          t.now = t.now + 1
          keys[i] = assert(c:send(CID_A, "sampleText", { content = tostring(i) }))
          -- sent_at orders the chunks: keys[1..2], keys[3..4], keys[5]
          assert(l:record { key = keys[i], conversation = CID_A, robot = t.s.robot,
            sent_at = t.now })
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
        assert.are.equal(4, t.s:stats().recalled)
        assert.are.equal("recalled", l:get(keys[1]).state)
        assert.are.same(set_of { keys[3], keys[4] }, set_of(keys_of(l:list { state = "recalling" })))
        assert.are.equal("sent", l:get(keys[5]).state)
        -- the next call, even filtered on state = sent, finishes the job
        local rep = assert(l:recall(c, { state = "sent" }))
        assert.are.same(set_of { keys[3], keys[4], keys[5] }, set_of(rep.recalled))
        assert.are.same(set_of { keys[3], keys[4] }, set_of(rep.already_recalled))
        assert.are.same({}, rep.failed)
        assert.is_true(rep.ok)
        assert.are.equal(5, t.s:stats().recalled)
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
            sent_at = t.now + i })
        end
        local steps = {}
        local gone = { status = 400, code = "miss.openConversationId" }
        local broken = fake_client { k1 = gone, k3 = gone, k5 = gone }
        local rep = assert(l:recall(broken, {},
          { on_progress = function(d, total) steps[#steps + 1] = d .. "/" .. total end }))
        assert.are.same({ "2/5", "4/5", "5/5" }, steps)
        assert.are.equal(5, count(rep.errors))
        assert.are.equal("miss.openConversationId", l:get("k3").code)
        l:close()
      end)
  end)
end)
