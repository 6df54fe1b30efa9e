-- spec/helpers/nvim.lua: runs the scripts of spec/nvim/ in a headless
-- Neovim (0.7 has no -l: `-c 'luafile ...'`), for spec/nvim_spec.lua.
-- A run fails on Neovim's exit status, not only on the JSON it wrote: a
-- crash while quitting (after the result was written) fails the test too.
local shell = require "spec.helpers.shell"
local cjson_mod = require "cjson"
local json = cjson_mod.new and cjson_mod.new() or cjson_mod

local q, trim = shell.quote, shell.trim
local M = {}

M.ROOT = trim(shell.sh("pwd"))

--- Builds the Lua 5.1 core (the one Neovim's LuaJIT loads) when missing.
function M.ensure_core51()
  local f = io.open(M.ROOT .. "/build/5.1/dingtalk/recall/core.so", "rb")
  if f then f:close() return end
  local out, rc = shell.sh("make --no-print-directory -C " .. q(M.ROOT) .. " LUA_VERSION=5.1 all")
  assert(rc == 0, "building the 5.1 core failed:\n" .. out)
end

--- run(script, env [, opts]) -> result, log: runs spec/nvim/<script>.lua
-- with only `env` (and PATH, HOME) in its environment; returns the JSON it
-- wrote and its output.  Raises when it wrote nothing, wrote an error, died
-- of a signal (shell.sh) or exited non-zero.  opts.nvim: the command to run
-- instead of `nvim` (the helper's own spec gives a crashing one).
function M.run(script, env, opts)
  local out = os.tmpname()
  local home = trim(shell.sh("mktemp -d ${TMPDIR:-/tmp}/dtr-nvim-home.XXXXXX"))
  local vars = { "PATH=" .. q(os.getenv("PATH")), "HOME=" .. q(home), "DTR_ROOT=" .. q(M.ROOT),
    "DTR_OUT=" .. q(out) }
  for k, v in pairs(env) do vars[#vars + 1] = k .. "=" .. q(v) end
  local cmd = "env -i " .. table.concat(vars, " ") .. " timeout 90 " .. (opts and opts.nvim or "nvim") ..
    " --headless -u NONE -i NONE -n" .. " --cmd " .. q("set rtp^=" .. M.ROOT) .. " -c " ..
    q("luafile " .. M.ROOT .. "/spec/nvim/" .. script .. ".lua") .. " </dev/null"
  local ok, log, rc = pcall(shell.sh, cmd)
  shell.sh("rm -rf " .. q(home))
  local text = shell.read_file(out)
  os.remove(out)
  if not ok then error(log, 2) end -- a crash (shell.sh's message)
  assert(text ~= "", "nvim wrote no result (rc " .. tostring(rc) .. "):\n" .. log)
  local res = json.decode(text)
  assert(res.error == nil, "the nvim script failed: " .. tostring(res.error) .. "\n" .. log)
  -- Any non-zero status (timeout's 124, an error exit) fails as well.
  assert(rc == 0, "nvim exited with status " .. tostring(rc) .. " after writing its result:\n" .. log)
  return res, log
end

return M
