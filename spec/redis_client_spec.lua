-- The project's RESP client (dingtalk.recall.redis) against a real
-- redis-server started on 127.0.0.1 by spec/helpers/redis.lua.
local redis = require "dingtalk.recall.redis"
local core = require "dingtalk.recall.core"
local clock = require "dingtalk.recall.clock"
local redis_helper = require "spec.helpers.redis"


-- Passwords with every character a URL parser trips on.
local PASSWORD = "s3/cr@t?x:y#z%"
local USER_PW = "u/p@ss?w:rd"

local function enc(s)
  return (s:gsub("[^%w]", function(c) return ("%%%02X"):format(c:byte()) end))
end

-- Fails when the secret shows in any field or rendering of err.
local function assert_no_secret(err, ...)
  local texts = { tostring(err) }
  if type(err) == "table" then
    for _, f in ipairs { "message", "hint", "code", "request_id", "reply" } do
      if err[f] ~= nil then texts[#texts + 1] = tostring(err[f]) end
    end
  end
  for _, secret in ipairs { ... } do
    for _, t in ipairs(texts) do
      assert.is_nil(t:find(secret, 1, true), "secret in: " .. t)
      assert.is_nil(t:find(enc(secret), 1, true), "encoded secret in: " .. t)
      -- no part of the password around its special characters either
      for piece in secret:gmatch("[%w]+") do
        if #piece >= 3 then assert.is_nil(t:find(piece, 1, true), "part '" .. piece .. "' of the secret in: " .. t) end
      end
    end
  end
end

describe("redis client", function()
  describe("URLs", function()
    it("parses user, password, host, port and db, with / @ ? : # in the password", function()
      local p = redis.parse_url
      assert.are.same({ host = "127.0.0.1", port = 6379, db = 0 }, p("redis://"))
      assert.are.same({ host = "10.0.0.5", port = 6390, db = 3 }, p("redis://10.0.0.5:6390/3"))
      assert.are.same({ host = "::1", port = 7000, db = 0 }, p("redis://[::1]:7000"))
      assert.are.same({ host = "h", port = 1, db = 2, password = PASSWORD },
        p("redis://:" .. PASSWORD .. "@h:1/2"))
      assert.are.same({ host = "h", port = 1, db = 2, password = PASSWORD },
        p("redis://:" .. enc(PASSWORD) .. "@h:1/2"))
      assert.are.same({ host = "h", port = 6379, db = 0, user = "al/ice", password = USER_PW },
        p("redis://al%2Fice:" .. USER_PW .. "@h"))
      assert.are.same({ host = "h", port = 6379, db = 0, password = "only" }, p("redis://only@h"))
      assert.are.same({ host = "h", port = 6379, db = 4 }, p("redis://h/4?timeout=1"))
    end)

    it("refuses bad URLs without showing the password", function()
      for _, url in ipairs { "redis://:" .. PASSWORD .. "@h/x", "redis://:" .. PASSWORD .. "@h:99999",
        "redis://:" .. PASSWORD .. "@h:0", "http://:" .. PASSWORD .. "@h", "redis://:" .. PASSWORD .. "@h/-1" } do
        local c, err = redis.new(url)
        assert.is_nil(c, url)
        assert.are.equal("redis.invalid", err.code)
        assert_no_secret(err, PASSWORD)
      end
      assert.has_error(function() redis.new("redis://h", { timeout = 0 / 0 }) end)
      assert.has_error(function() redis.new("redis://h", { timeout = -1 }) end)
    end)

    it("redacts a URL's userinfo and the password from any text", function()
      assert.are.equal("see redis://:***@h:1/0 now", redis.redact("see redis://:" .. PASSWORD .. "@h:1/0 now"))
      assert.are.equal("redis://bob:***@h", redis.redact("redis://bob:" .. USER_PW .. "@h"))
      assert.are.equal("x *** y", redis.redact("x " .. PASSWORD .. " y", PASSWORD))
      local c = assert(redis.new("redis://bob:" .. enc(USER_PW) .. "@127.0.0.1:1/3"))
      assert.are.equal("redis client redis://bob:***@127.0.0.1:1/3", tostring(c))
      assert_no_secret(tostring(c), USER_PW)
      for _, v in pairs(c) do assert.are_not.equal(USER_PW, v) end
      for _, v in pairs(c.cfg) do assert.are_not.equal(USER_PW, v) end
    end)
  end)

  describe("against redis-server", function()
    local rs, missing
    setup(function() rs, missing = redis_helper.try_start() end)
    teardown(function() if rs then rs:stop() end end)
    before_each(function() if rs then rs:flush() else pending(missing) end end)

    it("answers strings, integers, nil bulk strings, arrays and binary data", function()
      if not rs then return end
      local c = assert(redis.new(rs.url))
      assert.are.equal("OK", c:call("SET", "k", "v"))
      assert.are.equal("v", c:call("GET", "k"))
      assert.are.equal(false, c:call("GET", "nope"))
      assert.are.equal(3, c:call("INCRBY", "n", 3))
      assert.are.equal(2, c:call("RPUSH", "l", "a", "b"))
      assert.are.same({ "a", "b" }, c:call("LRANGE", "l", 0, -1))
      assert.are.same({}, c:call("LRANGE", "none", 0, -1))
      assert.are.same({ "v", false, "3" }, c:call("MGET", "k", "nope", "n"))
      local blob = ("\r\n\0$*-+:"):rep(20000)
      assert.are.equal("OK", c:call("SET", "blob", blob))
      assert.are.equal(blob, c:call("GET", "blob"))
      assert.are.same({ 1, { "x", { 2, false } } },
        c:eval("return {1, {'x', {2, false}}}", {}, {}))
      c:close()
      c:close()
    end)

    it("turns error replies into error objects and keeps the connection", function()
      if not rs then return end
      local c = assert(redis.new(rs.url))
      c:call("SET", "k", "v")
      local v, err = c:call("LPUSH", "k", "x")
      assert.is_nil(v)
      assert.is_true(core.is_error(err))
      assert.are.equal("redis.reply", err.code)
      assert.are.equal("WRONGTYPE", err.reply)
      assert.is_false(err.retryable)
      assert.truthy(tostring(err):find("WRONGTYPE", 1, true))
      v, err = c:call("NOSUCHCOMMAND")
      assert.is_nil(v)
      assert.are.equal("ERR", err.reply)
      assert.are.equal("v", c:call("GET", "k"))
      assert.are.equal(1, c.connects)
      assert.has_error(function() c:call("SET", "k", {}) end)
      assert.has_error(function() c:call() end)
    end)

    it("pipelines commands in one round trip, an error reply in place", function()
      if not rs then return end
      local c = assert(redis.new(rs.url))
      c:call("PING")
      local rt = c.round_trips
      local replies = assert(c:pipeline {
        { "SET", "a", "1" }, { "LPUSH", "a", "x" }, { "INCR", "a" }, { "GET", "missing" },
      })
      assert.are.equal(rt + 1, c.round_trips)
      assert.are.equal("OK", replies[1])
      assert.are.equal("redis.reply", replies[2].code)
      assert.are.equal("WRONGTYPE", replies[2].reply)
      assert.are.equal(2, replies[3])
      assert.are.equal(false, replies[4])
      assert.are.same({}, c:pipeline {})
      local many = {}
      for i = 1, 1000 do many[i] = { "INCR", "cnt" } end
      replies = assert(c:pipeline(many))
      assert.are.equal(1000, #replies)
      assert.are.equal(1000, replies[1000])
    end)

    it("runs scripts by EVALSHA, loading them once and again after SCRIPT FLUSH", function()
      if not rs then return end
      local c = assert(redis.new(rs.url))
      local s = redis.script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
      assert.are.equal(2, c:eval(s, { "x" }, { 2 }))
      local rt = c.round_trips
      assert.are.equal(4, c:eval(s, { "x" }, { 2 }))
      assert.are.equal(rt + 1, c.round_trips) -- loaded already: one EVALSHA
      assert.are.equal("OK", rs:cli("SCRIPT", "FLUSH"))
      assert.are.equal(6, c:eval(s, { "x" }, { 2 })) -- NOSCRIPT, SCRIPT LOAD, EVALSHA
      local v, err = c:eval("return redis.error_reply('MYERR nope')", {}, {})
      assert.is_nil(v)
      assert.are.equal("MYERR", err.reply)
    end)

    it("selects the URL's database", function()
      if not rs then return end
      local c = assert(redis.new((rs.url:gsub("/0$", "/3"))))
      assert.are.equal("OK", c:call("SET", "in3", "yes"))
      assert.are.equal("yes", rs:cli("-n", "3", "GET", "in3"))
      assert.are.equal("", rs:cli("-n", "0", "GET", "in3"))
      local bad = assert(redis.new((rs.url:gsub("/0$", "/99"))))
      local v, err = bad:call("PING")
      assert.is_nil(v)
      assert.are.equal("redis.auth", err.code) -- SELECT refused: DB index is out of range
    end)

    it("fails a connection to a closed port with a retryable error", function()
      if not rs then return end
      local c = assert(redis.new("redis://:" .. PASSWORD .. "@127.0.0.1:1/0", { timeout = 1 }))
      local v, err = c:call("PING")
      assert.is_nil(v)
      assert.are.equal("redis.io", err.code)
      assert.is_true(err.retryable)
      assert_no_secret(err, PASSWORD)
    end)

    it("times out on a server that never answers", function()
      if not rs then return end
      local socket = require "socket"
      local srv = assert(socket.bind("127.0.0.1", 0))
      local _, port = srv:getsockname()
      local c = assert(redis.new("redis://:" .. PASSWORD .. "@127.0.0.1:" .. port .. "/0", { timeout = 0.3 }))
      local t0 = clock.now()
      local v, err = c:call("PING")
      local took = clock.now() - t0
      srv:close()
      assert.is_nil(v)
      assert.are.equal("redis.io", err.code)
      assert.truthy(tostring(err):find("timeout", 1, true), tostring(err))
      assert.is_true(took >= 0.25 and took < 3, "took " .. took)
      assert_no_secret(err, PASSWORD)
    end)

    it("reconnects after a server restart and reloads its scripts", function()
      if not rs then return end
      local c = assert(redis.new(rs.url, { timeout = 1 }))
      local s = redis.script("return redis.call('INCR', KEYS[1])")
      assert.are.equal(1, c:eval(s, { "r" }))
      rs:kill()
      local v, err = c:call("INCR", "r")
      assert.is_nil(v)
      assert.are.equal("redis.io", err.code)
      assert.is_true(err.retryable)
      rs:restart()
      -- the first call after the restart finds its pooled connection dead
      -- and retries on a fresh one; the script is loaded again (NOSCRIPT).
      assert.are.equal(1, c:eval(s, { "r" }))
      rs:kill()
      rs:restart()
      assert.are.equal("PONG", c:call("PING")) -- a dead idle connection is replaced silently
      assert.is_true(c.connects >= 3)
    end)
  end)

  describe("AUTH", function()
    it("authenticates with a password holding / @ ? : and never shows it", function()
      if redis_helper.missing() then return pending(redis_helper.missing()) end
      local rs = redis_helper.start { args = { "--requirepass", PASSWORD }, auth = { "-a", PASSWORD } }
      finally(function() rs:stop() end)
      local base = "127.0.0.1:" .. rs.port .. "/0"
      for _, url in ipairs { "redis://:" .. PASSWORD .. "@" .. base, "redis://:" .. enc(PASSWORD) .. "@" .. base } do
        local c = assert(redis.new(url))
        assert.are.equal("PONG", c:call("PING"))
        assert_no_secret(tostring(c), PASSWORD)
        c:close()
      end
      -- no password: every command refused, the error says so without any secret
      local anon = assert(redis.new("redis://" .. base))
      local v, err = anon:call("GET", "x")
      assert.is_nil(v)
      assert.are.equal("NOAUTH", err.reply)
      -- a wrong password: AUTH refused
      local wrong = "wr/ng@pw?" .. PASSWORD:sub(1, 2)
      local bad = assert(redis.new("redis://:" .. wrong .. "@" .. base))
      v, err = bad:call("PING")
      assert.is_nil(v)
      assert.are.equal("redis.auth", err.code)
      assert.is_false(err.retryable)
      assert_no_secret(err, wrong, PASSWORD)
      -- the server goes away: io errors carry no secret either
      rs:kill()
      local c = assert(redis.new("redis://:" .. PASSWORD .. "@" .. base, { timeout = 0.5 }))
      v, err = c:call("PING")
      assert.is_nil(v)
      assert.are.equal("redis.io", err.code)
      assert_no_secret(err, PASSWORD)
      v, err = c:eval("return 1", {}, {})
      assert.is_nil(v)
      assert_no_secret(err, PASSWORD)
      v, err = c:pipeline { { "PING" } }
      assert.is_nil(v)
      assert_no_secret(err, PASSWORD)
    end)

    it("authenticates an ACL user with user and password", function()
      if redis_helper.missing() then return pending(redis_helper.missing()) end
      local rs = redis_helper.start {
        args = { "--user", "alice", "on", ">" .. USER_PW, "~app:*", "&*", "+@all" },
      }
      finally(function() rs:stop() end)
      local base = "127.0.0.1:" .. rs.port .. "/0"
      local c = assert(redis.new("redis://alice:" .. enc(USER_PW) .. "@" .. base))
      assert.are.equal("OK", c:call("SET", "app:1", "x"))
      assert.are.equal("alice", c:call("ACL", "WHOAMI"))
      local v, err = c:call("SET", "other", "x")
      assert.is_nil(v)
      assert.are.equal("NOPERM", err.reply)
      local bad = assert(redis.new("redis://alice:nope" .. USER_PW .. "@" .. base))
      v, err = bad:call("PING")
      assert.is_nil(v)
      assert.are.equal("redis.auth", err.code)
      assert_no_secret(err, USER_PW)
    end)
  end)
end)
