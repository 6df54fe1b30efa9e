-- examples/openresty (nginx.conf and bot.lua) as a user runs it: the bot
-- in two nginx workers against the simulator, answering signed callbacks
-- in DingTalk's reply format, confirming /recall all across workers and
-- sweeping what outlived BOT_TTL.  (spec/openresty_spec.lua: the
-- transport itself.)
local nginx = require "spec.helpers.nginx"
local sim = require "spec.helpers.sim"
local json = sim.json

local available, why = nginx.available()

describe("openresty transport", function()
  if not available then
    pending("nginx is missing: " .. tostring(why))
    return
  end

  local s
  setup(function() s = sim.start { tls = true } end)
  teardown(function() if s then s:stop() end end)

  describe("examples/openresty", function()
    local callback = require "dingtalk.recall.callback"
    local ex
    local TTL = 2

    -- The example's nginx.conf, with this test's port, paths, CA and a
    -- loopback resolver; its main-level lines replaced by the helper's.
    local function example_conf(ctx)
      local text = assert(nginx.read_file(nginx.root .. "examples/openresty/nginx.conf"))
      local envs = {}
      for line in text:gmatch("[^\n]+") do
        if line:match("^env ") then envs[#envs + 1] = line end
      end
      local rest = assert(text:match("\n(events%s*{.*)$"))
      local dir = nginx.root .. "examples/openresty/"
      local function sub(pat, repl)
        local count
        rest, count = rest:gsub(pat, function() return repl end)
        assert(count > 0, "examples/openresty/nginx.conf has no " .. pat)
      end
      sub("%$prefix/", dir)
      sub("listen 127%.0%.0%.1:8080;", "listen 127.0.0.1:" .. ctx.port .. ";")
      sub("lua_ssl_trusted_certificate [^;]+;", "lua_ssl_trusted_certificate " .. nginx.nq(s.ca_file) .. ";")
      sub("resolver [^;]+;", "resolver 127.0.0.1 ipv6=off;")
      sub("http {", "http {\n" .. ctx.temp_paths)
      return ctx.preamble .. "\n" .. table.concat(envs, "\n") .. "\n" .. rest
    end

    setup(function()
      s:reset()
      ex = nginx.start {
        workers = 2, log_level = "notice", conf = example_conf,
        env = {
          DINGTALK_APP_KEY = s.app_key, DINGTALK_APP_SECRET = s.app_secret, DINGTALK_ROBOT_CODE = s.robot,
          DINGTALK_ENDPOINT = s.url, BOT_ADMINS = "staff1", BOT_TTL = TTL .. "s", BOT_SWEEP_EVERY = "0.3",
        },
      }
    end)
    teardown(function() if ex then ex:stop() end end)

    local seq, last_ms = 0, 0
    -- DingTalk signs the timestamp only, so two callbacks signed in the
    -- same millisecond carry one signature and the bot's replay store
    -- refuses the second: each post gets a millisecond of its own.
    local function signed()
      local ms = math.max(math.floor(require("socket").gettime() * 1000), last_ms + 1)
      last_ms = ms
      return callback.headers(s.app_secret, ms)
    end
    local function post(text, o)
      o = o or {}
      seq = seq + 1
      local msg = {
        msgtype = "text", text = { content = text }, conversationId = o.cid or "cidExample",
        conversationType = "2", senderStaffId = o.staff or "staff1", senderNick = "Tester",
        isAdmin = o.admin or false, robotCode = s.robot, msgId = "msg" .. seq,
      }
      local status, body = ex:request("POST", "/dingtalk/callback", { body = json.encode(msg),
        headers = o.headers or signed() })
      return status, json.decode(body)
    end

    local function reply_of(status, res)
      assert.are.equal(200, status)
      assert.are.equal("text", res.msgtype)
      return res.text.content
    end

    it("refuses unsigned, badly signed, stale and replayed callbacks", function()
      local status, res = post("/recall last 1", { headers = { ["content-type"] = "application/json" } })
      assert.are.equal(401, status)
      assert.matches("^callback%.", res.error)
      status, res = post("/recall last 1", { headers = { timestamp = tostring(os.time() * 1000),
        sign = ("A"):rep(43) .. "=" } })
      assert.are.same({ 401, "callback.bad_signature" }, { status, res.error })
      status, res = post("/recall last 1", { headers = callback.headers(s.app_secret, (os.time() - 7200) * 1000) })
      assert.are.same({ 401, "callback.expired" }, { status, res.error })
      local h = signed()
      status = post("/recall help", { headers = h })
      assert.are.equal(200, status)
      for _ = 1, 3 do -- whichever worker takes it: the replay store is shared
        status, res = post("/recall help", { headers = h })
        assert.are.same({ 401, "callback.replayed" }, { status, res.error })
      end
      assert.are.equal(405, (ex:request("GET", "/dingtalk/callback")))
      assert.are.equal(0, s:stats().requests.recall)
    end)

    it("sends with /say and recalls with /recall last N, answering in DingTalk's reply format #timing", function()
      for _, t in ipairs { "one", "two", "three" } do
        local status, res = post("/say " .. t, { cid = "cidLast" })
        assert.are.same({ 200, {} }, { status, res })
      end
      assert.are.equal(3, s:stats().sent)
      assert.are.equal("Recalled 2 messages.", reply_of(post("/recall last 2", { cid = "cidLast" })))
      assert.are.equal(2, s:stats().recalled)
      assert.matches("not allowed", reply_of(post("/recall last 1", { cid = "cidLast", staff = "mallory" })))
      assert.are.equal(2, s:stats().recalled)
    end)

    it("asks for a confirmation before /recall all, which any worker takes #timing", function()
      assert.are.same({ 200, {} }, { post("/say four", { cid = "cidAll" }) })
      local text = reply_of(post("/recall all", { cid = "cidAll", staff = "boss", admin = true }))
      local code = assert(text:match("/recall all confirm (%w+)"), text)
      assert.are.equal("Recalled 1 message.",
        reply_of(post("/recall all confirm " .. code, { cid = "cidAll", staff = "boss", admin = true })))
    end)

    it("recalls what outlived BOT_TTL from the ngx.timer.every sweep #timing", function()
      -- "one" (cidLast) is left: the sweep recalls it TTL seconds after it was sent
      local deadline = os.time() + TTL + 8
      while s:stats().recalled < 4 do
        assert(os.time() <= deadline, "the sweep did not recall the last message")
        nginx.sh("sleep 0.2")
      end
      local st = s:stats()
      assert.are.equal(4, st.sent)
      assert.are.equal(4, st.recalled)
      assert.matches('"event":"swept"', ex:error_log())
      assert.is_nil(ex:error_log():find(s.app_secret, 1, true))
    end)
  end)
end)
