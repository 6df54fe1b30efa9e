-- The fault matrix (README: "Fault matrix"): for each fault, what the user of the
-- library gets (error code, retryable, how many requests and retries, what
-- the report says), with the per-key invariant checked in every row: every
-- unique key is in exactly one of recalled, failed and errors (and expired
-- for ledger reports).  The simulator makes most faults; a private mount
-- namespace (spec/helpers/fault_env.lua, root only) makes the DNS failure
-- and the full or read-only ledger disk; spec/helpers/redis.lua the Redis
-- that dies.  A last block runs the CLI in-process through the same faults
-- for its exit status.
local sim = require "spec.helpers.sim"
local redis = require "spec.helpers.redis"
local env = require "spec.helpers.fault_env"
local invariant = require "spec.helpers.invariant"
local recall = require "dingtalk.recall"
local tokens = require "dingtalk.recall.token"
local ledger = require "dingtalk.recall.ledger"
local cli = require "dingtalk.recall.cli"

local CID = "cidFaultSpec"
local has_socket = pcall(require, "socket")

local function every_error(report, keys)
  local first = report.errors[keys[1]]
  assert(first, "key " .. tostring(keys[1]) .. " is not in errors")
  for _, k in ipairs(keys) do
    assert.are.equal(first.code, report.errors[k].code)
  end
  return first
end

local function every_failed(report, keys, reason)
  for _, k in ipairs(keys) do assert.are.equal(reason, report.failed[k]) end
end

local function is_root()
  local out = env.sh("id -u")
  return out:match("^%s*0%s*$") ~= nil
end

