-- spec/helpers/invariant.lua: the client's per-key invariant, as a check.
--
--   local invariant = require "spec.helpers.invariant"
--   local ok, why = invariant.check(report, keys)          -- plain Lua (bench/soak.lua)
--   invariant.assert(report, keys)                          -- in a spec: raises with the reason
--
-- Every unique key asked for is in exactly one of report.recalled (an
-- array), report.failed and report.errors (maps key -> reason / error), plus
-- report.expired (an array; ledger reports) when present; no key is
-- reported that was not asked for; report.total is the number of unique keys.
local M = {}

--- check(report, keys) -> true, where (key -> list name) | false, message
function M.check(report, keys)
  if type(report) ~= "table" then return false, "no report: " .. tostring(report) end
  local where = {}
  local function put(k, list)
    if where[k] ~= nil then
      return false, ("key %s is in both %s and %s"):format(tostring(k), where[k], list)
    end
    where[k] = list
    return true
  end
  for _, k in ipairs(report.recalled or {}) do
    local ok, why = put(k, "recalled")
    if not ok then return false, why end
  end
  for _, list in ipairs { "failed", "errors" } do
    for k in pairs(report[list] or {}) do
      local ok, why = put(k, list)
      if not ok then return false, why end
    end
  end
  for _, k in ipairs(report.expired or {}) do
    local ok, why = put(k, "expired")
    if not ok then return false, why end
  end
  local unique, n = {}, 0
  for _, k in ipairs(keys) do
    if not unique[k] then
      unique[k] = true
      n = n + 1
      if where[k] == nil then return false, "key lost (in no list): " .. tostring(k) end
    end
  end
  local reported = 0
  for k in pairs(where) do
    if not unique[k] then return false, "key reported but never asked for: " .. tostring(k) end
    reported = reported + 1
  end
  if reported ~= n then return false, ("%d keys asked for, %d reported"):format(n, reported) end
  if report.total ~= nil and report.total ~= n then
    return false, ("report.total is %s, %d unique keys were asked for"):format(tostring(report.total), n)
  end
  return true, where
end

--- assert(report, keys) -> where: raises (a spec failure) when the invariant breaks.
function M.assert(report, keys)
  local ok, where = M.check(report, keys)
  if not ok then error("per-key invariant broken: " .. where, 2) end
  return where
end

--- counts(report) -> {recalled = n, failed = n, errors = n, expired = n}
function M.counts(report)
  local c = { recalled = #(report.recalled or {}), failed = 0, errors = 0, expired = #(report.expired or {}) }
  for _ in pairs(report.failed or {}) do c.failed = c.failed + 1 end
  for _ in pairs(report.errors or {}) do c.errors = c.errors + 1 end
  return c
end

return M
