-- The rockspec must list every Lua module and command of the tree, or
-- `luarocks install` would ship a broken package.
describe("dingtalk-recall-scm-1.rockspec", function()
  local spec = {}
  local chunk = assert((loadfile or load)("dingtalk-recall-scm-1.rockspec", "t", spec))
  local setfenv = rawget(_G, "setfenv") -- Lua 5.1 and LuaJIT
  if setfenv then setfenv(chunk, spec) end
  chunk()

  local function lines(cmd)
    local out, h = {}, assert(io.popen(cmd))
    for l in h:lines() do out[#out + 1] = l end
    h:close()
    return out
  end

  it("lists every module under lua/ with its file", function()
    local listed = {}
    for name, src in pairs(spec.build.modules) do
      if type(src) == "string" then listed[src] = name end
    end
    for _, file in ipairs(lines("cd lua && find dingtalk dingtalk_recall dingtalk_sim -name '*.lua' 2>/dev/null | sort")) do
      local mod = file:gsub("%.lua$", ""):gsub("/init$", ""):gsub("/", ".")
      assert.are.equal(mod, listed["lua/" .. file], "not in the rockspec: lua/" .. file)
    end
  end)

  it("lists only files that exist", function()
    for name, src in pairs(spec.build.modules) do
      local files = type(src) == "string" and { src } or src.sources
      for _, f in ipairs(files) do
        assert.is_truthy(io.open(f, "r"), name .. ": missing " .. f)
      end
    end
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
