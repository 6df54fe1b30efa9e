--- dingtalk.recall: recall (un-send) DingTalk group messages sent by a bot.
--
--   local recall = require "dingtalk.recall"
--   local client = assert(recall.client { robot_code = "ding...", app_key = "...", app_secret = "..." })
--   local report = client:recall("cid...", keys)
--
-- The C core (dingtalk.recall.core) validates, builds and parses every
-- request; this facade adds the client.  Nothing happens at require.
local core = require "dingtalk.recall.core"

local M = {
  _VERSION = core._VERSION,
  core = core,
  MAX_KEYS = core.MAX_KEYS,
}

--- recall.client(config) -> client | nil, err (see dingtalk.recall.client)
function M.client(config)
  return require("dingtalk.recall.client").new(config)
end

--- recall.error(code, message [, fields]) -> an error object
M.error = core.error
M.is_error = core.is_error

return M
