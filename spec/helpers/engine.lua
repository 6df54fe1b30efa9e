-- spec/helpers/engine.lua: what the engine's specs share: keys, a client
-- over a fake transport, and counters of the core's planning calls.
local core = require "dingtalk.recall.core"
local recall = require "dingtalk.recall"
local fake = require "spec.helpers.fake_transport"

local M = {}

function M.keys_of(prefix, n)
  local t = {}
  for i = 1, n do t[i] = prefix .. i end
  return t
end

-- A client over a fake transport (extra: client options).
function M.client(T, extra)
  local cfg = { robot_code = "dingRobot", access_token = "tok-static", transport = T, qps = 0,
    concurrency = 4, backoff_base = 0.1, backoff_max = 1, random = function() return 0.5 end }
  for k, v in pairs(extra or {}) do cfg[k] = v end
  if cfg.app_key or cfg.token_provider or cfg.access_token == false then cfg.access_token = nil end
  return assert(recall.client(cfg))
end

-- Wraps core's planning functions to count their calls; returns the
-- counts and a function that puts the originals back.
function M.count_core()
  local counts, orig = { plan = 0, build_batch = 0, validate = 0, build = 0 }, {}
  for name in pairs(counts) do
    orig[name] = core[name]
    core[name] = function(...)
      counts[name] = counts[name] + 1
      return orig[name](...)
    end
  end
  return counts, function()
    for name, f in pairs(orig) do core[name] = f end
  end
end

--- A fake transport whose n-th answer is replies[n](req) (the last reply
-- for every later request); o: more options of fake.new.
function M.answers(replies, o)
  local n, opts = 0, {}
  for k, v in pairs(o or {}) do opts[k] = v end
  opts.answer = function(req)
    n = n + 1
    return (replies[n] or replies[#replies])(req)
  end
  return fake.new(opts)
end

return M
