--- dingtalk.recall.ledger.order: sorting the ledger's entries without a
-- Lua comparator.  A selection of 20,000 entries sorted with
-- table.sort(t, function(a, b) ... end) costs a Lua call per comparison;
-- here entries go into buckets by send time (few distinct values: seconds),
-- the bucket values and each bucket's tie-breakers (keys or record
-- sequence numbers, unique) are sorted by table.sort's own comparison.
local M = {}

--- indices(values, idx, descending [, ties]) -> idx (an array of indices
-- into values) sorted in place by values[i], then by ties[i] (values that
-- are unique among the indices and all strings or all numbers; default:
-- i itself); ascending or, when descending is true, descending.  A value
-- that is not a number or is NaN sorts as 0.  (The file store's columns:
-- values are send times, i the order of record.)
function M.indices(values, idx, descending, ties)
  local n = #idx
  -- Already in order (a journal replayed in order of record usually is)
  -- or in the reverse order: no sort.
  local up, down = true, true
  for j = 2, n do
    local a, b = idx[j - 1], idx[j]
    local pa, pb = values[a], values[b]
    if type(pa) ~= "number" or type(pb) ~= "number" or pa ~= pa or pb ~= pb then
      up, down = false, false
      break
    end
    local ta, tb = a, b
    if ties then ta, tb = ties[a], ties[b] end
    if pa < pb or (pa == pb and ta < tb) then down = false else up = false end
    if not (up or down) then break end
  end
  if (up and not descending) or (down and descending) then return idx end
  if up or down then
    for j = 1, math.floor(n / 2) do idx[j], idx[n + 1 - j] = idx[n + 1 - j], idx[j] end
    return idx
  end
  local buckets, keys = {}, {}
  for j = 1, n do
    local i = idx[j]
    local v = values[i]
    if type(v) ~= "number" or v ~= v then v = 0 end
    local b = buckets[v]
    if not b then
      b = { ties = {}, of = ties and {} } -- (of: tie -> index; without ties the tie is the index)
      buckets[v] = b
      keys[#keys + 1] = v
    end
    local t = ties and ties[i] or i
    b.ties[#b.ties + 1] = t
    if ties then b.of[t] = i end
  end
  -- table.sort's own comparison (no Lua call), read backwards when descending
  local function range(m)
    if descending then return m, 1, -1 end
    return 1, m, 1
  end
  table.sort(keys)
  local out = 0
  local a, z, d = range(#keys)
  for k = a, z, d do
    local b = buckets[keys[k]]
    table.sort(b.ties)
    local ta, tz, td = range(#b.ties)
    for j = ta, tz, td do
      out = out + 1
      local t = b.ties[j]
      idx[out] = ties and b.of[t] or t
    end
  end
  return idx
end

--- by(entries, primary, tiebreak, descending) -> a new array of the
-- entries ordered by e[primary], then by e[tiebreak] (see indices).
function M.by(entries, primary, tiebreak, descending)
  local values, ties, idx = {}, {}, {}
  for i, e in ipairs(entries) do
    values[i], ties[i], idx[i] = e[primary], e[tiebreak], i
  end
  M.indices(values, idx, descending, ties)
  local out = {}
  for j, i in ipairs(idx) do out[j] = entries[i] end
  return out
end

return M
