--- dingtalk.recall.ledger.changes: state changes on their way to a store,
-- gathered by state (one journal line, one set of keys per state) rather
-- than one table per key.
--
--   local ch = changes.new()
--   ch:add(key, "recalling")
--   ch:outcome(report, key, "failed")       -- the change an outcome makes
--   store:update(ch, now)                   -- ch.sets: {state, keys, why, code}
local M = {}

local Changes = {}
Changes.__index = Changes

--- changes.new() -> an empty set of changes: sets (in order of first use,
-- each {state, keys = {key...}, why = {key = reason}?, code = {key = code}?})
-- and count (keys in all).
function M.new()
  return setmetatable({ sets = {}, by = {}, count = 0 }, Changes)
end

--- ch:add(key, state [, reason [, code]])
function Changes:add(key, state, reason, code)
  local set = self.by[state]
  if not set then
    set = { state = state, keys = {} }
    self.by[state] = set
    self.sets[#self.sets + 1] = set
  end
  local keys = set.keys
  keys[#keys + 1] = key
  if reason then
    set.why = set.why or {}
    set.why[key] = reason
  end
  if code then
    set.code = set.code or {}
    set.code[key] = code
  end
  self.count = self.count + 1
end

--- ch:outcome(r, key, outcome): the change a key's outcome (the report
-- module's: recalled, already_recalled, failed, error, missing) makes to
-- its entry; r is the report holding the reasons and errors.
function Changes:outcome(r, key, outcome)
  if outcome == "recalled" then return self:add(key, "recalled") end
  if outcome == "already_recalled" then return self:add(key, "recalled", "ALREADY_RECALLED") end
  if outcome == "failed" then return self:add(key, "failed", tostring(r.failed[key])) end
  local err = r.errors[key] or {}
  return self:add(key, "error", err.message and tostring(err.message) or nil, tostring(err.code or "unknown"))
end

return M
