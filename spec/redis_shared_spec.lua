-- The QPS limiter and the token store on Redis (dingtalk.recall.limiter.redis,
-- dingtalk.recall.token.redis) and the client options that use them.
local redis = require "dingtalk.recall.redis"
local rlimiter = require "dingtalk.recall.limiter.redis"
local rtokens = require "dingtalk.recall.token.redis"
local recall = require "dingtalk.recall"
local hostclock = require "dingtalk.recall.clock"
local redis_helper = require "spec.helpers.redis"
local sim = require "spec.helpers.sim"

local unpack_first = table.unpack or unpack -- luacheck: ignore 113 143

describe("shared state on Redis", function()
  local rs, missing
  setup(function() rs, missing = redis_helper.try_start() end)
  teardown(function() if rs then rs:stop() end end)
  before_each(function() if rs then rs:flush() else pending(missing) end end)

  local function logger()
    local lines = {}
    return lines, function(level, msg) lines[#lines + 1] = level .. ": " .. msg end
  end

  describe("limiter", function()
    it("gives at most rate starts per window to all hosts together, keys under one hash tag", function()
      if not rs then return end
      -- a window of 1 s on Redis's clock (the hosts' `now` only drives the fallback)
      local t = hostclock.now()
      local a = assert(rlimiter.new { redis = rs.url, key = "app1", rate = 5, window = 1 })
      local b = assert(rlimiter.new { redis = rs.url, key = "app1", rate = 5, window = 1 })
      local c = assert(rlimiter.new { redis = rs.url, key = "app1", rate = 5, window = 1 })
      local function cmd(...) return tostring(a.redis:call(...)) end -- in-process: no time lost
      local other = assert(rlimiter.new { redis = rs.url, key = "app2", rate = 5, window = 1 })
      for i = 1, 5 do
        local lim = i % 2 == 0 and b or a
        assert.are.equal(0, lim:acquire(t))
      end
      -- full: each waiter is told when a start is free, and the waiters are
      -- spread over the coming free moments (a the first, b the second, ...)
      -- each wait counts from Redis's clock when it answered: at the latest
      -- when the call returned
      local function ask(lim)
        local w = lim:acquire(t)
        return w, hostclock.now() + w
      end
      local wait_a, due_a = ask(a)
      local wait_b, due_b = ask(b)
      local wait_c, due_c = ask(c)
      assert.is_true(wait_a > 0 and wait_a <= 1, "wait " .. wait_a)
      assert.is_true(wait_b > 0 and wait_b <= 1, "wait " .. wait_b)
      assert.is_true(wait_c > 0 and wait_c <= 1, "wait " .. wait_c)
      assert.are.equal("5", cmd("ZCARD", "{dingtalk-recall:app1}:lim:recall")) -- a wait counts no start
      -- the moments told, in time order: a's, then b's, then c's
      assert.are.same({ a.waiter, b.waiter, c.waiter },
        a.redis:call("ZRANGE", "{dingtalk-recall:app1}:limwait:recall", 0, -1))
      assert.are.equal(0, other:acquire(t)) -- another app has its own budget
      -- asking again too early: still a wait, and the waiter keeps its place
      assert.is_true(c:acquire(t) > 0)
      assert.are.equal("3", cmd("ZCARD", "{dingtalk-recall:app1}:limwait:recall"))
      -- at its moment (or later: a start is counted when it is asked for) each gets its start
      hostclock.sleep(math.max(0, math.max(due_a, due_b, due_c) + 0.01 - hostclock.now()))
      assert.are.equal(0, a:acquire(t))
      assert.are.equal(0, b:acquire(t))
      assert.are.equal(0, c:acquire(t))
      assert.are.equal("0", cmd("ZCARD", "{dingtalk-recall:app1}:limwait:recall"))
      local names = (rs:cli("KEYS", "*"))
      local n = 0
      for name in names:gmatch("[^\n]+") do
        assert.truthy(name:match("^{dingtalk%-recall:app[12]}:"), name)
        n = n + 1
      end
      assert.are.equal(4, n) -- a start log and a counter per app (the waiters are gone)
      assert.are.equal(5, a.stats.round_trips)
      assert.are.equal(1, a.stats.waits)
      -- never more than rate in any window, whatever the hosts ask
      local d = assert(rlimiter.new { redis = rs.url, key = "app3", rate = 2, window = 1 })
      assert.are.equal(0, d:acquire(hostclock.now()))
      assert.are.equal(0, d:acquire(hostclock.now()))
      local w = d:acquire(hostclock.now())
      assert.is_true(w > 0.9 and w <= 1, "wait " .. w)
      assert.is_true(d:acquire(hostclock.now()) > 0)
      assert.are.equal("2", rs:cli("ZCARD", "{dingtalk-recall:app3}:lim:recall"))
    end)

    it("still answers after SCRIPT FLUSH (NOSCRIPT: loaded again)", function()
      if not rs then return end
      local a = assert(rlimiter.new { redis = rs.url, key = "app", rate = 100 })
      assert.are.equal(0, a:acquire(hostclock.now()))
      rs:cli("SCRIPT", "FLUSH")
      assert.are.equal(0, a:acquire(hostclock.now()))
      assert.are.equal(0, a.stats.outages)
    end)

    it("answers delay/take for the engine of before acquire", function()
      if not rs then return end
      local a = assert(rlimiter.new { redis = rs.url, key = "app", rate = 2, window = 1 })
      local t = hostclock.now()
      assert.are.equal(0, a:delay(t))
      assert.are.equal(0, a:delay(t)) -- held until taken
      a:take(t)
      assert.are.equal(0, a:delay(t))
      a:take(t)
      assert.is_true(a:delay(t) > 0)
    end)

    it("falls back to a share of the budget when Redis is down, says so once, comes back", function()
      if not rs then return end
      local lines, log = logger()
      local pw = "li/m@pw?x"
      local lim = assert(rlimiter.new { redis = "redis://:" .. pw .. "@127.0.0.1:1/0", key = "app", rate = 20,
        window = 1, fallback_share = 0.25, probe_interval = 0.2, log = log, clock = function() return 0 end })
      local t = 100
      -- the fleet may have used the budget just before: the first start alone waits a window
      local w = lim:acquire(t)
      assert.are.equal(1, w)
      t = t + w
      local got = 0
      for _ = 1, 10 do
        if lim:acquire(t) == 0 then got = got + 1 end
      end
      assert.are.equal(5, got) -- 20 * 0.25
      assert.is_true(lim:acquire(t) > 0)
      assert.are.equal(1, #lines)
      assert.truthy(lines[1]:find("^warn: the shared QPS budget in Redis is unreachable"))
      assert.is_nil(lines[1]:find("li/m", 1, true))
      assert.is_nil(lines[1]:find("pw?x", 1, true))
      -- back: a limiter whose Redis goes away and returns (this host's clock is t)
      local seen = {}
      lim = assert(rlimiter.new { redis = rs.url, key = "back", rate = 10, window = 1, fallback_share = 0.2,
        probe_interval = 0.3, log = function(l, m) seen[#seen + 1] = l .. ": " .. m end,
        clock = function() return 0 end })
      t = 1000
      assert.are.equal(0, lim:acquire(t))
      rs:kill()
      assert.is_true(lim:acquire(t) > 0)
      assert.are.equal(1, #seen)
      assert.are.equal(0, lim:acquire(t + 1.3)) -- alone: 2 a window
      assert.are.equal(0, lim:acquire(t + 1.31))
      assert.is_true(lim:acquire(t + 1.32) > 0)
      rs:restart()
      assert.is_true(lim:acquire(t + 1.5) > 0) -- no probe before probe_interval
      assert.are.equal(1, #seen)
      -- the probe: back on Redis, which first learns the 2 starts made alone
      assert.are.equal(0, lim:acquire(t + 1.7))
      assert.are.equal(2, #seen)
      assert.truthy(seen[2]:find("^info: the shared QPS budget in Redis answers again"))
      assert.are.equal("3", rs:cli("ZCARD", "{dingtalk-recall:back}:lim:recall"))
      -- for a while after the return it also keeps to its share (the others may still be alone)
      assert.is_true(lim:acquire(t + 1.75) > 0)
      assert.are.equal(0, lim:acquire(t + 3.1)) -- the grace is over
      assert.are.equal(0, lim:acquire(t + 3.1))
      assert.are.equal(0, lim:acquire(t + 3.1))
      assert.are.equal(1, lim.stats.outages)
    end)
  end)

  describe("token store", function()
    it("one host fetches, the others wait for its token instead of fetching", function()
      if not rs then return end
      local a = assert(rtokens.new { redis = rs.url, key = "app" })
      local b
      local KEY = "https://api\0appk\0\0\0the-app-secret"
      assert.is_nil(a:get(KEY))           -- a holds the lock: a fetches
      assert.is_nil(a:get(KEY))           -- still fetching: no second lock, no wait
      b = assert(rtokens.new { redis = rs.url, key = "app", sleep = function()
        -- while b waits, a's fetch ends
        a:set(KEY, { token = "tok-1", expires_at = hostclock.now() + 100 }, 100)
      end })
      local e = assert(b:get(KEY))
      assert.are.equal("tok-1", e.token)
      assert.is_true(e.expires_at > hostclock.now() + 90 and e.expires_at <= hostclock.now() + 100)
      assert.are.equal(1, b.stats.waits)
      assert.are.equal(0, b.stats.locks)
      assert.are.equal(1, a.stats.locks)
      -- the secret never reaches Redis; the token's key carries the app's tag
      local keys = rs:cli("KEYS", "*")
      assert.is_nil(keys:find("the-app-secret", 1, true))
      assert.truthy(keys:find("{dingtalk-recall:app}:token:", 1, true))
      local ttl = tonumber((rs:cli("PTTL", (keys:match("[^\n]*:token:[^\n]*")))))
      assert.is_true(ttl > 90000 and ttl <= 100000)
      -- read once, then served from this host's copy
      local reads = b.stats.reads
      assert.are.equal("tok-1", b:get(KEY).token)
      assert.are.equal(reads, b.stats.reads)
    end)

    it("invalidates a failed token once for everyone, never the one that replaced it", function()
      if not rs then return end
      local a = assert(rtokens.new { redis = rs.url, key = "app" })
      local b = assert(rtokens.new { redis = rs.url, key = "app" })
      local KEY = "e\0k\0\0\0s"
      assert.is_nil(a:get(KEY))
      a:set(KEY, { token = "old", expires_at = hostclock.now() + 100 }, 100)
      assert.are.equal("old", b:get(KEY).token)
      a:delete(KEY, "old")                -- a saw InvalidAuthentication
      assert.is_nil(a:get(KEY))           -- a fetches again (lock)
      a:set(KEY, { token = "new", expires_at = hostclock.now() + 100 }, 100)
      b:delete(KEY, "old")                -- b sees the same failure later
      assert.are.equal("new", b:get(KEY).token)
      assert.are.equal("new", a:get(KEY).token)
    end)

    it("takes over a lock whose holder died, and works alone while Redis is down", function()
      if not rs then return end
      local KEY = "e\0k\0\0\0s"
      local a = assert(rtokens.new { redis = rs.url, key = "app", lock_ttl = 0.3 })
      assert.is_nil(a:get(KEY)) -- a dies with the lock
      local b = assert(rtokens.new { redis = rs.url, key = "app", sleep = hostclock.sleep })
      local t0 = hostclock.now()
      assert.is_nil(b:get(KEY)) -- b waited for the lock to end, then took it
      assert.is_true(hostclock.now() - t0 >= 0.2)
      assert.are.equal(1, b.stats.locks)
      local lines, log = logger()
      local c = assert(rtokens.new { redis = "redis://127.0.0.1:1/0", key = "app", log = log })
      assert.is_nil(c:get(KEY))
      c:set(KEY, { token = "mine", expires_at = hostclock.now() + 50 }, 50)
      assert.are.equal("mine", c:get(KEY).token)
      assert.are.equal(1, #lines)
      assert.truthy(lines[1]:find("^warn: the shared token in Redis is unreachable"))
    end)
  end)

  describe("client options", function()
    local s
    setup(function() s = sim.start { qps = 0 } end)
    teardown(function() if s then s:stop() end end)

    -- A client of the simulator's app (key + secret) whose token and QPS
    -- budget live in the test's Redis.
    local function shared_client(qps)
      return assert(recall.client { robot_code = s.robot, endpoint = s.url, app_key = s.app_key,
        app_secret = s.app_secret, redis = rs.url, qps = qps })
    end

    it("two clients of one app with `redis` fetch one token and share one budget", function()
      if not rs then return end
      s:reset()
      local keys = s:seed_keys(40, "cidShared")
      local function client() return shared_client(20) end
      local c1, c2 = client(), client()
      assert.is_table(c1.redis)
      local r1 = assert(c1:recall("cidShared", { unpack_first(keys, 1, 20) }))
      local r2 = assert(c2:recall("cidShared", { unpack_first(keys, 21, 40) }))
      assert.is_true(r1.ok and r2.ok)
      assert.are.equal(1, s:stats().tokens_issued)
      assert.are.equal(0, r2.token_fetches)
      assert.are.equal("2", rs:cli("ZCARD", "{dingtalk-recall:" .. s.app_key .. "}:lim:recall"))
      c1:close()
      c2:close()
    end)

    it("after InvalidAuthentication one host fetches a new token for everyone", function()
      if not rs then return end
      s:reset()
      local keys = s:seed_keys(80, "cidAuth")
      local function client() return shared_client(0) end
      local c1, c2 = client(), client()
      assert(c1:recall("cidAuth", { keys[1] }))
      assert(c2:recall("cidAuth", { keys[2] }))
      assert.are.equal(1, s:stats().tokens_issued)
      s:expire_tokens()        -- every token issued so far is now refused
      local r1 = assert(c1:recall("cidAuth", { unpack_first(keys, 3, 40) }))
      assert.is_true(r1.ok)
      assert.are.equal(1, r1.token_fetches)
      -- c2 still holds the old token: refused once, then it reads c1's new one
      local r2 = assert(c2:recall("cidAuth", { unpack_first(keys, 41, 80) }))
      assert.is_true(r2.ok)
      assert.are.equal(0, r2.token_fetches)
      assert.are.equal(2, s:stats().tokens_issued)
      c1:close()
      c2:close()
    end)

    it("checks the options", function()
      assert.has_error(function() recall.client { access_token = "t", redis = 5 } end)
      assert.has_error(function() recall.client { access_token = "t", limiter = { redsi = "x" } } end)
      assert.has_error(function() recall.client { access_token = "t", limiter = { fallback_share = "x" } } end)
      local c, err = recall.client { access_token = "t", limiter = { redis = "http://x" } }
      assert.is_nil(c)
      assert.are.equal("redis.invalid", err.code)
      assert.truthy(redis.redact) -- the module the options use
    end)
  end)
end)
