-- Drift between the front-ends: the same selector ("last N / since D /
-- tag T / all") and the same durations, through the selector module,
-- the rules (/recall), the CLI's option parsing (undo --last/--since/
-- --tag/--all, send --ttl) and the Neovim command parser (:DingtalkUndo),
-- give the same answer: the same ledger filter, or a refusal in every one.
-- The Neovim parser also runs inside a headless Neovim (LuaJIT) when nvim
-- is installed.
local selector = require "dingtalk.recall.selector"
local rules = require "dingtalk.recall.rules"
local cli = require "dingtalk.recall.cli"
local commands = require "dingtalk.recall.cli.commands"
local nvim = require "dingtalk_recall"
local shell = require "spec.helpers.shell"

local VALID = {
  ["last"] = { last = 1 }, ["last 3"] = { last = 3 }, ["last 500"] = { last = 500 },
  ["LAST 2"] = { last = 2 }, ["since 90s"] = { since = 90 }, ["since 10m"] = { since = 600 },
  ["since 1h30m"] = { since = 5400 }, ["since 2d"] = { since = 172800 }, ["since 1.5m"] = { since = 90 },
  ["since 45"] = { since = 45 }, ["since 1H"] = { since = 3600 }, ["since 1d2h3m4s"] = { since = 93784 },
  ["since 366d"] = { since = 366 * 86400 }, ["tag deploy"] = { tag = "deploy" },
  ["tag deploy-42"] = { tag = "deploy-42" }, ["all"] = {},
}
local INVALID = {
  "last 0", "last -1", "last 1.5", "last 501", "last x", "last 1 2", "last 0x10", "last 1e2",
  "since", "since 0", "since 0s", "since -5m", "since nan", "since inf", "since 1e999", "since 367d",
  "since 400d", "since 10x", "since 30m1h", "since 1h1h", "since 99999999999999999999s", "since 10 m",
  "since m", "since 1h 30m", "tag", "tag a b", "all now", "frobnicate", "since 0x10",
}

