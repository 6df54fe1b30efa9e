-- The ledger's recall and Lua's collector (ledger/plans.lua): once a
-- recall is over its hooks let go of the store and the plans (LuaJIT's
-- traces keep the hooks).  (The collector's mode during a large run is the
-- engine's: spec/engine_pacer_spec.lua.)
local plans_mod = require "dingtalk.recall.ledger.plans"

describe("ledger run and the collector", function()
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
    -- A LuaJIT trace that ran the hooks holds the functions it called as
    -- constants, `save` among them, and `save` holds the store: drop the
    -- traces first, or the test measures where LuaJIT's hot counters
    -- happened to collide (about 1 run in 40 failed here without this).
    local jit = rawget(_G, "jit")
    if jit then jit.flush() end
    collectgarbage()
    collectgarbage()
    assert.is_nil(held.store)
    assert.is_nil(held.plans)
    local ok, err = hooks.on_batch_start({ nbatches = 1 }, 1)
    assert.is_false(ok)
    assert.are.equal("ledger.invalid", err.code)
  end)

end)
