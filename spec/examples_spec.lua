-- The demo and the OpenResty example as a newcomer runs them (issue 12):
-- `make demo` binds a port the kernel gives, notices a simulator that failed
-- on every runtime (PUC 5.1's io.popen():close() gives no status), and leaves
-- no temporary file behind (the test CA's private key included); the
-- OpenResty example started as root refuses to start and says why.
local shell = require "spec.helpers.shell"
local ports = require "spec.helpers.ports"
local sh, q, trim = shell.sh, shell.quote, shell.trim

local LUA = os.getenv("DINGTALK_RECALL_TEST_LUA") or "lua"
local ROOT = trim(sh("pwd"))
local CPATH = (os.getenv("LUA_CPATH") or ""):match("^([^;]*)") or ""

-- examples/demo.lua under this runtime, with TMPDIR a fresh folder (so that
-- anything it leaves behind shows); extra: more environment.
local function demo(extra)
  local tmp = trim(sh("mktemp -d"))
  local out, rc = sh("env TMPDIR=" .. q(tmp) .. " LUA_CPATH=" .. q(CPATH .. ";;") .. " DEMO_LUA=" .. q(LUA) ..
    " " .. (extra or "") .. " " .. LUA .. " examples/demo.lua")
  local left = trim(sh("ls -A " .. q(tmp)))
  sh("rm -rf " .. q(tmp))
  return out, rc, left
end

describe("make demo (examples/demo.lua)", function()
  -- (DEMO_QPS=0: the same run, unpaced; the pacing at qps = 20 is the
  -- limiter's, tested in limiter and engine specs)
  it("recalls every key on a port the kernel gives, and removes its temporary files", function()
    local out, rc, left = demo("DEMO_QPS=0")
    assert.are.equal(0, rc, out)
    assert.matches("demo: ok", out)
    assert.matches("recalled (%d+) of %1 keys", out)
    local port = tonumber(out:match("listening on https://127%.0%.0%.1:(%d+) "))
    assert.is_number(port, out)
    assert.are.equal("", left, "left in TMPDIR: " .. left)
  end)

  it("notices a simulator that failed to start, says so and exits 1, leaving nothing behind", function()
    local out, rc, left = demo("DINGTALK_SIM_NGINX=/bin/false")
    assert.are.equal(1, rc, out)
    assert.matches("could not start the simulator", out)
    assert.is_nil(out:find("bad argument", 1, true), out)
    assert.are.equal("", left, "left in TMPDIR: " .. left)
  end)
end)

describe("examples/openresty", function()
  local function has_nginx()
    return select(2, sh("command -v nginx && test -f /usr/lib/nginx/modules/ngx_http_lua_module.so")) == 0
  end
  local is_root = trim(sh("id -u")) == "0"
  local it_root = (has_nginx() and is_root) and it or pending
  -- the 5.1 core the example's nginx loads (once for the file)
  setup(function() if is_root then sh("make --no-print-directory LUA_VERSION=5.1 all") end end)

  -- A copy of the example with the repository's lua/ and build/ beside it,
  -- started as its README says (nginx -p examples/openresty/ -c nginx.conf).
  local function start(user_line)
    local d = trim(sh("mktemp -d"))
    local port = ports.claim()
    sh("mkdir -p " .. q(d .. "/examples") .. " && cp -r examples/openresty " .. q(d .. "/examples/") ..
      " && ln -s " .. q(ROOT .. "/lua") .. " " .. q(d .. "/lua") .. " && ln -s " .. q(ROOT .. "/build") .. " " ..
      q(d .. "/build") .. " && sed -i 's/listen 127.0.0.1:8080;/listen 127.0.0.1:" .. port .. ";/' " ..
      q(d .. "/examples/openresty/nginx.conf"))
    if user_line then sh("sed -i '1i " .. user_line .. "' " .. q(d .. "/examples/openresty/nginx.conf")) end
    local prefix = d .. "/examples/openresty/"
    local out, rc = sh("env -u LUA_PATH -u LUA_CPATH nginx -p " .. q(prefix) .. " -c nginx.conf </dev/null")
    local function stop()
      -- stopped: its master gone (at most 5 s), then the copy removed
      sh("pid=$(cat " .. q(prefix .. "nginx.pid") .. " 2>/dev/null); nginx -p " .. q(prefix) ..
        " -c nginx.conf -s stop 2>/dev/null; for i in $(seq 100); do [ -n \"$pid\" ] && kill -0 \"$pid\" " ..
        "2>/dev/null || break; sleep 0.05; done; rm -rf " .. q(d))
      ports.release(port)
    end
    return out, rc, port, stop
  end

  it_root("started as root without a `user` line, refuses to start and gives the cause on stderr", function()
    local out, rc, _, stop = start()
    stop()
    assert.are_not.equal(0, rc, out)
    assert.matches("started as root", out)
    assert.matches("nobody", out)
    assert.matches("user <name>;", out, 1, true)
  end)

  it_root("started as root with a `user` line, starts", function()
    local out, rc, port, stop = start("user root;")
    local health = sh("curl -s -m 5 http://127.0.0.1:" .. port .. "/healthz")
    stop()
    assert.are.equal(0, rc, out)
    assert.matches('"ok":true', health)
  end)

  it("keeps what nginx writes into the example's prefix out of git", function()
    if select(2, sh("git rev-parse --git-dir")) ~= 0 then return pending("not a git checkout") end
    for _, f in ipairs { "error.log", "nginx.pid", "ledger" } do
      local _, rc = sh("git check-ignore -q examples/openresty/" .. f)
      assert.are.equal(0, rc, "examples/openresty/" .. f .. " is not ignored")
    end
  end)
end)
