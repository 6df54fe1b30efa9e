-- A fleet on one Redis: several plain-Lua hosts and the CLI recall for the
-- same app at once, against the simulator's own count of arrivals.  Real
-- time (about 12 s a case): tagged #timing.  On a loaded 2-core machine the
-- arrival spread can grow past the limiter's 50 ms guard; the tests are
-- not loosened for it.
local cjson = require("cjson").new()
local redis_helper = require "spec.helpers.redis"
local sim = require "spec.helpers.sim"
local shell = require "spec.helpers.shell"
local clock = require "dingtalk.recall.clock"
local ledger = require "dingtalk.recall.ledger"

local q, sh, trim = shell.quote, shell.sh, shell.trim
local LUA = os.getenv("DINGTALK_RECALL_TEST_LUA") or "lua"
local has_socket = pcall(require, "socket")
local has_redis = redis_helper.available()

local nginx = require "spec.helpers.nginx"

local CID = "cidFleet"

-- Two nginx workers of the fleet (spec/fixtures/fleet_nginx.lua).
local FLEETNG = assert(shell.read_file("spec/fixtures/fleet_nginx.lua"))

describe("a fleet on one Redis #timing", function()
  local rs, s, dir, ng
  setup(function()
    if not (has_redis and has_socket) then return end
    rs = redis_helper.start()
    s = sim.start { qps = 20 }
    dir = trim(sh("mktemp -d ${TMPDIR:-/tmp}/dtr-fleet.XXXXXX"))
    if nginx.available() then
      ng = nginx.start {
        workers = 2, log_level = "notice", shared_dicts = { fleet = "1m" }, modules = { fleetng = FLEETNG },
        init_worker = '    require("fleetng").init_worker()',
        server = "    location = /fleet/start { content_by_lua_block { require('fleetng').start() } }\n" ..
          "    location = /fleet/result { content_by_lua_block { require('fleetng').result() } }\n",
      }
    end
  end)
  teardown(function()
    if ng then ng:stop() end
    if rs then rs:stop() end
    if s then s:stop() end
    if dir then sh("rm -rf " .. q(dir)) end
  end)

  local function write_keys(path, keys, from, to)
    local f = assert(io.open(path, "w"))
    for i = from, to do f:write(keys[i], "\n") end
    f:close()
  end

  local function background(cmd)
    local p = assert(io.popen(cmd .. " & echo $!"))
    local pid = trim(p:read("*a"))
    p:close()
    assert.truthy(pid:match("^%d+$"), pid)
    return pid
  end

  local function wait_all(pids, seconds)
    local deadline = clock.now() + seconds
    for _, pid in ipairs(pids) do
      while sim.alive(pid) do
        if clock.now() > deadline then
          for _, p in ipairs(pids) do sh("kill -9 " .. p .. " 2>/dev/null") end
          error("the fleet did not finish within " .. seconds .. " s")
        end
        clock.sleep(0.1)
      end
    end
  end

  local function read_json(path)
    local text = shell.read_file(path)
    assert.truthy(text and text ~= "", "no output in " .. path)
    return cjson.decode(text)
  end

  -- 3 plain-Lua hosts, the CLI and 2 nginx workers (when nginx is
  -- installed), each its own share of keys.
  local function start_fleet(keys, per, share)
    local pids, outs = {}, {}
    for i = 1, 3 do
      local kf, out, log = dir .. "/keys" .. i, dir .. "/out" .. i, dir .. "/log" .. i
      write_keys(kf, keys, (i - 1) * per + 1, i * per)
      outs[i] = { out = out, log = log }
      pids[i] = background(LUA .. " spec/fixtures/fleet_child.lua recall " .. table.concat({ q(rs.url), q(s.url),
        q(s.app_key), q(s.app_secret), q(s.robot), CID, q(kf), q(out), tostring(share) }, " ") ..
        " >/dev/null 2>" .. q(log))
    end
    local kf = dir .. "/keys-cli"
    write_keys(kf, keys, 3 * per + 1, 4 * per)
    outs[4] = { out = dir .. "/out-cli", log = dir .. "/log-cli", cli = true }
    pids[4] = background("env -u DINGTALK_ACCESS_TOKEN DINGTALK_ENDPOINT=" .. q(s.url) .. " DINGTALK_APP_KEY=" ..
      q(s.app_key) .. " DINGTALK_APP_SECRET=" .. q(s.app_secret) .. " DINGTALK_RECALL_REDIS=" .. q(rs.url) ..
      " DINGTALK_RECALL_LEDGER=" .. q(dir .. "/cli-ledger") .. " XDG_CONFIG_HOME=" .. q(dir .. "/xdg") ..
      " " .. LUA .. " bin/dingtalk-recall recall --conversation " .. CID .. " --robot " .. q(s.robot) ..
      " --qps 20 --json --quiet - <" .. q(kf) .. " >" .. q(outs[4].out) .. " 2>" .. q(outs[4].log))
    local gen
    if ng then
      local files = {}
      for w = 1, 2 do
        files[w] = dir .. "/keys-ng" .. w
        write_keys(files[w], keys, (3 + w) * per + 1, (4 + w) * per)
      end
      local status, body = ng:request("POST", "/fleet/start", { body = cjson.encode {
        redis = rs.url, endpoint = s.url, app_key = s.app_key, app_secret = s.app_secret, robot = s.robot,
        cid = CID, files = files, share = share } })
      assert.are.equal(200, status, body)
      gen = trim(body)
    end
    return pids, outs, gen
  end

  -- The nginx workers' results (nil without nginx).
  local function nginx_results(gen, seconds)
    if not ng then return nil end
    local deadline = clock.now() + seconds
    while true do
      local status, body = ng:request("GET", "/fleet/result?n=2&gen=" .. gen)
      if status == 200 then return cjson.decode(body) end
      assert.is_true(clock.now() < deadline, "the nginx workers did not finish")
      clock.sleep(0.2)
    end
  end

  local function hosts() return ng and 6 or 4 end

  local function check_hosts(outs, per)
    for _, o in ipairs(outs) do
      if o.cli then
        local r = read_json(o.out)
        local n = r.recalled and (type(r.recalled) == "table" and #r.recalled or r.recalled)
          or (r.report and #r.report.recalled)
        assert.are.equal(per, n, shell.read_file(o.out))
      else
        local r = read_json(o.out)
        assert.are.equal(per, r.recalled, shell.read_file(o.log))
        assert.are.equal(0, r.errors)
        assert.are.equal(0, r.failed)
      end
    end
  end

  it("3 plain-Lua hosts, the CLI and 2 nginx workers keep to 20 a second together and fetch one token", function()
    if not rs then return pending("redis-server or luasocket missing") end
    s:reset()
    s:config { qps = 20 }
    rs:flush()
    local per = 4800 / hosts() -- 240 requests in all, 12 s at 20 a second
    local keys = s:seed_keys(hosts() * per, CID)
    local t0 = clock.now()
    local pids, outs, gen = start_fleet(keys, per, 1 / hosts())
    wait_all(pids, 90)
    local ngr = nginx_results(gen, 60)
    local took = clock.now() - t0
    local st = s:stats()
    assert.is_true(st.max_recall_calls_in_any_1s <= 20, "max in 1 s: " .. st.max_recall_calls_in_any_1s)
    assert.are.equal(0, st.throttled)
    assert.are.equal(1, st.tokens_issued)
    assert.are.equal(hosts() * per, st.recalled)      -- no key lost
    assert.are.equal(hosts() * per, st.recall_keys)   -- none sent twice
    assert.are.equal(240, st.recall_calls)
    check_hosts(outs, per)
    for _, r in ipairs(ngr or {}) do
      assert.are.equal(per, r.recalled, cjson.encode(r))
      assert.are.equal(0, r.errors)
    end
    assert.is_true(took >= 11, "the budget was not shared: " .. took .. " s")
    for i = 1, 3 do assert.are.equal("", trim(shell.read_file(outs[i].log) or "")) end
    if not ng then pending("nginx is not installed: the fleet ran without its 2 nginx workers") end
  end)

  it("goes on when Redis is down for 3 s: every key accounted for, fallback and return logged", function()
    if not rs then return pending("redis-server or luasocket missing") end
    s:reset()
    s:config { qps = 20 }
    rs:flush()
    local per = 6000 / hosts() -- 300 requests: about 9 s of them left after the restart
    local keys = s:seed_keys(hosts() * per, CID)
    -- every host alone at its share of the budget: within 20 a second together
    local pids, outs, gen = start_fleet(keys, per, 1 / hosts())
    clock.sleep(3)
    rs:kill()
    clock.sleep(3)
    rs:restart()
    wait_all(pids, 120)
    local ngr = nginx_results(gen, 60)
    local st = s:stats()
    assert.are.equal(hosts() * per, st.recalled)
    assert.are.equal(hosts() * per, st.recall_keys)
    assert.are.equal(1, st.tokens_issued)
    assert.is_true(st.max_recall_calls_in_any_1s <= 20, "max in 1 s: " .. st.max_recall_calls_in_any_1s)
    check_hosts(outs, per)
    for _, o in ipairs(outs) do
      local log = shell.read_file(o.log) or ""
      local _, down = log:gsub("the shared QPS budget in Redis is unreachable", "")
      local _, back = log:gsub("the shared QPS budget in Redis answers again", "")
      assert.are.equal(1, down, log)  -- said once per outage, per limiter
      if o.cli then
        -- the CLI probes every 3 s (the default): it may finish alone before
        assert.is_true(back <= 1, log)
      else
        assert.are.equal(1, back, log)
      end
      if not o.cli then
        local r = read_json(o.out)
        assert.are.equal(1, r.outages)
        assert.is_true(r.fallback > 0)
      end
    end
    if ng then
      for _, r in ipairs(ngr) do
        assert.are.equal(per, r.recalled, cjson.encode(r))
        assert.are.equal(1, r.outages)
      end
      local log = ng:error_log()
      local _, down = log:gsub("the shared QPS budget in Redis is unreachable", "")
      local _, back = log:gsub("the shared QPS budget in Redis answers again", "")
      assert.are.equal(2, down, log)
      assert.are.equal(2, back, log)
    end
  end)

  it("two sweeps on one ledger, one killed midway: every due key recalled exactly once", function()
    if not rs then return pending("redis-server or luasocket missing") end
    s:reset()
    s:config { qps = 20 }
    rs:flush()
    local N = 800
    local keys = s:seed_keys(N, CID)
    local l = assert(ledger.open(rs.url, { prefix = "fleet:" }))
    local entries = {}
    for i, k in ipairs(keys) do
      entries[i] = { key = k, conversation = CID, robot = s.robot,
        sent_at = os.time() - 100, ttl = 10 }
    end
    assert(l:record_many(entries))
    local function sweep(name, lease)
      return background(LUA .. " spec/fixtures/fleet_child.lua sweep " .. table.concat({ q(rs.url), q(s.url),
        q(s.app_key), q(s.app_secret), q(s.robot), tostring(lease), q(dir .. "/sweep-" .. name) }, " ") ..
        " >/dev/null 2>" .. q(dir .. "/sweep-" .. name .. ".log"))
    end
    local a, b = sweep("a", 3), sweep("b", 3)
    local deadline = clock.now() + 30
    while s:stats().recalled < N / 4 do
      assert.is_true(clock.now() < deadline, "no progress")
      clock.sleep(0.05)
    end
    sh("kill -9 " .. a)
    local killed_at = clock.now()
    wait_all({ b }, 60)
    local rb = read_json(dir .. "/sweep-b")
    -- what a had claimed and not finished waits for its lease, then a third sweep takes it over
    local left = #assert(l:list { state = "recalling" })
    local wait = killed_at + 3.2 - clock.now()
    if wait > 0 then clock.sleep(wait) end
    local c = sweep("c", 3)
    wait_all({ c }, 60)
    local rc = read_json(dir .. "/sweep-c")
    local st = s:stats()
    assert.are.equal(N, st.recalled) -- the server recalled each key once
    assert.are.equal(N, #assert(l:list { state = "recalled" }))
    assert.are.same({}, assert(l:list { state = "recalling" }))
    -- no key was sent by two live sweeps: only a's unfinished claims were sent again
    assert.is_true(st.recall_keys - N <= left, ("sent %d for %d keys, %d left by the killed sweep"):format(
      st.recall_keys, N, left))
    local seen = {}
    for _, r in ipairs { rb, rc } do
      for _, k in ipairs(r.recalled) do
        assert.is_nil(seen[k], "reported twice: " .. k)
        seen[k] = true
      end
    end
    assert.are.equal(left, #rc.recalled)
    assert.is_true(#rb.elsewhere > 0, "the two sweeps did not run at once")
    l:close()
  end)
end)
