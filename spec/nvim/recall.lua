-- luacheck: globals vim
-- The editor stays live during a recall: a vim.loop timer fires every
-- 50 ms (and schedules main-loop work) while :DingtalkRecall waits on a
-- simulator that answers after 2 s.  Writes the tick counts, timings and
-- the results buffer to $DTR_OUT.
local root = os.getenv("DTR_ROOT")
local H = dofile(root .. "/spec/nvim/harness.lua")
local uv = H.uv

H.guard(function()
  H.watchdog(tonumber(H.env("DTR_WATCHDOG", "40")))
  H.setup_plugin()
  local keys = H.split(H.env("DTR_KEYS"), ",")
  local ticks, main_ticks = 0, 0
  local timer = uv.new_timer()
  timer:start(50, 50, function()
    ticks = ticks + 1
    vim.schedule(function() main_ticks = main_ticks + 1 end)
  end)
  local t0, ticks0, main0
  H.on_done(function(last)
    local elapsed = H.ms_since(t0)
    local t, m = ticks - ticks0, main_ticks - main0
    timer:stop()
    timer:close()
    local report = last.report or {}
    H.finish {
      ticks = t, main_ticks = m, elapsed_ms = elapsed, cmd_ms = H.cmd_ms,
      summary = last.summary, lines = H.results_lines(), recalled = report.recalled or {},
      ok = report.ok, requests = report.requests, err = last.err and tostring(last.err) or nil,
      windows = #vim.api.nvim_list_wins(),
    }
  end)
  -- Let the timer start ticking, then run the command as a user would.
  vim.defer_fn(function()
    H.guard(function()
      t0, ticks0, main0 = uv.hrtime(), ticks, main_ticks
      vim.cmd("DingtalkRecall " .. table.concat(keys, " "))
      H.cmd_ms = H.ms_since(t0)
    end)
  end, 100)
end)
