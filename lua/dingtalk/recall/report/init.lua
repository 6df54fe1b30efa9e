--- dingtalk.recall.report: the one place that builds a recall report and
-- decides each key's outcome.  Rendering (text, JSON, chat), escaping and
-- redaction live in report/render.lua and are re-exported here.
--
--   local report = require "dingtalk.recall.report"
--   local r = report.new()
--   local outcomes = report.classify(r, keys, result, ambiguous)  -- a parsed answer
--   report.fail(r, keys, err)                                      -- a batch that failed whole
--   report.finish(r, elapsed)
--   report.outcome(r, key) -> "recalled" | "already_recalled" | "failed" | "error" | "expired" | nil, detail
--
-- A report: recalled (array of keys), already_recalled (array: the subset
-- of recalled the server called already gone after an attempt whose answer
-- was lost), failed ({key = the server's reason}), errors ({key = error
-- object}), total (unique keys), requests, retries, throttled,
-- token_fetches, elapsed, ok.  Every key is in exactly one of recalled,
-- failed and errors (and expired, for the ledger).
--
-- A key's outcome, once, here:
--   recalled          the server listed it in successResult;
--   already_recalled  the server failed it with a reason that means "already
--                     recalled" (core.reasons[reason].already_recalled) and an
--                     earlier attempt may have done it (its answer was lost, or
--                     the ledger had it `recalling`): counted recalled;
--   failed            any other per-key reason (kept verbatim);
--   error             the batch failed whole (the error object), or the key
--                     was refused before sending;
--   missing           the server named the key nowhere: an error
--                     `response.missing_key`.
local core = require "dingtalk.recall.core"

local M = {}

local function reasons() return core.reasons or {} end

--- new() -> an empty report.
function M.new()
  return { recalled = {}, already_recalled = {}, failed = {}, errors = {}, total = 0, requests = 0,
    retries = 0, throttled = 0, token_fetches = 0, _nrecalled = 0 }
end

--- Whether `reason` (a per-key failure reason from the server) means the
-- message is already recalled.
function M.already_recalled(reason)
  local info = reasons()[reason]
  return info ~= nil and info.already_recalled == true
end

-- The outcomes of a batch the server recalled whole (the usual answer):
-- one shared read-only table, so the common path makes no garbage.
local ALL_RECALLED = setmetatable({}, {
  __index = function() return "recalled" end,
  __newindex = function() error("outcomes are read-only", 2) end,
})

