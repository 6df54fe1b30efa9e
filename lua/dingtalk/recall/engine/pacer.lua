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

--- pacer.new([gc]) -> a pacer for one run, starting from the heap's size
-- now.  gc: the collector's interface (default collectgarbage; the specs
-- give a scripted one).
function M.new(gc)
  gc = gc or collectgarbage
  local now = gc("count")
  return setmetatable({ gc = gc, limit = now + MIN_SLACK, slack = MIN_SLACK, low = now, mark = now }, Pacer)
end

--- pacer.slack(live) -> KB: how far the heap may grow above a live size
-- of `live` KB before a paced cycle ends (the run's garbage per cycle).
local function slack_of(live)
  return math.max(MIN_SLACK, live * SLACK)
end
M.slack = slack_of

-- The limit for a live heap of `live` KB.
function Pacer:set_limit(live)
  local slack = slack_of(live)
  self.limit, self.slack = live + slack, slack
end

--- p:step(): steps the collector when the heap has grown past the limit
-- (its live size at the start, then after each finished cycle, plus the
-- slack).  A cycle ends in one of this pacer's steps ("step" answers
-- true) or in the collector's own steps: LuaJIT finishes most cycles
-- there (a step starts one and leaves the collector paying its debt), so
-- its "step" almost never answers true.  Such an end shows as the heap
-- falling below where the last step left it (`mark`); the lowest heap
-- seen since (`low`) is then the size the cycle left, and the limit is
-- read from it.  Without that the limit would stay at the start's size
-- plus the slack, and once the live heap outgrew it every batch would
-- step.
function Pacer:step()
  local gc = self.gc
  local now = gc("count")
  if now < self.low then self.low = now end
  if now <= self.limit then return end
  if IS_RUNNING and gc == collectgarbage and not collectgarbage("isrunning") then return end
  if self.low < self.mark then
    self:set_limit(self.low)
    self.mark = self.low -- read once per fall
    if now <= self.limit then return end
  end
  local ended = true
  if now > self.limit + 2 * self.slack then
    -- The steps did not keep up (seen on Lua 5.4, whose steps can leave
    -- the heap growing by ~2 KB a batch): one full collection.
    gc("collect")
  else
    -- false: a cycle under way; step again next batch while over the
    -- limit, unless the heap falls below where this step left it.
    ended = gc("step", STEP)
  end
  now = gc("count")
  self.low, self.mark = now, now
  if ended then self:set_limit(now) end
end

M.SLACK, M.MIN_SLACK, M.STEP = SLACK, MIN_SLACK, STEP
return M
