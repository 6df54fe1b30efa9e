-- The demo: a bot posted the wrong message to fifty groups; recall it
-- everywhere, fast.  Runs against the bundled DingTalk simulator over
-- HTTPS (a test CA it generates), with an app key and secret, so the whole
-- path is real: token fetch, send, bulk recall, per-key report.
--
--   make demo            (or: lua examples/demo.lua, with the paths set)
--   DEMO_QPS=N           the recall's QPS budget (default 20, DingTalk's
--                        standard per-app limit; 0: none, as fast as the
--                        pool goes)
local recall = require "dingtalk.recall"
local curl = require "dingtalk.recall.curl"

local GROUPS, EXTRA_KEYS = 50, 2000
local QPS = tonumber(os.getenv("DEMO_QPS") or "20") or 20

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- Runs a shell command; its output and exit status, the same on every Lua
-- (PUC 5.1's io.popen():close() gives no status, so the shell prints it).
local function sh(cmd)
  local h = assert(io.popen("(" .. cmd .. ") 2>&1; echo \"__rc=$?\""))
  local out = h:read("*a")
  h:close()
  local body, rc = out:match("^(.*)__rc=(%d+)%s*$")
  return body or out, tonumber(rc) == 0
end

local here = (arg and arg[0] or "examples/demo.lua"):match("^(.*)/examples/[^/]*$") or "."
local lua = os.getenv("DEMO_LUA") or "lua"
local sim = q(here .. "/bin/dingtalk-sim")
-- The simulator's state (its config, logs and the test CA, private key
-- included) lives in one temporary folder, removed however the demo ends.
local state = sh("mktemp -d \"${TMPDIR:-/tmp}/dingtalk-demo.XXXXXX\""):gsub("%s+$", "")
local function cleanup() sh(("%s %s --stop --state-dir %s; rm -rf %s"):format(lua, sim, q(state), q(state))) end
-- --port 0: a free port the kernel gives; the simulator's line names it.
local out, ok = sh(("%s %s --port %s --tls --state-dir %s"):format(lua, sim, os.getenv("DEMO_PORT") or "0", q(state)))
local PORT = tonumber(out:match("dingtalk%-sim listening on https://[^ ]-:(%d+) "))
if not (ok and PORT) then
  io.stderr:write("could not start the simulator:\n", out)
  cleanup()
  os.exit(1)
end
io.write(out)

local ok_run, err = pcall(function()
  local client, cerr = recall.client {
    robot_code = "dingsimrobot",
    app_key = "dingsimappkey", app_secret = "sim-app-secret",   -- the simulator's demo app
    endpoint = "https://localhost:" .. PORT, ca_file = state .. "/ca.pem",
    concurrency = 8, qps = QPS,
  }
  if not client then error(tostring(cerr), 0) end

  -- 1. The bot's mistake: one wrong message to each of fifty groups.
  local sent, t0 = {}, curl.now()
  for i = 1, GROUPS do
    local cid = ("cidDemoGroup%02d"):format(i)
    local key, serr = client:send(cid, "sampleText", { content = "deploy finished (wrong channel!)" })
    if not key then error("send: " .. tostring(serr), 0) end
    sent[#sent + 1] = { cid = cid, keys = { key } }
  end
  print(("sent %d messages in %.2f s"):format(#sent, curl.now() - t0))

  -- Plus a backlog in one busy group, to show bulk batching.
  local h = io.popen(("curl -s --cacert %s -X POST https://localhost:%d/_sim/seed_keys " ..
    "-d '{\"openConversationId\":\"cidDemoGroup01\",\"robotCode\":\"dingsimrobot\",\"count\":%d}'")
    :format(state .. "/ca.pem", PORT, EXTRA_KEYS))
  local seeded = require("cjson").decode(h:read("*a")).keys
  h:close()
  for _, k in ipairs(seeded) do table.insert(sent[1].keys, k) end

  -- 2. Recall everything, every group in one run: one pool of 8
  --    connections and one QPS budget for all fifty groups.
  local groups = {}
  for _, g in ipairs(sent) do groups[#groups + 1] = { conversation = g.cid, keys = g.keys } end
  local tenth = -1
  local report, rerr = client:recall_groups(groups, {
    on_progress = function(done, total)
      local now_tenth = math.floor(done * 10 / total)
      if now_tenth ~= tenth then
        tenth = now_tenth
        io.write(("  %d%%"):format(now_tenth * 10))
        io.flush()
      end
    end,
  })
  io.write("\n")
  if not report then error("recall_groups: " .. tostring(rerr), 0) end
  local failed, errors = 0, 0
  for _ in pairs(report.failed) do failed = failed + 1 end
  for _, e in pairs(report.errors) do
    errors = errors + 1
    print("  error: " .. tostring(e))
  end
  local recalled, total = #report.recalled, report.total
  print(("recalled %d of %d keys in %d groups with %d requests in %.2f s (%d failed, %d errors, %d retries)")
    :format(recalled, total, #sent, report.requests, report.elapsed, failed, errors, report.retries))
  if QPS == 20 then
    print("  (paced by qps = 20, DingTalk's standard per-app limit for this API)")
  else
    print(("  (qps = %s: DEMO_QPS; DingTalk's standard per-app limit for this API is 20)"):format(QPS))
  end

  -- 3. A second recall of the same keys: the server says they are gone.
  local again, aerr = client:recall(sent[2].cid, sent[2].keys)
  if not again then error("recall: " .. tostring(aerr), 0) end
  for k, reason in pairs(again.failed) do print(("recalling %s again: %s"):format(k, reason)) end
  client:close()
  if recalled ~= total then error("not every key was recalled", 0) end
end)
cleanup()
if not ok_run then
  io.stderr:write("demo failed: ", tostring(err), "\n")
  os.exit(1)
end
print("demo: ok")