--- classify(r, keys, result, ambiguous [, adopt]) -> outcomes: outcomes[key]
-- for each key of the batch (index it by the batch's keys: a batch
-- recalled whole answers with a shared table that has no pairs).
-- keys: the batch sent; result: core.parse's answer (successResult,
-- failedResult, request_id); ambiguous: true when an earlier attempt of
-- this batch may have done the recall; adopt: keys is the caller's to give
-- away (no one else holds it), so a batch recalled whole into a report
-- with nothing recalled yet becomes its recalled array, uncopied.
function M.classify(r, keys, result, ambiguous, adopt)
  local succ, failed = result.successResult or {}, result.failedResult or {}
  local recalled, n = r.recalled, r._nrecalled or #r.recalled
  -- The usual answer lists the batch's keys in order: no set needed then.
  local same = #succ == #keys
  for i = 1, same and #keys or 0 do
    if succ[i] ~= keys[i] then
      same = false
      break
    end
  end
  if same and adopt and n == 0 and recalled[1] == nil then
    r.recalled, r._nrecalled = keys, #keys
    return ALL_RECALLED
  elseif same then
    for i = 1, #keys do recalled[n + i] = keys[i] end
    r._nrecalled = n + #keys
    return ALL_RECALLED
  end
  local ok, outcomes = {}, {}
  for _, k in ipairs(succ) do ok[k] = true end
  for _, k in ipairs(keys) do
    local reason = failed[k]
    if ok[k] then
      n = n + 1
      recalled[n] = k
      outcomes[k] = "recalled"
    elseif reason ~= nil and ambiguous and M.already_recalled(reason) then
      n = n + 1
      recalled[n] = k
      r.already_recalled[#r.already_recalled + 1] = k
      outcomes[k] = "already_recalled"
    elseif reason ~= nil then
      r.failed[k] = reason
      outcomes[k] = "failed"
    else
      r.errors[k] = core.error("response.missing_key",
        "the server answered neither success nor failure for this key", { request_id = result.request_id })
      outcomes[k] = "missing"
    end
  end
  r._nrecalled = n
  return outcomes
end

--- whole(keys) -> the report of one batch the server recalled whole, sent
-- in one request (a single batch's usual answer; as new() and classify()
-- would make it): keys, given away by the caller, become its recalled array.
function M.whole(keys)
  local n = #keys
  return { recalled = keys, already_recalled = {}, failed = {}, errors = {}, total = n, requests = 1,
    retries = 0, throttled = 0, token_fetches = 0, _nrecalled = n }
end

--- fail(r, keys, err) -> outcomes: every key of `keys` ends in errors with err.
function M.fail(r, keys, err)
  local outcomes, errors = {}, r.errors
  for _, k in ipairs(keys) do
    errors[k] = err
    outcomes[k] = "error"
  end
  return outcomes
end

--- fail_map(r, map) -> outcomes: keys refused one by one ({key = err}).
function M.fail_map(r, map)
  local outcomes, errors = {}, r.errors
  for k, err in pairs(map) do
    errors[k] = err
    outcomes[k] = "error"
  end
  return outcomes
end

--- finish(r, elapsed) -> r: sets ok and elapsed and drops the internal fields.
function M.finish(r, elapsed)
  r._nrecalled = nil
  r.elapsed = elapsed
  r.ok = next(r.failed) == nil and next(r.errors) == nil and (r.expired == nil or #r.expired == 0)
  return r
end

--- absorb(r, keys, other) -> outcomes: the keys' places in another
-- (finished) report, added to r (a ledger folding a client's reports).
function M.absorb(r, keys, other)
  local outcomes = {}
  local n = r._nrecalled or #r.recalled
  for _, k in ipairs(keys) do
    local o, detail = M.outcome(other, k)
    if o == "recalled" or o == "already_recalled" then
      n = n + 1
      r.recalled[n] = k
      if o == "already_recalled" then r.already_recalled[#r.already_recalled + 1] = k end
    elseif o == "failed" then
      r.failed[k] = detail
    elseif o == "error" then
      r.errors[k] = detail
    else
      o = "missing"
      r.errors[k] = core.error("response.missing_key", "the client reported nothing for this key")
    end
    outcomes[k] = o
  end
  r._nrecalled = n
  return outcomes
end

--- count(r, other): adds other's counters (requests, retries, throttled,
-- token_fetches) to r.
function M.count(r, other)
  for _, f in ipairs { "requests", "retries", "throttled", "token_fetches" } do
    r[f] = (r[f] or 0) + (tonumber(other[f]) or 0)
  end
end

--- merge(r, other): adds other's keys and counters to r (reports of
-- separate runs over distinct keys).
function M.merge(r, other)
  local n = #r.recalled
  for i, k in ipairs(other.recalled or {}) do r.recalled[n + i] = k end
  for _, k in ipairs(other.already_recalled or {}) do r.already_recalled[#r.already_recalled + 1] = k end
  for k, v in pairs(other.failed or {}) do r.failed[k] = v end
  for k, v in pairs(other.errors or {}) do r.errors[k] = v end
  for _, f in ipairs { "total", "requests", "retries", "throttled", "token_fetches" } do
    r[f] = (r[f] or 0) + (tonumber(other[f]) or 0)
  end
  r._nrecalled = #r.recalled
  return r
end

-- Lookup tables for outcome(), kept beside the reports (not in them: a
-- renderer walks a report's fields).
local indexes = setmetatable({}, { __mode = "k" })

--- outcome(r, key) -> outcome, detail: a key's place in a finished report
-- (detail: the reason or the error); nil when the report never saw it.
function M.outcome(r, key)
  if r.failed[key] ~= nil then return "failed", r.failed[key] end
  if r.errors[key] ~= nil then return "error", r.errors[key] end
  local size = #r.recalled + #r.already_recalled + #(r.expired or {})
  local idx = indexes[r]
  if not idx or idx.n ~= size then
    idx = { n = size, of = {} }
    for _, k in ipairs(r.recalled) do idx.of[k] = "recalled" end
    for _, k in ipairs(r.already_recalled) do idx.of[k] = "already_recalled" end
    for _, k in ipairs(r.expired or {}) do idx.of[k] = "expired" end
    indexes[r] = idx
  end
  return idx.of[key]
end

-- escape, redact and render come from report/render.lua (the front-ends'
-- module), loaded at first use so that a host without it still recalls.
local render
local function renderer()
  if render == nil then
    local ok, mod = pcall(require, "dingtalk.recall.report.render")
    render = ok and mod or false
    if not ok and not tostring(mod):find("not found", 1, true) then error(mod, 0) end
  end
  if not render then error("dingtalk.recall.report.render is not installed", 3) end
  return render
end

function M.escape(...) return renderer().escape(...) end
function M.redact(...) return renderer().redact(...) end
function M.render(...) return renderer().render(...) end

return M
