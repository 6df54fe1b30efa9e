-- wrk script for bench/run's server capacity check: POSTs recall bodies of
-- 20 keys each, cycling over the keys file named by BENCH_KEYS (one key a
-- line), with the token of BENCH_TOKEN.  The same request shape the
-- contenders send; keys already recalled are answered (failedResult
-- ALREADY_RECALLED) at the same cost.
--   BENCH_KEYS=F wrk -t1 -c8 -d5s -s bench/wrk-recall.lua https://localhost:P
-- luacheck: globals wrk request response done
local cid = os.getenv("BENCH_CID") or "cidbench"
local robot = os.getenv("BENCH_ROBOT") or "dingsimrobot"
local bodies, n = {}, 0
local batch = {}
local keys_file = os.getenv("BENCH_KEYS")
assert(keys_file, "BENCH_KEYS is not set")
for line in io.lines(keys_file) do
  if line ~= "" then
    batch[#batch + 1] = '"' .. line .. '"'
    if #batch == 20 then
      n = n + 1
      bodies[n] = '{"openConversationId":"' .. cid .. '","robotCode":"' .. robot ..
        '","processQueryKeys":[' .. table.concat(batch, ",") .. ']}'
      batch = {}
    end
  end
end
assert(n > 0, "need at least 20 keys")

wrk.method = "POST"
wrk.path = "/v1.0/robot/groupMessages/recall"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json"
wrk.headers["x-acs-dingtalk-access-token"] = os.getenv("BENCH_TOKEN") or "sim-static-token"

local i = 0
function request()
  i = i % n + 1
  return wrk.format(nil, nil, nil, bodies[i])
end

local non200 = 0
function response(status)
  if status ~= 200 then non200 = non200 + 1 end
end

function done(summary)
  io.write(("capacity: %.0f requests/s (%d requests, %d non-200 in this thread)\n"):format(
    summary.requests / (summary.duration / 1e6), summary.requests, non200))
end
