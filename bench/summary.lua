--- bench/run's report: reads the raw rows bench/run wrote and prints the
-- medians and ratios as a markdown table.
--
--   lua5.1 bench/summary.lua RAW_FILE
--
-- A raw row: contender run wall user sys maxrss_kb server_cpu ok
local rows, order = {}, {}
local fh = assert(io.open(assert(arg[1], "usage: summary.lua RAW_FILE"), "r"))
for line in fh:lines() do
  local name, run, wall, user, sys, rss, scpu, ok =
    line:match("^(%S+)%s+(%d+)%s+(%S+)%s+(%S+)%s+(%S+)%s+(%S+)%s+(%S+)%s+(%S+)")
  if name then
    if not rows[name] then
      rows[name] = {}
      order[#order + 1] = name
    end
    local t = rows[name]
    t[#t + 1] = { run = tonumber(run), wall = tonumber(wall), cpu = tonumber(user) + tonumber(sys),
      rss = tonumber(rss) / 1024, scpu = tonumber(scpu), ok = ok == "ok" }
  end
end
fh:close()

local function median(list, field)
  local v = {}
  for i, r in ipairs(list) do v[i] = r[field] end
  table.sort(v)
  local n = #v
  if n == 0 then return nil end
  if n % 2 == 1 then return v[(n + 1) / 2] end
  return (v[n / 2] + v[n / 2 + 1]) / 2
end

local LABEL = {
  floor = "floor: bare libcurl multi (C)",
  ["lua5.1"] = "this client, Lua 5.1",
  luajit = "this client, LuaJIT",
  ["lua5.4"] = "this client, Lua 5.4",
  node = "official Node SDK",
}

local med = {}
for _, name in ipairs(order) do
  local list = rows[name]
  local all_ok = true
  for _, r in ipairs(list) do all_ok = all_ok and r.ok end
  med[name] = { wall = median(list, "wall"), cpu = median(list, "cpu"), rss = median(list, "rss"),
    scpu = median(list, "scpu"), runs = #list, ok = all_ok }
end

local function ratio(a, b)
  if not a or not b or b == 0 then return "-" end
  return ("%.2fx"):format(a / b)
end

local floor, node = med.floor, med.node
print("| contender | runs | wall s | CPU s (user+sys) | peak RSS MB | server CPU s | wall / floor"
  .. " | Node wall / this | all keys recalled |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
for _, name in ipairs(order) do
  local m = med[name]
  print(("| %s | %d | %.2f | %.2f | %.1f | %.2f | %s | %s | %s |"):format(
    LABEL[name] or name, m.runs, m.wall, m.cpu, m.rss, m.scpu,
    name == "floor" and "1.00x" or ratio(m.wall, floor and floor.wall),
    name == "node" and "-" or ratio(node and node.wall, m.wall),
    m.ok and "yes" or "NO"))
end

local client = med["lua5.1"]
if client and floor then
  print()
  print(("targets (Lua 5.1 row): wall within 1.5x of the floor: %s (%.2fx); "
    .. "at least 5x faster than the Node SDK: %s (%s); peak RSS under 30 MB: %s (%.1f MB)"):format(
    client.wall <= 1.5 * floor.wall and "met" or "MISSED", client.wall / floor.wall,
    node and (node.wall >= 5 * client.wall and "met" or "MISSED") or "not run",
    node and ratio(node.wall, client.wall) or "-",
    client.rss < 30 and "met" or "MISSED", client.rss))
  if node then
    print(("CPU seconds: Node SDK / this client = %s; this client / floor = %s"):format(
      ratio(node.cpu, client.cpu), ratio(client.cpu, floor.cpu)))
  end
end
print()
print("every run (wall s, CPU s, peak RSS MB):")
for _, name in ipairs(order) do
  local parts = {}
  for _, r in ipairs(rows[name]) do
    parts[#parts + 1] = ("%.2f/%.2f/%.1f%s"):format(r.wall, r.cpu, r.rss, r.ok and "" or " FAILED")
  end
  print(("  %-8s %s"):format(name, table.concat(parts, "  ")))
end
