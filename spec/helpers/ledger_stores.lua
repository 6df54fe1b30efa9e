-- The harness of the ledger's specs run against both stores (the local
-- journal and Redis): ledger_spec.lua (records, queries, sharing) and
-- ledger_recall_spec.lua (recalls through the simulator).
--
--   local env = require("spec.helpers.ledger_stores").harness(busted)  -- inside a describe;
--   -- busted: {setup, teardown, before_each, describe, pending} (the spec's
--   -- own: busted puts them in the spec file's environment only)
--   env.each_store(function(B, t) ... end)  -- a describe per store (t: below)
--   env.open(B, clock [, extra [, same]])   -- a fresh ledger of store B (same: the last one)
--   env.guard(B)                            -- false (the case pending) when B cannot run here
--   env.client([extra])                     -- a client of the simulator env.s
local ledger = require "dingtalk.recall.ledger"
local recall = require "dingtalk.recall"
local sim = require "spec.helpers.sim"
local redis_helper = require "spec.helpers.redis"
local shell = require "spec.helpers.shell"

local M = {}

local has_socket = pcall(require, "socket")
local has_redis = redis_helper.available()

--- harness(busted) -> env: starts the simulator (env.s), a scratch
-- directory (env.dir) and Redis (env.rs, when installed) for the
-- enclosing describe.
function M.harness(busted)
  local setup, teardown, before_each, describe, pending = busted.setup, busted.teardown, busted.before_each,
    busted.describe, busted.pending
  local env = { n = 0 }
  setup(function()
    env.s = sim.start { latency = 0 }
    env.dir = shell.trim(shell.sh("mktemp -d ${TMPDIR:-/tmp}/dingtalk-ledger-spec.XXXXXX"))
    if has_redis and has_socket then env.rs = redis_helper.start() end
  end)
  teardown(function()
    if env.s then env.s:stop() end
    if env.rs then env.rs:stop() end
    if env.dir then shell.sh("rm -rf " .. shell.quote(env.dir)) end
  end)
  before_each(function()
    env.s:reset()
    env.s:config { qps = 0, latency = 0, faults = "" }
  end)

  function env.client(extra)
    local s = env.s
    local cfg = { robot_code = s.robot, endpoint = s.url, access_token = s.token, concurrency = 4, qps = 0,
      backoff_base = 0.01, backoff_max = 0.05, max_retries = 0 }
    for k, v in pairs(extra or {}) do cfg[k] = v end
    return assert(recall.client(cfg))
  end

  env.stores = {
    {
      name = "file",
      ready = function() return true end,
      -- A fresh ledger per case; `same` reopens the previous one.
      location = function(same)
        if not same then env.n = env.n + 1 end
        return env.dir .. "/l" .. env.n .. "/ledger", {}
      end,
    },
    {
      name = "redis",
      ready = function()
        if not has_socket then return false, "luasocket is not installed for " .. _VERSION end
        if not has_redis then return false, "redis-server is not installed" end
        return true
      end,
      location = function(same)
        if not same then env.n = env.n + 1 end
        return env.rs.url, { prefix = "spec" .. env.n .. ":" }
      end,
    },
  }

  --- each_store(body): a describe per store, calling body(B, t) in it:
  -- t.s (the simulator) and t.now (the fake clock's time, os.time() at the
  -- start of each case) are set before each case; t.open([extra [, same]])
  -- a ledger of that store on the fake clock, t.guard() false when the
  -- store cannot run here (the case pending), t.client([extra]).
  function env.each_store(body)
    for _, B in ipairs(env.stores) do
      describe("(" .. B.name .. " store)", function()
        local t = { client = env.client }
        local function clock() return t.now end
        function t.open(extra, same) return env.open(B, clock, extra, same) end
        function t.guard() return env.guard(B) end
        before_each(function() t.s, t.now = env.s, os.time() end)
        body(B, t)
      end)
    end
  end

  function env.open(B, clock, extra, same)
    local loc, opts = B.location(same)
    opts.clock = clock
    for k, v in pairs(extra or {}) do opts[k] = v end
    return assert(ledger.open(loc, opts))
  end

  function env.guard(B)
    local ok, why = B.ready()
    if not ok then
      pending(why)
      return false
    end
    return true
  end

  return env
end

return M
