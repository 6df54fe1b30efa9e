-- The OpenResty transport (lua/dingtalk/recall/transport/openresty.lua):
-- the client runs inside nginx (Debian's nginx + libnginx-mod-http-lua +
-- lua-resty-core, started on loopback by spec/helpers/nginx.lua) against
-- the simulator, and must give the same reports and the same errors as the
-- curl transport, share the QPS limit within a worker, and never block the
-- worker (across workers: openresty_workers_spec.lua).  The spec itself runs under any Lua: it drives
-- nginx with the curl CLI and runs the curl transport in-process.
local nginx = require "spec.helpers.nginx"
local sim = require "spec.helpers.sim"
local json = sim.json

local ortest = require "spec.helpers.ortest"
local SERVER, conf, copy, ids, shape, first_error =
  ortest.SERVER, ortest.conf, ortest.copy, ortest.ids, ortest.shape, ortest.first_error

local available, why = nginx.available()

-- One client shared by four light threads of one request, each recalling
-- its own keys at once over a slow answer, then once more by the request
-- itself: each report must hold its own keys (a transport keeps each
-- coroutine's exchanges apart, and takes an idle session up again).
local THREADS = [[
    location = /set_phase {
      set_by_lua_block $dtr_out {
        -- no cosockets in the set phase: every key ends in errors, nothing raises
        local client = assert(require("dingtalk.recall").client {
          endpoint = "https://localhost:1", access_token = "tok", robot_code = "r", transport = "openresty" })
        local out = {}
        for _, n in ipairs { 1, 21 } do -- one batch (exchange_batch) and two (start_batch, poll)
          local keys = {}
          for i = 1, n do keys[i] = "setk" .. i end
          local okc, rep, err = pcall(client.recall, client, "cidSet", keys)
          if not okc then
            out[#out + 1] = n .. ":raised " .. tostring(rep)
          elseif not rep then
            out[#out + 1] = "err " .. tostring(err and err.code)
          else
            local codes = {}
            for _, k in ipairs(keys) do codes[(rep.errors[k] or {}).code or "none"] = true end
            local list = {}
            for c in pairs(codes) do list[#list + 1] = c end
            table.sort(list)
            out[#out + 1] = n .. ":" .. table.concat(list, "+") .. ":" .. #rep.recalled
          end
        end
        return table.concat(out, " ")
      }
      return 200 "$dtr_out";
    }
    location = /threads {
      content_by_lua_block {
        local cjson = require "cjson"
        ngx.req.read_body()
        local a = cjson.decode(ngx.req.get_body_data())
        local client = assert(require("dingtalk.recall").client(a.client))
        local function one(t)
          local keys = {}
          for i = 1, 3 do keys[i] = "thr" .. t .. "-" .. i end
          local rep = assert(client:recall("cidFake", keys))
          return table.concat(rep.recalled, ",")
        end
        local ths, out = {}, {}
        for t = 1, 4 do ths[t] = ngx.thread.spawn(one, t) end
        for t = 1, 4 do
          local ok, got = ngx.thread.wait(ths[t])
          out[t] = ok and got or tostring(got)
        end
        out[5], out[6] = one(5), one(6)
        client:close()
        ngx.say(cjson.encode(out))
      }
    }
]]

describe("openresty transport", function()
  if not available then
    pending("nginx is missing: " .. tostring(why))
    return
  end

  local recall = require "dingtalk.recall"
  local tokens = require "dingtalk.recall.token"
  local s, s2, n

  setup(function()
    s = sim.start { tls = true }
    s2 = sim.start { tls = true, wrong_host_cert = true }
    local o = conf {}
    o.trusted_ca = s.ca_file
    o.server = SERVER .. "    location = /recall_sim2 {\n      lua_ssl_trusted_certificate " .. nginx.nq(s2.ca_file) ..
      ";\n      content_by_lua_block { require(\"ortest\").recall() }\n    }\n" .. THREADS
    n = nginx.start(o)
  end)

  teardown(function()
    if n then n:stop() end
    if s2 then s2:stop() end
    if s then s:stop() end
  end)

  before_each(function() ortest.fresh(s) end)

  local function in_nginx(args, path, server)
    local status, body = (server or n):request("POST", path or "/recall", { body = json.encode(args), timeout = 60 })
    assert.are.equal(200, status, body)
    local res = json.decode(body)
    assert.is_nil(res.err, body)
    return res
  end

  local function in_lua(client_opts, cid, keys)
    local o = copy(client_opts)
    o.transport = "curl"
    o.ca_file = o.ca_file or s.ca_file
    local c = assert(recall.client(o))
    local rep, err = c:recall(cid, keys)
    c:close()
    assert.is_nil(err)
    return rep
  end

  local function base(extra) return ortest.base(s, extra) end

  describe("host detection", function()
    it("is curl in plain Lua", function()
      assert.are.equal("curl", require("dingtalk.recall.hosts").detect())
      assert.is_nil(require("dingtalk.recall.hosts").phase())
    end)

    it("is openresty where cosockets work, curl where they do not", function()
      n:request("GET", "/ping")
      local status, body = n:request("GET", "/detect")
      assert.are.equal(200, status, body)
      local d = json.decode(body)
      assert.are.same({
        content = "openresty", timer = "openresty",
        init_worker = "curl", init_worker_transport = "curl",
        log = "curl", header_filter = "curl",
      }, d)
    end)

    it("makes a client without `transport` use cosockets in a handler", function()
      local keys = s:seed_keys(3, "cidDetect", s.robot)
      local res = in_nginx { client = base(), cid = "cidDetect", keys = keys }
      assert.are.equal("openresty", res.transport)
      assert.are.equal("content", res.phase)
      assert.is_true(res.report.ok)
      assert.are.equal(3, #res.report.recalled)
    end)
  end)

  describe("same results as the curl transport", function()
    -- 45 entries: 40 fresh keys, 2 duplicates, an unknown key, an empty
    -- key (refused before sending) and a key of another conversation.
    local function keyset(cid)
      local keys = s:seed_keys(40, cid, s.robot)
      local other = s:seed_keys(1, "cidOther", s.robot)[1]
      keys[41] = keys[3]
      keys[42] = keys[17]
      keys[43] = "unknownKeyNotSentByAnyone"
      keys[44] = ""
      keys[45] = other
      return keys
    end

    it("recalls 45 keys with the same report, tokens fetched through the shared dict", function()
      local opts = base { app_key = s.app_key, app_secret = s.app_secret, max_retries = 3 }
      opts.access_token = nil
      -- one system error on the way, each time: one retry in both reports
      tokens.clear_cache()
      s:script { recall = { "system_error" } }
      local keys_a = keyset("cidSameA")
      local a = in_lua(opts, "cidSameA", keys_a)
      s:script { recall = { "system_error" } }
      local keys_b = keyset("cidSameB")
      local b = in_nginx { client = opts, cid = "cidSameB", keys = keys_b }
      assert.are.equal("openresty", b.transport)
      local sa, sb = shape(a, keys_a), shape(b.report, keys_b)
      assert.are.same(sa, sb)
      assert.are.equal(40, #sb.recalled)
      assert.are.equal(43, sb.total)
      assert.are.same({ [43] = "PROCESS_QUERY_KEY_NOT_EXIST", [45] = "CONVERSATION_OR_ROBOT_MISMATCH" }, sb.failed)
      assert.are.same({ [44] = "invalidParameter.param.invalid" }, sb.errors)
      assert.are.equal(4, sb.requests)
      assert.are.equal(1, sb.retries)
      assert.are.equal(1, sb.token_fetches)
      -- the token is now in the shared dict: the next client fetches none
      local c = in_nginx { client = opts, cid = "cidSameB", keys = { keys_b[1] } }
      assert.are.equal(0, c.report.token_fetches)
      assert.are.same({ [keys_b[1]] = "ALREADY_RECALLED" }, c.report.failed)
    end)

    it("parses chunked, close-delimited and 100-continue answers", function()
      for _, mode in ipairs { "chunked", "close", "continue", "json" } do
        local opts = base { endpoint = n.url .. "/fake/" .. mode }
        local keys = ids("key-" .. mode .. "-", 3)
        local a = in_lua(opts, "cidFake", keys)
        local b = in_nginx { client = opts, cid = "cidFake", keys = keys }
        assert.are.same(keys, b.report.recalled, mode)
        assert.are.same(shape(a, keys), shape(b.report, keys), mode)
      end
    end)

    it("keeps apart the exchanges of light threads sharing one client", function()
      local out = in_nginx({ client = base { endpoint = n.url .. "/fake/chunked" } }, "/threads")
      for t = 1, 6 do assert.are.equal(("thr%d-1,thr%d-2,thr%d-3"):format(t, t, t), out[t]) end
    end)

    it("reuses connections (keep-alive) and sends Host", function()
      local opts = base { endpoint = n.url .. "/fake/json" }
      local res = in_nginx { client = opts, cid = "cidFake", keys = { "k1" }, times = 3 }
      assert.is_true(res.report.ok)
      local _, body = n:request("GET", "/fakestat")
      local stat = json.decode(body)
      -- the third recall came on the connection that had served the first
      -- two (and maybe one of an earlier test)
      assert.is_true(stat.connection_requests >= 3)
      assert.are.equal("127.0.0.1:" .. n.port, stat.host)
    end)
  end)

  describe("drift with the core", function()
    it("core.target and the transport give every endpoint the same verdict", function()
      local endpoints = { "http://0127.0.0.1", "http://127.0.0.01", "http://127.0.0.1:1", "http://localhost:1",
        "http://[::1]:1", "http://10.0.0.1:1", "http://127.1:1", "http://2130706433:1", "http://127.0.0.1:99999",
        "http://127.0.0.1:0", "ftp://127.0.0.1:1", "https://user@127.0.0.1:1", "http://127.0.0.1:1#frag",
        "http://127.0.0.1:1 x", "http://127.0.0.1:1\r\nX: y", "https://127.0.0.1:1", "http://[::ffff:7f00:1]:1",
        "HTTP://127.0.0.1:1", "http://127.0.0.1.:1", "http://0x7f.0.0.1:1", "http://", "https://:1" }
      local status, body = n:request("POST", "/verdicts",
        { body = json.encode { endpoints = endpoints }, timeout = 30 })
      assert.are.equal(200, status, body)
      local res = json.decode(body)
      assert.are.equal(#endpoints, #res)
      for _, r in ipairs(res) do
        assert.are.equal(r.core, r.transport, r.endpoint)
      end
      assert.are.equal("invalid.endpoint", res[1].transport) -- http://0127.0.0.1: not loopback for the core
      assert.are.equal("invalid.endpoint", res[2].transport) -- http://127.0.0.01
      assert.is_true(res[3].transport)
    end)

    it("a token echoed as the request id of an oversized answer is redacted from the error", function()
      local hh = require "spec.helpers.hostile_http"
      local srv = hh.start()
      finally(function() srv:stop() end)
      for _, tok in ipairs { "TokOr-7e6d5c4b3a29", "Q", "Qz9Kx" } do
        srv:answer { kind = "too_large", request_id = "[[%TOKEN%]]" }
        local res = in_nginx { client = { endpoint = srv.url, robot_code = "r", access_token = tok, max_retries = 0,
          timeout = 5 }, cid = "cidOr", keys = { "k1" } }
        local e = res.report.errors.k1
        assert.are.equal("response.too_large", e.code)
        for _, f in ipairs { "message", "request_id", "text", "hint" } do
          assert.is_nil(tostring(e[f] or ""):find("[[" .. tok .. "]]", 1, true), f .. ": " .. tostring(e[f]))
        end
        assert.matches("[[***]]", e.request_id, 1, true)
      end
    end)
  end)

  describe("errors", function()
    -- Runs the same client options in nginx and in plain Lua (curl); both
    -- must give every key the same error code.
    local function both(opts, cid, keys, path)
      local a = in_lua(opts, cid, keys)
      local b = in_nginx({ client = opts, cid = cid, keys = keys }, path)
      local ea, eb = first_error(a), first_error(b.report)
      assert.is_truthy(eb, "no error in nginx")
      assert.are.equal(ea.code, eb.code)
      assert.are.equal(ea.status, eb.status)
      assert.are.equal(#keys, b.report.total)
      return eb, ea, b.report
    end

    it("connection refused -> transport.connect", function()
      local e = both(base { endpoint = "http://127.0.0.1:1" }, "cidErr", { "k1", "k2" })
      assert.are.equal("transport.connect", e.code)
      assert.is_true(e.retryable)
    end)

    -- Every key's error code, counted.
    local function codes(rep)
      local c = {}
      for _, e in pairs(rep.errors) do c[e.code] = (c[e.code] or 0) + 1 end
      return c
    end

    -- 10 batches: 10 handshakes, each of which must fail verification
    -- (Debian 12's ngx_lua reports some failed handshakes as successes).
    it("a certificate for another host -> transport.tls, every time", function()
      -- (the curl side trusts the right CA too: ca_file; nginx: the location's)
      local opts = base { endpoint = s2.url, concurrency = 2, ca_file = s2.ca_file }
      local keys = ids("k", 200)
      local b = in_nginx({ client = opts, cid = "cidErr", keys = keys }, "/recall_sim2")
      assert.are.same({ ["transport.tls"] = 200 }, codes(b.report), first_error(b.report).message)
      -- core.codes calls transport.tls fatal: the run stops after the
      -- requests already in flight (concurrency 2), every key accounted for
      assert.is_true(b.report.requests >= 1 and b.report.requests <= 2, b.report.requests)
      local a = in_lua(copy(opts), "cidErr", { "k1" })
      assert.are.equal("transport.tls", first_error(a).code)
      assert.matches("host", first_error(b.report).message)
    end)

    it("a server certificate of an untrusted CA -> transport.tls, every time", function()
      -- its own nginx: pooled connections are verified once, when opened
      local o = conf {}
      o.trusted_ca = s2.ca_file -- the other simulator's CA
      local other = nginx.start(o)
      local before = s:stats().requests.recall
      local ok, err = pcall(function()
        local args = { client = base { concurrency = 2 }, cid = "cidErr", keys = ids("k", 200) }
        local b = in_nginx(args, "/recall", other)
        local e = first_error(b.report)
        assert.are.same({ ["transport.tls"] = 200 }, codes(b.report), e.message)
        assert.is_false(e.retryable)
        assert.matches("verif", e.message)
      end)
      other:stop()
      assert(ok, err)
      assert.are.equal(before, s:stats().requests.recall) -- nothing reached the server
    end)

    it("a reset connection -> transport.io", function()
      s:script { recall = { "reset", "reset" } }
      local b = in_nginx { client = base(), cid = "cidErr", keys = { "k1" } }
      assert.are.equal("transport.io", first_error(b.report).code)
      s:script { clear = true, recall = { "reset", "reset" } }
      local a = in_lua(base(), "cidErr", { "k1" })
      assert.are.equal("transport.io", first_error(a).code)
    end)

    it("a truncated answer or one that is not HTTP -> transport.io", function()
      for _, mode in ipairs { "truncated", "garbage" } do
        local b = in_nginx { client = base { endpoint = n.url .. "/fake/" .. mode }, cid = "cidErr", keys = { "k1" } }
        assert.are.equal("transport.io", first_error(b.report).code, mode)
      end
    end)

    it("an answer later than the timeout -> transport.timeout", function()
      s:config { latency = 1.5 }
      local t0 = os.time()
      local e = both(base { timeout = 0.5 }, "cidErr", { "k1" })
      assert.are.equal("transport.timeout", e.code)
      assert.is_true(os.time() - t0 < 4)
    end)

    it("a huge answer -> response.too_large", function()
      s:script { recall = { "huge" } }
      local b = in_nginx { client = base(), cid = "cidErr", keys = { "k1" } }
      local e = first_error(b.report)
      assert.are.equal("response.too_large", e.code)
      assert.are.equal(200, e.status)
      assert.is_false(e.retryable)
      s:script { recall = { "huge" } }
      local a = in_lua(base(), "cidErr", { "k1" })
      assert.are.equal(e.code, first_error(a).code)
      assert.are.equal(e.status, first_error(a).status)
    end)

    it("a chunked or close-delimited answer over max_response_bytes -> response.too_large", function()
      for _, mode in ipairs { "bigchunked", "bigclose" } do
        local opts = base { endpoint = n.url .. "/fake/" .. mode, max_response_bytes = 1000 }
        local e, ea = both(opts, "cidErr", { "k1" })
        assert.are.equal("response.too_large", e.code, mode)
        assert.are.equal(200, e.status)
        assert.are.equal("fake-" .. mode, e.request_id)
        assert.are.equal(ea.request_id, e.request_id)
      end
    end)

    it("a redirect -> response.redirect, not followed", function()
      s:script { recall = { "redirect" } }
      local b = in_nginx { client = base(), cid = "cidErr", keys = { "k1" } }
      local e = first_error(b.report)
      assert.are.equal("response.redirect", e.code)
      assert.are.equal(302, e.status)
      s:script { recall = { "redirect" } }
      local a = in_lua(base(), "cidErr", { "k1" })
      assert.are.equal(e.code, first_error(a).code)
      assert.are.equal(0, s:stats().requests.other) -- /_sim/redirected was never asked for
    end)

    it("refuses plain http to a non-loopback host before sending", function()
      local status, body = n:request("POST", "/recall", { body = json.encode {
        client = base { endpoint = "http://example.com" }, cid = "cidErr", keys = { "k1" } } })
      assert.are.equal(200, status)
      assert.are.equal("invalid.endpoint", json.decode(body).err.code)
    end)
  end)

  it("a recall in a phase without cosockets: every key fails with transport.connect, nothing raises", function()
    local status, body = n:request("GET", "/set_phase")
    assert.are.equal(200, status, body)
    assert.are.equal("1:transport.connect:0 21:transport.connect:0", body)
    ortest.clean_log(n:error_log())
  end)

  it("never blocks the worker: a recall waits 2 s, the same worker answers in < 100 ms #timing", function()
    local deadline = os.time() + 5
    while s:stats().in_flight > 0 do -- answers of earlier tests still on their way
      assert(os.time() <= deadline, "the simulator stays busy")
      nginx.sh("sleep 0.05")
    end
    s:config { latency = 2 }
    local keys = s:seed_keys(5, "cidSlow", s.robot)
    local job = n:spawn("POST", "/recall", { body = json.encode {
      client = base { timeout = 10 }, cid = "cidSlow", keys = keys } })
    -- wait until the recall is at the simulator
    deadline = os.time() + 5
    while s:stats().in_flight < 1 do
      assert(os.time() <= deadline, "the recall never reached the simulator")
      nginx.sh("sleep 0.02")
    end
    local times = {}
    for i = 1, 5 do
      local status, body, _, secs = n:request("GET", "/ping")
      assert.are.equal(200, status)
      assert.matches("^pong", body)
      times[i] = secs
    end
    assert.is_false(job.done(), "the recall should still be waiting")
    local status, body, _, slow = job:wait(30)
    assert.are.equal(200, status, body)
    local res = json.decode(body)
    assert.is_true(res.report.ok, body)
    table.sort(times)
    -- the numbers, for the report
    print(("\n  non-blocking: recall took %.3f s; /ping during it: min %.4f s, max %.4f s"):format(
      slow, times[1], times[#times]))
    assert.is_true(slow >= 1.9, "the recall took " .. slow .. " s")
    assert.is_true(times[#times] < 0.1, "a /ping took " .. times[#times] .. " s")
  end)

  it("shared limiter: never more than rate starts in any window, and close to rate", function()
    for run, c in ipairs { { rate = 5, window = 1, clients = 1 }, { rate = 20, window = 1, clients = 3 },
      { rate = 3, window = 0.5, clients = 2 } } do
      c.run, c.seconds = run, 4
      local status, body = n:request("POST", "/limiter_sim", { body = json.encode(c) })
      assert.are.equal(200, status, body)
      local starts = json.decode(body)
      -- any window of `window` seconds (in fact of 1.1 windows)
      for i = 1, #starts - c.rate do
        assert.is_true(starts[i + c.rate] - starts[i] >= c.window * 1.1 - 1e-6,
          ("run %d: %d starts within %.3f s"):format(run, c.rate + 1, starts[i + c.rate] - starts[i]))
      end
      -- and not much fewer than rate per window: rate * (seconds / 1.1 windows), +- a round
      local want = c.rate * math.floor(c.seconds / (c.window * 1.1) + 1)
      assert.is_true(#starts >= want - c.rate and #starts <= want + c.rate,
        ("run %d: %d starts, want about %d"):format(run, #starts, want))
    end
  end)

  it("logged no Lua error", function()
    ortest.clean_log(n:error_log())
  end)
end)
