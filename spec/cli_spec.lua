-- The dingtalk-recall CLI against the simulator: exit codes, --json,
-- --dry-run, stdin, config files, and the token and app secret absent from
-- every output.  Most runs are in-process (cli.main through
-- spec/helpers/cli.lua); some run bin/dingtalk-recall as a child process
-- ($DINGTALK_RECALL_TEST_LUA) for what only a process shows: the launcher,
-- its exit status and real stdout/stderr, a pipe or a terminal.
local sim = require "spec.helpers.sim"
local runner = require "spec.helpers.cli"
local cli = require "dingtalk.recall.cli"

local q = sim.sh_quote
local json = sim.json

local APP_KEY, APP_SECRET = "dingcliapp", "AppSecret-S3cr3t-5150"
local STATIC = "StaticTok-9f8e7d6c5b4a"
local CID = "cidCliSpec"

local shell = require "spec.helpers.shell"
local trim, write = shell.trim, shell.write_file

-- Every output of every run, to look for secrets at the end.
local all_output = {}

describe("dingtalk-recall CLI", function()
  local s, dir
  local base_env
  local n = 0

  setup(function()
    s = sim.start { tls = true, apps = { APP_KEY .. ":" .. APP_SECRET }, token = STATIC }
    dir = trim(sim.sh("mktemp -d ${TMPDIR:-/tmp}/dtr-cli-spec.XXXXXX"))
    sim.sh("mkdir -p " .. q(dir .. "/xdg"))
  end)
  teardown(function()
    if s then s:stop() end
    if dir and dir:match("dtr%-cli%-spec") then sim.sh("rm -rf " .. q(dir)) end
  end)

  -- A fresh ledger per test; credentials by key + secret unless changed.
  before_each(function()
    n = n + 1
    base_env = {
      DINGTALK_ENDPOINT = s.url, DINGTALK_CA_FILE = s.ca_file, DINGTALK_APP_KEY = APP_KEY,
      DINGTALK_APP_SECRET = APP_SECRET, DINGTALK_RECALL_LEDGER = dir .. "/ledger" .. n,
      XDG_CONFIG_HOME = dir .. "/xdg",
    }
    s:reset()
  end)

  -- run({args}, {env = {...} (false removes), stdin = "...", spawn = true, pipe = true})
  -- -> rc, stdout, stderr.  In-process (spec/helpers/cli.lua), or with spawn
  -- (or pipe: stdin through a pipe) bin/dingtalk-recall as a child process.
  local function run(args, o)
    o = o or {}
    local env = {}
    for k, v in pairs(base_env) do env[k] = v end
    for k, v in pairs(o.env or {}) do env[k] = v or nil end
    local how = (o.spawn or o.pipe) and runner.spawn or runner.run
    local r = how(args, { env = env, stdin = o.stdin, pipe = o.pipe, clock = o.clock })
    all_output[#all_output + 1] = r.stdout
    all_output[#all_output + 1] = r.stderr
    return r.code, r.stdout, r.stderr
  end

  local function api_calls()
    local st = s:stats()
    return st.requests.recall + st.requests.send + st.requests.accessToken
  end

  local function send(text, extra, o)
    local args = { "send", "--conversation", CID, "--robot", s.robot, "--text", text }
    for _, a in ipairs(extra or {}) do args[#args + 1] = a end
    local rc, out, err = run(args, o)
    assert.are.equal(0, rc, err)
    return trim(out)
  end

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

  describe("send, ledger, undo, sweep", function()
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
      local before = api_calls()
      local rc, out = run { "send", "--dry-run", "--conversation", CID, "--robot", s.robot, "--text", "hi",
        "--ttl", "1h", "--tag", "a", "--tag", "b" }
      assert.are.equal(0, rc)
      assert.matches("dry run", out)
      assert.are.equal(before, api_calls())
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

  describe("token and config", function()
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
      sim.sh("mkdir -p " .. q(dir .. "/xdg/dingtalk-recall"))
      finally(function() os.remove(cfgfile) end)
      write(cfgfile, "# test config\napp_key = " .. APP_KEY .. "\napp_secret = \"" .. APP_SECRET .. "\"\n" ..
        "endpoint = " .. s.url .. "\nca_file = " .. s.ca_file .. "\n", "600")
      local env = { DINGTALK_APP_KEY = false, DINGTALK_APP_SECRET = false, DINGTALK_ENDPOINT = false,
        DINGTALK_CA_FILE = false }
      local rc, out, err = run({ "token" }, { env = env })
      assert.are.equal(0, rc, err)
      assert.matches("app_key %+ app_secret in ", out)

      sim.sh("chmod 644 " .. q(cfgfile))
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

  describe("the progress bar", function()
    it("is drawn on stderr when it is a terminal, and not otherwise", function()
      local keys = s:seed_keys(45, CID, s.robot)
      local args = { "recall", "--conversation", CID, "--robot", s.robot }
      for _, k in ipairs(keys) do args[#args + 1] = k end
      local r = runner.run(args, { env = base_env, isatty = function(fd) return fd == 2 end })
      assert.are.equal(0, r.code, r.stderr)
      assert.matches("recalled 45 of 45", r.stdout)
      assert.matches("%[#+%] 45/45 keys\n$", r.stderr)
      assert.matches("\r", r.stderr, 1, true)
      r = runner.run(args, { env = base_env, isatty = false })
      assert.are.equal(0, r.code, r.stdout) -- (already recalled counts as recalled)
      assert.are.equal("", r.stderr)
      assert.matches("45 of 45", r.stdout)
    end)

    local has_script = select(2, sim.sh("command -v script >/dev/null 2>&1")) == 0
    local it_tty = has_script and it or pending
    it_tty("is drawn by bin/dingtalk-recall on a real terminal (script(1)), not into a file", function()
      local keys = s:seed_keys(3, CID, s.robot)
      local env = {}
      for k, v in pairs(base_env) do env[#env + 1] = k .. "=" .. q(v) end
      local cmd = "env " .. table.concat(env, " ") .. " " .. runner.LUA .. " " .. runner.LAUNCHER ..
        " recall --conversation " .. CID .. " --robot " .. q(s.robot) .. " " .. keys[1] .. " " .. keys[2]
      -- stdin, stdout and stderr on a pseudo-terminal
      local out = sim.sh("script -qec " .. q(cmd) .. " /dev/null </dev/null")
      assert.matches("recalled 2 of 2", out)
      assert.matches("\r[##############################] 2/2 keys", out, 1, true)
      -- stderr into a file: no bar
      local r = runner.spawn({ "recall", "--conversation", CID, "--robot", s.robot, keys[3] }, { env = base_env })
      assert.are.equal(0, r.code, r.stderr)
      assert.are.equal("", r.stderr)
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
    assert.is_true(#all_output > 40)
    local text = table.concat(all_output, "\n")
    for _, secret in ipairs { STATIC, APP_SECRET, "Rejected-Token-0002", "Wrong-Secret-0001" } do
      assert.is_nil(text:find(secret, 1, true), secret .. " was printed")
    end
  end)
end)
