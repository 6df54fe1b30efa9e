-- The rockspec must list every Lua module and command of the tree, or
-- `luarocks install` would ship a broken package.
describe("dingtalk-recall-scm-1.rockspec", function()
  local spec = {}
  local chunk = assert((loadfile or load)("dingtalk-recall-scm-1.rockspec", "t", spec))
  local setfenv = rawget(_G, "setfenv") -- Lua 5.1 and LuaJIT
  if setfenv then setfenv(chunk, spec) end
  chunk()

  local function lines(cmd)
    local out = {}
    local text, rc = require("spec.helpers.shell").sh(cmd) -- raises on a crash
    assert(rc == 0, cmd .. " failed (" .. rc .. "):\n" .. text)
    for l in text:gmatch("[^\n]+") do out[#out + 1] = l end
    return out
  end

  it("lists every module under lua/ with its file", function()
    local listed = {}
    for name, src in pairs(spec.build.install.lua) do listed[src] = name end
    local find = "cd lua && find dingtalk dingtalk_recall dingtalk_sim -name '*.lua' 2>/dev/null | sort"
    for _, file in ipairs(lines(find)) do
      local mod = file:gsub("%.lua$", ""):gsub("/init$", ""):gsub("/", ".")
      assert.are.equal(mod, listed["lua/" .. file], "not in the rockspec: lua/" .. file)
    end
  end)

  it("lists only files that exist", function()
    for name, src in pairs(spec.build.install.lua) do
      local f = io.open(src, "r")
      assert.is_truthy(f, name .. ": missing " .. src)
      f:close()
    end
    for _, d in ipairs(spec.build.copy_directories) do
      assert.are.equal(0, select(2, (function()
        local h = io.popen("test -d " .. d .. "; echo $?")
        local rc = tonumber(h:read("*a"))
        h:close()
        return nil, rc
      end)()), "copy_directories: no folder " .. d)
    end
  end)

  it("declares its platforms (POSIX C) and a test section for `luarocks test`", function()
    assert.are.same({ "unix" }, spec.supported_platforms)
    assert.are.equal("command", spec.test.type)
    assert.are.equal("spec/luarocks_test.lua", spec.test.script)
    local f = assert(io.open(spec.test.script))
    local script = f:read("*a")
    f:close()
    -- the core it built (build/rock), and never the slow real-time checks
    assert.matches("LUA_CPATH_DIR=build/rock sh spec/run.sh %-%-exclude%-tags=timing", script)
    -- and never `make test`, which installs Debian packages and runs five runtimes
    assert.is_nil(spec.test.command)
  end)

  it("builds the C modules into build/rock (make rock), never into the checkout's root", function()
    assert.are.equal("make", spec.build.type)
    assert.are.equal("rock", spec.build.build_target)
    assert.are.equal("rock-install", spec.build.install_target)
    assert.are.equal("$(LIBDIR)", spec.build.install_variables.INST_LIBDIR)
  end)

  it("installs every command in bin/", function()
    local installed = {}
    for _, f in pairs(spec.build.install.bin) do installed[f] = true end
    for _, f in ipairs(lines("ls bin")) do
      assert.is_true(installed["bin/" .. f], "not installed: bin/" .. f)
    end
  end)

  it("depends on lua-cjson and declares curl and OpenSSL", function()
    assert.is_truthy(table.concat(spec.dependencies, " "):find("lua-cjson", 1, true))
    assert.is_table(spec.external_dependencies.CURL)
    assert.is_table(spec.external_dependencies.OPENSSL)
  end)
end)
