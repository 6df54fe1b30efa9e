--- spec/helpers/cli_sim.lua: the CLI specs' fixture: one TLS simulator
-- per spec file (two apps' credentials and a static token), a scratch
-- folder, a fresh ledger per test, and the runs' outputs kept to look for
-- secrets at the end.
--
--   local cli_sim = require "spec.helpers.cli_sim"
--   local fx = cli_sim.new "dtr-cli-spec"
--   describe("...", function()
--     local s, dir
--     setup(function() s, dir = fx.start() end)   -- the simulator, a scratch folder
--     teardown(fx.stop)
--     before_each(fx.fresh)    -- a fresh ledger; credentials by key + secret
--     it("...", function()
--       local rc, out, err = fx.run({ "token" }, { env = { DINGTALK_APP_SECRET = false } })
--     end)
--   end)
--
-- fx.s is the simulator, fx.dir the folder, fx.env the environment of the
-- current test (fresh() remakes it).
local sim = require "spec.helpers.sim"
local runner = require "spec.helpers.cli"
local shell = require "spec.helpers.shell"
local assert = require "luassert"

local M = {}

-- The simulator's app (key + secret), its static token, the conversation.
M.APP_KEY, M.APP_SECRET = "dingcliapp", "AppSecret-S3cr3t-5150"
M.STATIC = "StaticTok-9f8e7d6c5b4a"
M.CID = "cidCliSpec"

--- new(name) -> fixture; name: the scratch folder's prefix under $TMPDIR.
function M.new(name)
  assert(name:match("^[%w%-]+$"), "cli_sim.new: a plain folder prefix")
  local fx = { outputs = {} } -- outputs: every stdout and stderr of fx.run, in order
  local n = 0
  local q = shell.quote

  --- -> the simulator, the scratch folder (also fx.s, fx.dir)
  function fx.start()
    fx.s = sim.start { tls = true, apps = { M.APP_KEY .. ":" .. M.APP_SECRET }, token = M.STATIC }
    fx.dir = shell.trim(sim.sh("mktemp -d ${TMPDIR:-/tmp}/" .. name .. ".XXXXXX"))
    sim.sh("mkdir -p " .. q(fx.dir .. "/xdg"))
    return fx.s, fx.dir
  end

  function fx.stop()
    if fx.s then fx.s:stop() end
    if fx.dir and fx.dir:find(name, 1, true) then sim.sh("rm -rf " .. q(fx.dir)) end
  end

  -- A fresh ledger per test; credentials by key + secret unless changed.
  function fx.fresh()
    n = n + 1
    fx.env = {
      DINGTALK_ENDPOINT = fx.s.url, DINGTALK_CA_FILE = fx.s.ca_file, DINGTALK_APP_KEY = M.APP_KEY,
      DINGTALK_APP_SECRET = M.APP_SECRET, DINGTALK_RECALL_LEDGER = fx.dir .. "/ledger" .. n,
      XDG_CONFIG_HOME = fx.dir .. "/xdg",
    }
    fx.s:reset()
  end

  --- run({args}, {env = {...} (false removes), stdin = "...", spawn = true, pipe = true, clock = fn})
  -- -> rc, stdout, stderr.  In-process (spec/helpers/cli.lua), or with spawn
  -- (or pipe: stdin through a pipe) bin/dingtalk-recall as a child process.
  function fx.run(args, o)
    o = o or {}
    local env = {}
    for k, v in pairs(fx.env) do env[k] = v end
    for k, v in pairs(o.env or {}) do env[k] = v or nil end
    local how = (o.spawn or o.pipe) and runner.spawn or runner.run
    local r = how(args, { env = env, stdin = o.stdin, pipe = o.pipe, clock = o.clock })
    fx.outputs[#fx.outputs + 1] = r.stdout
    fx.outputs[#fx.outputs + 1] = r.stderr
    return r.code, r.stdout, r.stderr
  end

  --- The requests the simulator has had since fresh(): recall, send and token.
  function fx.api_calls()
    local st = fx.s:stats()
    return st.requests.recall + st.requests.send + st.requests.accessToken
  end

  --- send(text [, extra args [, run opts]]) -> the new message's key (exit 0 asserted).
  function fx.send(text, extra, o)
    local args = { "send", "--conversation", M.CID, "--robot", fx.s.robot, "--text", text }
    for _, a in ipairs(extra or {}) do args[#args + 1] = a end
    local rc, out, err = fx.run(args, o)
    assert.are.equal(0, rc, err)
    return shell.trim(out)
  end

  --- Asserts that no output so far holds any of the secrets (and that
  -- there were at least min of them: the scan looked at something).
  function fx.assert_no_secret(secrets, min)
    assert.is_true(#fx.outputs > min, #fx.outputs .. " outputs")
    local text = table.concat(fx.outputs, "\n")
    for _, secret in ipairs(secrets) do
      assert.is_nil(text:find(secret, 1, true), secret .. " was printed")
    end
  end

  return fx
end

return M
