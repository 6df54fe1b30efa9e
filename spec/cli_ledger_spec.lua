-- The dingtalk-recall CLI against the simulator, continued (cli_spec.lua:
-- help, usage, recall and exit 3): send, the ledger, undo and sweep (the
-- ledger on a fake clock), token and config files, the progress bar on a
-- terminal, and the token and app secret absent from every output.
local shell = require "spec.helpers.shell"
local runner = require "spec.helpers.cli"
local cli_sim = require "spec.helpers.cli_sim"
local json = require("spec.helpers.sim").json
local sh, q, write = shell.sh, shell.quote, shell.write_file
local APP_KEY, APP_SECRET, STATIC, CID = cli_sim.APP_KEY, cli_sim.APP_SECRET, cli_sim.STATIC, cli_sim.CID

-- One simulator for the file (spec/helpers/cli_sim.lua), a fresh ledger per test.
local fx = cli_sim.new "dtr-cli-ledger-spec"
local s, dir
setup(function() s, dir = fx.start() end)
teardown(fx.stop)
before_each(fx.fresh)
local run, send = fx.run, fx.send

describe("dingtalk-recall CLI send, ledger, undo, sweep", function()
  it("sends, lists, undoes the last one, then by tag and since", function()
    local k1 = send("one", { "--tag", "deploy" })
    local k2 = send("two")
    local k3 = send("three", { "--tag", "deploy" })
    assert.are.equal("sent", s:key(k1).state)

    local rc, out = run { "ledger", "list" }
    assert.are.equal(0, rc)
    assert.matches(k1, out, 1, true)
    assert.matches("deploy", out)

    rc, out = run { "ledger", "list", "--json", "--tag", "deploy" }
    assert.are.equal(0, rc)
    local doc = json.decode(out)
    assert.are.equal(2, doc.count)
    assert.are.equal(k3, doc.entries[1].key) -- newest first

    rc, out = run { "undo", "--conversation", CID }
    assert.are.equal(0, rc)
    assert.matches("recalled 1 of 1", out)
    assert.are.equal("recalled", s:key(k3).state)
    assert.are.equal("sent", s:key(k2).state)

    rc = run { "undo", "--conversation", CID, "--tag", "deploy" }
    assert.are.equal(0, rc)
    assert.are.equal("recalled", s:key(k1).state)
    assert.are.equal("sent", s:key(k2).state)

    rc, out = run { "ledger", "show", k1, "--json" }
    assert.are.equal(0, rc)
    assert.are.equal("recalled", json.decode(out).state)

    rc, out = run { "undo", "--conversation", CID, "--since", "10m", "--dry-run" }
    assert.are.equal(0, rc)
    assert.matches("would recall 1 key in 1 request", out)
    assert.matches(k2, out, 1, true)
    assert.are.equal("sent", s:key(k2).state)

    rc, out = run { "undo", "--conversation", CID, "--since", "10m", "--json" }
    assert.are.equal(0, rc)
    assert.are.same({ k2 }, json.decode(out).recalled)

    -- nothing left: still 0, and says so
    rc, out = run { "undo", "--conversation", CID, "--last", "5" }
    assert.are.equal(0, rc)
    assert.matches("nothing to recall", out)

    rc = run { "ledger", "show", "NoSuchKey" }
    assert.are.equal(1, rc)
  end)

  it("send --json and --dry-run", function()
    local before = fx.api_calls()
    local rc, out = run { "send", "--dry-run", "--conversation", CID, "--robot", s.robot, "--text", "hi",
      "--ttl", "1h", "--tag", "a", "--tag", "b" }
    assert.are.equal(0, rc)
    assert.matches("dry run", out)
    assert.are.equal(before, fx.api_calls())
    rc, out = run { "send", "--json", "--conversation", CID, "--robot", s.robot, "--text", "hi", "--ttl", "1h" }
    assert.are.equal(0, rc)
    local doc = json.decode(out)
    assert.are.equal(3600, doc.ttl)
    assert.are.equal("sent", s:key(doc.processQueryKey).state)
  end)

  it("sweep recalls what outlived its ttl, and only that (the ledger on a fake clock)", function()
    local now = os.time()
    local o = { clock = function() return now end }
    local short = send("short-lived", { "--ttl", "3s" }, o)
    local long = send("long-lived", { "--ttl", "1h" }, o)
    local rc, out = run({ "sweep", "--dry-run" }, o)
    assert.are.equal(0, rc)
    assert.matches("nothing due", out)
    now = now + 2
    rc, out = run({ "sweep", "--dry-run" }, o)
    assert.are.equal(0, rc)
    assert.matches("nothing due", out)
    now = now + 2
    rc, out = run({ "sweep", "--dry-run" }, o)
    assert.are.equal(0, rc)
    assert.matches("would recall 1 key", out)
    assert.are.equal("sent", s:key(short).state)
    rc, out = run({ "sweep", "--json" }, o)
    assert.are.equal(0, rc)
    assert.are.same({ short }, json.decode(out).recalled)
    assert.are.equal("recalled", s:key(short).state)
    assert.are.equal("sent", s:key(long).state)
    rc, out = run({ "sweep" }, o)
    assert.are.equal(0, rc)
    assert.matches("nothing due", out)
    now = now + 3600
    rc, out = run({ "sweep", "--json" }, o)
    assert.are.equal(0, rc)
    assert.are.same({ long }, json.decode(out).recalled)
    assert.are.equal("recalled", s:key(long).state)
  end)
end)

