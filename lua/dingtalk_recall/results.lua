--- dingtalk_recall.results: showing an outcome in Neovim (the results
-- buffer, a notification, the DingtalkRecallDone event).  The lines are
-- dingtalk.recall.report.render's: escaped and redacted there, once.
local state = require "dingtalk_recall.state"

local M = {}

-- The secrets known now (the environment's, the client's token and app
-- secret): the renderer redacts them from every line shown.
local function secrets()
  local list = {}
  for _, name in ipairs { state.opt("access_token_env"), state.opt("app_secret_env") } do
    local v = os.getenv(name)
    if v then list[#list + 1] = v end
  end
  if state.cached and state.cached.client then
    for _, v in ipairs(require("dingtalk.recall.report.render").secrets_of(state.cached.client)) do
      list[#list + 1] = v
    end
  end
  return list
end

--- report_lines(title, report | nil, err) -> lines, summary, level.
-- Rendered by dingtalk.recall.report.render: every line escaped (no
-- newline, no control character: the buffer shows whatever the server
-- sent) and redacted.
function M.report_lines(title, report, err)
  local render = require "dingtalk.recall.report.render"
  local levels = vim.log.levels
  if not report then
    local line = render.safe(title, secrets()) .. ": " .. render.error(err, "chat", { secrets = secrets() })
    return { line }, line, levels.ERROR
  end
  local lines, summary = render.render(report, "lines", { title = title, secrets = secrets() })
  local ok = #(report.recalled or {}) > 0
  local bad = next(report.failed or {}) ~= nil or next(report.errors or {}) ~= nil or #(report.expired or {}) > 0
  local level = not bad and levels.INFO or (ok and levels.WARN or levels.ERROR)
  return lines, summary, level
end

local BUF_NAME = "dingtalk-recall://results"

--- Shows lines in the results scratch buffer (made or reused); -> bufnr.
function M.show(lines)
  local buf = vim.fn.bufnr(BUF_NAME)
  if buf < 0 or not vim.api.nvim_buf_is_valid(buf) then
    buf = vim.api.nvim_create_buf(false, true)
    vim.api.nvim_buf_set_name(buf, BUF_NAME)
    vim.api.nvim_buf_set_option(buf, "buftype", "nofile")
    vim.api.nvim_buf_set_option(buf, "bufhidden", "hide")
    vim.api.nvim_buf_set_option(buf, "swapfile", false)
    vim.api.nvim_buf_set_option(buf, "filetype", "dingtalkrecall")
  end
  vim.api.nvim_buf_set_option(buf, "modifiable", true)
  vim.api.nvim_buf_set_lines(buf, 0, -1, false, lines)
  vim.api.nvim_buf_set_option(buf, "modifiable", false)
  if vim.fn.bufwinnr(buf) < 0 then
    -- A split at the bottom; the cursor stays where the user is typing.
    local prev = vim.api.nvim_get_current_win()
    vim.cmd("botright split")
    local win = vim.api.nvim_get_current_win()
    vim.api.nvim_win_set_buf(win, buf)
    vim.api.nvim_win_set_height(win, math.min(#lines + 1, 15))
    if vim.api.nvim_win_is_valid(prev) then vim.api.nvim_set_current_win(prev) end
  end
  return buf
end

--- Shows an outcome.  usage: a wrong command line, told by notification
-- only (an error: inside vim.cmd() it raises, like any failing command).
-- The outcome is kept in require("dingtalk_recall").last.
function M.present(title, report, err, usage)
  local lines, summary, level = M.report_lines(title, report, err)
  if state.opt("results") == "buffer" and not usage then M.show(lines) end
  require("dingtalk_recall").last = { title = title, lines = lines, summary = summary, report = report, err = err }
  -- For statuslines and scripts: autocmd User DingtalkRecallDone (.last holds the outcome).
  pcall(vim.api.nvim_exec_autocmds, "User", { pattern = "DingtalkRecallDone", modeline = false })
  if state.opt("notify") or usage then vim.notify(summary, level) end
end

return M
