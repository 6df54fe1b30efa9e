-- spec/helpers/cli.lua, the specs' CLI runner: an in-process run gives
-- what bin/dingtalk-recall gives as a process (exit status, stdout,
-- stderr), starts as a new process would (no token cached from an earlier
-- run) and leaves this Lua state as it found it (io.stdout, io.stderr,
-- io.stdin, io.write, io.read, print, os.exit), catching a stray write or
-- an os.exit from the code under test instead of losing it (or busted).
-- Against a faulty server (spec/helpers/faulty_server.lua) in its "ok" mode.
local cli = require "spec.helpers.cli"
local faulty = require "spec.helpers.faulty_server"
local shell = require "spec.helpers.shell"

describe("the CLI runner (spec/helpers/cli.lua)", function()
  local f, dir

  setup(function()
    f = faulty.start { api = "ok" }
    dir = shell.trim(shell.sh("mktemp -d ${TMPDIR:-/tmp}/dtr-cli-runner.XXXXXX"))
  end)
  teardown(function()
    if f then f:stop() end
    if dir and dir:match("dtr%-cli%-runner") then shell.sh("rm -rf " .. shell.quote(dir)) end
  end)

  local function env(ledger)
    return { DINGTALK_ENDPOINT = f.url, DINGTALK_APP_KEY = "runnerKey", DINGTALK_APP_SECRET = "runnerSecret",
      DINGTALK_RECALL_LEDGER = dir .. "/" .. ledger, XDG_CONFIG_HOME = dir .. "/xdg" }
  end

  -- the time a run took is the one part of its output that may differ
  local function timeless(s)
    -- and the server's keys, a new one per send
    return (s:gsub("%d+%.%d+ s%)", "T s)"):gsub('"elapsed":[-+%d.e]+', '"elapsed":T')
      :gsub("hostileKey%d+", "hostileKeyN"))
  end

  it("gives what bin/dingtalk-recall gives: exit status, stdout and stderr", function()
    local n = 0
    for _, args in ipairs {
      { "recall", "--dry-run", "--json", "--conversation", "cid", "--robot", "r", "-" },
      { "recall", "--conversation", "cid", "--robot", "r", "k1", "k2" },
      { "recall", "--json", "--conversation", "cid", "--robot", "r", "k1", "k2" },
      { "send", "--conversation", "cid", "--robot", "r", "--text", "hi", "--json" },
      { "token", "--json" }, { "frob" }, { "undo", "--conversation", "cid", "--last", "2", "--tag", "x" }, {},
    } do
      n = n + 1
      local o = { stdin = "k1\nk2 k3\n", env = env("parity-a" .. n) }
      local a = cli.run(args, o)
      o.env = env("parity-b" .. n)
      local b = cli.spawn(args, o)
      local what = table.concat(args, " ")
      assert.are.equal(b.code, a.code, what)
      assert.are.equal(timeless(b.stdout), timeless(a.stdout), what)
      assert.are.equal(b.stderr, a.stderr, what)
      assert.is_true(a.stdout .. a.stderr ~= "", what)
    end
  end)

  it("starts every run without a cached token, as a new process does", function()
    local before = f:requests()
    for _ = 1, 2 do assert.are.equal(0, cli.run({ "token" }, { env = env("token") }).code) end
    assert.are.equal(before + 2, f:requests()) -- one token request a run
  end)

  it("captures stray writes, turns os.exit into an error, and restores this Lua state", function()
    local before = { io.stdout, io.stderr, io.stdin, io.write, io.read, print, os.exit }
    local r = cli.run({ "recall", "--conversation", "cid", "--robot", "r", "-" }, { env = env("stray"), stdin = {
      read = function()
        io.stdout:write("stray ")
        io.write("write ")
        print("printed")
        io.stderr:write("on stderr\n")
        os.exit(0)
      end,
    } })
    assert.are.equal(3, r.code) -- an internal error, not the end of this process
    assert.matches("internal error: .*called os.exit", r.stderr)
    assert.matches("on stderr", r.stderr, 1, true)
    assert.are.equal("stray write printed\n", r.stdout)
    assert.are.same(before, { io.stdout, io.stderr, io.stdin, io.write, io.read, print, os.exit })
  end)
end)
