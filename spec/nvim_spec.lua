-- The Neovim plugin, in Debian's Neovim (0.7, LuaJIT) run headless as a
-- child process against the simulator: recalls do not block the editor,
-- failures are shown without secrets, :checkhealth reports what matters.
-- The scripts it runs are in spec/nvim/.  Neovim loads the core built for
-- Lua 5.1 (build/5.1), made here when missing.
local sim = require "spec.helpers.sim"

local q = sim.sh_quote
local json = sim.json

local function trim(s) return (s:gsub("^%s+", ""):gsub("%s+$", "")) end
local ROOT = trim(sim.sh("pwd"))
local HAS_NVIM = select(2, sim.sh("command -v nvim")) == 0

local nvim = require "spec.helpers.nvim"
local ensure_core51, run_nvim = nvim.ensure_core51, nvim.run

local function has_line(lines, pattern)
  for _, l in ipairs(lines) do
    if l:find(pattern) then return l end
  end
  return nil
end

local function contains(list, v)
  for _, x in ipairs(list) do if x == v then return true end end
  return false
end

local describe_nvim = HAS_NVIM and describe or pending

describe_nvim("Neovim plugin (nvim --headless)", function()
  local s
  local TOKEN = "tok-SECRET-" .. tostring(os.time())
  local WRONG = "wrong-SECRET-" .. tostring(os.time())

  setup(function()
    ensure_core51()
    s = sim.start { tls = true, latency = 2, token = TOKEN }
  end)
  teardown(function() if s then s:stop() end end)

  local function base_env(keys)
    return { DTR_URL = s.url, DTR_CA = s.ca_file, DTR_ROBOT = s.robot, DTR_CID = "cidNvimSpec",
      DTR_KEYS = table.concat(keys, ","), DINGTALK_ACCESS_TOKEN = TOKEN, DTR_TOKEN = TOKEN }
  end

  it("keeps the editor live while :DingtalkRecall waits 2 s on the server #timing", function()
    s:config { latency = 2 }
    local keys = s:seed_keys(3, "cidNvimSpec")
    local res, log = run_nvim("recall", base_env(keys))
    -- The command returns at once; the timer fired throughout the recall.
    assert.is_true(res.cmd_ms < 500, "the command took " .. res.cmd_ms .. " ms")
    assert.is_true(res.elapsed_ms >= 1900, "the recall did not wait on the server: " .. res.elapsed_ms)
    assert.is_true(res.ticks >= 30, ("timer ticks during the recall: %d in %.0f ms"):format(res.ticks, res.elapsed_ms))
    assert.is_true(res.main_ticks >= 30, "main-loop callbacks during the recall: " .. res.main_ticks)
    print(("\n  nvim: %d uv timer ticks (50 ms) and %d main-loop callbacks during a %.0f ms recall; " ..
      "command returned in %.1f ms"):format(res.ticks, res.main_ticks, res.elapsed_ms, res.cmd_ms))
    -- The report: in the results buffer and true on the server.
    assert.is_true(res.ok, "the recall's report is not ok: " .. tostring(res.summary))
    assert.are.equal(1, res.requests)
    assert.matches("3 recalled, 0 failed, 0 errors %(of 3 keys%)", res.summary)
    assert.are.equal(res.summary, res.lines[1])
    assert.is_truthy(has_line(res.lines, "^Recalled %(3%)$"))
    for _, k in ipairs(keys) do
      assert.is_true(contains(res.lines, "  " .. k), "key missing from the results buffer: " .. k)
      assert.are.equal("recalled", s:key(k).state)
    end
    assert.are.equal(2, res.windows) -- the results opened in a split
    assert.is_nil(log:find(TOKEN, 1, true))
  end)

  it("shows failures, queues a second command and never shows a token", function()
    s:config { latency = 0.05 }
    local keys = s:seed_keys(6, "cidNvimSpec")
    local env = base_env(keys)
    env.DTR_WRONG_TOKEN = WRONG
    local res, log = run_nvim("errors", env)

    local w = res.wrong_token
    assert.matches("0 recalled, 0 failed, 1 errors", w.summaries[1])
    assert.is_truthy(has_line(w.lines, "^  " .. keys[1]:gsub("%p", "%%%0") .. "  InvalidAuthentication"))
    assert.are.equal("sent", s:key(keys[1]).state)

    local qd = res.queued
    assert.are.same({ running = true, queued = 1 }, qd.status)
    assert.are.equal("", qd.current_buf) -- the results split did not take the cursor
    assert.are.equal(2, #qd.summaries)
    assert.matches("1 recalled, 0 failed, 0 errors", qd.summaries[1])
    assert.matches("0 recalled", qd.summaries[2]) -- a key of another conversation
    assert.are.equal("recalled", s:key(keys[2]).state)
    assert.are.equal("sent", s:key(keys[3]).state)

    assert.matches("no DingTalk credentials: set %$DINGTALK_ACCESS_TOKEN", res.no_credentials.summaries[1])
    assert.matches("give the keys", res.no_keys.summaries[1])
    assert.is_true(res.no_keys.raised) -- a wrong command line fails like any Vim command
    -- keys 4, 5 and 6 from the words of two lines
    assert.matches("3 recalled, 0 failed, 0 errors %(of 3 keys%)", res.range.summaries[1])
    for i = 4, 6 do assert.are.equal("recalled", s:key(keys[i]).state) end
    assert.matches("unknown selector 'sometime'", res.undo_bad_args.summaries[1])
    assert.is_true(res.undo_bad_args.raised)
    -- No ledger configured: the CLI's default one, empty here.
    assert.matches("DingTalk undo: 0 recalled, 0 failed, 0 errors %(of 0 keys%)", res.undo_empty_ledger.summaries[1])

    -- No token anywhere: buffers, notifications, :messages, stdout/stderr.
    local all = json.encode(res) .. log
    assert.is_nil(all:find(TOKEN, 1, true))
    assert.is_nil(all:find(WRONG, 1, true))
  end)

  it(":DingtalkUndo recalls what the ledger recorded, by tag, last N and since", function()
    s:config { latency = 0.05 }
    local ledger = require "dingtalk.recall.ledger"
    local dir = trim(sim.sh("mktemp -d ${TMPDIR:-/tmp}/dtr-nvim-ledger.XXXXXX"))
    local path = dir .. "/ledger"
    local keys = s:seed_keys(4, "cidNvimSpec")
    local now = os.time()
    local l = assert(ledger.open(path))
    local function entry(k, tags, age)
      return { key = k, conversation = "cidNvimSpec", robot = s.robot, tags = tags,
        sent_at = now - age }
    end
    assert(l:record_many {
      entry(keys[1], { "deploy" }, 100), entry(keys[2], { "deploy" }, 90), entry(keys[3], { "digest" }, 80),
      entry(keys[4], nil, 10), entry("oldKeyPastTheWindow", { "deploy" }, 2 * 86400),
    })
    l:close()
    local env = base_env({})
    env.DTR_LEDGER = path
    local ok, res = pcall(run_nvim, "undo", env)
    l = assert(ledger.open(path))
    local states = {}
    for i, k in ipairs(keys) do states[i] = l:get(k).state end
    local old_state = l:get("oldKeyPastTheWindow").state
    l:close()
    sim.sh("rm -rf " .. q(dir))
    assert(ok, res)

    local r = res.runs
    assert.are.equal(3, #r)
    assert.are.equal("DingTalk undo: 2 recalled, 0 failed, 0 errors, 1 expired (of 3 keys)",
      (r[1].summary:gsub(" in .*", "")))
    assert.are.same({ keys[1], keys[2] }, r[1].recalled)
    assert.is_truthy(has_line(r[1].lines, "^Expired %(1%)"))
    assert.is_truthy(contains(r[1].lines, "  oldKeyPastTheWindow"))
    assert.are.same({ keys[4] }, r[2].recalled)      -- last 1: the newest still sent
    assert.are.same({ keys[3] }, r[3].recalled)      -- since 2m: the one left
    for i, k in ipairs(keys) do
      assert.are.equal("recalled", s:key(k).state)
      assert.are.equal("recalled", states[i])
    end
    assert.are.equal("expired", old_state)
  end)

  it(":checkhealth reports the module, libcurl, TLS, endpoint and credential source, not the token", function()
    -- The core from a folder of its own, found through vim.g.dingtalk_recall_cpath.
    local dir = trim(sim.sh("mktemp -d ${TMPDIR:-/tmp}/dtr-cpath.XXXXXX"))
    sim.sh("mkdir -p " .. q(dir .. "/dingtalk/recall") .. " && cp " ..
      q(ROOT .. "/build/5.1/dingtalk/recall/core.so") .. " " .. q(dir .. "/dingtalk/recall/"))
    local env = base_env({ "k" })
    env.DTR_CPATH = dir
    local ok, res = pcall(run_nvim, "health", env)
    sim.sh("rm -rf " .. q(dir))
    assert(ok, res)
    local h = res.health
    local text = table.concat(h, "\n")
    assert.is_truthy(has_line(h, "OK: dingtalk%.recall%.core %S+ %(" .. dir:gsub("%p", "%%%0") ..
      "/dingtalk/recall/core%.so%)"), text)
    local curl_version = trim(sim.sh("pkg-config --modversion libcurl 2>/dev/null || curl --version | head -1"))
      :match("(%d+%.%d+%.%d+)")
    assert.is_truthy(has_line(h, "OK: libcurl " .. curl_version:gsub("%.", "%%.") .. ", TLS backend %a+"), text)
    assert.is_truthy(has_line(h, "endpoint: " .. s.url:gsub("%p", "%%%0")), text)
    assert.is_truthy(has_line(h, "OK: credentials: from %$DINGTALK_ACCESS_TOKEN"), text)
    assert.is_truthy(has_line(h, "OK: robot_code: " .. s.robot), text)
    assert.is_truthy(has_line(h, "OK: libuv"), text)
    assert.is_truthy(has_line(h, "OK: ledger: .*dingtalk%-recall/ledger %(the default"), text)
    assert.is_nil(text:find(TOKEN, 1, true))
    assert.is_nil(text:find("ERROR", 1, true), text)

    assert.are.equal(2, res.has_recall)
    assert.are.equal(2, res.has_undo)
    for _, w in ipairs { "last", "since", "tag", "conversation=cidNvimSpec", "conversation=cidTeamA" } do
      assert.is_true(contains(res.complete_undo, w), "missing completion " .. w)
    end
    assert.is_true(contains(res.complete_undo_since, "10m"))
    assert.are.same({ "deploy", "digest" }, res.complete_undo_tag)
    assert.are.same({ "conversation=cidNvimSpec", "conversation=cidTeamA", "conversation=cidTeamB" },
      res.complete_recall)
  end)

  it(":checkhealth names the CLI's config file as the credential source when it gives them", function()
    local dir = trim(sim.sh("mktemp -d ${TMPDIR:-/tmp}/dtr-nvim-config.XXXXXX"))
    local file = dir .. "/config"
    local f = assert(io.open(file, "w"))
    f:write('access_token = "' .. TOKEN .. '"\n')
    f:close()
    sim.sh("chmod 600 " .. q(file))
    local env = base_env({ "k" })
    env.DINGTALK_ACCESS_TOKEN, env.DTR_TOKEN = nil, nil
    env.DTR_CPATH, env.DTR_CONFIG_FILE = ROOT .. "/build/5.1", file
    local ok, res = pcall(run_nvim, "health", env)
    sim.sh("rm -rf " .. q(dir))
    assert(ok, res)
    local text = table.concat(res.health, "\n")
    assert.is_truthy(has_line(res.health, "OK: credentials: from access_token in " .. file:gsub("%p", "%%%0")), text)
    assert.is_nil(text:find(TOKEN, 1, true))
  end)
end)
