-- Helpers shared by the ledger's specs (ledger_spec, ledger_store_spec).
local recall = require "dingtalk.recall"
local fake = require "spec.helpers.fake_transport"

local M = {}

function M.count(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end

function M.keys_of(list)
  local out = {}
  for i, e in ipairs(list) do out[i] = e.key end
  return out
end

function M.set_of(list)
  local s = {}
  for _, k in ipairs(list) do s[k] = true end
  return s
end

--- A client over a fake transport (no server): records the recall calls
-- (c.calls) and answers from a table (default: everything recalled; a
-- string is the key's failure reason, an error object fails the key's
-- whole batch).  extra: client options (e.g. concurrency); seen(req), when
-- given, is called with each recall request before it is answered.
function M.fake_client(answer, extra, seen)
  local calls = {}
  local T = fake.new { answer = function(req)
    if req.kind ~= "recall" then return fake.code(500, "system.error") end
    calls[#calls + 1] = { cid = req.cid, keys = req.keys, robot = req.robot }
    if seen then seen(req) end
    local failed = {}
    for _, k in ipairs(req.keys) do
      local a = answer and answer[k]
      if type(a) == "string" then failed[k] = a end
      if type(a) == "table" then return fake.code(a.status or 500, a.code) end
    end
    return fake.ok(req, failed)
  end }
  local cfg = { robot_code = "dingFake", access_token = "fake-token", transport = T, qps = 0,
    max_retries = 0, concurrency = 4 }
  for k, v in pairs(extra or {}) do cfg[k] = v end
  local c = assert(recall.client(cfg))
  c.calls = calls
  return c
end

return M
