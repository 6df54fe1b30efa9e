--- The client as a contender in bench/run: recall every key of a keys file
-- (one key per line) and check that every key was recalled.
--
--   lua bench/recall.lua URL CA_FILE KEYS CID ROBOT [CONCURRENCY [QPS [LIMIT]]]
--
-- LIMIT: load every key but recall only the first LIMIT (bench/run's RSS
-- baseline: the process, the TLS stack and the caller's keys, without
-- the bulk recall).
-- The token comes from the environment variable BENCH_TOKEN (default
-- sim-static-token), never from the command line.  Prints one line of
-- JSON to stdout; exits 1 when a key was not recalled.
local recall = require "dingtalk.recall"

local function main(argv)
  local url, ca_file, keys_file, cid, robot = argv[1], argv[2], argv[3], argv[4], argv[5]
  if not (url and ca_file and keys_file and cid and robot) then
    io.stderr:write("usage: lua bench/recall.lua URL CA_FILE KEYS CID ROBOT [CONCURRENCY [QPS [LIMIT]]]\n")
    return 2
  end
  local concurrency = tonumber(argv[6] or 8)
  local qps = tonumber(argv[7] or 0)
  local limit = tonumber(argv[8])

  -- Read as the floor (bench/floor.c) reads them: line by line, a count
  -- kept (not #keys per line: a search in a 100,000-slot array each time).
  local keys, n = {}, 0
  local fh = assert(io.open(keys_file, "rb"))
  for line in fh:lines() do
    if line ~= "" then n = n + 1; keys[n] = line end
  end
  fh:close()

  local client = assert(recall.client {
    access_token = os.getenv("BENCH_TOKEN") or "sim-static-token",
    robot_code = robot,
    endpoint = url,
    ca_file = ca_file,
    concurrency = concurrency,
    qps = qps,
  })
  local todo = keys
  if limit then
    todo = {}
    for i = 1, math.min(limit, #keys) do todo[i] = keys[i] end
  end
  local report, err = client:recall(cid, todo)
  client:close()
  if not report then
    io.stderr:write("recall: ", tostring(err), "\n")
    return 1
  end
  local jit = rawget(_G, "jit")
  local jit_version = type(jit) == "table" and jit.version or nil
  local nfailed, nerrors = 0, 0
  for _ in pairs(report.failed) do nfailed = nfailed + 1 end
  local first_error
  for _, e in pairs(report.errors) do
    nerrors = nerrors + 1
    first_error = first_error or e
  end
  io.write(('{"contender":"lua-client","runtime":"%s","keys":%d,"recalled":%d,"failed":%d,"errors":%d,'
    .. '"requests":%d,"retries":%d,"throttled":%d,"elapsed":%.3f}\n'):format(
    jit_version or _VERSION, #todo, #report.recalled, nfailed, nerrors,
    report.requests, report.retries, report.throttled, report.elapsed))
  if #report.recalled ~= #todo or not report.ok then
    io.stderr:write("recall: not every key was recalled",
      first_error and (": " .. tostring(first_error)) or "", "\n")
    return 1
  end
  return 0
end

os.exit(main(arg))
