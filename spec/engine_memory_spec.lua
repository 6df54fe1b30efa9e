-- What a bulk run keeps in memory: the plan holds its keys once (no batch
-- tables), the engine holds only the batches in flight, the report's
-- recalled array is made at its final size, and the run paces the
-- collector so that its garbage does not double the caller's heap.
-- A transport that answers at once (no clock, no sockets: spec.helpers.instant).
local core = require "dingtalk.recall.core"
local recall = require "dingtalk.recall"

local instant = require("spec.helpers.instant").transport
local keys_of = require("spec.helpers.instant").keys

local function client(T)
  return assert(recall.client { robot_code = "dingMem", access_token = "tok-mem", transport = T, qps = 0,
    concurrency = 8 })
end

describe("memory of a run", function()
  it("the plan keeps no batch tables: plan[i] is made on first use, core.batch makes a fresh one", function()
    local ks = keys_of(45)
    local plan = assert(core.plan("cidMem", "dingMem", ks))
    for i = 1, 3 do assert.is_nil(rawget(plan, i)) end
    local b2 = core.batch(plan, 2)
    assert.are.equal(20, #b2)
    assert.are.equal(ks[21], b2[1])
    assert.are.equal(ks[40], b2[20])
    assert.is_nil(rawget(plan, 2)) -- not kept
    assert.are_not.equal(b2, core.batch(plan, 2))
    local b3 = plan[3]
    assert.are.same({ ks[41], ks[42], ks[43], ks[44], ks[45] }, b3)
    assert.are.equal(b3, rawget(plan, 3)) -- kept: the same table each time
    assert.are.equal(b3, plan[3])
    assert.are.equal(b3, core.batch(plan, 3))
    assert.is_nil(core.batch(plan, 4))
    assert.is_nil(core.batch(plan, 0))
    assert.is_nil(plan[4])
    assert.is_nil(plan[2.5])
    assert.is_nil(plan.nosuchfield)
    assert.has_error(function() core.batch({}, 1) end)
    assert.has_error(function() core.batch(plan, "x") end)
  end)

  it("core.new_array checks its count", function()
    local t = core.new_array(100)
    assert.are.equal(0, #t)
    t[1], t[2] = "a", "b"
    assert.are.equal(2, #t)
    assert.are.equal(0, #core.new_array(0))
    for _, bad in ipairs { -1, 1.5, 0 / 0, math.huge, 2 ^ 31 } do
      assert.has_error(function() core.new_array(bad) end)
    end
    assert.has_error(function() core.new_array("10") end)
  end)

  it("the engine holds only the batches in flight (not one table per batch of the run)", function()
    local T = instant()
    local built = 0
    local c = client(T)
    local held = setmetatable({}, { __mode = "k" })
    local batch = core.batch
    core.batch = function(...)
      local b = batch(...)
      held[b] = true
      return b
    end
    local most = 0
    local ok, rep = pcall(c.recall, c, "cidMem", keys_of(2000), { on_progress = function()
      built = built + 1
      if built % 10 == 0 then
        collectgarbage()
        local n = 0
        for _ in pairs(held) do n = n + 1 end
        if n > most then most = n end
      end
    end })
    core.batch = batch
    assert.is_true(ok, rep)
    assert.are.equal(2000, #rep.recalled)
    assert.are.equal(100, built)
    assert.is_true(most > 0 and most <= 9, "batches alive at once: " .. most)
  end)

  -- (Lua 5.4: in either of its modes; a run in generational mode is made in
  -- incremental mode, see engine/pacer.lua)
  for _, mode in ipairs(_VERSION == "Lua 5.4" and { "incremental", "generational" } or { false }) do
  it("paces the collector: the run's garbage does not double the heap" .. (mode and " (" .. mode .. ")" or ""),
    function()
    local keys = keys_of(60000)
    local c = client(instant())
    local was = mode and collectgarbage(mode)
    collectgarbage()
    collectgarbage()
    local start = collectgarbage("count")
    local peak = start
    local rep = assert(c:recall("cidMem", keys, { on_progress = function()
      local now = collectgarbage("count")
      if now > peak then peak = now end
    end }))
    assert.are.equal(60000, #rep.recalled)
    -- Kept: the plan's keys and the report's recalled array (about 1 MB
    -- each); garbage: ~8 KB a batch, 3,000 batches.  Measured: 2.0-3.4 MB
    -- over a 5.3-6.6 MB heap with pacing (5.1, 5.3, 5.4, LuaJIT); without
    -- it (Run:pace returning at once) 8.5-16 MB, 1.4-2.6 times the heap.
    local grown = peak - start
    if was then collectgarbage(was) end
    local what = ("the heap grew by %.0f KB over %.0f KB"):format(grown, start)
    assert.is_true(grown < 1024 + 0.1 * start + 4 * 1024, what)
    assert.is_true(grown < start, what)
  end)
  end

  it("leaves a stopped collector stopped", function()
    if not pcall(collectgarbage, "isrunning") then
      return pending("collectgarbage('isrunning') needs Lua 5.2 or later")
    end
    local c = client(instant())
    local keys = keys_of(20000)
    collectgarbage()
    collectgarbage("stop")
    local ok, rep = pcall(c.recall, c, "cidMem", keys)
    local running = collectgarbage("isrunning")
    collectgarbage("restart")
    assert.is_true(ok, rep)
    assert.are.equal(20000, #rep.recalled)
    assert.is_false(running)
  end)
end)
