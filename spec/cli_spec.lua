-- The dingtalk-recall CLI against the simulator: help and usage errors,
-- recall (exit codes, --json, --dry-run, stdin), exit 3 when nothing could
-- be done, and the token and app secret absent from every output.  Most
-- runs are in-process (cli.main through spec/helpers/cli.lua); some run
-- bin/dingtalk-recall as a child process ($DINGTALK_RECALL_TEST_LUA) for
-- what only a process shows: the launcher, its exit status and real
-- stdout/stderr, a pipe.  send, ledger, undo, sweep, token and config files
-- and the progress bar: cli_ledger_spec.lua.
local sim = require "spec.helpers.sim"
local cli = require "dingtalk.recall.cli"
local cli_sim = require "spec.helpers.cli_sim"
local shell = require "spec.helpers.shell"

local json = sim.json
local write = shell.write_file
local APP_SECRET, STATIC, CID = cli_sim.APP_SECRET, cli_sim.STATIC, cli_sim.CID

local fx = cli_sim.new "dtr-cli-spec"
local run, send, api_calls = fx.run, fx.send, fx.api_calls

describe("dingtalk-recall CLI", function()
  local s, dir
  setup(function() s, dir = fx.start() end)
  teardown(fx.stop)
  before_each(fx.fresh)

  describe("help and usage", function()
    it("--help works on every subcommand, and alone", function()
      for _, cmd in ipairs { "recall", "undo", "send", "sweep", "ledger", "token" } do
        local rc, out = run { cmd, "--help" }
        assert.are.equal(0, rc, cmd)
        assert.matches("usage: dingtalk%-recall " .. cmd, out)
        assert.matches("exit status", out)
      end
      local rc, out = run({ "--help" }, { spawn = true })
      assert.are.equal(0, rc)
      assert.matches("commands:", out)
      rc, out = run { "help", "undo" }
      assert.are.equal(0, rc)
      assert.matches("usage: dingtalk%-recall undo", out)
    end)

    it("exits 2 on usage errors, sending nothing", function()
      local before = api_calls()
      for _, args in ipairs {
        {}, { "frobnicate" }, { "recall", "--bogus" }, { "recall", "--robot", "x", "k1" },
        { "recall", "--conversation", CID, "k1" }, { "send", "--conversation", CID, "--robot", "r" },
        { "undo" }, { "undo", "--conversation", CID, "--last", "2", "--tag", "x" },
        { "undo", "--conversation", CID, "--since", "ten minutes" },
        { "send", "--conversation", CID, "--robot", "r", "--text", "x", "--ttl", "soon" },
        { "sweep", "--last", "3" }, { "ledger", "frob" }, { "ledger", "--state", "nonsense" },
        { "recall", "--conversation", CID, "--robot", s.robot, "--qps", "fast", "k1" },
        { "recall", "--conversation" },
      } do
        local rc, _, err = run(args, { spawn = #args == 0 }) -- (no arguments at all: as a process)
        assert.are.equal(2, rc, table.concat(args, " ") .. ": " .. err)
        assert.matches("dingtalk%-recall", err)
      end
      assert.are.equal(before, api_calls())
    end)

    it("exits 2 on an invalid key, and sends none of the valid ones", function()
      local keys = s:seed_keys(3, CID, s.robot)
      local long = string.rep("k", 1100)
      local rc, _, err = run { "recall", "--conversation", CID, "--robot", s.robot, keys[1], long, keys[2] }
      assert.are.equal(2, rc)
      assert.matches("nothing was sent", err)
      assert.are.equal("sent", s:key(keys[1]).state)
      assert.are.equal(0, s:stats().requests.recall)
    end)

    it("parses options in-process", function()
      local p = assert(cli.parse { "--json", "undo", "--conversation=c1", "--tag", "t", "--dry-run" })
      assert.are.equal("undo", p.command)
      assert.are.equal("c1", p.opts.conversation)
      assert.are.same({ "t" }, p.opts.tag)
      assert.is_true(p.opts.json)
      assert.is_true(p.opts["dry-run"])
      p = assert(cli.parse { "recall", "--conversation", "c", "--", "--not-an-option", "-" })
      assert.are.same({ "--not-an-option", "-" }, p.args)
      assert.is_nil(cli.parse { "send", "--last", "2" })
      assert.is_nil(cli.parse { "recall", "--json=yes" })
      assert.is_nil(cli.parse { "recall", "--robot", "a", "--robot", "b" })
    end)
  end)

  describe("recall", function()
    it("recall KEY marks the ledger's entry, so a later undo does not send it again", function()
      local k1 = send("first")
      local k2 = send("second")
      local k3 = send("third")
      local rc, _, err = run { "recall", "--conversation", CID, "--robot", s.robot, k1, "NotInTheLedger" }
      assert.is_true(rc == 0 or rc == 1, err)
      local out
      rc, out = run { "ledger", "show", k1, "--json" }
      assert.are.equal(0, rc)
      assert.are.equal("recalled", json.decode(out).state)
      local _, shown = run { "ledger", "show", k2, "--json" }
      assert.are.equal("sent", json.decode(shown).state)
      local before = s:stats().requests.recall
      rc, out = run { "undo", "--conversation", CID, "--last", "3", "--json" }
      assert.are.equal(0, rc, out)
      local doc = json.decode(out)
      table.sort(doc.recalled)
      local want = { k2, k3 }
      table.sort(want)
      assert.are.same(want, doc.recalled) -- k1 is not sent again
      assert.are.equal(before + 1, s:stats().requests.recall)
      -- a key the server fails ends `failed` in the ledger (recalled twice: the server says so)
      run { "recall", "--conversation", CID, "--robot", s.robot, k2 }
      rc, out = run { "ledger", "show", k2, "--json" }
      assert.are.equal(0, rc)
      local st = json.decode(out).state
      assert.is_true(st == "recalled" or st == "failed", st)
    end)

    it("checks numeric options as the client does: exit 2, nothing sent, --json too", function()
      local before = api_calls()
      for _, opt in ipairs {
        { "--concurrency", "0" }, { "--concurrency", "1.5" }, { "--concurrency", "nan" }, { "--concurrency", "-1" },
        { "--concurrency", "100000" }, { "--qps", "inf" }, { "--qps", "-1" }, { "--qps", "1e9" }, { "--qps", "0x10" },
        { "--timeout", "0" }, { "--timeout", "1e999" }, { "--timeout", "NaN" }, { "--timeout", "99999" },
      } do
        local args = { "recall", "--conversation", CID, "--robot", s.robot, opt[1], opt[2], "k1" }
        local rc, _, err = run(args)
        assert.are.equal(2, rc, table.concat(opt, " ") .. ": " .. err)
        args[#args + 1] = "--json"
        local out
        rc, out = run(args)
        assert.are.equal(2, rc)
        assert.are.equal(2, json.decode(out).exit_code)
      end
      assert.are.equal(before, api_calls())
    end)

    it("recalls keys given as arguments: exit 0, all recalled in the simulator", function()
      local keys = s:seed_keys(3, CID, s.robot)
      local rc, out = run { "recall", "--conversation", CID, "--robot", s.robot, keys[1], keys[2], keys[3] }
      assert.are.equal(0, rc)
      assert.matches("recalled 3 of 3 keys", out)
      for _, k in ipairs(keys) do assert.are.equal("recalled", s:key(k).state) end
    end)

    it("reads keys from stdin with -, and from a pipe without it", function()
      local keys = s:seed_keys(25, CID, s.robot)
      local rc, out = run({ "recall", "--json", "--conversation", CID, "--robot", s.robot, "-" },
        { stdin = "# keys to recall\n" .. table.concat(keys, "\n", 1, 12) .. "\n" ..
          table.concat(keys, " ", 13, 25) .. "\n" })
      assert.are.equal(0, rc)
      local doc = json.decode(out)
      assert.are.equal(25, #doc.recalled)
      assert.are.equal(2, doc.requests) -- batches of 20
      local more = s:seed_keys(2, CID, s.robot)
      rc, out = run({ "recall", "--conversation", CID, "--robot", s.robot }, { stdin = table.concat(more, "\n"),
        pipe = true })
      assert.are.equal(0, rc)
      assert.matches("recalled 2 of 2", out)
      assert.are.equal("recalled", s:key(more[2]).state)
      -- an empty stdin is a usage error
      rc = run({ "recall", "--conversation", CID, "--robot", s.robot }, { stdin = "" })
      assert.are.equal(2, rc)
    end)

    it("exits 1 when some keys fail, and --json lists failed and errors with code and message", function()
      local keys = s:seed_keys(2, CID, s.robot)
      local rc, out = run { "recall", "--json", "--conversation", CID, "--robot", s.robot, keys[1], "NoSuchKey1",
        keys[2] }
      assert.are.equal(1, rc)
      local doc = json.decode(out)
      assert.are.equal(2, #doc.recalled)
      assert.is_string(doc.failed.NoSuchKey1)
      assert.are.equal(1, doc.exit_code)
      assert.is_false(doc.ok)

      -- server errors for every attempt: errors, with code and message
      local more = s:seed_keys(1, CID, s.robot)
      s:script { recall = { "system_error", "system_error", "system_error", "system_error", "system_error" } }
      rc, out = run { "recall", "--json", "--conversation", CID, "--robot", s.robot, more[1] }
      assert.are.equal(1, rc)
      doc = json.decode(out)
      local e = doc.errors[more[1]]
      assert.are.equal("system.error", e.code)
      assert.is_string(e.message)
      assert.are.same({}, doc.recalled)
    end)

    it("counts keys the server reports already recalled as recalled", function()
      local keys = s:seed_keys(1, CID, s.robot)
      assert.are.equal(0, (run { "recall", "--conversation", CID, "--robot", s.robot, keys[1] }))
      local rc, out = run { "recall", "--json", "--conversation", CID, "--robot", s.robot, keys[1] }
      assert.are.equal(0, rc)
      assert.are.same({ keys[1] }, json.decode(out).already_recalled)
    end)

    it("--dry-run prints the batches and sends nothing, without needing credentials", function()
      local keys = s:seed_keys(21, CID, s.robot)
      local before = api_calls()
      local rc, out = run({ "recall", "--dry-run", "--conversation", CID, "--robot", s.robot, "-" },
        { stdin = table.concat(keys, "\n"), env = { DINGTALK_APP_KEY = false, DINGTALK_APP_SECRET = false } })
      assert.are.equal(0, rc)
      assert.matches("would recall 21 keys in 2 requests", out)
      assert.matches("batch 2: conversation " .. CID, out)
      rc, out = run({ "recall", "--dry-run", "--json", "--conversation", CID, "--robot", s.robot, "-" },
        { stdin = table.concat(keys, "\n") })
      assert.are.equal(0, rc)
      local doc = json.decode(out)
      assert.is_true(doc.dry_run)
      assert.are.equal(2, #doc.batches)
      assert.are.equal(20, #doc.batches[1].processQueryKeys)
      assert.are.equal(1, #doc.batches[2].processQueryKeys)
      assert.are.equal(s.robot, doc.batches[1].robotCode)
      assert.are.equal(before, api_calls())
      assert.are.equal("sent", s:key(keys[1]).state)
    end)
  end)

  describe("exit 3: nothing could be done", function()
    it("without credentials", function()
      local rc, _, err = run({ "recall", "--conversation", CID, "--robot", s.robot, "k1" },
        { env = { DINGTALK_APP_KEY = false, DINGTALK_APP_SECRET = false }, spawn = true })
      assert.are.equal(3, rc)
      assert.matches("no credentials", err)
    end)

    it("with a wrong app secret, or a rejected token", function()
      local keys = s:seed_keys(2, CID, s.robot)
      local rc, out = run({ "recall", "--json", "--conversation", CID, "--robot", s.robot, keys[1], keys[2] },
        { env = { DINGTALK_APP_SECRET = "Wrong-Secret-0001" } })
      assert.are.equal(3, rc)
      assert.are.equal("invalidClientIdOrSecret", json.decode(out).errors[keys[1]].code)
      rc = run({ "token" }, { env = { DINGTALK_APP_SECRET = "Wrong-Secret-0001" } })
      assert.are.equal(3, rc)
      rc = run({ "recall", "--conversation", CID, "--robot", s.robot, keys[1] },
        { env = { DINGTALK_ACCESS_TOKEN = "Rejected-Token-0002" } })
      assert.are.equal(3, rc)
      assert.are.equal("sent", s:key(keys[1]).state)
    end)

    it("when the endpoint cannot be reached", function()
      local rc, out = run({ "recall", "--json", "--conversation", CID, "--robot", s.robot, "k1", "k2" },
        { env = { DINGTALK_ENDPOINT = "http://127.0.0.1:9" } })
      assert.are.equal(3, rc)
      assert.matches("^transport%.", json.decode(out).errors.k1.code)
    end)

    it("when the ledger cannot be opened", function()
      write(dir .. "/not-a-dir", "x")
      local rc, _, err = run({ "undo", "--conversation", CID }, { env = { DINGTALK_RECALL_LEDGER =
        dir .. "/not-a-dir/ledger" } })
      assert.are.equal(3, rc)
      assert.matches("ledger", err)
    end)
  end)

  it("never prints the access token or the app secret", function()
    -- a few more runs through the paths that handle credentials, as processes
    -- (bin/dingtalk-recall's real stdout and stderr)
    local static = { DINGTALK_ACCESS_TOKEN = STATIC }
    run({ "token" }, { env = static, spawn = true })
    run({ "token", "--json" }, { spawn = true })
    run({ "recall", "--conversation", CID, "--robot", s.robot, "k" }, { env = static, spawn = true })
    run({ "recall", "--dry-run", "--json", "--conversation", CID, "--robot", s.robot, "k" },
      { env = static, spawn = true })
    run({ "send", "--conversation", CID, "--robot", s.robot, "--text", "x" }, { env = static, spawn = true })
    run({ "recall", "--conversation", CID, "--robot", s.robot, "k" },
      { env = { DINGTALK_ACCESS_TOKEN = "Rejected-Token-0002" }, spawn = true })
    run({ "token" }, { env = { DINGTALK_APP_SECRET = "Wrong-Secret-0001" }, spawn = true })
    fx.assert_no_secret({ STATIC, APP_SECRET, "Rejected-Token-0002", "Wrong-Secret-0001" }, 40)
  end)
end)
