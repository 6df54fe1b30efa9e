-- spec/run.sh's queue (JOBS > 1, or several RUNTIMES): the output contract
-- `make test` and `make check` rely on (a line per runtime, a total, the
-- failed files' output, a non-zero exit on any failure or crash) and the
-- timing record that orders the next run.  The spec files it runs are
-- written here, into a temporary folder.
local shell = require "spec.helpers.shell"
local q, sh, trim = shell.quote, shell.sh, shell.trim

local LUA = os.getenv("DINGTALK_RECALL_TEST_LUA") or "lua"
-- the build folder run.sh was given (LUA_CPATH is "<root>/<dir>/?.so;;")
local CDIR = (os.getenv("LUA_CPATH") or ""):match("^([^;]*)/%?%.so") or "build/5.1"
local ROOT = trim(sh("pwd")) .. "/"
if CDIR:sub(1, #ROOT) == ROOT then CDIR = CDIR:sub(#ROOT + 1) end
local NAME = LUA:match("([^/%s]+)$")

describe("spec/run.sh's queue", function()
  local dir
  setup(function()
    dir = trim(sh("mktemp -d ${TMPDIR:-/tmp}/dtr-runq.XXXXXX"))
    shell.write_file(dir .. "/a_spec.lua", 'describe("a", function()\n' ..
      '  it("one", function() assert.is_true(true) end)\n' ..
      '  it("two", function() assert.are.equal(2, 1 + 1) end)\nend)\n')
    shell.write_file(dir .. "/b_spec.lua", 'describe("b", function()\n' ..
      '  it("fails on purpose", function() assert.are.equal("MARK-B", "x") end)\nend)\n')
    shell.write_file(dir .. "/c_spec.lua", 'os.exit(3)\n') -- a crash: no summary
  end)
  teardown(function() if dir and dir:match("dtr%-runq") then sh("rm -rf " .. q(dir)) end end)

  local function run(env, files)
    local paths = {}
    for i, f in ipairs(files) do paths[i] = q(dir .. "/" .. f) end
    return sh("env -u RUNTIMES -u LOG_DIR -u TEST_LOG -u VERBOSE TIMES=" .. q(dir .. "/times") .. " " .. env ..
      " sh spec/run.sh " .. table.concat(paths, " "))
  end

  it("gives the runtime's line last, shows what failed, counts a crash, records each file's time", function()
    os.remove(dir .. "/times")
    local out, rc = run("LUA=" .. q(LUA) .. " LUA_CPATH_DIR=" .. q(CDIR) .. " JOBS=2",
      { "a_spec.lua", "b_spec.lua", "c_spec.lua" })
    assert.are_not.equal(0, rc, out)
    local lines = {}
    for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.are.equal(NAME .. ": 2 passed, 2 failed", lines[#lines], out)
    assert.matches("==== " .. NAME .. " " .. dir .. "/b_spec.lua", out, 1, true)
    assert.matches("MARK-B", out, 1, true)
    assert.matches("c_spec.lua +0 passed, 1 failed, +[%d.]+ s %(no busted summary: crash%?%)", out)
    local times = shell.read_file(dir .. "/times")
    for _, f in ipairs { "a_spec.lua", "b_spec.lua", "c_spec.lua" } do
      assert.is_truthy(times:find(NAME .. "@" .. CDIR .. " " .. dir .. "/" .. f .. " ", 1, true), times)
    end
  end)

  it("runs several runtimes in one queue: a line each, then the total; exit 0 when all pass", function()
    local out, rc = run("RUNTIMES=" .. q(LUA .. "=" .. CDIR .. " " .. LUA .. "=" .. CDIR) .. " JOBS=3 LOG_DIR=" ..
      q(dir .. "/logs"), { "a_spec.lua" })
    assert.are.equal(0, rc, out)
    local _, n = out:gsub(NAME .. ": 2 passed, 0 failed", "")
    assert.are.equal(2, n, out)
    assert.matches("\n4 passed, 0 failed %(2 runtimes, 2 tasks, 3 side by side, %d+ s%)\n?$", out)
    assert.matches(NAME .. ": 2 passed, 0 failed\n?$", shell.read_file(dir .. "/logs/" .. NAME .. ".log"))
  end)
end)
