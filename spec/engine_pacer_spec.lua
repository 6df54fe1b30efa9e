-- The run's GC pacer (engine/pacer.lua) against a scripted collector: a
-- heap of `live` KB plus the garbage made since the last cycle, and a
-- cycle that ends either in the pacer's own step (Lua 5.x: "step" answers
-- true) or in the collector's automatic steps (LuaJIT: "step" starts a
-- cycle and answers false; the collector finishes it by itself a few
-- batches later).  No real collector, no clock: counts only.
local pacer = require "dingtalk.recall.engine.pacer"

-- A scripted collector.  own_end: cycles end in the collector's own steps
-- `lag` batches after a step started them (LuaJIT); else a step ends the
-- cycle it works on once `work` steps were made (5.x).
local function collector(opts)
  local c = { heap = opts.live, live = opts.live, steps = 0, collects = 0, cycle = nil }
  function c.gc(what, _)
    if what == "count" then return c.heap end
    if what == "collect" then
      c.collects = c.collects + 1
      c.heap, c.cycle = c.live, nil
      return 0
    end
    assert(what == "step", what)
    c.steps = c.steps + 1
    c.cycle = c.cycle or { age = 0, work = 0 }
    c.cycle.work = c.cycle.work + 1
    if not opts.own_end and c.cycle.work >= opts.work then
      c.heap, c.cycle = c.live, nil
      return true
    end
    return false
  end
  -- One batch: `garbage` KB made, the live heap grown by `grow` KB.
  function c.batch(garbage, grow)
    c.live = c.live + grow
    c.heap = c.heap + garbage + grow
    local cy = c.cycle
    if cy and opts.own_end then
      cy.age = cy.age + 1
      if cy.age >= opts.lag then c.heap, c.cycle = c.live, nil end
    end
  end
  return c
end

local function run(c, batches, garbage, grow)
  local p = pacer.new(c.gc)
  local peak_over = 0
  for _ = 1, batches do
    c.batch(garbage, grow)
    p:step()
    if c.heap - c.live > peak_over then peak_over = c.heap - c.live end
  end
  return p, peak_over
end

describe("the run's GC pacer", function()
  local slack_at = function(live) return math.max(pacer.MIN_SLACK, live * pacer.SLACK) end

  it("LuaJIT-like: cycles that end in the collector's own steps move the limit (no step every batch)", function()
    -- A live heap growing from 10 MB to 15 MB over the run (a caller
    -- keeping what it gets), 3 KB of garbage a batch.
    local c = collector { live = 10000, own_end = true, lag = 20 }
    local p, peak_over = run(c, 5000, 3, 1)
    -- one cycle per slack of garbage, a step a batch while one runs (the
    -- lag): not a step every batch once the live heap passed the first limit
    local cycles = 5000 * 3 / slack_at(10000) + 2
    assert.is_true(c.steps <= cycles * 21, "steps: " .. c.steps)
    assert.is_true(c.steps >= 1)
    assert.are.equal(0, c.collects)
    -- the limit follows the live heap
    assert.is_true(p.limit >= c.live, ("limit %.0f, live %.0f"):format(p.limit, c.live))
    assert.is_true(p.limit <= c.live + 2 * slack_at(c.live) + 100)
    -- the garbage stays within a slack and what the lag lets through
    assert.is_true(peak_over <= 2 * slack_at(c.live) + 20 * 3, "peak over live: " .. peak_over)
  end)

  it("LuaJIT-like with a steady live heap: a step per slack of garbage", function()
    local c = collector { live = 10000, own_end = true, lag = 20 }
    local _, peak_over = run(c, 5000, 3, 0)
    assert.is_true(c.steps <= (5000 * 3 / slack_at(10000) + 1) * 21, "steps: " .. c.steps)
    assert.is_true(peak_over <= slack_at(10000) + 20 * 3 + 3)
  end)

  it("5.x-like: steps every batch while over the limit until a step ends the cycle", function()
    local c = collector { live = 10000, work = 10 }
    local p, peak_over = run(c, 5000, 3, 1)
    assert.are.equal(0, c.collects)
    assert.is_true(c.steps % 10 == 0 or c.cycle ~= nil)
    assert.is_true(p.limit >= c.live - slack_at(c.live))
    assert.is_true(peak_over <= 2 * slack_at(c.live) + 10 * 4, "peak over live: " .. peak_over)
  end)

  it("collects in full when the steps fall two slacks behind", function()
    local c = collector { live = 10000, work = 1e9 } -- steps that never end a cycle
    run(c, 3000, 3, 0)
    assert.is_true(c.collects >= 1)
    assert.is_true(c.heap - c.live <= 3 * slack_at(10000) + 3)
  end)

  it("does nothing under the limit", function()
    local c = collector { live = 10000, work = 1 }
    run(c, 100, 3, 0) -- 300 KB: under MIN_SLACK
    assert.are.equal(0, c.steps)
    assert.are.equal(0, c.collects)
  end)
end)
