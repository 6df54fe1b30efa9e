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

  -- pacer.within: a large run in incremental mode (Lua 5.4's generational
  -- mode keeps a run's garbage that grew old until the heap doubles).
  local function modal(kb, mode, running)
    local g = { mode = mode or "generational", calls = {} }
    g.fn = function(what)
      g.calls[#g.calls + 1] = what
      if what == "count" then return kb end
      if what == "isrunning" then return running ~= false end
      if what == "generational" or what == "incremental" then
        local was = g.mode
        g.mode = what
        return was
      end
      error("unexpected collectgarbage option " .. tostring(what))
    end
    return g
  end
  -- batches of ~8 KB of garbage each: a run that ends this many paced
  -- cycles and makes this many times the heap in garbage
  local function batches_for(cycles, kb, heaps)
    return math.ceil(math.max(cycles * pacer.slack(kb), (heaps or 3) * kb) / 8)
  end

  it("runs a large run in incremental mode and puts generational back", function()
    local g = modal(11000)
    local seen
    local res = pacer.within(batches_for(5, 11000), g.fn, function()
      seen = g.mode
      return "the report"
    end)
    assert.are.equal("the report", res)
    assert.are.equal("incremental", seen)
    assert.are.equal("generational", g.mode)
  end)

  it("calls f with its argument, switched or not (Engine:run passes run.loop and the run, no closure)", function()
    local the_run = {}
    for _, case in ipairs { { batches_for(5, 11000), "incremental" }, { 1, "generational" } } do
      local g = modal(11000)
      local got, mode
      local res = pacer.within(case[1], g.fn, function(a)
        got, mode = a, g.mode
        return "r"
      end, the_run)
      assert.are.equal(the_run, got)
      assert.are.equal("r", res)
      assert.are.equal(case[2], mode)
    end
    local got = false
    pacer.within(1, nil, function(a) got = a end, the_run) -- the real collector
    assert.are.equal(the_run, got)
  end)

  it("leaves the collector alone for a run that would end few paced cycles or make little garbage", function()
    for _, case in ipairs { { 500, 2, 0 }, { 11000, 2, 0 }, { 200000, 2, 0 }, { 11000, 0, 1.5 },
      { 200000, 0, 1.5 } } do
      local g = modal(case[1])
      local seen
      pacer.within(math.floor(batches_for(case[2], case[1], case[3])) - 1, g.fn, function() seen = g.mode end)
      assert.are.equal("generational", seen)
      for _, what in ipairs(g.calls) do assert.are_not.equal("incremental", what) end
    end
  end)

  it("puts the mode back when the run raises, and raises the same error", function()
    local g = modal(11000)
    local boom = setmetatable({ code = "test.boom" }, { __tostring = function() return "boom" end })
    local seen
    local ok, err = pcall(pacer.within, batches_for(5, 11000), g.fn, function()
      seen = g.mode
      error(boom)
    end)
    assert.is_false(ok)
    assert.are.equal(boom, err)
    assert.are.equal("incremental", seen)
    assert.are.equal("generational", g.mode)
  end)

  it("leaves an incremental collector incremental and a stopped one as it is", function()
    local g = modal(11000, "incremental")
    local seen
    pacer.within(batches_for(5, 11000), g.fn, function() seen = g.mode end)
    assert.are.equal("incremental", seen)
    assert.are.equal("incremental", g.mode)
    for _, what in ipairs(g.calls) do assert.are_not.equal("generational", what) end

    local stopped = modal(11000, "generational", false)
    pacer.within(batches_for(5, 11000), stopped.fn, function() seen = stopped.mode end)
    assert.are.equal("generational", seen)
    for _, what in ipairs(stopped.calls) do assert.are_not.equal("incremental", what) end
  end)

  it("switches Lua 5.4's own collector during a large client run (and no other Lua's)", function()
    local recall = require "dingtalk.recall"
    local instant = require "spec.helpers.instant"
    local seen, switched
    local c = assert(recall.client { robot_code = "dingMode", access_token = "t", transport = instant.transport(),
      qps = 0, concurrency = 8 })
    if _VERSION == "Lua 5.4" then switched = collectgarbage("generational") end
    -- a key is some 0.4 KB of the run's garbage and 0.15 KB of heap (the
    -- key, the plan's and the report's arrays): 40 keys a KB of the heap
    -- now make the run's garbage more than twice the heap at its start
    collectgarbage()
    local n = math.ceil(40 * collectgarbage("count"))
    local ok, rep = pcall(c.recall, c, "cidMode", instant.keys(n, 3), { on_progress = function()
      -- the mode now, without changing it: asking for the mode it is in is no switch
      if seen == nil and _VERSION == "Lua 5.4" then
        local m = collectgarbage("incremental")
        if m ~= "incremental" then collectgarbage(m) end
        seen = m
      end
    end })
    local after = _VERSION == "Lua 5.4" and collectgarbage("generational")
    if switched then collectgarbage(switched) end
    assert.is_true(ok, rep)
    assert.are.equal(n, #rep.recalled)
    if _VERSION == "Lua 5.4" then
      assert.are.equal("incremental", seen)
      assert.are.equal("generational", after)
    else
      assert.is_nil(seen)
    end
  end)
end)
