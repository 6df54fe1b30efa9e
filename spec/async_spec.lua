-- dingtalk.recall.async and the async transport: the step API (fds and a
-- timeout to wait on, then step()), and async.run_uv on a luv loop, which
-- keeps firing timers while a recall waits on the simulator.
local sim = require "spec.helpers.sim"
local curl = require "dingtalk.recall.curl"
local recall = require "dingtalk.recall"
local async = require "dingtalk.recall.async"
local async_transport = require "dingtalk.recall.transport.async"

local has_luv, uv = pcall(require, "luv")

local function count(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end

describe("async tasks", function()
  it("check their arguments", function()
    assert.has_error(function() async.start("nope") end, "async.start expects a function")
    assert.has_error(function() async.run_uv({}, 42) end, "async.run_uv expects a function")
    assert.has_error(function() async.sleep("1") end, "async.sleep: seconds must be a number")
  end)

  it("finish at the first step when fn never waits, with all its results", function()
    local task = async.start(function(a, b) return a + b, nil, "x" end, 2, 3)
    local r = { n = 0 }
    local function grab(...) r = { n = select("#", ...), ... } end
    grab(task:step())
    assert.are.same({ n = 4, true, 5, nil, "x" }, r)
    assert.is_true(task.done)
    grab(task:step()) -- later steps repeat the outcome
    assert.are.same({ n = 4, true, 5, nil, "x" }, r)
    assert.are.equal(0, task:timeout())
    assert.are.same({}, task:fds())
  end)

  it("tell the host how long to wait when they sleep", function()
    local inside
    local task = async.start(function()
      inside = async.in_task()
      async.sleep(0.2)
      return "woke"
    end)
    assert.is_false(async.in_task())
    assert.is_false(task:step())
    assert.is_true(inside)
    local t = task:timeout()
    assert.is_true(t > 0.1 and t <= 0.2, "timeout " .. t)
    assert.are.same({}, task:fds())
    -- A step too early is harmless: it waits again.
    local t0 = curl.now()
    local done, v = task:step()
    while not done do
      curl.sleep(task:timeout())
      done, v = task:step()
    end
    assert.are.equal("woke", v)
    assert.is_true(curl.now() - t0 >= 0.15)
  end)

  it("raise what fn raised, with the task's traceback, at every later step", function()
    local task = async.start(function() error("boom in the task") end)
    local ok, err = pcall(task.step, task)
    assert.is_false(ok)
    assert.matches("boom in the task", err)
    assert.matches("traceback", err)
    assert.has_error(function() task:step() end)
  end)

  it("refuse a bare coroutine.yield and waiting outside a task", function()
    local task = async.start(function() coroutine.yield("mine") end)
    assert.has_error(function() task:step() end,
      "an async task yielded on its own (coroutine.yield outside a coroutine it created)")
    assert.has_error(function() async.wait(nil, 1) end, "async.wait called outside an async task")
    assert.has_error(function() async.sleep(1) end, "async.sleep called outside an async task")
  end)

  it("can be cancelled", function()
    local task = async.start(function() async.sleep(10) return "late" end)
    assert.is_false(task:step())
    task:cancel()
    local done, v, err = task:step()
    assert.is_true(done)
    assert.is_nil(v)
    assert.are.equal("async.cancelled", err.code)
  end)
end)

describe("the async transport", function()
  local s
  setup(function() s = sim.start { tls = true, latency = 0.3, token = "tok-ASYNC-SECRET" } end)
  teardown(function() if s then s:stop() end end)

  local function client(extra)
    local o = { robot_code = s.robot, access_token = s.token, endpoint = s.url, ca_file = s.ca_file,
      transport = async_transport.new() }
    for k, v in pairs(extra or {}) do
      if v == false then v = nil end
      o[k] = v
    end
    return assert(recall.client(o))
  end

  it("blocks like the curl transport outside a task", function()
    s:config { latency = 0.05 }
    local keys = s:seed_keys(2, "cidAsync")
    local c = client()
    local rep = assert(c:recall("cidAsync", keys))
    c:close()
    assert.are.same(keys, rep.recalled)
    assert.is_true(rep.ok)
  end)

  it("yields inside a task: the host sees the sockets and a deadline, and drives it by step()", function()
    s:config { latency = 0.3 }
    local keys = s:seed_keys(3, "cidAsync")
    local c = client()
    local task = async.start(function() return c:recall("cidAsync", keys) end)
    local steps, saw_fds, max_timeout = 0, 0, 0
    local done, rep, err = task:step()
    while not done do
      steps = steps + 1
      local fds, t = task:fds(), task:timeout()
      if #fds > 0 then
        saw_fds = saw_fds + 1
        for _, f in ipairs(fds) do
          assert.are.equal("number", type(f.fd))
          assert.is_true(f.read or f.write)
        end
      end
      assert.is_truthy(t, "a task waiting on transfers has a deadline")
      if t > max_timeout then max_timeout = t end
      curl.sleep(math.min(t, 0.02)) -- a crude host loop: poll the task often
      done, rep, err = task:step()
    end
    c:close()
    assert.is_nil(err)
    assert.are.same(keys, rep.recalled)
    assert.is_true(saw_fds > 0, "fds() never listed a socket")
    assert.is_true(max_timeout <= 1.0, "timeout above the engine's 1 s cap: " .. max_timeout)
    assert.is_true(steps > 3)
    local views = s:keys(keys)
    for _, k in ipairs(keys) do assert.are.equal("recalled", (views[k] or {}).state, k) end
  end)

  local describe_luv = has_luv and describe or pending
  describe_luv("with luv (async.run_uv)", function()
    it("keeps a 50 ms timer firing while a recall waits 2 s on the server", function()
      s:config { latency = 2 }
      local keys = s:seed_keys(3, "cidAsync")
      local c = client()
      local ticks, ticks_at_done, elapsed, rep, err = 0, nil, nil, nil, nil
      local timer = uv.new_timer()
      timer:start(50, 50, function() ticks = ticks + 1 end)
      local t0 = uv.hrtime()
      local h = async.run_uv(uv, function() return c:recall("cidAsync", keys) end, function(r, e)
        ticks_at_done, elapsed, rep, err = ticks, (uv.hrtime() - t0) / 1e9, r, e
        timer:stop()
        timer:close()
      end)
      assert.is_nil(rep) -- run_uv returned before anything ran
      uv.run()
      c:close()
      assert.is_nil(err)
      assert.is_true(elapsed >= 1.9, "the recall did not wait on the server: " .. elapsed)
      assert.is_true(ticks_at_done >= 30,
        ("timer ticks during the recall: %d in %.2f s"):format(ticks_at_done, elapsed))
      print(("\n  %s + luv: %d timer ticks (50 ms) during a %.3f s recall, %d task steps")
        :format(_VERSION .. (rawget(_G, "jit") and " (LuaJIT)" or ""), ticks_at_done, elapsed, h.steps))
      assert.are.same(keys, rep.recalled)
      assert.is_true(rep.ok)
      assert.are.equal(1, rep.requests)
      local views = s:keys(keys)
      for _, k in ipairs(keys) do assert.are.equal("recalled", (views[k] or {}).state, k) end
      assert.is_false(uv.loop_alive()) -- every handle it made is closed
    end)

    it("fetches a token, batches, limits QPS and accounts for every key", function()
      s:config { latency = 0.05 }
      local keys = s:seed_keys(45, "cidAsync")
      keys[#keys + 1] = "not-a-key-of-this-conversation"
      keys[#keys + 1] = keys[1] -- a duplicate counts once
      local c = client { access_token = false, app_key = s.app_key, app_secret = s.app_secret, qps = 2 }
      local rep, err
      async.run_uv(uv, function() return c:recall("cidAsync", keys) end, function(r, e) rep, err = r, e end)
      local t0 = uv.hrtime()
      uv.run()
      local elapsed = (uv.hrtime() - t0) / 1e9
      c:close()
      assert.is_nil(err)
      assert.are.equal(46, rep.total)
      assert.are.equal(45, #rep.recalled)
      assert.are.equal(1, count(rep.failed) + count(rep.errors))
      assert.are.equal(3, rep.requests)
      assert.are.equal(1, rep.token_fetches)
      assert.is_true(elapsed >= 0.9, "3 calls at 2 QPS took " .. elapsed .. " s") -- the limiter waited
    end)

    it("reports a dead endpoint per key, without blocking", function()
      local port = s.port
      local c = assert(recall.client { robot_code = s.robot, access_token = s.token,
        endpoint = "http://127.0.0.1:" .. (port == 1 and 2 or 1), max_retries = 1, backoff_base = 0.05,
        transport = async_transport.new() })
      local rep
      async.run_uv(uv, function() return c:recall("cidAsync", { "k1", "k2" }) end, function(r) rep = r end)
      uv.run()
      c:close()
      assert.are.equal(2, count(rep.errors))
      assert.are.equal("transport.connect", rep.errors.k1.code)
      assert.are.equal(1, rep.retries)
      assert.is_nil(tostring(rep.errors.k1):find(s.token, 1, true))
    end)

    it("examples/luv_loop.lua recalls, keeps its heartbeat and prints nothing stray on a refused connection",
      function()
      local lua = os.getenv("DINGTALK_RECALL_TEST_LUA") or "lua"
      local q = sim.sh_quote
      local function run(env, args)
        local vars = {}
        for k, v in pairs(env) do vars[#vars + 1] = k .. "=" .. q(v) end
        local errf = os.tmpname()
        local out, rc = sim.sh("env " .. table.concat(vars, " ") .. " " .. lua .. " examples/luv_loop.lua " ..
          args .. " 2>" .. q(errf))
        local f = io.open(errf, "rb")
        local stderr = f:read("*a")
        f:close()
        os.remove(errf)
        return out, rc, stderr
      end
      s:config { latency = 1 }
      local keys = s:seed_keys(2, "cidExample")
      local out, rc, stderr = run({ DINGTALK_ACCESS_TOKEN = s.token, DINGTALK_ROBOT_CODE = s.robot,
        DINGTALK_ENDPOINT = s.url, DINGTALK_CA_FILE = s.ca_file }, "cidExample " .. keys[1] .. " " .. keys[2])
      assert.are.equal(0, rc, out .. stderr)
      assert.are.equal("", stderr)
      assert.matches("recalled " .. keys[1]:gsub("%p", "%%%0"), out)
      assert.matches("progress 2/2", out)
      local ticks = tonumber(out:match("heartbeat: (%d+) ticks"))
      assert.is_true(ticks >= 15, out)
      assert.are.equal("recalled", s:key(keys[2]).state)

      -- Nothing listens on port 1: a refused connection, told per key.
      out, rc, stderr = run({ DINGTALK_ACCESS_TOKEN = s.token, DINGTALK_ROBOT_CODE = s.robot,
        DINGTALK_ENDPOINT = "http://127.0.0.1:1" }, "cidExample k1")
      assert.are.equal(1, rc, out .. stderr)
      assert.matches("error k1 transport.connect", out)
      assert.are.equal("", stderr) -- no "EBADF: bad file descriptor" from luv's poll callback
      assert.is_nil((out .. stderr):find(s.token, 1, true))
    end)

    it("hands a raise in fn to on_done as async.failed, and can be cancelled", function()
      local got
      async.run_uv(uv, function() error("bug in the task") end, function(r, e) got = { r, e } end)
      uv.run()
      assert.is_nil(got[1])
      assert.are.equal("async.failed", got[2].code)
      assert.matches("bug in the task", got[2].message)

      local h
      local timer = uv.new_timer()
      h = async.run_uv(uv, function() async.sleep(30) return "never" end, function(r, e) got = { r, e } end)
      timer:start(50, 0, function() timer:close() h.cancel() end)
      local t0 = uv.hrtime()
      uv.run()
      assert.is_true((uv.hrtime() - t0) / 1e9 < 5)
      assert.is_nil(got[1])
      assert.are.equal("async.cancelled", got[2].code)
      assert.is_true(h.done())
    end)
  end)
end)

-- A multi handle reuses its easy handles and sets again only the options
-- that changed since a handle's last request (bulk runs send the same URL
-- and headers every time): each change must still reach the next request.
describe("a reused curl transfer", function()
  local core = require "dingtalk.recall.core"
  local s
  setup(function() s = sim.start { tls = true } end)
  teardown(function() if s then s:stop() end end)

  it("takes every changed option of the next request, on one handle", function()
    local CID = "cidReuse"
    local keys = s:seed_keys(5, CID)
    -- The usual options, one of them changed (name, value).
    local function opts_with(name, value)
      local o = { access_token = s.token, endpoint = s.url, ca_file = s.ca_file, timeout = 5 }
      if name then o[name] = value end
      return o
    end
    local opts = opts_with()
    local function built(o, key)
      return assert(core.build({ openConversationId = CID, robotCode = s.robot, processQueryKeys = { key } }, o))
    end
    local m = curl.multi { max_connections = 1 }
    local function one(b)
      local id = assert(m:start(b, "t"))
      local done
      repeat done = m:perform(1) until #done > 0
      assert.are.equal(1, #done)
      assert.are.equal(id, done[1].id)
      assert.are.equal(0, m:in_flight())
      return done[1]
    end
    local function recalled(c, key)
      assert.is_nil(c.error, tostring(c.error))
      local res = assert(core.parse(c.status, c.headers, c.body, s.token))
      assert.are.same({ key }, res.successResult)
    end
    recalled(one(built(opts, keys[1])), keys[1])
    -- Another token (a header): the server must see the new one.
    local bad = one(built(opts_with("access_token", "tok-WRONG"), keys[2]))
    local _, err = core.parse(bad.status, bad.headers, bad.body, "tok-WRONG")
    assert.are.equal("InvalidAuthentication", err.code)
    -- A smaller answer cap, then the usual one again.
    s:script { recall = { "huge" } }
    local capped = one(built(opts_with("max_response_bytes", 65536), keys[5]))
    assert.are.equal("response.too_large", capped.error and capped.error.code)
    recalled(one(built(opts, keys[2])), keys[2])
    -- No CA file: the simulator's certificate is refused, then trusted again.
    assert.are.equal("transport.tls", one(built(opts_with("ca_file", nil), keys[3])).error.code)
    recalled(one(built(opts, keys[3])), keys[3])
    -- Another URL (a path of the same server that answers 404).
    local other = built(opts, keys[4])
    other.url = other.url:gsub("/recall$", "/nowhere")
    local nf = one(other)
    assert.are.equal(404, nf.status)
    recalled(one(built(opts, keys[4])), keys[4])
    m:close()
    assert.is_true(s:stats().recalled >= 4)
  end)
end)

-- m:start_batch: the engine's batches through the curl transport, without
-- a built table: the same bytes as core.build_batch, whatever the handle
-- sent before.
describe("m:start_batch", function()
  local core = require "dingtalk.recall.core"
  local hh = require "spec.helpers.hostile_http"
  local srv
  -- Echoes the request body, and the token as the request id.
  setup(function()
    srv = hh.start { kind = "raw", status = 200, body = "%BODY%", headers = { ["x-acs-request-id"] = "%TOKEN%" } }
  end)
  teardown(function() if srv then srv:stop() end end)

  it("sends what core.build_batch builds, on one handle, for every batch, token and request between", function()
    local keys = {}
    for i = 1, 45 do keys[i] = ('key%02d "quoted" \\ é'):format(i) end
    local plan = assert(core.plan("cidDirect", "dingDirect", keys))
    local target = core.target { endpoint = srv.url, robot_code = "dingDirect", timeout = 5 }
    local m = curl.multi { max_connections = 1 }
    local function done()
      local d
      repeat d = m:perform(1) until #d > 0
      assert.are.equal(1, #d)
      assert.is_nil(d[1].error, tostring(d[1].error))
      return d[1]
    end
    local sent = 0
    for i = 1, plan.nbatches do
      -- the last token of a batch is the first of the next: after the
      -- request between, the same target and token must start over
      for _, tok in ipairs { "tok-B", "tok-A", "tok-A", "tok-B" } do
        local id = assert(m:start_batch(plan, core.batch(plan, i), target, tok, { i = i }))
        local c = done()
        sent = sent + 1
        assert.are.equal(id, c.id)
        assert.are.equal(i, c.tag.i)
        assert.are.equal(core.build_batch(plan, i, target, tok).body, c.body)
        assert.are.equal(tok, c.headers["x-acs-request-id"])
      end
      -- Another request on the same handle (another URL and headers): the next batch starts over.
      local other = assert(core.build({ openConversationId = "cidOther", robotCode = "dingOther",
        processQueryKeys = { "k" } }, { endpoint = srv.url .. "/base", access_token = "tok-C" }))
      assert(m:start(other, "other"))
      assert.are.equal("tok-C", done().headers["x-acs-request-id"])
      sent = sent + 1
    end
    -- A token the builder refuses: nil, err, true, and nothing sent.
    local res, err, refused = m:start_batch(plan, core.batch(plan, 1), target, "bad\ntoken", "x")
    assert.is_nil(res)
    assert.is_true(core.is_error(err))
    assert.is_true(refused)
    assert.are.equal(0, m:in_flight())
    assert.are.equal(sent, srv:requests())
    assert.has_error(function() m:start_batch(plan, {}, target, "tok-A") end)
    assert.has_error(function() m:start_batch(plan, core.batch(plan, 1), {}, "tok-A") end)
    assert.has_error(function() m:start_batch({}, core.batch(plan, 1), target, "tok-A") end)
    m:close()
  end)
end)
