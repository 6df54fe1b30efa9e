--- dingtalk_recall.state: what the Neovim front-end remembers between
-- commands, shared by its modules (init: settings, client and queue;
-- results; commands).  Internal; nothing here is shown to the user.
local M = {
  options = {},    -- setup{} as given (may hold a token_provider; never shown)
  generation = 0,  -- bumped by setup(): the cached client is then rebuilt
  cached = nil,    -- { client =, fingerprint =, generation = }
  queue = {},      -- jobs waiting for the running one
  running = nil,   -- the job on the editor's loop
}

local DEFAULTS = {
  access_token_env = "DINGTALK_ACCESS_TOKEN",
  app_key_env = "DINGTALK_APP_KEY",
  app_secret_env = "DINGTALK_APP_SECRET",
  results = "buffer", -- "buffer" (scratch buffer + notification) or "notify"
  notify = true,
}

--- An option as setup{} gave it, else its default.
function M.opt(name)
  local v = M.options[name]
  if v == nil then v = DEFAULTS[name] end
  return v
end

return M
