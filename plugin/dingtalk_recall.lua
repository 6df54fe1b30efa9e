-- dingtalk-recall for Neovim (0.7+): the user commands.  Everything else
-- is loaded from lua/dingtalk_recall/ at first use.
if vim.g.loaded_dingtalk_recall then return end
vim.api.nvim_set_var("loaded_dingtalk_recall", true)

local function mod() return require "dingtalk_recall" end

vim.api.nvim_create_user_command("DingtalkRecall", function(o) mod().command_recall(o) end, {
  nargs = "*",
  range = true,
  desc = "Recall DingTalk messages: [conversation=CID] [robot=CODE] key... (or keys from a range of lines)",
  complete = function(lead, line, pos) return mod().complete_recall(lead, line, pos) end,
})

vim.api.nvim_create_user_command("DingtalkUndo", function(o) mod().command_undo(o) end, {
  nargs = "*",
  desc = "Recall what the ledger recorded: [last N | since 1h30m | tag T | all] [conversation=CID]",
  complete = function(lead, line, pos) return mod().complete_undo(lead, line, pos) end,
})
