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

-- A step of STEP KB: Lua 5.x ends a cycle in fewer steps with 1024 than
-- with 256, so less garbage comes in while one is under way: over 100,000
-- keys the heap's peak above its start goes from 5.0 to 4.5 MB on Lua 5.1
-- (bench/rss.lua's share: 5.4 -> 4.4 MB), 4.7 to 4.4 on 5.3, 4.6 to 4.4
-- on 5.4, for the same CPU.
local SLACK, MIN_SLACK, STEP = 0.1, 1024, 1024
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

-- Lua 5.4's generational mode and a large run: in that mode a pacer's
-- step is a minor collection, and the run's objects alive at two of them
-- (the batches in flight, their answers) grow old and stay in the heap
-- until a major collection, which comes when the heap has doubled.  A run
-- whose garbage is several times the heap then doubles it: a bulk recall
-- of 100,000 keys from the standalone lua5.4 (which starts generational)
-- took 9.2 MB above a 9 MB start, and 4.6 MB paced in incremental mode,
-- for the same CPU (40,000 keys: 4.1 against 2.4 MB, and 0.051 against
-- 0.044 s).  A run whose garbage is less than twice the heap does not: the
-- ledger's recall of 20,000 keys over its 5.5 MB store grows by 2.7 MB in
-- either mode, and takes 3 ms less in generational mode, where the minor
-- collections leave the store alone (bench/README.md, 2026-11-30).  So a
-- run whose garbage (its batches, some BATCH_KB each) is at least HEAPS
-- times the heap, and enough for INC_CYCLES paced cycles, runs in
-- incremental mode: the switch is one pass over the heap's objects and the
-- switch back a full collection (0.1 and 0.45 ms over a 5 MB heap), once
-- a run.  A stopped collector or one already incremental is left as it
-- is, and the mode is put back even when the run raises.
local MODES = _VERSION == "Lua 5.4" -- (LuaJIT calls itself 5.1 and has one mode)
local BATCH_KB, INC_CYCLES, HEAPS = 8, 3, 2

--- pacer.within(batches, gc, f, arg) -> f(arg): f (which answers one
-- value) called with the collector in incremental mode when a run of
-- `batches` batches pays for the switch (above).  gc: nil (the real
-- collector) or a scripted one, as with pacer.new.  f and arg, not a
-- closure: a caller that makes a closure cannot be compiled by LuaJIT on
-- any of its returns (see Engine:run).
function M.within(batches, gc, f, arg)
  gc = gc or collectgarbage
  if not (MODES or gc ~= collectgarbage) then return f(arg) end
  local heap = gc("count")
  if batches * BATCH_KB < math.max(INC_CYCLES * slack_of(heap), HEAPS * heap) or not gc("isrunning") then
    return f(arg)
  end
  local was = gc("incremental")
  if was == "incremental" then return f(arg) end
  local ok, res = pcall(f, arg)
  gc(was)
  if not ok then error(res, 0) end
  return res
end

M.SLACK, M.MIN_SLACK, M.STEP = SLACK, MIN_SLACK, STEP
return M
