-- The fault matrix, where state lives (spec/faults_spec.lua: the network):
-- a full or read-only ledger disk (a private mount namespace,
-- spec/helpers/fault_env.lua, root only), a Redis that dies mid-run
-- (spec/helpers/redis.lua), and the CLI run in-process through the same
-- faults for its exit status.  The per-key invariant is checked in every
-- row: every unique key is in exactly one of recalled, failed, errors and
-- expired.
local sim = require "spec.helpers.sim"
local redis = require "spec.helpers.redis"
local env = require "spec.helpers.fault_env"
local invariant = require "spec.helpers.invariant"
local ledger = require "dingtalk.recall.ledger"
local cli = require "dingtalk.recall.cli"

local CID = "cidFaultSpec"
local has_socket = pcall(require, "socket")

local function is_root()
  local out = env.sh("id -u")
  return out:match("^%s*0%s*$") ~= nil
end

describe("fault matrix", function()
  local s

  setup(function() s = sim.start {} end)
  teardown(function() if s then s:stop() end end)
  before_each(function() s:fresh() end) -- clean server, no token cached

  local function client(extra) return env.client(s, extra) end

  -- Runs fault_env's `case` in a private mount namespace with a 1 MB tmpfs,
  -- on n keys seeded in conversation cid (handed over in a file) -> its
  -- result | nil, why (no namespaces here: the test is pending).
  local function in_tmpfs(case, n, cid)
    if not env.can_unshare() then return nil, "needs `unshare -m` and mount (root) for a tmpfs of its own" end
    local keys = s:seed_keys(n, cid)
    local kf = os.tmpname()
    finally(function() os.remove(kf) end)
    local f = assert(io.open(kf, "w"))
    f:write(table.concat(keys, "\n"), "\n")
    f:close()
    return env.in_namespace(case, { s.url, s.token, s.robot, kf }, { tmpfs = "1m" })
  end

  describe("ledger disk", function()
    it("full (ENOSPC on a tmpfs): nil, ledger.io; nothing sent before; keys not lost; resumed after", function()
      local res, why = in_tmpfs("disk_full", 60, "cidDiskFull")
      if not res then return pending(why) end
      assert.is_nil(res.crash)
      -- 1. full before the recall: refused before anything is sent
      assert.is_false(res.before.report)
      assert.are.equal("ledger.io", res.before.err.code)
      assert.matches("No space left on device", res.before.err.message)
      assert.is_false(res.before.err.retryable)
      assert.are.equal(0, res.before.recall_calls)
      assert.are.same({ sent = 60 }, res.before.states) -- and it can still be read
      -- 2. a send while full: the message is out and its key returned; the record failed, loudly
      assert.is_string(res.send.key)
      assert.are.equal(1, res.send.record_errors)
      assert.are.equal("ledger.io", res.send.hook_err.code)
      assert.is_false(res.send.recorded)
      -- 3. full in the middle: the chunk the server recalled stays `recalling`, the rest `sent`
      assert.is_false(res.mid.report)
      assert.are.equal("ledger.io", res.mid.err.code)
      assert.are.equal(1, res.mid.recall_calls)
      assert.are.same({ recalling = 20, sent = 40 }, res.mid.states)
      -- 4. room again: the next recall finishes, counting the 20 as already recalled
      assert.is_true(res.after.invariant, res.after.invariant_why)
      assert.are.equal(60, res.after.recalled)
      assert.are.equal(20, res.after.already_recalled)
      assert.is_true(res.after.ok)
      assert.are.same({ recalled = 60 }, res.after_states)
      assert.are.equal(60, res.server_recalled) -- the message sent in step 2 is not among them
    end)

    it("unwritable (a read-only file system, which root cannot write either): nil, ledger.io, nothing sent", function()
      local res, why = in_tmpfs("read_only", 20, "cidReadOnly")
      if not res then return pending(why) end
      assert.is_nil(res.crash)
      assert.are.equal(0, res.remount_rc)
      assert.is_false(res.before.report)
      assert.are.equal("ledger.io", res.before.err.code)
      assert.matches("Read%-only file system", res.before.err.message)
      assert.is_false(res.before.err.retryable)
      assert.are.equal(0, res.before.recall_calls)
      -- reading needs the lock file (opened read-write) too: the ledger is unusable, not corrupt
      assert.are.equal("ledger.io", res.before.states.list_error.code)
      assert.is_false(res.reopen.ok)
      assert.is_string(res.send.key)
      assert.are.equal(1, res.send.record_errors)
      assert.are.equal("ledger.io", res.send.hook_err.code)
      assert.is_true(res.after.invariant, res.after.invariant_why)
      assert.are.equal(20, res.after.recalled)
      assert.are.same({ recalled = 20 }, res.after_states)
    end)

    it("unwritable by permissions (chmod 0400, when not root): nil, ledger.io, nothing sent", function()
      if is_root() then return pending("root writes through chmod; the read-only file system case covers root") end
      local dir = env.sh("mktemp -d ${TMPDIR:-/tmp}/dtr-faults.XXXXXX"):gsub("%s+$", "")
      finally(function() env.sh("chmod -R u+w " .. env.sh_quote(dir) .. "; rm -rf " .. env.sh_quote(dir)) end)
      local keys = s:seed_keys(5, CID)
      local l = assert(ledger.open(dir .. "/journal"))
      for _, k in ipairs(keys) do
        assert(l:record { key = k, conversation = CID, robot = s.robot })
      end
      env.sh("chmod 0400 " .. env.sh_quote(dir .. "/journal"))
      local c = client()
      local rep, err = l:recall(c, {})
      assert.is_nil(rep)
      assert.are.equal("ledger.io", err.code)
      assert.matches("Permission denied", err.message)
      assert.are.equal(0, s:stats().recall_calls)
      assert.are.equal(5, #assert(l:list { state = "sent" })) -- every key still there, still `sent`
      c:close()
    end)

    it("a path under a regular file (ENOTDIR, whoever runs it): nil, ledger.io at open", function()
      local file = os.tmpname()
      finally(function() os.remove(file) end)
      local l, err = ledger.open(file .. "/ledger")
      assert.is_nil(l)
      assert.are.equal("ledger.io", err.code)
      assert.matches("Not a directory", err.message)
      assert.is_false(err.retryable)
      assert.truthy(err.hint and err.hint ~= "")
    end)
  end)

  describe("redis gone mid-run", function()
    it("nil, ledger.redis (retryable) while it is down; the ledger reconnects; nothing is lost", function()
      if not redis.available() then return pending("redis-server is not installed") end
      if not has_socket then return pending("luasocket is not installed for " .. _VERSION) end
      local r = redis.start()
      finally(function() r:stop() end)
      local l = assert(ledger.open(r.url, { chunk = 20, timeout = 2 }))
      local keys = s:seed_keys(60, CID)
      local entries = {}
      for i, k in ipairs(keys) do
        entries[i] = { key = k, conversation = CID, robot = s.robot,
          sent_at = os.time() - 100 + i }
      end
      assert(l:record_many(entries))
      local c = client()

      -- 1. gone before a call (SAVE first, so that the restarted server has the data)
      r:cli("SAVE")
      assert.is_true(env.redis_kill(r))
      local list, err = l:list {}
      assert.is_nil(list)
      assert.are.equal("ledger.redis", err.code)
      assert.is_true(err.retryable)
      assert.truthy(tostring(err):find("127.0.0.1:" .. r.port, 1, true))
      local rep, rerr = l:recall(c, {})
      assert.is_nil(rep)
      assert.are.equal("ledger.redis", rerr.code)
      assert.are.equal(0, s:stats().recall_calls)

      -- 2. back: the same ledger object reconnects by itself
      assert.is_true(env.redis_restart(r))
      assert.are.equal(60, #assert(l:list { state = "sent" }))

      -- 3. gone in the middle, right after the server recalled the first chunk
      local dying = { calls = 0 }
      function dying.recall(_, cid, ks, o)
        dying.calls = dying.calls + 1
        local out, e = c:recall(cid, ks, o)
        if dying.calls == 1 then
          r:cli("SAVE")
          env.redis_kill(r)
        end
        return out, e
      end
      rep, rerr = l:recall(dying, {})
      assert.is_nil(rep)
      assert.are.equal("ledger.redis", rerr.code)
      assert.are.equal(1, dying.calls)
      assert.are.equal(20, s:stats().recalled)

      -- 4. back again: the interrupted chunk is resumed, the rest recalled
      assert.is_true(env.redis_restart(r))
      assert.are.equal(20, #assert(l:list { state = "recalling" }))
      rep = assert(l:recall(c, {}))
      invariant.assert(rep, keys)
      assert.are.equal(60, #rep.recalled)
      assert.are.equal(20, #rep.already_recalled)
      assert.is_true(rep.ok)
      assert.are.equal(60, s:stats().recalled)
      assert.are.equal(60, #assert(l:list { state = "recalled" }))
      c:close()
      l:close()
    end)
  end)

  describe("the CLI's exit status", function()
    local dir
    setup(function()
      dir = (sim.sh("mktemp -d ${TMPDIR:-/tmp}/dtr-faults-cli.XXXXXX"):gsub("%s+$", ""))
    end)
    teardown(function()
      if dir and dir:match("dtr%-faults%-cli") then sim.sh("rm -rf " .. sim.sh_quote(dir)) end
    end)

    local function buffer()
      local b = { parts = {} }
      function b:write(...)
        for _, x in ipairs { ... } do self.parts[#self.parts + 1] = tostring(x) end
        return self
      end
      function b:text() return table.concat(self.parts) end
      return b
    end

    -- cli.main in-process with a config file (max_retries = 1, timeout = 1).
    local function main(args)
      local cfgfile = dir .. "/config"
      local f = assert(io.open(cfgfile, "w"))
      f:write("access_token = ", s.token, "\nendpoint = ", s.url, "\nmax_retries = 1\ntimeout = 1\n")
      f:close()
      sim.sh("chmod 600 " .. sim.sh_quote(cfgfile))
      local out, err = buffer(), buffer()
      local envv = { XDG_CONFIG_HOME = dir .. "/none", HOME = dir }
      local full = { args[1], "--config", cfgfile }
      for i = 2, #args do full[#full + 1] = args[i] end
      local rc = cli.main(full, { stdout = out, stderr = err, getenv = function(k) return envv[k] end,
        isatty = function() return false end })
      return rc, out:text(), err:text()
    end

    local ROWS = {
      { { "system_error", "ok" }, 0, "recalled 3 of 3" },
      { { "system_error", "system_error" }, 1, "error     .*system%.error" },
      { { "truncated", "ok" }, 0, "it already was" },
      { { "throttle", "ok" }, 0, "recalled 3 of 3" },
      { { "malformed" }, 3, "response%.invalid" },
      { { "huge" }, 1, "response%.too_large" },
      { { "ban" }, 3, "response%.invalid" },
      { { "redirect" }, 3, "response%.redirect" },
      { { "quota" }, 3, "ApiCountLimitForOrg" },
      { { "slow", "slow" }, 3, "transport%.timeout" },
      { { "failed_key" }, 1, "failed    .*SYSTEM_ERROR" },
    }
    for _, row in ipairs(ROWS) do
      it("recall under " .. table.concat(row[1], ",") .. " exits " .. row[2], function()
        local keys = s:seed_keys(3, CID)
        s:script { recall = row[1] }
        local args = { "recall", "--conversation", CID, "--robot", s.robot }
        for _, k in ipairs(keys) do args[#args + 1] = k end
        local rc, out, err = main(args)
        assert.are.equal(row[2], rc, out .. err)
        assert.matches(row[3], out .. err)
        assert.is_nil((out .. err):find(s.token, 1, true))
      end)
    end
  end)
end)
