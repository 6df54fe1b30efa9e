-- Every Lua code block of README.md runs as written, under the Lua being
-- tested, against the simulator (each in its own process, with the
-- environment the README's shell quick start exports); a `--> text` comment
-- is checked against what the block printed.  The shell quick start runs
-- too, with the test's port, folder and interpreter in place of 18080,
-- /tmp/dtr-sim and lua5.4.
local sim = require "spec.helpers.sim"
local shell = require "spec.helpers.shell"
local ports = require "spec.helpers.ports"
local sh, q, trim = shell.sh, shell.quote, shell.trim

local LUA = os.getenv("DINGTALK_RECALL_TEST_LUA") or "lua"

local function read(path) return assert(shell.read(path), "cannot read " .. path) end

--- The fenced blocks of a language: { {code =, line =, heading =}, ... }.
local function blocks(text, lang)
  local out, heading, n = {}, "", 0
  local cur
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    if cur then
      if line:match("^```%s*$") then
        out[#out + 1] = cur
        cur = nil
      else
        cur.code = cur.code .. line .. "\n"
      end
    elseif line:match("^```" .. lang .. "%s*$") then
      cur = { code = "", line = n, heading = heading }
    elseif line:match("^#+ ") then
      heading = line:gsub("^#+%s*", "")
    end
  end
  return out
end

local README = read("README.md")
local LUA_BLOCKS = blocks(README, "lua")

describe("README.md", function()
  local s, dir

  setup(function()
    s = sim.start {}
    dir = trim(sh("mktemp -d"))
  end)
  teardown(function()
    if s then s:stop() end
    if dir then sh("rm -rf " .. q(dir)) end
  end)

  local function env(extra)
    return "env DINGTALK_ENDPOINT=" .. q(s.url) .. " DINGTALK_APP_KEY=" .. q(s.app_key) ..
      " DINGTALK_APP_SECRET=" .. q(s.app_secret) .. " DINGTALK_ROBOT_CODE=" .. q(s.robot) ..
      " XDG_CONFIG_HOME=" .. q(dir .. "/xdg") .. " XDG_DATA_HOME=" .. q(dir .. "/data") .. " " .. (extra or "") .. " "
  end

  it("has Lua blocks to run (at least the Lua and the bot quick starts)", function()
    assert.is_true(#LUA_BLOCKS >= 2, #LUA_BLOCKS .. " Lua blocks")
  end)

  for i, b in ipairs(LUA_BLOCKS) do
    it(("runs Lua block %d (line %d, %s) as written"):format(i, b.line, b.heading), function()
      local file = dir .. "/block" .. i .. ".lua"
      shell.write_file(file, b.code)
      local out, rc = sh("cd " .. q(dir) .. " && " ..
        env("DINGTALK_RECALL_LEDGER=" .. q(dir .. "/ledger" .. i)) .. LUA .. " " .. q(file))
      assert.are.equal(0, rc, "README.md line " .. b.line .. ":\n" .. out)
      assert.is_nil(out:find("bad argument", 1, true), out)
      local squeezed = out:gsub("%s+", " ")
      for want in b.code:gmatch("%-%->%s*([^\n]-)%s*\n") do
        assert.is_truthy(squeezed:find(want:gsub("%s+", " "), 1, true),
          "README.md line " .. b.line .. ": expected output " .. want .. "\ngot:\n" .. out)
      end
    end)
  end

  it("runs the shell quick start as written (its port, folder and Lua replaced)", function()
    local b
    for _, x in ipairs(blocks(README, "sh")) do
      if x.heading == "Quick start: the shell" then b = x end
    end
    assert.is_table(b, "no sh block under 'Quick start: the shell'")
    local port = ports.claim()
    local code = b.code:gsub("\nmake LUA_VERSION=5%.4\n", "\n"):gsub("^make LUA_VERSION=5%.4\n", "")
      :gsub("18080", tostring(port)):gsub("/tmp/dtr%-sim", dir .. "/qs"):gsub("lua5%.4 ", LUA .. " ")
    shell.write_file(dir .. "/qs.sh", "set -e\n" .. code)
    local out, rc = sh("cd " .. q(trim(sh("pwd"))) .. " && env XDG_CONFIG_HOME=" .. q(dir .. "/xdg") ..
      " sh " .. q(dir .. "/qs.sh"))
    sh(LUA .. " bin/dingtalk-sim --stop --state-dir " .. q(dir .. "/qs") .. " >/dev/null 2>&1")
    ports.release(port)
    assert.are.equal(0, rc, out)
    assert.matches("recalled 2 of 2 keys", out, 1, true)
    assert.matches("stopped", out, 1, true)
  end)
end)

describe("README.md's shape", function()
  it("stays short (about 200-250 lines) and maps docs/", function()
    local n = select(2, README:gsub("\n", ""))
    assert.is_true(n <= 260, "README.md has " .. n .. " lines")
    for _, doc in ipairs { "lua-api", "cli", "ledger", "bots-and-rules", "openresty", "neovim", "c-core",
      "simulator", "performance", "development", "security", "architecture", "scale-out" } do
      assert.matches("(docs/" .. doc .. ".md)", README, 1, true)
    end
  end)

  it("names the test command CI runs, and CI runs it", function()
    local ci = read(".ci/run")
    assert.matches("\nmake test ", README, 1, true)
    -- each CI step is a line "step <command>"
    assert.matches("\nstep make test ", ci, 1, true)
    assert.matches("\nstep make test-timing", ci, 1, true)
  end)

  it("never uses assert() on a call that returns an error object (PUC 5.1 refuses a table message)", function()
    for _, b in ipairs(LUA_BLOCKS) do
      assert.is_nil(b.code:find("assert%(%s*[%w_.]+[:.]"), "README.md line " .. b.line .. " uses assert(...)")
    end
  end)
end)
