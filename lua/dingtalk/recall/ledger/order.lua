--- dingtalk.recall.ledger.order: sorting the ledger's entries without a
-- Lua comparator.  A selection of 20,000 entries sorted with
-- table.sort(t, function(a, b) ... end) costs a Lua call per comparison;
-- here entries go into buckets by send time (few distinct values: seconds),
-- the bucket values and each bucket's tie-breakers (keys or record
-- sequence numbers, unique) are sorted by table.sort's own comparison.
local M = {}

--- by(entries, primary, tiebreak, descending) -> a new array of the
-- entries ordered by e[primary], then by e[tiebreak] (a field whose values
-- are unique among the entries and all strings or all numbers), ascending
-- or, when descending is true, descending.  A primary value that is not a
-- number or is NaN sorts as 0.
function M.by(entries, primary, tiebreak, descending)
  -- Already in order (a journal replayed in order of record usually is)
  -- or in the reverse order: no sort.
  local up, down = true, true
  for i = 2, #entries do
    local a, b = entries[i - 1], entries[i]
    local pa, pb = a[primary], b[primary]
    if type(pa) ~= "number" or type(pb) ~= "number" or pa ~= pa or pb ~= pb then
      up, down = false, false
      break
    end
    if pa < pb or (pa == pb and a[tiebreak] < b[tiebreak]) then down = false else up = false end
    if not (up or down) then break end
  end
  if (up and not descending) or (down and descending) then
    local out = {}
    for i, e in ipairs(entries) do out[i] = e end
    return out
  elseif up or down then
    local out, n = {}, #entries
    for i = n, 1, -1 do out[n - i + 1] = entries[i] end
    return out
  end
  local buckets, values = {}, {}
  for _, e in ipairs(entries) do
    local v = e[primary]
    if type(v) ~= "number" or v ~= v then v = 0 end
    local b = buckets[v]
    if not b then
      b = { ties = {}, of = {} }
      buckets[v] = b
      values[#values + 1] = v
    end
    local t = e[tiebreak]
    b.ties[#b.ties + 1] = t
    b.of[t] = e
  end
  -- table.sort's own comparison (no Lua call), read backwards when descending
  local function range(n)
    if descending then return n, 1, -1 end
    return 1, n, 1
  end
  table.sort(values)
  local out = {}
  local a, z, d = range(#values)
  for i = a, z, d do
    local b = buckets[values[i]]
    table.sort(b.ties)
    local ta, tz, td = range(#b.ties)
    for j = ta, tz, td do out[#out + 1] = b.of[b.ties[j]] end
  end
  return out
end

--- indices(values, idx, descending) -> idx (an array of indices into
-- values) sorted in place by values[i], then by i; ascending or, when
-- descending is true, descending.  A value that is not a number or is NaN
-- sorts as 0.  (The file store's columns: values are send times, i the
-- order of record.)
function M.indices(values, idx, descending)
  local n = #idx
  local up, down = true, true
  for j = 2, n do
    local a, b = idx[j - 1], idx[j]
    local pa, pb = values[a], values[b]
    if type(pa) ~= "number" or type(pb) ~= "number" or pa ~= pa or pb ~= pb then
      up, down = false, false
      break
    end
    if pa < pb or (pa == pb and a < b) then down = false else up = false end
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
      b = {}
      buckets[v] = b
      keys[#keys + 1] = v
    end
    b[#b + 1] = i
  end
  table.sort(keys)
  local out = 0
  local a, z, d = 1, #keys, 1
  if descending then a, z, d = z, 1, -1 end
  for k = a, z, d do
    local b = buckets[keys[k]]
    table.sort(b)
    local ba, bz, bd = 1, #b, 1
    if descending then ba, bz, bd = bz, 1, -1 end
    for j = ba, bz, bd do
      out = out + 1
      idx[out] = b[j]
    end
  end
  return idx
end

return M
