-- The ledger's recall and Lua's collector (ledger/plans.lua): a large run
-- is made in generational mode (Lua 5.4), so that its paced collections do
-- not mark and sweep the store's entries again and again (the mode is put
-- back afterwards, whatever happens); and once a recall is over its hooks
-- let go of the store and the plans (LuaJIT's traces keep the hooks).
local plans_mod = require "dingtalk.recall.ledger.plans"
local pacer = require "dingtalk.recall.engine.pacer"

-- A scripted collector: a heap of `kb` KB, a mode, a running flag, and
-- the calls it was given.
local function scripted(kb, mode, running)
  local g = { mode = mode or "incremental", calls = {} }
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

-- Plans of `n` batches in all (run_engine only counts them).
local function plans_of(n)
  return { { nbatches = n - math.floor(n / 2) }, { nbatches = math.floor(n / 2) } }
end

-- A client whose run answers a report, noting the collector's mode.
local function client_seeing(g, fail)
  local c = { runs = 0 }
  function c.run(self, plans, hooks, opts)
    assert.are.equal(c, self)
    c.runs, c.mode, c.got = c.runs + 1, g.mode, { plans, hooks, opts }
    if fail then error(fail, 0) end
    return { recalled = {}, total = 0 }
  end
  return c
end

-- Batches of ~8 KB of garbage each that end this many paced cycles.
local function batches_for(cycles, kb)
  return math.ceil(cycles * math.max(pacer.MIN_SLACK, pacer.SLACK * kb) / 8)
end

describe("ledger run and the collector", function()
  it("runs a large recall in generational mode and puts incremental back", function()
    local g = scripted(11000)
    local c = client_seeing(g)
    local plans, hooks, opts = plans_of(batches_for(5, 11000)), {}, { ambiguous = true }
    local rep = plans_mod.run_engine(c, plans, hooks, opts, g.fn)
    assert.are.same({ recalled = {}, total = 0 }, rep)
    assert.are.equal(1, c.runs)
    assert.are.equal("generational", c.mode)
    assert.are.equal(plans, c.got[1])
    assert.are.equal(hooks, c.got[2])
    assert.are.equal(opts, c.got[3])
    assert.are.equal("incremental", g.mode)
  end)

  it("leaves the collector alone for a run that would end few paced cycles", function()
    for _, kb in ipairs { 500, 11000, 200000 } do
      local g = scripted(kb)
      local c = client_seeing(g)
      plans_mod.run_engine(c, plans_of(batches_for(2, kb)), {}, {}, g.fn)
      assert.are.equal(1, c.runs)
      assert.are.equal("incremental", c.mode)
      for _, what in ipairs(g.calls) do
        assert.are_not.equal("generational", what)
      end
    end
  end)

  it("puts the mode back when the run raises, and raises the same error", function()
    local g = scripted(11000)
    local boom = setmetatable({ code = "test.boom" }, { __tostring = function() return "boom" end })
    local c = client_seeing(g, boom)
    local ok, err = pcall(plans_mod.run_engine, c, plans_of(batches_for(5, 11000)), {}, {}, g.fn)
    assert.is_false(ok)
    assert.are.equal(boom, err)
    assert.are.equal("generational", c.mode)
    assert.are.equal("incremental", g.mode)
  end)

  it("leaves a generational collector generational and a stopped one as it is", function()
    local g = scripted(11000, "generational")
    local c = client_seeing(g)
    plans_mod.run_engine(c, plans_of(batches_for(5, 11000)), {}, {}, g.fn)
    assert.are.equal("generational", c.mode)
    assert.are.equal("generational", g.mode)
    for _, what in ipairs(g.calls) do assert.are_not.equal("incremental", what) end

    local stopped = scripted(11000, "incremental", false)
    c = client_seeing(stopped)
    plans_mod.run_engine(c, plans_of(batches_for(5, 11000)), {}, {}, stopped.fn)
    assert.are.equal("incremental", c.mode)
    for _, what in ipairs(stopped.calls) do assert.are_not.equal("generational", what) end
  end)

  it("hooks released after a run hold neither the store nor the plans, and refuse", function()
    local core = require "dingtalk.recall.core"
    local held = setmetatable({}, { __mode = "v" })
    local hooks
    do
      local store = { writes = 0 }
      local plans = { assert(core.plan("cidGc", "robotGc", { "k1", "k2" })) }
      held.store, held.plans = store, plans
      hooks = plans_mod.hooks { chunk = 500, plans = plans, save = function()
        store.writes = store.writes + 1
        return true
      end }
      assert.is_nil(hooks.on_batch_start(plans[1], 1))
      assert.are.equal(1, store.writes) -- the first chunk's marks
      hooks.on_batch_done(plans[1], 1, plans[1][1], {}, { failed = {}, errors = {} })
      assert.is_true((hooks.flush()))
      assert.are.equal(2, store.writes)
      hooks.release()
    end
    collectgarbage()
    collectgarbage()
    assert.is_nil(held.store)
    assert.is_nil(held.plans)
    local ok, err = hooks.on_batch_start({ nbatches = 1 }, 1)
    assert.is_false(ok)
    assert.are.equal("ledger.invalid", err.code)
  end)

  it("switches Lua 5.4's own collector (and no other Lua's)", function()
    local seen
    local c = { run = function()
      -- answers the mode it was in (the same mode: no switch)
      seen = _VERSION == "Lua 5.4" and collectgarbage("generational") or "none"
      return {}
    end }
    if _VERSION == "Lua 5.4" then collectgarbage("incremental") end
    local kb = collectgarbage("count")
    plans_mod.run_engine(c, plans_of(batches_for(5, kb)), {}, {})
    if _VERSION == "Lua 5.4" then
      assert.are.equal("generational", seen)
      assert.are.equal("incremental", collectgarbage("incremental"))
    else
      assert.are.equal("none", seen)
    end
  end)
end)
