--- dingtalk.recall.ledger.changes: state changes on their way to a store,
-- gathered by state (one journal line, one set of keys per state) rather
-- than one table per key.
--
--   local ch = changes.new()
--   ch:add(key, "recalling")
--   ch:add_all(batch, "recalled")           -- a whole array of keys, not copied
--   ch:outcome(report, key, "failed")       -- the change an outcome makes
--   store:update(ch, now)                   -- ch.sets: {state, parts, n, why, code}
--
-- A set's keys are held in parts: arrays of keys in order, each either
-- the caller's own array (add_all: a batch of a plan, which nobody changes
-- afterwards) or one the set fills key by key (add).  A recall hands over
-- its batches whole, so marking and settling 20,000 keys costs a table
-- append per batch, not per key; the file store hands the parts to
-- journal.append as they are (a key line, written in C).
local M = {}

local Changes = {}
Changes.__index = Changes

--- changes.new() -> an empty set of changes: sets (in order of first use,
-- each {state, parts = {{key...}...}, n (keys), why = {key = reason}?,
-- code = {key = code}?}) and count (keys in all).
function M.new()
  return setmetatable({ sets = {}, by = {}, count = 0 }, Changes)
end

local function set_of(self, state)
  local set = self.by[state]
  if not set then
    set = { state = state, parts = {}, n = 0 }
    self.by[state] = set
    self.sets[#self.sets + 1] = set
  end
  return set
end

--- ch:add(key, state [, reason [, code]])
function Changes:add(key, state, reason, code)
  local set = set_of(self, state)
  local own = set.own
  if not own then
    own = {}
    set.own = own
    set.parts[#set.parts + 1] = own
  end
  own[#own + 1] = key
  if reason then
    set.why = set.why or {}
    set.why[key] = reason
  end
  if code then
    set.code = set.code or {}
    set.code[key] = code
  end
  set.n = set.n + 1
  self.count = self.count + 1
end

--- ch:add_all(keys, state): every key of the array keys takes the state
-- (no reason, no code).  The array is kept, not copied: it must not change
-- until the changes are written.
function Changes:add_all(keys, state)
  local n = #keys
  if n == 0 then return end
  local set = set_of(self, state)
  set.parts[#set.parts + 1] = keys
  set.own = nil -- a later add starts a part of its own (the order stays)
  set.n = set.n + n
  self.count = self.count + n
end

--- changes.keys(set) -> a new array of the set's keys, in order.
function M.keys(set)
  local out, n = {}, 0
  for _, part in ipairs(set.parts) do
    for _, k in ipairs(part) do
      n = n + 1
      out[n] = k
    end
  end
  return out
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

-- The report module's shared outcomes of a batch recalled whole, once seen.
local all_recalled

--- ch:outcomes(r, keys, outcomes): ch:outcome for each key of a batch
-- (outcomes: the engine's, outcomes[key]).  A batch the server recalled
-- whole comes with the report module's shared outcomes, which answer
-- "recalled" for every key and have no pairs: its keys go in as they are.
-- (Known by identity once seen: `next` is not compiled by LuaJIT, and the
-- engine's loop runs through here once per batch.)
function Changes:outcomes(r, keys, outcomes)
  if keys[1] ~= nil then
    if outcomes == all_recalled then return self:add_all(keys, "recalled") end
    if next(outcomes) == nil and getmetatable(outcomes) ~= nil and outcomes[keys[1]] == "recalled" then
      all_recalled = outcomes
      return self:add_all(keys, "recalled")
    end
  end
  for _, k in ipairs(keys) do self:outcome(r, k, outcomes[k]) end
end

return M