describe("dingtalk-recall CLI token and config", function()
  it("token checks key + secret, and reports a static token as set", function()
    local rc, out = run { "token" }
    assert.are.equal(0, rc)
    assert.matches("credentials work", out)
    rc, out = run({ "token", "--json" }, { env = { DINGTALK_ACCESS_TOKEN = STATIC }, spawn = true })
    assert.are.equal(0, rc)
    local doc = json.decode(out)
    assert.is_true(doc.ok)
    assert.is_false(doc.checked)
    assert.are.equal("DINGTALK_ACCESS_TOKEN", doc.credentials)
  end)

  it("reads credentials from a config file, and refuses one others can read (exit 3, chmod 600)", function()
    local cfgfile = dir .. "/xdg/dingtalk-recall/config.lua"
    sh("mkdir -p " .. q(dir .. "/xdg/dingtalk-recall"))
    finally(function() os.remove(cfgfile) end)
    write(cfgfile, "# test config\napp_key = " .. APP_KEY .. "\napp_secret = \"" .. APP_SECRET .. "\"\n" ..
      "endpoint = " .. s.url .. "\nca_file = " .. s.ca_file .. "\n", "600")
    local env = { DINGTALK_APP_KEY = false, DINGTALK_APP_SECRET = false, DINGTALK_ENDPOINT = false,
      DINGTALK_CA_FILE = false }
    local rc, out, err = run({ "token" }, { env = env })
    assert.are.equal(0, rc, err)
    assert.matches("app_key %+ app_secret in ", out)

    sh("chmod 644 " .. q(cfgfile))
    rc, out, err = run({ "token" }, { env = env, spawn = true })
    assert.are.equal(3, rc)
    assert.matches("chmod 600", err)
    assert.are.equal("", out)

    -- a Lua table file through --config
    local luafile = dir .. "/other.lua"
    write(luafile, "return {\n  access_token = \"" .. STATIC .. "\",\n  endpoint = \"" .. s.url ..
      "\",\n  ca_file = \"" .. s.ca_file .. "\",\n}\n", "600")
    local keys = s:seed_keys(1, CID, s.robot)
    rc, out, err = run({ "recall", "--config", luafile, "--conversation", CID, "--robot", s.robot, keys[1] },
      { env = env })
    assert.are.equal(0, rc, err)
    assert.matches("recalled 1 of 1", out)
    assert.are.equal("recalled", s:key(keys[1]).state)

    -- a broken file: refused without quoting it
    write(luafile, "access_token = " .. STATIC .. " oops {\n", "600")
    rc, out, err = run({ "token", "--config", luafile }, { env = env })
    assert.are.equal(2, rc)
    assert.is_nil((out .. err):find(STATIC, 1, true))
  end)
end)

describe("dingtalk-recall CLI the progress bar", function()
  it("is drawn on stderr when it is a terminal, and not otherwise", function()
    local keys = s:seed_keys(45, CID, s.robot)
    local args = { "recall", "--conversation", CID, "--robot", s.robot }
    for _, k in ipairs(keys) do args[#args + 1] = k end
    local r = runner.run(args, { env = fx.env, isatty = function(fd) return fd == 2 end })
    assert.are.equal(0, r.code, r.stderr)
    assert.matches("recalled 45 of 45", r.stdout)
    assert.matches("%[#+%] 45/45 keys\n$", r.stderr)
    assert.matches("\r", r.stderr, 1, true)
    r = runner.run(args, { env = fx.env, isatty = false })
    assert.are.equal(0, r.code, r.stdout) -- (already recalled counts as recalled)
    assert.are.equal("", r.stderr)
    assert.matches("45 of 45", r.stdout)
  end)

  local has_script = select(2, sh("command -v script >/dev/null 2>&1")) == 0
  local it_tty = has_script and it or pending
  it_tty("is drawn by bin/dingtalk-recall on a real terminal (script(1)), not into a file", function()
    local keys = s:seed_keys(3, CID, s.robot)
    local env = {}
    for k, v in pairs(fx.env) do env[#env + 1] = k .. "=" .. q(v) end
    local cmd = "env " .. table.concat(env, " ") .. " " .. runner.LUA .. " " .. runner.LAUNCHER ..
      " recall --conversation " .. CID .. " --robot " .. q(s.robot) .. " " .. keys[1] .. " " .. keys[2]
    -- stdin, stdout and stderr on a pseudo-terminal
    local out = sh("script -qec " .. q(cmd) .. " /dev/null </dev/null")
    assert.matches("recalled 2 of 2", out)
    assert.matches("\r[##############################] 2/2 keys", out, 1, true)
    -- stderr into a file: no bar
    local r = runner.spawn({ "recall", "--conversation", CID, "--robot", s.robot, keys[3] }, { env = fx.env })
    assert.are.equal(0, r.code, r.stderr)
    assert.are.equal("", r.stderr)
  end)
end)

describe("dingtalk-recall CLI", function()
  it("never prints the access token or the app secret (this file's runs)", function()
    fx.assert_no_secret({ STATIC, APP_SECRET }, 20)
  end)
end)
