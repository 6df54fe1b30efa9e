-- The demo: a bot posted the wrong message to fifty groups; recall it
-- everywhere, fast.  Runs against the bundled DingTalk simulator over
-- HTTPS (a test CA it generates), with an app key and secret, so the whole
-- path is real: token fetch, send, bulk recall, per-key report.
--
--   make demo            (or: lua examples/demo.lua, with the paths set)
local recall = require "dingtalk.recall"
local curl = require "dingtalk.recall.curl"

local GROUPS, EXTRA_KEYS = 50, 2000
local PORT = tonumber(os.getenv("DEMO_PORT") or "") or (41000 + (os.time() % 1000))

local function sh(cmd)
  local h = assert(io.popen(cmd .. " 2>&1"))
  local out = h:read("*a")
  local ok, _, code = h:close()
  if type(ok) == "number" then code = ok end -- Lua 5.1
  return out, (ok == true or code == 0)
end

local here = (arg and arg[0] or "examples/demo.lua"):match("^(.*)/examples/[^/]*$") or "."
local lua = os.getenv("DEMO_LUA") or "lua"
local state = sh("mktemp -d /tmp/dingtalk-demo.XXXXXX"):gsub("%s+$", "")
local out, ok = sh(("%s %s/bin/dingtalk-sim --port %d --tls --state-dir %s"):format(lua, here, PORT, state))
if not ok then
  io.stderr:write("could not start the simulator:\n", out)
  os.exit(1)
end
local function stop() sh(("%s %s/bin/dingtalk-sim --stop --state-dir %s"):format(lua, here, state)) end
io.write(out)

local ok_run, err = pcall(function()
  local client = assert(recall.client {
    robot_code = "dingsimrobot",
    app_key = "dingsimappkey", app_secret = "sim-app-secret",   -- the simulator's demo app
    endpoint = "https://localhost:" .. PORT, ca_file = state .. "/ca.pem",
    concurrency = 8, qps = 20,
  })

  -- 1. The bot's mistake: one wrong message to each of fifty groups.
  local sent, t0 = {}, curl.now()
  for i = 1, GROUPS do
    local cid = ("cidDemoGroup%02d"):format(i)
    local key = assert(client:send(cid, "sampleText", { content = "deploy finished (wrong channel!)" }))
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
  local report = assert(client:recall_groups(groups, {
    on_progress = function(done, total)
      local now_tenth = math.floor(done * 10 / total)
      if now_tenth ~= tenth then
        tenth = now_tenth
        io.write(("  %d%%"):format(now_tenth * 10))
        io.flush()
      end
    end,
  }))
  io.write("\n")
  local failed, errors = 0, 0
  for _ in pairs(report.failed) do failed = failed + 1 end
  for _, e in pairs(report.errors) do
    errors = errors + 1
    print("  error: " .. tostring(e))
  end
  local recalled, total = #report.recalled, report.total
  print(("recalled %d of %d keys in %d groups with %d requests in %.2f s (%d failed, %d errors, %d retries)")
    :format(recalled, total, #sent, report.requests, report.elapsed, failed, errors, report.retries))
  print("  (paced by qps = 20, DingTalk's standard per-app limit for this API)")

  -- 3. A second recall of the same keys: the server says they are gone.
  local again = assert(client:recall(sent[2].cid, sent[2].keys))
  for k, reason in pairs(again.failed) do print(("recalling %s again: %s"):format(k, reason)) end
  client:close()
  assert(recalled == total, "not every key was recalled")
end)
stop()
if not ok_run then
  io.stderr:write("demo failed: ", tostring(err), "\n")
  os.exit(1)
end
print("demo: ok")
