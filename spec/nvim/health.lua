-- luacheck: globals vim
-- :checkhealth dingtalk_recall, the commands and their completion.
-- $DTR_CPATH (a folder holding dingtalk/recall/core.so) goes into
-- vim.g.dingtalk_recall_cpath, as a user who installed with luarocks would.
local root = os.getenv("DTR_ROOT")
local H = dofile(root .. "/spec/nvim/harness.lua")

H.guard(function()
  H.watchdog(tonumber(H.env("DTR_WATCHDOG", "40")))
  vim.g.dingtalk_recall_cpath = H.env("DTR_CPATH")
  H.setup_plugin { conversations = { "cidTeamA", "cidTeamB" }, tags = { "deploy", "digest" } }
  local out = {
    has_recall = vim.fn.exists(":DingtalkRecall"),
    has_undo = vim.fn.exists(":DingtalkUndo"),
    complete_undo = vim.fn.getcompletion("DingtalkUndo ", "cmdline"),
    complete_undo_since = vim.fn.getcompletion("DingtalkUndo since ", "cmdline"),
    complete_undo_tag = vim.fn.getcompletion("DingtalkUndo tag d", "cmdline"),
    complete_recall = vim.fn.getcompletion("DingtalkRecall conv", "cmdline"),
  }
  vim.cmd("checkhealth dingtalk_recall")
  out.health = vim.api.nvim_buf_get_lines(0, 0, -1, false)
  out.cpath = package.cpath
  H.finish(out)
end)
