--- dingtalk_recall.native: finding the native core (dingtalk.recall.core)
-- from Neovim, whose Lua is LuaJIT with its own package.cpath.
local M = {}

-- The plugin's folder (holding lua/ and, after `make`, build/).
local function plugin_root()
  local src = debug.getinfo(1, "S").source
  if src:sub(1, 1) ~= "@" then return nil end
  return src:sub(2):match("^(.*)/lua/dingtalk_recall/native%.lua$")
end

local function file_exists(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end

local function add_cpath(entry)
  if not entry or entry == "" then return end
  if not entry:find("?", 1, true) then entry = entry:gsub("/+$", "") .. "/?.so" end
  if not (";" .. package.cpath .. ";"):find(";" .. entry .. ";", 1, true) then
    package.cpath = entry .. ";" .. package.cpath
  end
end

--- find_core(cpath_option) -> pcall(require, "dingtalk.recall.core"), with
-- the core put on package.cpath first: setup{cpath=} (cpath_option),
-- vim.g.dingtalk_recall_cpath (a folder or a ?-pattern), then the plugin's
-- own build/5.1 (after `make LUA_VERSION=5.1`).  Idempotent.
function M.find_core(cpath_option)
  local root = plugin_root()
  if root and file_exists(root .. "/build/5.1/dingtalk/recall/core.so") then
    add_cpath(root .. "/build/5.1/?.so")
  end
  local g = vim.g.dingtalk_recall_cpath
  if type(g) == "string" then add_cpath(vim.fn.expand(g)) end
  if type(cpath_option) == "string" then add_cpath(vim.fn.expand(cpath_option)) end
  return pcall(require, "dingtalk.recall.core")
end

return M
