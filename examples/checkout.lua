-- examples/checkout.lua: run from a checkout, the example scripts find the
-- library's lua/ and its built core (build/<Lua version>/) beside them;
-- installed, they use package.path and package.cpath as they are.
--   local checkout = loadfile(here .. "/checkout.lua")
--   if checkout then checkout(here .. "/..") end   -- the checkout's root
local root = ...
local f = io.open(root .. "/lua/dingtalk/recall/init.lua", "r")
if f then
  f:close()
  package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
  local v = rawget(_G, "jit") and "5.1" or (_VERSION:match("(%d+%.%d+)") or "5.1")
  package.cpath = root .. "/build/" .. v .. "/?.so;" .. package.cpath
end
