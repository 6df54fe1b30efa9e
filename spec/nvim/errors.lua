-- luacheck: globals vim
-- Failures reach the results buffer and notifications, never a secret:
-- a wrong token, two commands at once (the second queued), no
-- credentials, bad arguments, an empty ledger.  Each step runs commands and
-- waits for their DingtalkRecallDone events; $DTR_OUT gets, per step,
-- the summaries and buffer lines, plus :messages at the end.
local root = os.getenv("DTR_ROOT")
local H = dofile(root .. "/spec/nvim/harness.lua")

H.guard(function()
  H.watchdog(tonumber(H.env("DTR_WATCHDOG", "40")))
  H.setup_plugin()
  local dr = require "dingtalk_recall"
  local keys = H.split(H.env("DTR_KEYS"), ",")
  local good = H.env("DTR_TOKEN")
  local steps = {
    { name = "wrong_token", events = 1, run = function()
      vim.env.DINGTALK_ACCESS_TOKEN = H.env("DTR_WRONG_TOKEN")
      vim.cmd("DingtalkRecall " .. keys[1])
    end },
    { name = "queued", events = 2, run = function(rec)
      vim.env.DINGTALK_ACCESS_TOKEN = good
      vim.cmd("DingtalkRecall " .. keys[2])
      vim.cmd("DingtalkRecall conversation=cidElsewhere " .. keys[3])
      rec.status = dr.status()
      rec.current_buf = vim.api.nvim_buf_get_name(0)
    end },
    { name = "no_credentials", events = 1, run = function()
      vim.env.DINGTALK_ACCESS_TOKEN = nil
      vim.cmd("DingtalkRecall " .. keys[1])
    end },
    { name = "no_keys", events = 1, run = function(rec)
      vim.env.DINGTALK_ACCESS_TOKEN = good
      rec.raised = not pcall(vim.cmd, "DingtalkRecall")
    end },
    { name = "range", events = 1, run = function()
      vim.api.nvim_buf_set_lines(0, 0, -1, false, { keys[4] .. " " .. keys[5], keys[6] })
      vim.cmd("1,2DingtalkRecall")
    end },
    { name = "undo_bad_args", events = 1, run = function(rec)
      rec.raised = not pcall(vim.cmd, "DingtalkUndo sometime")
    end },
    { name = "undo_empty_ledger", events = 1, run = function() vim.cmd("DingtalkUndo last 2") end },
  }
  local out, i, current = {}, 0, nil
  local function next_step()
    i = i + 1
    local st = steps[i]
    if not st then
      out.messages = vim.fn.execute("messages")
      return H.finish(out)
    end
    current = { name = st.name, want = st.events, summaries = {}, lines = {} }
    out[st.name] = current
    st.run(current)
  end
  H.on_done(function(last)
    current.summaries[#current.summaries + 1] = last.summary
    current.lines = H.results_lines()
    local rep = last.report
    if rep then current.recalled = #rep.recalled end
    if #current.summaries == current.want then vim.schedule(function() H.guard(next_step) end) end
  end)
  vim.schedule(function() H.guard(next_step) end)
end)