local function words(s)
  local w = {}
  for x in s:gmatch("%S+") do w[#w + 1] = x end
  return w
end

-- Each front-end's answer: a filter table or false (refused).
local function via_selector(input)
  local sel = selector.parse(input)
  return sel and selector.filter(sel) or false
end

local function via_rules(input)
  local cmd = rules.parse("/recall " .. input)
  if not cmd then return false end
  if cmd.action == "last" then return { last = cmd.n } end
  if cmd.action == "since" then return { since = cmd.seconds } end
  if cmd.action == "tag" then return { tag = cmd.tag } end
  if cmd.action == "all" then return {} end
  return "unexpected action " .. tostring(cmd.action)
end

-- The CLI spelling: "since 10m" -> undo --since 10m; "last" alone is the
-- CLI's default (no selector option: the last message).
local function via_cli(input)
  local w = words(input)
  local argv = { "undo", "--conversation", "cidDrift" }
  if #w > 1 or (w[1] and w[1]:lower() ~= "last") then
    argv[#argv + 1] = "--" .. w[1]:lower()
    for i = 2, #w do argv[#argv + 1] = w[i] end
  end
  local p = cli.parse(argv)
  if not p or not cli.check(p) then return false end
  local f = commands.selection(p.opts)
  return f or false
end

local function via_nvim(input)
  local f = nvim.parse_undo(words(input))
  if not f then return false end
  f.conversation = nil
  return f
end

describe("front-end drift: selectors", function()
  for input, want in pairs(VALID) do
    it("'" .. input .. "' means the same everywhere", function()
      assert.are.same(want, via_selector(input))
      assert.are.same(want, via_rules(input), "rules")
      assert.are.same(want, via_nvim(input), "neovim")
      if input ~= "LAST 2" then assert.are.same(want, via_cli(input), "cli") end
    end)
  end
  for _, input in ipairs(INVALID) do
    it("'" .. input .. "' is refused everywhere", function()
      assert.is_false(via_selector(input))
      assert.is_false(via_rules(input), "rules")
      assert.is_false(via_nvim(input), "neovim")
      assert.is_false(via_cli(input), "cli")
    end)
  end

  it("the CLI refuses two selectors at once, and --all with another", function()
    for _, argv in ipairs { { "--last", "2", "--since", "1h" }, { "--all", "--tag", "x" },
      { "--tag", "a", "--tag", "b" } } do
      local full = { "undo", "--conversation", "c" }
      for _, a in ipairs(argv) do full[#full + 1] = a end
      local p = cli.parse(full)
      assert.is_falsy(p and cli.check(p), table.concat(argv, " "))
    end
  end)
end)

describe("front-end drift: durations", function()
  local DURATIONS = { "90s", "10m", "1h30m", "2d", "1.5m", "45", "0", "-1", "nan", "inf", "1e999", "400d",
    "30m1h", "10x", "", "1h 30m", "366d", "367d", "0.0001s" }
  for _, d in ipairs(DURATIONS) do
    it("'" .. d .. "' is read the same by the selector, rules, --ttl, --since and Neovim", function()
      local want = selector.duration(d)
      assert.are.equal(want, (rules.parse_duration(d)))
      assert.are.equal(want, (nvim.parse_duration(d)))
      local p = cli.parse { "send", "--ttl", d }
      assert.are.equal(want, p and p.opts.ttl or nil, "--ttl")
      p = cli.parse { "undo", "--since", d }
      assert.are.equal(want, p and p.opts.since or nil, "--since")
    end)
  end

  it("reads the documented examples", function()
    assert.are.equal(90, selector.duration("90s"))
    assert.are.equal(600, selector.duration("10m"))
    assert.are.equal(5400, selector.duration("1h30m"))
    assert.are.equal(172800, selector.duration("2d"))
    assert.is_nil(selector.duration(0 / 0))
    assert.is_nil(selector.duration(math.huge))
    assert.is_nil(selector.duration(-5))
  end)
end)

local HAS_NVIM = select(2, shell.sh("command -v nvim")) == 0
local describe_nvim = HAS_NVIM and describe or pending

describe_nvim("front-end drift: :DingtalkUndo's parser inside Neovim", function()
  it("gives the selector's answers under Neovim's LuaJIT", function()
    local root = shell.trim(shell.sh("pwd"))
    local inputs = {}
    for input in pairs(VALID) do inputs[#inputs + 1] = input end
    for _, input in ipairs(INVALID) do inputs[#inputs + 1] = input end
    table.sort(inputs)
    local out = os.tmpname()
    local script = os.tmpname() .. ".lua"
    shell.write_file(script, [[
      local out, results = os.getenv("DTR_OUT"), {}
      local dr = require "dingtalk_recall"
      for line in io.lines(os.getenv("DTR_IN")) do
        local w = {}
        for x in line:gmatch("%S+") do w[#w + 1] = x end
        local f = dr.parse_undo(w)
        if f then f.conversation = nil end
        results[#results + 1] = { input = line, filter = f or false }
      end
      local fh = assert(io.open(out, "w"))
      fh:write(vim.json.encode(results))
      fh:close()
      vim.cmd("qall!")
    ]])
    local inp = os.tmpname()
    shell.write_file(inp, table.concat(inputs, "\n") .. "\n")
    local log, rc = shell.sh("env DTR_OUT=" .. shell.quote(out) .. " DTR_IN=" .. shell.quote(inp) ..
      " timeout 60 nvim --headless -u NONE -i NONE -n --cmd " .. shell.quote("set rtp^=" .. root) ..
      " -c " .. shell.quote("luafile " .. script) .. " </dev/null")
    local text = shell.read_file(out)
    os.remove(out) os.remove(script) os.remove(inp)
    assert.are.equal(0, rc, log)
    local results = require("cjson").decode(text)
    assert.are.equal(#inputs, #results)
    for _, r in ipairs(results) do
      local want = via_selector(r.input)
      local got = r.filter
      if type(got) == "table" and next(got) == nil then got = {} end
      assert.are.same(want, got, r.input)
    end
  end)
end)

describe("front-end drift: base directories", function()
  local config = require "dingtalk.recall.config"
  local ledger = require "dingtalk.recall.ledger"
  local function env(t) return function(name) return t[name] end end

  it("the config file and the ledger read $XDG_*_HOME by the same rule", function()
    local cases = {
      -- XDG value, HOME, the expected base under the fallback or the value
      { "/x", "/h", "/x" }, { "rel/x", "/h", "/h/%s" }, { "", "/h", "/h/%s" },
      { nil, "/h", "/h/%s" }, { "./x", "/h", "/h/%s" }, { nil, nil, nil }, { "x", "", nil },
    }
    for _, c in ipairs(cases) do
      local xdg, home, want = c[1], c[2], c[3]
      local cfg = config.default_path(env { XDG_CONFIG_HOME = xdg, HOME = home })
      local led = ledger.default_path(env { XDG_DATA_HOME = xdg, HOME = home })
      local label = tostring(xdg) .. " / " .. tostring(home)
      if want == nil then
        assert.is_nil(cfg, label)
        assert.is_nil(led, label)
      else
        assert.are.equal(want:format(".config") .. "/dingtalk-recall/config.lua", cfg, label)
        assert.are.equal(want:format(".local/share") .. "/dingtalk-recall/ledger", led, label)
      end
    end
  end)
end)
