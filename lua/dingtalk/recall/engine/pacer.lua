--- dingtalk.recall.engine.pacer: paces Lua's collector through a batch
-- run.  The collector lets the heap grow to twice its live size (the
-- default pause of 200%) before a cycle; in a bulk recall the caller's own
-- keys are most of that size, and the run's garbage (requests, answers:
-- 7-9 KB a batch) would double the caller's heap.  A run instead drives a
-- cycle to its end (incremental steps of STEP KB, one per finished batch)
-- once the heap is MIN_SLACK KB above its size at the start, then once it
-- is SLACK of the size a cycle left (at least MIN_SLACK KB) above that; and
-- collects in full if the heap gets two such slacks further all the same.
-- A run that stays under it (a few batches) does no extra work.  With
-- 100,000 keys (a 13 MB heap) the run's share of peak RSS drops from 12-17
-- MB to 3-6 MB, for 10-30% more of the client's own CPU (bench/rss.lua,
-- bench/README.md).  A caller with a far larger heap pays one more cycle
-- per SLACK of its size in garbage (a 1 GB heap: one per 100 MB, some
-- 12,000 batches).  A stopped collector is left stopped (5.2+).
--
--   local p = pacer.new()   -- at the start of a run
--   p:step()                -- after each finished batch
local M = {}

local SLACK, MIN_SLACK, STEP = 0.1, 1024, 256
-- LuaJIT's steps cost more (0.1 of slack: +30% CPU over a 100,000-key run
-- without pacing); 0.2 keeps its share at 3.8 MB for +3% (bench/rss.lua).
if rawget(_G, "jit") then SLACK, MIN_SLACK, STEP = 0.2, 2048, 512 end
-- collectgarbage("isrunning") arrived in 5.2.
local IS_RUNNING = pcall(collectgarbage, "isrunning")

local Pacer = {}
Pacer.__index = Pacer

--- pacer.new() -> a pacer for one run, starting from the heap's size now.
function M.new()
  return setmetatable({ limit = collectgarbage("count") + MIN_SLACK, slack = MIN_SLACK }, Pacer)
end

--- p:step(): steps the collector when the heap has grown past the limit
-- (its live size at the start, then after each finished cycle, plus the
-- slack).
function Pacer:step()
  local now = collectgarbage("count")
  local limit = self.limit
  if now <= limit then return end
  if IS_RUNNING and not collectgarbage("isrunning") then return end
  local slack = self.slack
  if now > limit + 2 * slack then
    -- The steps did not keep up (seen on Lua 5.4, whose steps can leave
    -- the heap growing by ~2 KB a batch): one full collection.
    collectgarbage("collect")
  elseif not collectgarbage("step", STEP) then
    return
  end
  local live = collectgarbage("count")
  slack = math.max(MIN_SLACK, live * SLACK)
  self.limit, self.slack = live + slack, slack
end

return M
