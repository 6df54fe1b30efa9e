--- A chat message as a DingTalk callback brings it (a text sent to the
-- bot in group CID by staff1 "Ann", not a group admin), the input of
-- dingtalk.recall.rules in rules_spec and rules_sim_spec.
local M = { CID = "cidRulesSpec", ROBOT = "dingsimrobot" }

--- message(text [, extra]) -> the callback table; extra's fields replace
-- or add to the defaults (senderStaffId, isAdmin, conversationType...).
function M.message(text, extra)
  local m = {
    msgtype = "text", text = { content = text }, conversationId = M.CID, conversationType = "2",
    senderStaffId = "staff1", senderNick = "Ann", isAdmin = false, robotCode = M.ROBOT,
  }
  for k, v in pairs(extra or {}) do m[k] = v end
  return m
end

return M