describe("fault matrix", function()
  local s

  setup(function()
    s = sim.start {}
  end)
  teardown(function()
    if s then s:stop() end
  end)
  before_each(function()
    s:reset()
    s:config { qps = 0, latency = 0, faults = "" }
    tokens.clear_cache()
  end)

  -- A fresh client (and so fresh connections: libcurl replays a request on
  -- a reused connection that closed before answering, which would hide a
  -- reset from the engine).
  local function client(extra)
    local cfg = { robot_code = s.robot, endpoint = s.url, access_token = s.token, concurrency = 4, qps = 0,
      max_retries = 2, backoff_base = 0.01, backoff_max = 0.05 }
    for k, v in pairs(extra or {}) do cfg[k] = v end
    if cfg.app_key then cfg.access_token = nil end
    return assert(recall.client(cfg))
  end

  -- Seeds n keys, queues the script, recalls; checks the invariant.
  local function run(script, n, extra, opts)
    local keys = s:seed_keys(n or 3, CID)
    if script then s:script { recall = script } end
    local c = client(extra)
    local report = assert(c:recall(CID, keys, opts))
    c:close()
    invariant.assert(report, keys)
    return report, keys, s:stats()
  end

  describe("timeout", function()
    it("every attempt times out: transport.timeout on every key, retried max_retries times", function()
      -- (the server's slow answer takes 5 s: every attempt waits out its 0.5 s)
      local report, keys, st = run({ "slow", "slow" }, 3, { timeout = 0.5, max_retries = 1 })
      local e = every_error(report, keys)
      assert.are.equal("transport.timeout", e.code)
      assert.is_true(e.retryable)
      assert.are.equal(2, report.requests)
      assert.are.equal(1, report.retries)
      assert.is_false(report.ok)
      assert.is_true(report.elapsed >= 0.95 and report.elapsed < 3.5, "elapsed " .. report.elapsed)
      assert.are.equal(2, st.requests.recall)
    end)

    it("a timeout, then an answer: the server had recalled; the retry's ALREADY_RECALLED counts as recalled",
      function()
      local report, _, st = run({ "slow", "ok" }, 3, { timeout = 1, max_retries = 1 })
      assert.are.equal(3, #report.recalled)
      assert.are.same(report.recalled, report.already_recalled)
      assert.is_true(report.ok)
      assert.are.equal(2, report.requests)
      assert.are.equal(1, report.retries)
      assert.are.equal(3, st.recalled) -- recalled by the first, timed-out request
    end)
  end)

  describe("connection reset", function()
    it("before any answer (reset): transport.io, retried, then recalled", function()
      local report, keys, st = run({ "reset", "ok" }, 3)
      assert.are.equal(3, #report.recalled)
      assert.is_true(report.ok)
      assert.are.equal(2, report.requests)
      assert.are.equal(1, report.retries)
      assert.are.equal(2, st.requests.recall)
      assert.are.equal(3, st.recalled)
      assert.is_nil(next(report.errors))
      assert.are.equal(#keys, #report.recalled)
    end)

    it("on every attempt: transport.io on every key after max_retries", function()
      local report, keys = run({ "reset", "reset", "reset" }, 3)
      local e = every_error(report, keys)
      assert.are.equal("transport.io", e.code)
      assert.is_true(e.retryable)
      assert.is_nil(e.status ~= 0 and e.status or nil)
      assert.are.equal(3, report.requests)
      assert.are.equal(2, report.retries)
    end)

    it("mid-body (truncated: Content-Length promises more): transport.io, retried; recalled", function()
      local report, keys, st = run({ "truncated", "ok" }, 3)
      assert.are.equal(3, #report.recalled)
      assert.are.equal(#keys, #report.recalled)
      assert.are.equal(3, #report.already_recalled)
      assert.is_true(report.ok)
      assert.are.equal(2, report.requests)
      assert.are.equal(1, report.retries)
      assert.are.equal(3, st.recalled)
      report, keys = run({ "truncated", "truncated", "truncated" }, 3)
      local e = every_error(report, keys)
      assert.are.equal("transport.io", e.code)
      assert.matches("transfer closed", e.message)
      assert.is_true(e.retryable)
      assert.are.equal(3, report.requests)
    end)

    it("after the recall, before the answer (reset_after): retried; recalled", function()
      local report, _, st = run({ "reset_after", "ok" }, 3)
      assert.are.equal(3, #report.recalled)
      assert.are.equal(3, #report.already_recalled)
      assert.is_true(report.ok)
      assert.are.equal(1, report.retries)
      assert.are.equal(3, st.recalled)
    end)
  end)

  describe("5xx", function()
    it("system.error (500) once: retried after a backoff, then recalled", function()
      local report, keys = run({ "system_error", "ok" }, 3)
      assert.are.equal(#keys, #report.recalled)
      assert.is_true(report.ok)
      assert.are.equal(1, report.retries)
      assert.are.equal(2, report.requests)
    end)

    it("system.error on every attempt: every key in errors, HTTP 500, retryable", function()
      local report, keys = run({ "system_error", "system_error", "system_error" }, 3)
      local e = every_error(report, keys)
      assert.are.equal("system.error", e.code)
      assert.are.equal(500, e.status)
      assert.is_true(e.retryable)
      assert.is_truthy(e.request_id)
      assert.are.equal(3, report.requests)
      assert.are.equal(2, report.retries)
    end)
  end)

  describe("throttling", function()
    it("a QpsLimitForAppkeyAndApi answer: waits about 1 s, retries, recalled; counted in throttled", function()
      local report, keys = run({ "throttle", "ok" }, 3)
      assert.are.equal(#keys, #report.recalled)
      assert.are.equal(1, report.throttled)
      assert.are.equal(1, report.retries)
      assert.is_true(report.elapsed >= 0.9, "retried after " .. report.elapsed)
    end)

    it("QpsLimitForApi on every attempt: every key in errors, HTTP 403, retryable", function()
      local report, keys = run({ "throttle_api", "throttle_api" }, 3, { max_retries = 1 })
      local e = every_error(report, keys)
      assert.are.equal("Forbidden.AccessDenied.QpsLimitForApi", e.code)
      assert.are.equal(403, e.status)
      assert.is_true(e.retryable)
      assert.are.equal(2, report.throttled)
    end)

    it("a server that really throttles (2 calls/s) while the client's own limit is off: all recalled", function()
      s:config { qps = 2 }
      local report, keys, st = run(nil, 120, { qps = 0, concurrency = 4, max_retries = 10 }) -- 6 batches
      assert.are.equal(#keys, #report.recalled)
      assert.is_true(report.ok)
      assert.is_true(report.throttled >= 1, "never throttled")
      assert.are.equal(st.throttled, report.throttled)
      assert.are.equal(6 + report.retries, report.requests)
    end)
  end)

  describe("HTML body", function()
    it("a 502 HTML page (html): response.invalid, retryable, retried, then recalled", function()
      local report, keys = run({ "html", "ok" }, 3)
      assert.are.equal(#keys, #report.recalled)
      assert.are.equal(1, report.retries)
      report, keys = run({ "html", "html", "html" }, 3)
      local e = every_error(report, keys)
      assert.are.equal("response.invalid", e.code)
      assert.are.equal(502, e.status)
      assert.is_true(e.retryable)
      assert.are.equal(3, report.requests)
    end)

    it("a 403 HTML ban page (ban): response.invalid, not retried", function()
      local report, keys = run({ "ban", "ok" }, 3)
      local e = every_error(report, keys)
      assert.are.equal("response.invalid", e.code)
      assert.are.equal(403, e.status)
      assert.is_false(e.retryable)
      assert.are.equal(1, report.requests)
      assert.are.equal(0, report.retries)
    end)
  end)

  describe("bad bodies", function()
    it("truncated JSON with a matching Content-Length (malformed): response.invalid, not retried", function()
      local report, keys, st = run({ "malformed" }, 3)
      local e = every_error(report, keys)
      assert.are.equal("response.invalid", e.code)
      assert.are.equal(200, e.status)
      assert.is_false(e.retryable)
      assert.are.equal(1, report.requests)
      -- the server did recall them: a second run says so
      assert.are.equal(3, st.recalled)
      local c = client()
      local again = assert(c:recall(CID, keys))
      every_failed(again, keys, "ALREADY_RECALLED")
      c:close()
    end)

    it("an oversized body (huge, 2 MiB > max_response_bytes 1 MiB): response.too_large, not retried", function()
      local report, keys, st = run({ "huge" }, 3)
      local e = every_error(report, keys)
      assert.are.equal("response.too_large", e.code)
      assert.are.equal(200, e.status)
      assert.is_false(e.retryable)
      assert.matches("1048576", e.message)
      assert.are.equal(1, report.requests)
      assert.are.equal(3, st.recalled)
      -- with room for it, the same answer is fine
      report = run({ "huge" }, 3, { max_response_bytes = 4 * 1024 * 1024 })
      assert.are.equal(3, #report.recalled)
    end)

    it("a server that trickles one byte a second (trickle): transport.timeout after `timeout`", function()
      -- (bytes keep coming, one a second, past the 1.2 s the whole answer may take)
      local report, keys = run({ "trickle" }, 3, { timeout = 1.2, max_retries = 0 })
      local e = every_error(report, keys)
      assert.are.equal("transport.timeout", e.code)
      assert.is_true(e.retryable)
      assert.are.equal(1, report.requests)
      assert.are.equal(0, report.retries)
      assert.is_true(report.elapsed >= 1.15 and report.elapsed < 2.7, "elapsed " .. report.elapsed)
    end)
  end)

  describe("redirect", function()
    it("a 302 (redirect): response.redirect, never followed, not retried", function()
      local report, keys, st = run({ "redirect", "ok" }, 3)
      local e = every_error(report, keys)
      assert.are.equal("response.redirect", e.code)
      assert.are.equal(302, e.status)
      assert.is_false(e.retryable)
      assert.are.equal(1, report.requests)
      assert.are.equal(0, st.redirects_followed)
      assert.are.equal(1, st.requests.recall)
    end)
  end)

  describe("TLS certificate for the wrong host", function()
    local t
    setup(function()
      t = sim.start { tls = true, wrong_host_cert = true }
    end)
    teardown(function()
      if t then t:stop() end
    end)


    it("transport.tls, not retried, nothing reaches the API", function()
      local keys = { "kTls1", "kTls2", "kTls3" }
      local c = assert(recall.client { robot_code = t.robot, endpoint = t.url, ca_file = t.ca_file,
        access_token = t.token, max_retries = 2, backoff_base = 0.01, qps = 0 })
      local report = assert(c:recall(CID, keys))
      c:close()
      invariant.assert(report, keys)
      local e = every_error(report, keys)
      assert.are.equal("transport.tls", e.code)
      assert.is_false(e.retryable)
      assert.are.equal(1, report.requests)
      assert.are.equal(0, report.retries)
      assert.are.equal(0, t:stats().requests.recall)
      assert.is_nil(tostring(e):find(t.token, 1, true))
    end)
  end)

  describe("DNS failure", function()
    it("transport.connect, retryable, retried (resolver on loopback in a private namespace)", function()
      if not env.can_unshare() then
        return pending("needs `unshare -m` and mount (root): the machine's own resolver is not loopback")
      end
      local res = env.in_namespace("dns", {}, { resolv = "nameserver 127.0.0.1\noptions attempts:1 timeout:1\n" })
      assert.is_nil(res.crash)
      assert.matches("nameserver 127%.0%.0%.1", res.resolv)
      assert.are.equal("transport.connect", res.err.code)
      assert.matches("resolve", res.err.message)
      assert.is_true(res.err.retryable)
      assert.is_true(res.report.invariant, res.report.invariant_why)
      assert.are.equal(3, res.report.errors)
      assert.are.equal(2, res.report.requests)
      assert.are.equal(1, res.report.retries)
    end)
  end)

  describe("token expired mid-run", function()
    it("app credentials: the client fetches a new token once and every key is recalled", function()
      s:config { latency = 0.05 }
      local expired = false
      local report, keys, st = run(nil, 200, { app_key = s.app_key, app_secret = s.app_secret, concurrency = 4 }, {
        on_progress = function()
          if not expired then
            expired = true
            s:expire_tokens() -- every token issued so far is now invalid
          end
        end,
      })
      assert.is_true(expired)
      assert.are.equal(#keys, #report.recalled)
      assert.is_true(report.ok)
      assert.are.equal(2, report.token_fetches)
      assert.are.equal(2, st.token_fetches)
      -- every request the expiry caught was retried once with the new token
      local rejected = st.codes.InvalidAuthentication or 0
      assert.is_true(rejected >= 1, "no request met the expired token")
      assert.are.equal(rejected, report.retries)
      assert.are.equal(10 + rejected, report.requests)
    end)

    it("a fixed access_token cannot be refreshed: InvalidAuthentication on the rest, not retried", function()
      local expired = false
      local report, keys = run(nil, 60, { concurrency = 1 }, {
        on_progress = function()
          if not expired then
            expired = true
            s:expire_tokens()
          end
        end,
      })
      assert.are.equal(20, #report.recalled)
      local rest = {}
      for _, k in ipairs(keys) do
        if report.errors[k] then rest[#rest + 1] = k end
      end
      assert.are.equal(40, #rest)
      local e = every_error(report, rest)
      assert.are.equal("InvalidAuthentication", e.code)
      assert.is_false(e.retryable)
      assert.are.equal(0, report.retries)
      assert.are.equal(3, report.requests)
      assert.are.equal(0, report.token_fetches)
    end)
  end)

  describe("ledger disk", function()
    it("full (ENOSPC on a tmpfs): nil, ledger.io; nothing sent before; keys not lost; resumed after", function()
      if not env.can_unshare() then
        return pending("needs `unshare -m` and mount (root) for a tmpfs of its own")
      end
      local keys = s:seed_keys(60, "cidDiskFull")
      local kf = os.tmpname()
      finally(function() os.remove(kf) end)
      local f = assert(io.open(kf, "w"))
      f:write(table.concat(keys, "\n"), "\n")
      f:close()
      local res = env.in_namespace("disk_full", { s.url, s.token, s.robot, kf }, { tmpfs = "1m" })
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
      if not env.can_unshare() then
        return pending("needs `unshare -m` and mount (root) for a tmpfs of its own")
      end
      local keys = s:seed_keys(20, "cidReadOnly")
      local kf = os.tmpname()
      finally(function() os.remove(kf) end)
      local f = assert(io.open(kf, "w"))
      f:write(table.concat(keys, "\n"), "\n")
      f:close()
      local res = env.in_namespace("read_only", { s.url, s.token, s.robot, kf }, { tmpfs = "1m" })
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
