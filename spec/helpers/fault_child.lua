-- spec/helpers/fault_child.lua: scenarios of spec/faults_spec.lua that need a
-- private mount namespace (`unshare -m`, root only), run as a child process
-- so that nothing they mount is seen by, or left on, the host:
--
--   dns        /etc/resolv.conf is bind-mounted to one naming 127.0.0.1 (where
--              nothing listens), so resolving fails at once and no DNS query
--              leaves the machine; recalls through https://no-such-host.invalid.
--   disk_full  the ledger lives on a 1 MiB tmpfs that the scenario fills.
--   read_only  the ledger lives on a tmpfs that the scenario remounts read-only.
--
--   lua fault_child.lua SCENARIO DIR SIM_URL TOKEN ROBOT KEYS_FILE
-- Prints one line "RESULT <json>" with what it saw; the spec asserts on it.
-- DIR is the tmpfs mount point (disk_full, read_only).
local cjson_mod = require "cjson"
local cjson = cjson_mod.new and cjson_mod.new() or cjson_mod
local recall = require "dingtalk.recall"
local invariant = require "spec.helpers.invariant"

local scenario, dir, sim_url, token, robot, keys_file = arg[1], arg[2], arg[3], arg[4], arg[5], arg[6]
local out = { scenario = scenario }

local sh = require("spec.helpers.shell").sh -- raises when a child crashed

local function err_table(e)
  if type(e) ~= "table" then return { message = tostring(e) } end
  return { code = e.code, message = e.message, retryable = e.retryable, text = tostring(e) }
end

-- The simulator's counters (in-process: no curl process per look).
local stats_client
local function sim_stats()
  if not stats_client then
    local http = require "spec.helpers.http_client"
    local host, port = http.parse_url(sim_url)
    stats_client = http.new { host = host, port = port, timeout = 10 }
  end
  local ok, v = pcall(cjson.decode, stats_client:request("GET", "/_sim/stats").body)
  return ok and v or {}
end

