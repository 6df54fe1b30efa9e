-- luacheck: globals vim
-- :DingtalkUndo over a ledger the spec filled: by tag, last N, since.
-- $DTR_OUT gets each command's summary and results lines.
local root = os.getenv("DTR_ROOT")
local H = dofile(root .. "/spec/nvim/harness.lua")

H.guard(function()
  H.watchdog(tonumber(H.env("DTR_WATCHDOG", "40")))
  H.setup_plugin { ledger = H.env("DTR_LEDGER") }
  local commands = { "DingtalkUndo tag deploy", "DingtalkUndo last 1", "DingtalkUndo since 2m" }
  local out, i = { runs = {} }, 0
  local function next_command()
    i = i + 1
    if not commands[i] then return H.finish(out) end
    vim.cmd(commands[i])
  end
  H.on_done(function(last)
    local rep = last.report or {}
    out.runs[#out.runs + 1] = { command = commands[i], summary = last.summary, lines = H.results_lines(),
      recalled = rep.recalled, expired = rep.expired }
    vim.schedule(function() H.guard(next_command) end)
  end)
  vim.schedule(function() H.guard(next_command) end)
end)
