-- Crash and resume: a child process recalling 2,000 keys through the
-- ledger is killed (kill -9) midway; the next l:recall finishes the job.
-- Every key must end `recalled`, recalled by the server exactly once, and
-- reported once: a key the child already recorded as recalled is not in
-- the resumed report.  Run against both stores.
local ledger = require "dingtalk.recall.ledger"
local recall = require "dingtalk.recall"
local curl = require "dingtalk.recall.curl"
local sim = require "spec.helpers.sim"
local redis_helper = require "spec.helpers.redis"

local sh, sh_quote = sim.sh, sim.sh_quote
local LUA = os.getenv("DINGTALK_RECALL_TEST_LUA") or "lua"
local CID = "cidLedgerCrash"
local N = 2000

local function trim(s) return (s:gsub("^%s+", ""):gsub("%s+$", "")) end

local function alive(pid)
  local _, rc = sh("kill -0 " .. pid .. " 2>/dev/null && ! grep -q '^State:.*Z' /proc/" .. pid .. "/status")
  return rc == 0
end

local has_socket = pcall(require, "socket")
local has_redis = redis_helper.available()

describe("ledger crash and resume", function()
  local s, rs, dir

  setup(function()
    s = sim.start { latency = 0 }
    dir = trim(sh("mktemp -d ${TMPDIR:-/tmp}/dingtalk-ledger-crash.XXXXXX"))
    if has_socket and has_redis then rs = redis_helper.start() end
  end)
  teardown(function()
    if s then s:stop() end
    if rs then rs:stop() end
    if dir then sh("rm -rf " .. sh_quote(dir)) end
  end)

  local BACKENDS = {
    { name = "file", where = function() return dir .. "/crash/ledger", "" end },
    { name = "redis", where = function() return rs and rs.url, "crash:" end,
      missing = not (has_socket and has_redis) and "redis-server or luasocket missing" or nil },
  }

  for _, B in ipairs(BACKENDS) do
    it("(" .. B.name .. " store) a recall killed midway is finished by the next one, each key once", function()
      if B.missing then return pending(B.missing) end
      s:reset()
      s:config { qps = 20, latency = 0.05, faults = "" }
      local loc, prefix = B.where()
      local opts = { prefix = prefix ~= "" and prefix or nil }
      local keys = s:seed_keys(N, CID, s.robot)
      assert.are.equal(N, #keys)
      local l = assert(ledger.open(loc, opts))
      local t0 = os.time() - N
      local entries = {}
      for i, k in ipairs(keys) do
        entries[i] = { key = k, conversation = CID, robot = s.robot, sent_at = t0 + i }
      end
      assert(l:record_many(entries))
      assert.are.equal(N, #l:list { state = "sent" })

      -- The child recalls at 20 requests a second (about 5 s for all).
      local log = dir .. "/child-" .. B.name .. ".log"
      local p = assert(io.popen(LUA .. " spec/fixtures/ledger_recall_child.lua " .. sh_quote(loc) .. " " ..
        sh_quote(prefix) .. " " .. sh_quote(s.url) .. " " .. sh_quote(s.token) .. " " .. sh_quote(s.robot) ..
        " '' 1 >" .. sh_quote(log) .. " 2>&1 & echo $!"))
      local pid = trim(p:read("*a"))
      p:close()
      assert.truthy(pid:match("^%d+$"), pid)
      local deadline = curl.now() + 30
      -- midway: the server has recalled some, and the ledger holds the
      -- outcomes of a first chunk (they ride with the next chunk's mark)
      while s:stats().recalled < 500 or #assert(l:list { state = "recalled" }) == 0 do
        assert.is_true(curl.now() < deadline, "the child made no progress")
        assert.is_true(alive(pid), "the child ended early")
        curl.sleep(0.05)
      end
      sh("kill -9 " .. pid)
      while alive(pid) do curl.sleep(0.02) end
      -- Killed on purpose: its log must still show no crash of its own.
      local why = require("spec.helpers.shell").crashed(require("spec.helpers.shell").read_file(log))
      assert.is_nil(why, "the child crashed before the kill: " .. tostring(why))
      -- requests already at the server finish there; on Redis, the killed
      -- child's claim (lease 1 s) ends before another recall may take its keys
      curl.sleep(B.name == "redis" and 1.2 or 0.3)
      local at_kill = s:stats().recalled
      assert.is_true(at_kill > 0 and at_kill < N, "recalled at kill: " .. at_kill)

      -- Midway: some keys recorded recalled, some left recalling or sent.
      local before = {}
      local counts = { sent = 0, recalling = 0, recalled = 0 }
      for _, e in ipairs(assert(l:list())) do
        before[e.key] = e.state
        counts[e.state] = (counts[e.state] or 0) + 1
      end
      assert.are.equal(N, counts.sent + counts.recalling + counts.recalled)
      assert.is_true(counts.recalled > 0, "no chunk finished before the kill")
      assert.is_true(counts.recalling > 0 or counts.sent > 0, "the child had finished")
      assert.is_true(counts.recalled <= at_kill)

      -- Resume.
      local c = assert(recall.client { robot_code = s.robot, endpoint = s.url, access_token = s.token,
        concurrency = 4, qps = 0 })
      s:config { qps = 0, latency = 0 }
      local rep = assert(l:recall(c, {}))
      c:close()
      assert.is_true(rep.ok)
      assert.are.same({}, rep.failed)
      assert.are.same({}, rep.errors)
      assert.are.equal(N, s:stats().recalled) -- the server recalled each key once
      local reported = {}
      for _, k in ipairs(rep.recalled) do
        assert.is_nil(reported[k], "reported twice: " .. k)
        reported[k] = true
        assert.are_not.equal("recalled", before[k], "already reported by the child: " .. k)
      end
      assert.are.equal(N - counts.recalled, #rep.recalled)
      for _, k in ipairs(rep.already_recalled) do
        assert.are.equal("recalling", before[k], k)
      end
      -- The server had recalled the in-flight keys: they came back as such.
      assert.are.equal(at_kill - counts.recalled, #rep.already_recalled)
      for _, e in ipairs(assert(l:list())) do
        assert.are.equal("recalled", e.state, e.key)
      end
      assert.are.same({}, l:list { state = "recalling" })
      assert.are.equal(N, #l:list { state = "recalled" })
      l:close()
    end)
  end
end)