local function read_keys()
  local keys = {}
  for line in io.lines(keys_file) do
    if line ~= "" then keys[#keys + 1] = line end
  end
  return keys
end

local function report_table(rep, keys)
  local ok, why = invariant.check(rep, keys)
  local c = invariant.counts(rep)
  local codes = {}
  for _, e in pairs(rep.errors or {}) do codes[tostring(e.code)] = (codes[tostring(e.code)] or 0) + 1 end
  return { recalled = c.recalled, failed = c.failed, errors = c.errors, expired = c.expired, ok = rep.ok,
    total = rep.total, requests = rep.requests, retries = rep.retries, invariant = ok,
    invariant_why = not ok and why or nil, error_codes = codes,
    already_recalled = rep.already_recalled and #rep.already_recalled or nil }
end

local function client()
  return assert(recall.client { robot_code = robot, endpoint = sim_url, access_token = token, qps = 0,
    concurrency = 2, backoff_base = 0.01, backoff_max = 0.05 })
end

---------------------------------------------------------------------------
local scenarios = {}

-- DNS: the name cannot be resolved.
function scenarios.dns()
  local keys = { "kDns1", "kDns2", "kDns3" }
  local c = assert(recall.client { robot_code = "dingDnsRobot", endpoint = "https://no-such-host.invalid",
    access_token = "dns-test-token", max_retries = 1, backoff_base = 0.01, backoff_max = 0.05, qps = 0 })
  local rep, err = c:recall("cidDns", keys)
  if not rep then
    out.recall_err = err_table(err)
    return
  end
  out.report = report_table(rep, keys)
  local _, e = next(rep.errors)
  out.err = e and err_table(e)
  -- the resolver we left it: nothing on the machine's real one
  local f = io.open("/etc/resolv.conf")
  out.resolv = f and f:read("*a")
  if f then f:close() end
end

-- Fills the tmpfs.  The journal is first padded to a whole page with one
-- line readers skip (not JSON), so that its next append needs a new page:
-- otherwise a small append could still fit in the journal's last page.
local function pad_journal(path)
  local f = assert(io.open(path, "ab"))
  local size = f:seek("end")
  local pad = 4096 - size % 4096
  if pad < 2 then pad = pad + 4096 end
  f:write(string.rep("#", pad - 1), "\n")
  f:close()
end
local function fill(path)
  pad_journal(path)
  sh("dd if=/dev/zero of=" .. dir .. "/filler bs=4096 2>/dev/null; sync")
  local df = sh("df -k " .. dir .. " | tail -1")
  return df
end
local function free()
  os.remove(dir .. "/filler")
end

-- {state = count} of the conversation's entries, or {list_error = err}.
local function states(l, cid)
  local list, err = l:list { conversation = cid }
  if not list then return { list_error = err_table(err) } end
  local n = {}
  for _, e in ipairs(list) do n[e.state] = (n[e.state] or 0) + 1 end
  return n
end

local function record_all(l, keys, cid)
  local entries = {}
  for i, k in ipairs(keys) do
    entries[i] = { key = k, conversation = cid, robot = robot, sent_at = os.time() - 60 + i }
  end
  assert(l:record_many(entries))
end

-- The start of the ledger-disk scenarios: a client, and the journal on the
-- namespace's tmpfs holding the keys (read_keys) as sent to cid
-- -> the ledger module, the keys, the journal's path, the client, the ledger.
local function recorded_ledger(cid, opts)
  local ledger = require "dingtalk.recall.ledger"
  local keys = read_keys()
  local path = dir .. "/ledger/journal"
  local c = client()
  local l = assert(ledger.open(path, opts))
  record_all(l, keys, cid)
  return ledger, keys, path, c, l
end

-- l:recall of cid through c -> whether it gave a report, its error, the
-- recall requests the simulator saw meanwhile, and the entries' states.
local function recall_outcome(l, c, cid)
  local calls0 = sim_stats().recall_calls or 0
  local rep, err = l:recall(c, { conversation = cid })
  return { report = rep ~= nil, err = err_table(err), recall_calls = (sim_stats().recall_calls or 0) - calls0,
    states = states(l, cid) }
end

-- A client that runs `after` once, right after its first recall came back.
local function hooked(c, after)
  local w = { calls = 0 }
  function w.recall(_, cid, ks, opts)
    w.calls = w.calls + 1
    local rep, e = c:recall(cid, ks, opts)
    if w.calls == 1 then after() end
    return rep, e
  end
  return w
end

-- The disk fills up: before a recall, in the middle of one, and under a send.
function scenarios.disk_full()
  local cid = "cidDiskFull"
  local ledger, keys, path, c, l = recorded_ledger(cid, { chunk = 20 })

  -- 1. full before the recall starts
  out.df = fill(path)
  out.before = recall_outcome(l, c, cid)

  -- 2. a send while the disk is full: the message is out, the record is not
  local record_errs = {}
  local l_send = assert(ledger.open(path, { on_record_error = function(e) record_errs[#record_errs + 1] = e end }))
  local sc = l_send:attach(client())
  local key, serr = sc:send(cid, "sampleText", { content = "sent while the disk is full" })
  out.send = { key = key, err = serr and err_table(serr), record_errors = l_send.record_errors,
    hook_err = record_errs[1] and err_table(record_errs[1]), recorded = key and l_send:get(key) ~= nil }
  free()

  -- 3. the disk fills in the middle of a recall: after the first chunk came back
  local full_mid = hooked(c, function() fill(path) end)
  out.mid = recall_outcome(l, full_mid, cid)
  out.mid.client_calls = full_mid.calls
  free()

  -- 4. space again: the next recall finishes the job
  local rep, err = l:recall(c, { conversation = cid })
  out.after = rep and report_table(rep, keys) or { err = err_table(err) }
  out.after_states = states(l, cid)
  out.server_recalled = sim_stats().recalled
  c:close()
  sc:close()
end

-- The ledger's file system turns read-only (even root cannot write).
function scenarios.read_only()
  local cid = "cidReadOnly"
  local ledger, keys, path, c, l = recorded_ledger(cid)
  local record_errs = {}
  local l_send = assert(ledger.open(path, { on_record_error = function(e) record_errs[#record_errs + 1] = e end }))
  local _, rc = sh("mount -o remount,ro " .. dir)
  out.remount_rc = rc
  out.before = recall_outcome(l, c, cid)
  local reopen, reopen_err = ledger.open(path)
  out.reopen = { ok = reopen ~= nil, err = reopen_err and err_table(reopen_err) }
  local sc = l_send:attach(client())
  local key, serr = sc:send(cid, "sampleText", { content = "sent while the ledger is read-only" })
  out.send = { key = key, err = serr and err_table(serr), record_errors = l_send.record_errors,
    hook_err = record_errs[1] and err_table(record_errs[1]) }
  sh("mount -o remount,rw " .. dir)
  local rep, err = l:recall(c, { conversation = cid })
  out.after = rep and report_table(rep, keys) or { err = err_table(err) }
  out.after_states = states(l, cid)
  c:close()
  sc:close()
end

local ok, e = pcall(assert(scenarios[scenario], "unknown scenario " .. tostring(scenario)))
if not ok then out.crash = tostring(e) end
io.stdout:write("RESULT ", cjson.encode(out), "\n")
