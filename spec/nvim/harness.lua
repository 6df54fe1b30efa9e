-- luacheck: globals vim
-- Shared by the scripts spec/nvim_spec.lua runs in `nvim --headless -u NONE`
-- (Neovim 0.7 has no -l: they are run with -c 'luafile ...').  A script
-- gets its inputs from DTR_* environment variables and writes one JSON
-- object to $DTR_OUT, then quits; a watchdog writes {error = "timeout"}.
local H = {}
local uv = vim.uv or vim.loop
H.uv = uv

function H.env(name, default)
  local v = os.getenv(name)
  if v == nil or v == "" then
    if default ~= nil then return default end
    error("missing environment variable " .. name)
  end
  return v
end

local finished = false
function H.finish(result)
  if finished then return end
  finished = true
  local f = assert(io.open(H.env("DTR_OUT"), "w"))
  f:write(vim.json.encode(result))
  f:close()
  vim.cmd("qall!")
end

-- Runs fn, turning an error into {error = message} (then quits).
function H.guard(fn, ...)
  local ok, err = xpcall(fn, debug.traceback, ...)
  if not ok then H.finish({ error = tostring(err) }) end
end

function H.watchdog(seconds)
  local t = uv.new_timer()
  t:start(seconds * 1000, 0, vim.schedule_wrap(function() H.finish({ error = "timeout" }) end))
end

function H.ms_since(t0) return (uv.hrtime() - t0) / 1e6 end

function H.split(s, sep)
  local out = {}
  for w in s:gmatch("[^" .. sep .. "]+") do out[#out + 1] = w end
  return out
end

-- The lines of the results scratch buffer.
function H.results_lines()
  local b = vim.fn.bufnr("dingtalk-recall://results")
  if b < 0 then return {} end
  return vim.api.nvim_buf_get_lines(b, 0, -1, false)
end

-- Calls fn(last) at each DingtalkRecallDone event.
function H.on_done(fn)
  vim.api.nvim_create_autocmd("User", {
    pattern = "DingtalkRecallDone",
    callback = function() H.guard(fn, require("dingtalk_recall").last) end,
  })
end

function H.setup_plugin(extra)
  vim.cmd("runtime plugin/dingtalk_recall.lua")
  local opts = {
    endpoint = H.env("DTR_URL"), ca_file = H.env("DTR_CA", nil), robot_code = H.env("DTR_ROBOT"),
    conversation = H.env("DTR_CID"), config_file = H.env("DTR_CONFIG_FILE", false),
  }
  for k, v in pairs(extra or {}) do opts[k] = v end
  require("dingtalk_recall").setup(opts)
end

return H
