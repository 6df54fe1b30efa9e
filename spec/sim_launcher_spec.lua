-- Tests of the DingTalk simulator itself (its launcher, its test helper and https, the
-- latter through the curl CLI); the rest is in spec/sim_spec.lua (split so that the
-- files run side by side).
local sim = require "spec.helpers.sim"
local sh, q = sim.sh, sim.sh_quote
local LUA = os.getenv("DINGTALK_RECALL_TEST_LUA") or "lua"

local H = require "spec.helpers.sim_http"
local TOKEN = H.TOKEN
local http = H.http
local recall = H.recall

describe("dingtalk-sim launcher and helper", function()
  it("refuses non-loopback hosts and unknown options", function()
    local _, rc = sh("lua bin/dingtalk-sim --port 20001 --host 0.0.0.0")
    assert.are.equal(2, rc)
    _, rc = sh("lua bin/dingtalk-sim --port 20001 --bogus")
    assert.are.equal(2, rc)
    local out
    out, rc = sh("lua bin/dingtalk-sim --help")
    assert.are.equal(0, rc)
    assert.matches("%-%-port", out)
  end)

  it("is a module: dingtalk_sim.main's main(argv) returns the exit status", function()
    local main = require("dingtalk_sim.main").main
    assert.are.equal(2, main { "--port", "20001", "--host", "0.0.0.0" })
    assert.are.equal(2, main { "--bogus" })
    assert.are.equal(2, main {})
    local err = {}
    local sink = { write = function(self, ...) for _, x in ipairs { ... } do err[#err + 1] = x end return self end }
    assert.are.equal(2, main({ "--port", "20001", "--socket", "/tmp/" .. string.rep("x", 100) },
      { stdout = sink, stderr = sink }))
    assert.matches("%-%-socket wants a path of at most 100 bytes", table.concat(err))
    assert.matches("%-%-port N", require("dingtalk_sim.main").USAGE)
  end)

  -- After `eval "$(luarocks --lua-version 5.4 path)"` nginx's LuaJIT used to
  -- load 5.4 modules through `;;` (undefined symbol: lua_newuserdatauv).
  it("starts nginx with a clean Lua environment whatever the caller's (--port 0: a port from the kernel)", function()
    local dir = sim.sh("mktemp -d"):gsub("%s+$", "")
    local env = "LUA_PATH=" .. q("/usr/share/lua/5.4/?.lua;/usr/share/lua/5.4/?/init.lua;;") ..
      " LUA_CPATH=" .. q("/usr/lib/x86_64-linux-gnu/lua/5.4/?.so;/usr/local/lib/lua/5.4/?.so;;")
    local out, rc = sh(env .. " " .. LUA .. " bin/dingtalk-sim --port 0 --state-dir " .. q(dir))
    local port = tonumber(out:match("listening on http://127%.0%.0%.1:(%d+) "))
    local ping
    if port then ping = http({}, "GET", "/_sim/ping", nil, { url = "http://127.0.0.1:" .. port, timeout = 5 }).body end
    sh(LUA .. " bin/dingtalk-sim --stop --state-dir " .. q(dir) .. "; rm -rf " .. q(dir))
    assert.are.equal(0, rc, out)
    assert.is_true(port > 0 and port < 65536, out)
    assert.matches('"ok":true', ping)
  end)

  it("fails cleanly on a bad fault spec", function()
    assert.has_error(function() sim.start({ faults = "nonsense=0.5" }) end)
  end)

  it("stop is idempotent and frees the port", function()
    local s = sim.start({})
    local pid = sim.sh("cat " .. q(s.state_dir .. "/nginx.pid"))
    assert.matches("%d+", pid)
    s:stop()
    s:stop()
    assert.is_false(sim.alive(pid:match("%d+")))
    local r = http(s, "GET", "/_sim/ping", nil, { timeout = 2 })
    assert.are.equal("connect", r.err) -- connection refused
    assert.matches("refused", r.why)
  end)

  it("shares state between several workers", function()
    local s = sim.start({ workers = 2 })
    local ok, err = pcall(function()
      local keys = {}
      for i = 1, 10 do keys[i] = s:send("cidWorkers") end
      local r = recall(s, keys, { openConversationId = "cidWorkers" })
      assert.are.equal(10, #r.json.successResult)
      assert.are.equal(10, s:stats().sent)
    end)
    s:stop()
    assert(ok, err)
  end)
end)

describe("dingtalk-sim over https", function()
  local s

  setup(function()
    s = sim.start({ tls = true, qps = 20, latency = 0.05 })
  end)

  teardown(function()
    if s then s:stop() end
  end)

  it("serves https://localhost with the generated CA", function()
    assert.matches("^https://localhost:%d+$", s.url)
    assert.is_string(s.ca_file)
    local r = http(s, "POST", TOKEN, { appKey = s.app_key, appSecret = s.app_secret })
    assert.are.equal(200, r.status)
    local k = s:send("cidTls")
    r = recall(s, { k }, { openConversationId = "cidTls" })
    assert.are.same({ k }, r.json.successResult)
    r = http(s, "GET", "/_sim/ping", nil, { url = "https://127.0.0.1:" .. s.port })
    assert.are.equal(200, r.status)
    -- the admin API in the clear on its unix socket (--socket), as the helper uses it
    assert.matches(" socket=" .. s.socket:gsub("%p", "%%%0") .. "$", s.line)
    assert.are.equal(1, s:stats().requests.accessToken)
    local u = require("spec.helpers.http_client").new { unix = s.socket, timeout = 5 }
    r = u:request("GET", "/_sim/ping")
    u:close()
    assert.are.equal(200, r.status)
    assert.matches('"ok":true', r.body)
  end)

  it("fails verification without the CA", function()
    local r = http(s, "GET", "/_sim/ping", nil, { no_ca = true })
    assert.are.equal(60, r.rc)
  end)

  it("serves a wrong-host certificate on request", function()
    local w = sim.start({ tls = true, wrong_host_cert = true })
    local ok, err = pcall(function()
      local r = http(w, "GET", "/_sim/ping")
      assert.are.equal(60, r.rc) -- hostname does not match
      r = http(w, "GET", "/_sim/ping", nil, { url = "https://wrong.example:" .. w.port,
        curl_args = { "--resolve", q("wrong.example:" .. w.port .. ":127.0.0.1") } })
      assert.are.equal(200, r.status)
    end)
    w:stop()
    assert(ok, err)
  end)
end)
