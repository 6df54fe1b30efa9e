-- Output a terminal or a parser can trust (issue 10, class 3): a hostile
-- server on 127.0.0.1 (spec/helpers/hostile_http.lua) puts escape
-- sequences (ESC[2J, an OSC 8 link), C1 controls (U+009B and a raw 0x9b),
-- CR/LF, NUL and invalid UTF-8 into error messages, request ids, per-key
-- reasons and the keys `send` returns; a careless caller puts them on the
-- command line.  Every surface shows them as visible escapes: the CLI's
-- text (stdout and stderr; in-process through spec/helpers/cli.lua, the
-- first payload's runs as bin/dingtalk-recall processes), its --json (decoded with cjson, checked valid
-- UTF-8, also for internal errors), the rules' chat reply and the Neovim
-- results buffer (which must open, whatever the server sent).
local hh = require "spec.helpers.hostile_http"
local shell = require "spec.helpers.shell"
local cli = require "spec.helpers.cli"
local cjson = require "cjson"

local q, trim = shell.quote, shell.trim
local ROOT = trim(shell.sh("pwd"))
local TOKEN = "TokOut-8c1f0e2d3b4a5968"
local CID, ROBOT = "cidHostileOut", "dingHostileRobot"
local P = hh.PAYLOADS
local NAMES = { "esc", "osc8", "c1", "crlf", "nul", "bad_utf8" }

local function assert_safe(s, what)
  local why = hh.unsafe(s, true)
  assert.is_nil(why, what .. ": " .. tostring(why) .. " in:\n" .. s)
end

local function assert_json(s, what)
  assert.is_nil(hh.unsafe(s, true), what .. ": unsafe JSON text")
  assert.is_true(hh.valid_utf8(s), what .. ": JSON not valid UTF-8")
  local line = s:gsub("\n$", "")
  assert.is_nil(line:find("\n"), what .. ": one line")
  local ok, doc = pcall(cjson.decode, line)
  assert.is_true(ok, what .. ": not JSON: " .. tostring(doc) .. "\n" .. s)
  assert.is_table(doc, what)
  return doc
end

describe("hostile output: the CLI", function()
  local srv, dir, n

  setup(function()
    srv = hh.start()
    dir = trim(shell.sh("mktemp -d ${TMPDIR:-/tmp}/dtr-hostile-out.XXXXXX"))
    n = 0
  end)
  teardown(function()
    if srv then srv:stop() end
    if dir and dir:match("dtr%-hostile%-out") then shell.sh("rm -rf " .. q(dir)) end
  end)

  -- run(args [, ledger [, how]]) -> rc, stdout, stderr: in-process, or
  -- bin/dingtalk-recall as a child when how is "spawn" (fails on a signal).
  local function run(args, ledger, how)
    n = n + 1
    local env = { DINGTALK_ENDPOINT = srv.url, DINGTALK_ACCESS_TOKEN = TOKEN,
      DINGTALK_RECALL_LEDGER = ledger or (dir .. "/ledger" .. n), XDG_CONFIG_HOME = dir .. "/xdg" }
    local r = (how == "spawn" and cli.spawn or cli.run)(args, { env = env })
    return r.code, r.stdout, r.stderr
  end
  -- the first payload's runs are real processes: bin/dingtalk-recall's own stdout and stderr
  local function how_for(name) return name == NAMES[1] and "spawn" or nil end

  local RECALL = { "recall", "--conversation", CID, "--robot", ROBOT, "--quiet", "k1", "k2" }
  local function with(list, ...)
    local t = {}
    for _, a in ipairs(list) do t[#t + 1] = a end
    for _, a in ipairs { ... } do t[#t + 1] = a end
    return t
  end

  for _, name in ipairs(NAMES) do
    local p = P[name]

    it(name .. " in an error's message, code and request id: text and --json", function()
      srv:answer { kind = "error", code = "Bad" .. p, message = "msg " .. p, request_id = "rid" .. p }
      local rc, out, err = run(RECALL, nil, how_for(name))
      assert.is_true(rc == 1 or rc == 3, err)
      assert_safe(out, "stdout")
      assert_safe(err, "stderr")
      assert.matches("error     k1", out, 1, true)
      local rc2
      rc2, out, err = run(with(RECALL, "--json"), nil, how_for(name))
      assert.are.equal(rc, rc2, err)
      local doc = assert_json(out, "--json")
      assert.are.equal(rc, doc.exit_code)
      assert.is_string(doc.errors.k1.message)
      assert_safe(err, "stderr")
    end)

    it(name .. " in per-key reasons: text and --json", function()
      srv:answer { kind = "failed", reason = "NOPE " .. p, request_id = "rid" .. p }
      local rc, out, err = run(RECALL)
      assert.are.equal(1, rc, err)
      assert_safe(out, "stdout")
      assert.matches("failed    k1  NOPE", out, 1, true)
      rc, out = run(with(RECALL, "--json"))
      assert.are.equal(1, rc)
      local doc = assert_json(out, "--json")
      assert.matches("^NOPE", doc.failed.k1)
    end)

    it(name .. " in the key `send` returns: send, undo --dry-run, ledger list and show", function()
      srv:answer { kind = "send", key = "key-" .. p }
      local ledger = dir .. "/sendledger-" .. name
      local send = { "send", "--conversation", CID, "--robot", ROBOT, "--text", "hi" }
      local rc, out, err = run(send, ledger)
      assert.is_true(rc == 0 or rc == 1 or rc == 3, err)
      assert_safe(out, "send stdout")
      assert_safe(err, "send stderr")
      rc, out = run(with(send, "--json"), ledger)
      if rc == 0 then assert_json(out, "send --json") end
      for _, args in ipairs {
        { "undo", "--conversation", CID, "--dry-run", "--last", "5" }, { "ledger", "list" },
        { "ledger", "show", "key-" .. (p:find("%z") and "x" or p) },
      } do
        rc, out, err = run(args, ledger)
        assert.is_true(rc <= 2, err)
        assert_safe(out, table.concat(args, " "))
        assert_safe(err, table.concat(args, " "))
        local rc2
        rc2, out = run(with(args, "--json"), ledger)
        assert.are.equal(rc, rc2)
        if out ~= "" then assert_json(out, table.concat(args, " ") .. " --json") end
      end
    end)

    if not p:find("%z") then -- argv cannot carry NUL
      it(name .. " on the command line is echoed escaped (text and --json)", function()
        srv:answer { kind = "failed", reason = "NOPE" }
        for _, args in ipairs {
          { "recall", "--conversation", "cid" .. p, "--robot", ROBOT, "k1" },
          { "recall", "--conversation", CID, "--robot", ROBOT, "key" .. p },
          { "frob" .. p }, { "recall", "--bogus" .. p }, { "undo", "--conversation", CID, "--since", p },
          { "send", "--conversation", CID, "--robot", ROBOT, "--text", "t", "--dry-run", "--tag", "t" .. p },
          { "ledger", "show", "nokey" .. p }, { "ledger", "frob" .. p },
        } do
          local rc, out, err = run(args, nil, args[1] == "frob" .. p and how_for(name) or nil)
          assert.is_true(rc ~= 0 and rc < 128, "exit " .. rc .. " for " .. table.concat(args, " "))
          assert_safe(out, "stdout")
          assert_safe(err, "stderr")
          local rc2
          rc2, out, err = run(with(args, "--json"))
          assert.are.equal(rc, rc2)
          assert_safe(err, "stderr (--json)")
          assert_json(out, "--json of " .. name)
        end
      end)
    end
  end

  it("an internal error still prints one valid JSON document, escaped", function()
    local r = cli.run({ "recall", "--conversation", CID, "--robot", ROBOT, "--json", "-" }, {
      env = { DINGTALK_ACCESS_TOKEN = TOKEN, DINGTALK_ENDPOINT = srv.url, DINGTALK_RECALL_LEDGER = dir .. "/internal" },
      stdin = { read = function() error("boom " .. P.esc .. P.c1 .. P.bad_utf8 .. "\nFAKE-LINE: x") end },
    })
    assert.are.equal(3, r.code)
    local doc = assert_json(r.stdout, "internal error --json")
    assert.are.equal(3, doc.exit_code)
    assert.matches("internal error", doc.error.message, 1, true)
    assert_safe(r.stderr, "stderr")
  end)
end)

describe("hostile output: the rules' chat reply", function()
  local srv, dir
  setup(function()
    srv = hh.start()
    dir = trim(shell.sh("mktemp -d ${TMPDIR:-/tmp}/dtr-hostile-rules.XXXXXX"))
  end)
  teardown(function()
    if srv then srv:stop() end
    if dir and dir:match("dtr%-hostile%-rules") then shell.sh("rm -rf " .. q(dir)) end
  end)

  local function reply(answer, i)
    srv:answer(answer)
    local recall = require "dingtalk.recall"
    local rules = require "dingtalk.recall.rules"
    local ledger = require "dingtalk.recall.ledger"
    local l = assert(ledger.open(dir .. "/ledger" .. i))
    assert(l:record { key = "k" .. i, conversation = CID, robot = ROBOT, sent_at = os.time() })
    local c = assert(recall.client { endpoint = srv.url, access_token = TOKEN, robot_code = ROBOT, max_retries = 0 })
    local r = rules.new { ledger = l, client = c, admins = { "staff1" } }
    local res = r:handle { msgtype = "text", text = { content = "/recall last 1" }, conversationId = CID,
      conversationType = "2", robotCode = ROBOT, senderStaffId = "staff1" }
    c:close()
    l:close()
    return res.reply
  end

  for i, name in ipairs(NAMES) do
    it(name .. " in a reason or an error never reaches the group raw", function()
      local text = reply({ kind = "failed", reason = "NOPE " .. P[name] }, i)
      assert.is_nil(hh.unsafe(text, false), text)
      assert.matches("could not be recalled %(NOPE", text)
      text = reply({ kind = "error", code = "Bad" .. P[name], message = P[name] }, i + 10)
      assert.is_nil(hh.unsafe(text, false), text)
    end)
  end

  it("a /recall command with control characters is answered escaped", function()
    local rules = require "dingtalk.recall.rules"
    local r = rules.new { ledger = {}, client = {}, admins = { "staff1" } }
    for _, name in ipairs { "esc", "osc8", "c1", "bad_utf8" } do
      local res = r:handle { msgtype = "text", text = { content = "/recall frob" .. P[name] }, conversationId = CID,
        conversationType = "2", senderStaffId = "staff1" }
      local first = res.reply:match("^[^\n]*")
      assert.is_nil(hh.unsafe(first, false), first)
    end
  end)
end)

local HAS_NVIM = select(2, shell.sh("command -v nvim")) == 0
local describe_nvim = HAS_NVIM and describe or pending

describe_nvim("hostile output: the Neovim results buffer", function()
  local srv
  setup(function() srv = hh.start() end)
  teardown(function() if srv then srv:stop() end end)

  it("opens and shows every payload escaped (reasons, messages, request ids)", function()
    local steps = {}
    for _, name in ipairs(NAMES) do
      steps[#steps + 1] = { kind = "failed", reason = "NOPE " .. P[name] }
      steps[#steps + 1] = { kind = "error", code = "Bad" .. P[name], message = "m " .. P[name],
        request_id = "rid" .. P[name] }
    end
    local res = require("spec.helpers.nvim_steps").run(ROOT, srv, steps, { token = TOKEN, cid = CID, robot = ROBOT })
    assert.are.equal(#steps, #res.steps)
    for i, st in ipairs(res.steps) do
      assert.is_true(#st.lines >= 3, "step " .. i .. ": the buffer did not open")
      assert.matches("DingTalk recall:", st.lines[1], 1, true)
      for _, line in ipairs(st.lines) do
        assert.is_nil(hh.unsafe(line, false), "step " .. i .. ": " .. line)
      end
      assert.is_nil(hh.unsafe(st.summary, false))
    end
  end)
end)
