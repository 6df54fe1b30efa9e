-- `luarocks test` (the rockspec's test section runs this script with the
-- rock's own Lua): the busted suite against the core `luarocks make` built
-- (build/rock/), with the same paths as `make test` (spec/run.sh), without
-- the real-time checks (#timing).  Arguments go to busted, e.g.
--   luarocks make && luarocks test -- spec/client_spec.lua
-- Needs busted for that Lua (Debian: lua-busted; or `luarocks install busted`).
local function quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
local lua = arg and arg[-1] or "lua"
local args = {}
for i = 1, arg and #arg or 0 do args[#args + 1] = quote(arg[i]) end
local cmd = "LUA=" .. quote(lua) .. " LUA_CPATH_DIR=build/rock sh spec/run.sh --exclude-tags=timing " ..
  table.concat(args, " ")
local a, _, c = os.execute(cmd)
if type(a) == "number" then os.exit(a == 0 and 0 or 1) end
os.exit((a == true and c == 0) and 0 or 1)
