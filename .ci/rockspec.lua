-- Rewrites the rockspec's list of Lua modules and bin commands from the
-- tree (`make rockspec`); spec/rockspec_spec.lua checks the result.
local path = assert(arg[1], "usage: lua .ci/rockspec.lua ROCKSPEC")
local f = assert(io.open(path))
local s = f:read("*a")
f:close()

local mods = {}
for file in io.popen("cd lua && find dingtalk dingtalk_recall dingtalk_sim -name '*.lua' 2>/dev/null | LC_ALL=C sort"):lines() do
  local m = file:gsub("%.lua$", ""):gsub("/init$", ""):gsub("/", ".")
  mods[#mods + 1] = ('      ["%s"] = "lua/%s",\n'):format(m, file)
end
s = s:gsub("(%-%- BEGIN LUA MODULES[^\n]*\n).-(      %-%- END LUA MODULES)", function(a, b)
  return a .. table.concat(mods) .. b
end)

local bins = {}
for b in io.popen("ls bin | LC_ALL=C sort"):lines() do
  bins[#bins + 1] = ('      ["%s"] = "bin/%s",\n'):format(b, b)
end
s = s:gsub("(    bin = {\n).-(    },)", function(a, b) return a .. table.concat(bins) .. b end)

f = assert(io.open(path, "w"))
f:write(s)
f:close()
