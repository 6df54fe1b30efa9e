-- Secrets through side doors (issue 10, class 2, without Redis URLs): a
-- hostile server on 127.0.0.1 (spec/helpers/hostile_http.lua) echoes the
-- access token or the app secret, as "[[secret]]", in the request id of an
-- oversized answer (a transport-level error: no JSON is ever parsed), in
-- an error's code, message and request id, in per-key reasons and as the
-- key `send` returns.  Tokens of 1, 5 and 23 bytes.  No surface may show
-- "[[secret]]": the error objects and their tostring (in-process), the
-- CLI's text and --json (in-process through spec/helpers/cli.lua; the
-- first token's and secret's runs with an error as bin/dingtalk-recall
-- processes), the Neovim results buffer, the rules' chat reply
-- (the OpenResty transport's errors: spec/openresty_spec.lua).  The
-- redaction is one point (the client's run) plus the renderer for output.
local hh = require "spec.helpers.hostile_http"
local shell = require "spec.helpers.shell"
local cli = require "spec.helpers.cli"
local cjson = require "cjson"
local render = require "dingtalk.recall.report.render"

local q, trim = shell.quote, shell.trim
local ROOT = trim(shell.sh("pwd"))
local CID, ROBOT = "cidHostileSecrets", "dingHostileSecrets"
local TOKENS = { long = "TokSec-0a1b2c3d4e5f6789", one = "Q", five = "Qz9Kx" }
local SECRETS = { long = "AppSecret-9z8y7x6w5v4u", one = "S", five = "Sx9Kq" }
local ORDER = { "long", "one", "five" }

-- The answers that echo a secret ("%TOKEN%" or "%SECRET%").
local function answers(ph)
  local e = "[[" .. ph .. "]]"
  return {
    too_large = { kind = "too_large", request_id = e },
    error = { kind = "error", code = "Auth" .. e, message = "bad " .. e, request_id = e },
    failed = { kind = "failed", reason = "DENIED " .. e, request_id = e },
  }
end
local KINDS = { "too_large", "error", "failed" }

local function assert_clean(s, secret, what)
  assert.is_nil(tostring(s):find("[[" .. secret .. "]]", 1, true), what .. " shows the secret:\n" .. tostring(s))
end

describe("hostile secrets: the renderer", function()
  it("redacts every registered secret, of any length, and URL passwords", function()
    assert.are.equal("a *** b *** c", render.redact("a Q b Q c", { "Q" }))
    assert.are.equal("[[***]] and [[***]]", render.redact("[[Qz9Kx]] and [[TokSec]]", { "Qz9Kx", "TokSec" }))
    assert.are.equal("***", render.redact("TokTok", { "Tok", "TokTok" }))
    assert.are.equal("redis://u:***@h:6379/0", render.redact("redis://u:p/@?x@h:6379/0"))
    assert.are.equal("x?access_token=***&y=1", render.redact("x?access_token=abc&y=1"))
    assert.are.equal('{"appSecret":"***"}', render.redact('{"appSecret":"s3"}'))
    assert.are.equal("no secret here", render.redact("no secret here", { "", "***" }))
  end)

  it("the CLI knows every configured secret (an app secret with no token too)", function()
    local Ctx = require("dingtalk.recall.cli").Ctx
    local ctx = setmetatable({ cfg = { app_key = "k", app_secret = "Sx9Kq" }, opts = {} }, Ctx)
    assert.are.equal("x *** y", ctx:safe("x Sx9Kq y"))
    ctx = setmetatable({ cfg = { access_token = "Q" }, opts = {} }, Ctx)
    assert.are.equal("[[***]]", ctx:safe("[[Q]]"))
  end)

  it("redacts every field of an error object, and its tostring", function()
    local core = require "dingtalk.recall.core"
    local e = core.error("Auth.Q", "token Q refused", { request_id = "Q", hint = "Q?" })
    render.redact_error(e, { "Q" })
    for _, f in ipairs { "code", "message", "request_id", "hint" } do assert.is_nil(e[f]:find("Q", 1, true), f) end
    assert.is_nil(tostring(e):find("Q", 1, true))
  end)

  it("redacts in every format: text, json, chat, lines", function()
    local r = { recalled = { "kQ" }, failed = { k2 = "DENIED Q" }, errors = { k3 = { code = "c", message = "Q" } },
      total = 3 }
    for _, fmt in ipairs { "text", "json", "chat" } do
      assert.is_nil(render.render(r, fmt, { secrets = { "Q" } }):find("Q", 1, true), fmt)
    end
    -- a map keyed by data is redacted; the document's own names are not
    local doc = cjson.decode(render.render({ recalled = {}, failed = { ["kQ"] = "x" }, errors = {}, total = 1 },
      "json", { secrets = { "e" } }))
    assert.is_string(doc.failed["kQ"])
    assert.is_table(doc.already_recalled)
    assert.is_table(doc.recalled)
    assert.are.equal("x", cjson.decode(render.render({ recalled = {}, failed = { ["kQ"] = "x" }, errors = {} },
      "json", { secrets = { "Q" } })).failed["k***"])
    local lines = render.render(r, "lines", { secrets = { "Q" }, title = "T" })
    for _, l in ipairs(lines) do assert.is_nil(l:find("Q", 1, true), l) end
  end)
end)

describe("hostile secrets: in-process client", function()
  local srv
  setup(function() srv = hh.start() end)
  teardown(function() if srv then srv:stop() end end)

  for _, which in ipairs(ORDER) do
    local tok = TOKENS[which]
    for _, kind in ipairs(KINDS) do
      it("a " .. #tok .. "-byte token echoed in " .. kind .. ": error fields, tostring and renderings", function()
        srv:answer(answers("%TOKEN%")[kind])
        local recall = require "dingtalk.recall"
        local c = assert(recall.client { endpoint = srv.url, access_token = tok, robot_code = ROBOT, max_retries = 0 })
        local rep = assert(c:recall(CID, { "k1", "k2" }))
        c:close()
        local e = rep.errors.k1
        if kind == "failed" then
          assert.is_string(rep.failed.k1)
        else
          assert.is_table(e)
          for _, f in ipairs { "code", "message", "request_id", "hint" } do
            assert_clean(e[f] or "", tok, "err." .. f)
          end
          assert_clean(tostring(e), tok, "tostring(err)")
        end
        for _, fmt in ipairs { "text", "json", "chat" } do
          assert_clean(render.render(rep, fmt, { secrets = { tok } }), tok, fmt)
        end
      end)
    end

    it("a " .. #tok .. "-byte token echoed by send: the error", function()
      srv:answer(answers("%TOKEN%").error)
      local recall = require "dingtalk.recall"
      local c = assert(recall.client { endpoint = srv.url, access_token = tok, robot_code = ROBOT, max_retries = 0 })
      local key, err = c:send(CID, "sampleText", { content = "hi" })
      c:close()
      assert.is_nil(key)
      assert_clean(tostring(err), tok, "send error")
      assert_clean(err.request_id, tok, "send error request id")
    end)
  end

  for _, which in ipairs(ORDER) do
    local secret = SECRETS[which]
    it("a " .. #secret .. "-byte app secret echoed by the token endpoint (too large, error)", function()
      local recall = require "dingtalk.recall"
      require("dingtalk.recall.token").clear_cache()
      for _, kind in ipairs { "too_large", "error" } do
        srv:answer(answers("%SECRET%")[kind])
        local c = assert(recall.client { endpoint = srv.url, app_key = "appk", app_secret = secret,
          robot_code = ROBOT, max_retries = 0 })
        local rep = assert(c:recall(CID, { "k1" }))
        c:close()
        local e = rep.errors.k1
        assert.is_table(e, kind)
        assert_clean(tostring(e), secret, kind .. " tostring")
        assert_clean(e.request_id or "", secret, kind .. " request id")
        assert_clean(e.message or "", secret, kind .. " message")
      end
    end)
  end
end)

describe("hostile secrets: the CLI", function()
  local srv, dir, n
  setup(function()
    srv = hh.start()
    dir = trim(shell.sh("mktemp -d ${TMPDIR:-/tmp}/dtr-hostile-sec.XXXXXX"))
    n = 0
  end)
  teardown(function()
    if srv then srv:stop() end
    if dir and dir:match("dtr%-hostile%-sec") then shell.sh("rm -rf " .. q(dir)) end
  end)

  -- run(args, creds [, how]) -> rc, stdout, stderr: in-process, or
  -- bin/dingtalk-recall as a child when how is "spawn" (fails on a signal).
  local function run(args, creds, how)
    n = n + 1
    local env = { DINGTALK_ENDPOINT = srv.url, DINGTALK_RECALL_LEDGER = dir .. "/ledger" .. n,
      XDG_CONFIG_HOME = dir .. "/xdg" }
    for k, v in pairs(creds) do env[k] = v end
    local r = (how == "spawn" and cli.spawn or cli.run)(args, { env = env })
    return r.code, r.stdout, r.stderr
  end
  -- the first token's and secret's runs with an echoing error are real
  -- processes: bin/dingtalk-recall's own stdout and stderr
  local function how_for(which, kind) return which == ORDER[1] and kind == "error" and "spawn" or nil end

  for _, which in ipairs(ORDER) do
    local tok = TOKENS[which]
    it("a " .. #tok .. "-byte token echoed anywhere: recall and send, text and --json", function()
      local creds = { DINGTALK_ACCESS_TOKEN = tok }
      for _, kind in ipairs(KINDS) do
        srv:answer(answers("%TOKEN%")[kind])
        for _, json in ipairs { false, true } do
          local args = { "recall", "--conversation", CID, "--robot", ROBOT, "--quiet", "k1" }
          if json then args[#args + 1] = "--json" end
          local rc, out, err = run(args, creds, how_for(which, kind))
          assert.is_true(rc == 1 or rc == 3, kind .. " exit " .. rc .. "\n" .. err)
          assert_clean(out, tok, kind .. " stdout")
          assert_clean(err, tok, kind .. " stderr")
          if json then assert.is_table(cjson.decode(out)) end
        end
      end
      srv:answer { kind = "send", key = "[[%TOKEN%]]" }
      for _, json in ipairs { false, true } do
        local args = { "send", "--conversation", CID, "--robot", ROBOT, "--text", "hi" }
        if json then args[#args + 1] = "--json" end
        local _, out, err = run(args, creds, how_for(which, "error"))
        assert_clean(out, tok, "send stdout")
        assert_clean(err, tok, "send stderr")
      end
    end)

    local secret = SECRETS[which]
    it("a " .. #secret .. "-byte app secret echoed by the token endpoint: token and recall, text and --json", function()
      local creds = { DINGTALK_APP_KEY = "appk", DINGTALK_APP_SECRET = secret }
      for _, kind in ipairs { "too_large", "error" } do
        srv:answer(answers("%SECRET%")[kind])
        for _, args in ipairs { { "token" }, { "token", "--json" },
          { "recall", "--conversation", CID, "--robot", ROBOT, "k1" },
          { "recall", "--conversation", CID, "--robot", ROBOT, "k1", "--json" } } do
          local rc, out, err = run(args, creds, how_for(which, kind))
          assert.is_true(rc == 1 or rc == 3, table.concat(args, " ") .. ": exit " .. rc .. "\n" .. err)
          assert_clean(out, secret, kind .. " stdout")
          assert_clean(err, secret, kind .. " stderr")
        end
      end
    end)
  end
end)

describe("hostile secrets: the rules' chat reply", function()
  local srv, dir
  setup(function()
    srv = hh.start()
    dir = trim(shell.sh("mktemp -d ${TMPDIR:-/tmp}/dtr-hostile-secr.XXXXXX"))
  end)
  teardown(function()
    if srv then srv:stop() end
    if dir and dir:match("dtr%-hostile%-secr") then shell.sh("rm -rf " .. q(dir)) end
  end)

  local i = 0
  for _, which in ipairs(ORDER) do
    local tok = TOKENS[which]
    it("a " .. #tok .. "-byte token echoed in an error, a too large answer or a reason", function()
      local recall = require "dingtalk.recall"
      local rules = require "dingtalk.recall.rules"
      local ledger = require "dingtalk.recall.ledger"
      for _, kind in ipairs(KINDS) do
        i = i + 1
        srv:answer(answers("%TOKEN%")[kind])
        local l = assert(ledger.open(dir .. "/ledger" .. i))
        assert(l:record { key = "k" .. i, conversation = CID, robot = ROBOT,
          sent_at = os.time() })
        local c = assert(recall.client { endpoint = srv.url, access_token = tok, robot_code = ROBOT, max_retries = 0 })
        local r = rules.new { ledger = l, client = c, admins = { "staff1" } }
        local res = r:handle { msgtype = "text", text = { content = "/recall last 1" }, conversationId = CID,
          conversationType = "2", robotCode = ROBOT, senderStaffId = "staff1" }
        c:close()
        l:close()
        assert.matches("could not be recalled", res.reply, 1, true)
        assert_clean(res.reply, tok, kind .. " reply")
      end
    end)
  end
end)

local HAS_NVIM = select(2, shell.sh("command -v nvim")) == 0
local describe_nvim = HAS_NVIM and describe or pending

describe_nvim("hostile secrets: the Neovim results buffer", function()
  local srv
  setup(function() srv = hh.start() end)
  teardown(function() if srv then srv:stop() end end)

  it("never shows a token of 1, 5 or 23 bytes echoed in any answer", function()
    local steps, toks = {}, {}
    for _, which in ipairs(ORDER) do
      for _, kind in ipairs(KINDS) do
        local a = answers("%TOKEN%")[kind]
        a.token = TOKENS[which]
        steps[#steps + 1] = a
        toks[#steps] = TOKENS[which]
      end
    end
    local res = require("spec.helpers.nvim_steps").run(ROOT, srv, steps, { cid = CID, robot = ROBOT })
    assert.are.equal(#steps, #res.steps)
    for i, st in ipairs(res.steps) do
      assert.is_true(#st.lines >= 3, "step " .. i .. ": no results buffer")
      for _, line in ipairs(st.lines) do assert_clean(line, toks[i], "step " .. i) end
      assert_clean(st.summary, toks[i], "summary " .. i)
      for _, e in ipairs(st.report_errors) do assert_clean(e, toks[i], "tostring of an error, step " .. i) end
    end
  end)
end)
