-- The fault matrix (README: "Fault matrix"): for each fault, what the user of the
-- library gets (error code, retryable, how many requests and retries, what
-- the report says), with the per-key invariant checked in every row: every
-- unique key is in exactly one of recalled, failed and errors (and expired
-- for ledger reports).  The simulator makes most faults; a private mount
-- namespace (spec/helpers/fault_env.lua, root only) makes the DNS failure.
-- spec/faults_state_spec.lua: the ledger's disk, Redis, the CLI's exit status.
local sim = require "spec.helpers.sim"
local env = require "spec.helpers.fault_env"
local invariant = require "spec.helpers.invariant"
local recall = require "dingtalk.recall"

local CID = "cidFaultSpec"

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

describe("fault matrix", function()
  local s

  setup(function() s = sim.start {} end)
  teardown(function() if s then s:stop() end end)
  before_each(function() s:fresh() end) -- clean server, no token cached

  local function client(extra) return env.client(s, extra) end

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
end)
