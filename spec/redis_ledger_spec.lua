-- The ledger on Redis beside the file journal: send order within one
-- second (both stores), claims with a lease (Redis), errors without the
-- password.
local ledger = require "dingtalk.recall.ledger"
local recall = require "dingtalk.recall"
local clock = require "dingtalk.recall.clock"
local redis_helper = require "spec.helpers.redis"
local sim = require "spec.helpers.sim"
local shell = require "spec.helpers.shell"

local has_socket = pcall(require, "socket")
local has_redis = redis_helper.available()

describe("ledger order and claims", function()
  local rs, s, dir
  setup(function()
    if has_redis and has_socket then rs = redis_helper.start() end
    s = sim.start { qps = 0 }
    dir = shell.trim(shell.sh("mktemp -d ${TMPDIR:-/tmp}/dtr-rl.XXXXXX"))
  end)
  teardown(function()
    if rs then rs:stop() end
    if s then s:stop() end
    if dir then shell.sh("rm -rf " .. shell.quote(dir)) end
  end)

  local n = 0
  local STORES = {
    { name = "file", loc = function() n = n + 1; return dir .. "/l" .. n, {} end },
    { name = "redis", loc = function() n = n + 1; return rs and rs.url, { prefix = "o" .. n .. ":" } end },
  }

  for _, B in ipairs(STORES) do
    describe("(" .. B.name .. " store)", function()
      local function open(extra)
        local loc, opts = B.loc()
        if not loc then return nil end
        for k, v in pairs(extra or {}) do opts[k] = v end
        return assert(ledger.open(loc, opts))
      end

      it("orders messages sent within one second by send sequence: last 1 is the newest", function()
        local l = open()
        if not l then return pending("redis-server or luasocket missing") end
        local t = os.time()
        -- keys whose string order is the opposite of their send order
        for _, k in ipairs { "zz1", "mm2", "aa3", "AA4" } do
          assert(l:record { key = k, conversation = "cidO", robot = "r", sent_at = t })
        end
        assert.are.equal("AA4", l:list { last = 1 }[1].key)
        local all = l:list {}
        assert.are.same({ "AA4", "aa3", "mm2", "zz1" }, { all[1].key, all[2].key, all[3].key, all[4].key })
        local two = l:list { last = 2, conversation = "cidO" }
        assert.are.same({ "AA4", "aa3" }, { two[1].key, two[2].key })
        -- recording a key again keeps its place in the sequence
        assert(l:record { key = "zz1", conversation = "cidO", robot = "r", sent_at = t })
        assert.are.equal("AA4", l:list { last = 1 }[1].key)
        l:close()
      end)

      it("undoes the newest of several messages sent through the client in one second", function()
        local l = open()
        if not l then return pending("redis-server or luasocket missing") end
        local c = assert(recall.client { robot_code = s.robot, endpoint = s.url, access_token = s.token, qps = 0 })
        l:attach(c)
        local sent = {}
        for i = 1, 6 do sent[i] = assert(c:send("cidSame", "sampleText", { content = "m" .. i })) end
        local newest = l:list { last = 1 }
        assert.are.equal(sent[6], newest[1].key)
        local rep = assert(l:recall(c, { last = 1 }))
        assert.are.same({ sent[6] }, rep.recalled)
        assert.are.equal("recalled", l:get(sent[6]).state)
        assert.are.equal("sent", l:get(sent[5]).state)
        local three = l:list { last = 3, state = "sent" }
        assert.are.same({ sent[5], sent[4], sent[3] }, { three[1].key, three[2].key, three[3].key })
        c:close()
        l:close()
      end)
    end)
  end

  describe("(redis claims)", function()
    local function pair(lease)
      if not rs then return nil end
      n = n + 1
      local opts = { prefix = "cl" .. n .. ":", lease = lease }
      local a = assert(ledger.open(rs.url, { prefix = opts.prefix, lease = lease, owner = "host-a" }))
      local b = assert(ledger.open(rs.url, { prefix = opts.prefix, lease = lease, owner = "host-b" }))
      return a, b
    end

    local function seed(l, count)
      local keys = {}
      for i = 1, count do
        keys[i] = ("ck%03d"):format(i)
        assert(l:record { key = keys[i], conversation = "cidC", robot = "r",
          sent_at = os.time() - 100 + i })
      end
      return keys
    end

    local function claims(keys, was)
      local out = {}
      for i, k in ipairs(keys) do out[i] = { key = k, was = was } end
      return out
    end

    it("gives each key to exactly one host; another takes it over only after the lease", function()
      local a, b = pair(1)
      if not a then return pending("redis-server or luasocket missing") end
      local keys = seed(a, 10)
      local got_a = assert(a.backend:claim(claims({ keys[1], keys[2], keys[3] }, "sent")))
      local got_b = assert(b.backend:claim(claims(keys, "sent")))
      for i, k in ipairs(keys) do
        assert.are.equal(i <= 3, got_a[k] == true, k)
        assert.are.equal(i > 3, got_b[k] == true, k)
      end
      assert.are.equal("recalling", a:get(keys[1]).state)
      -- recalling under a live lease: not b's, but a may claim its own again
      assert.are.same({}, assert(b.backend:claim(claims({ keys[1] }, "recalling"))))
      assert.is_true(assert(a.backend:claim(claims({ keys[1] }, "recalling")))[keys[1]])
      -- a key whose state changed since it was listed is nobody's
      local ch = require("dingtalk.recall.ledger.changes").new()
      ch:add(keys[2], "recalled")
      assert(a.backend:update(ch, os.time()))
      assert.are.same({}, assert(b.backend:claim(claims({ keys[2] }, "sent"))))
      assert.are.same({}, assert(b.backend:claim(claims({ keys[2] }, "recalling"))))
      clock.sleep(1.1)
      local late = assert(b.backend:claim(claims({ keys[1], keys[3] }, "recalling")))
      assert.is_true(late[keys[1]])
      assert.is_true(late[keys[3]])
      a:close()
      b:close()
    end)

    it("two recalls on one ledger: each key in exactly one report, recalled once at the server", function()
      local a, b = pair(30)
      if not a then return pending("redis-server or luasocket missing") end
      s:reset()
      local keys = s:seed_keys(60, "cidTwo")
      for i, k in ipairs(keys) do
        assert(a:record { key = k, conversation = "cidTwo", robot = s.robot,
          sent_at = os.time() - 100 + i })
      end
      -- b takes the second chunk first; a then recalls what is left
      local c = assert(recall.client { robot_code = s.robot, endpoint = s.url, access_token = s.token, qps = 0 })
      local first = {}
      for i = 21, 40 do first[#first + 1] = { key = keys[i], was = "sent" } end
      assert(b.backend:claim(first))
      local rep = assert(a:recall(c, {}))
      assert.are.equal(40, #rep.recalled)
      assert.are.equal(40, rep.total)
      assert.are.equal(20, #rep.elsewhere)
      for i = 21, 40 do assert.are.equal("recalling", a:get(keys[i]).state) end
      local rep_b = assert(b:recall(c, {}))
      assert.are.equal(20, #rep_b.recalled)
      assert.are.equal(0, #rep_b.already_recalled)
      assert.are.equal(60, s:stats().recalled)
      assert.are.equal(60, s:stats().recall_keys)
      assert.are.equal(60, #a:list { state = "recalled" })
      c:close()
      a:close()
      b:close()
    end)

    it("names the server without the password when it cannot reach it", function()
      local pw = "le/dg@r?pw:1"
      local l, err = ledger.open("redis://:" .. pw .. "@127.0.0.1:1/0", { timeout = 0.5 })
      assert.is_nil(l)
      assert.are.equal("ledger.redis", err.code)
      assert.is_nil(tostring(err):find("le/dg", 1, true))
      assert.is_nil(tostring(err):find("r?pw", 1, true))
      assert.truthy(tostring(err):find("127.0.0.1:1", 1, true))
      l, err = ledger.open("rediss://:" .. pw .. "@127.0.0.1:1/0")
      assert.is_nil(l)
      assert.are.equal("ledger.invalid", err.code)
      assert.is_nil(tostring(err):find("le/dg", 1, true))
      assert.is_nil(tostring(err):find("r?pw", 1, true))
    end)

    it("keeps the password out of the CLI's text and JSON output", function()
      local pw = "cl/i@pw?z:9"
      local LUA = os.getenv("DINGTALK_RECALL_TEST_LUA") or "lua"
      for _, url in ipairs { "redis://:" .. pw .. "@127.0.0.1:1/0", "redis://bob:" .. pw .. "@127.0.0.1:1/0",
        "rediss://:" .. pw .. "@127.0.0.1:1/0" } do
        for _, json in ipairs { "", " --json" } do
          local out, rc = shell.sh("env DINGTALK_RECALL_LEDGER=" .. shell.quote(url) .. " XDG_CONFIG_HOME=" ..
            shell.quote(dir .. "/xdg") .. " DINGTALK_ACCESS_TOKEN=t " .. LUA .. " bin/dingtalk-recall ledger list" ..
            json .. " 2>&1")
          assert.are_not.equal(0, rc, out)
          assert.truthy(out:find("127.0.0.1", 1, true), out)
          for _, part in ipairs { "cl/i", "pw?z", "z:9", "cl%2Fi" } do
            assert.is_nil(out:find(part, 1, true), "'" .. part .. "' in: " .. out)
          end
        end
      end
    end)
  end)
end)
