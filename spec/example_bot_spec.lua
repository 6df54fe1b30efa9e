-- examples/bot.lua as a user runs it, against the simulator: callbacks
-- posted by examples/post-callback.lua are verified, the rules run, the bot
-- replies and recalls; bad signatures, stale timestamps and replays get
-- 401; messages sent with a ttl are swept.
local sim = require "spec.helpers.sim"

local s
setup(function() s = sim.start {} end)
teardown(function() if s then s:stop() end end)

describe("examples/bot.lua against the simulator", function()
  local LUA = os.getenv("DINGTALK_RECALL_TEST_LUA") or "lua"
  local q = sim.sh_quote
  local dir
  local bots = {}

  local function trim(x) return (x:gsub("^%s+", ""):gsub("%s+$", "")) end

  setup(function()
    dir = trim(sim.sh("mktemp -d ${TMPDIR:-/tmp}/dtr-bot-spec.XXXXXX"))
  end)
  teardown(function()
    for _, b in ipairs(bots) do
      os.execute("kill " .. b.pid .. " 2>/dev/null")
      b.pipe:close()
    end
    if dir and dir:match("dtr%-bot%-spec") then sim.sh("rm -rf " .. q(dir)) end
  end)

  -- Starts the bot as a child; returns {pid, port, pipe, ledger, log}.
  local function start_bot(name, env)
    local vars = {
      DINGTALK_ENDPOINT = s.url, DINGTALK_APP_KEY = s.app_key, DINGTALK_APP_SECRET = s.app_secret,
      DINGTALK_ROBOT_CODE = s.robot, DINGTALK_RECALL_LEDGER = dir .. "/" .. name .. ".ledger",
      XDG_CONFIG_HOME = dir .. "/xdg", BOT_ADMINS = "staff1,staff9",
    }
    for k, v in pairs(env or {}) do vars[k] = v end
    local parts = { "env -u DINGTALK_ACCESS_TOKEN -u DINGTALK_CA_FILE -u DINGTALK_RECALL_CONFIG" }
    for k, v in pairs(vars) do parts[#parts + 1] = k .. "=" .. q(v) end
    local log = dir .. "/" .. name .. ".log"
    -- popen's shell prints its pid, then becomes the bot
    local cmd = "echo $$; exec " .. table.concat(parts, " ") .. " " .. LUA .. " examples/bot.lua --port 0 2>" ..
      q(log)
    local pipe = assert(io.popen(cmd, "r"))
    local pid = assert(pipe:read("*l"))
    local line = pipe:read("*l") or ""
    local b = { pid = pid, pipe = pipe, ledger = vars.DINGTALK_RECALL_LEDGER, log = log }
    bots[#bots + 1] = b
    b.port = assert(line:match("^bot listening on http://127%.0%.0%.1:(%d+)/$"),
      "the bot did not start: " .. line .. "\n" .. (sim.sh("cat " .. q(log))))
    b.url = "http://127.0.0.1:" .. b.port .. "/"
    return b
  end

  -- examples/post-callback.lua -> exit code, output
  local function post(b, text, extra)
    local out, rc = sim.sh(LUA .. " examples/post-callback.lua --url " .. q(b.url) .. " --secret " ..
      q(s.app_secret) .. " --conversation cidBotSpec " .. (extra or "") .. " " .. q(text))
    return rc, trim(out)
  end

  local function entries(b)
    local l = assert(require("dingtalk.recall.ledger").open(b.ledger))
    local list = assert(l:list { conversation = "cidBotSpec" })
    l:close()
    return list
  end

  it("verifies callbacks, runs the rules, replies, and recalls", function()
    local b = start_bot("main")
    for _, t in ipairs { "/say one", "/say two", "/say three" } do
      local rc, out = post(b, t, "--staff staff1")
      assert.are.equal(0, rc, out)
    end
    local list = entries(b)
    assert.are.equal(3, #list)
    for _, e in ipairs(list) do assert.are.equal("sent", s:key(e.key).state) end

    -- someone else: refused, nothing recalled
    local rc, out = post(b, "/recall last 2", "--staff mallory")
    assert.are.equal(0, rc)
    assert.matches("not allowed", out)
    for _, e in ipairs(list) do assert.are.equal("sent", s:key(e.key).state) end

    rc, out = post(b, "/recall last 2", "--staff staff1")
    assert.are.equal(0, rc)
    assert.are.equal("Recalled 2 messages.", out)
    assert.are.equal("recalled", s:key(list[1].key).state) -- newest first
    assert.are.equal("recalled", s:key(list[2].key).state)
    assert.are.equal("sent", s:key(list[3].key).state)

    -- a group admin may, and /recall all asks first
    rc, out = post(b, "/recall all", "--staff boss --admin")
    assert.are.equal(0, rc)
    local code = out:match("/recall all confirm (%w+)")
    assert.is_string(code, out)
    assert.are.equal("sent", s:key(list[3].key).state)
    rc, out = post(b, "/recall all confirm " .. code, "--staff boss --admin")
    assert.are.equal(0, rc)
    assert.are.equal("Recalled 1 message.", out)
    assert.are.equal("recalled", s:key(list[3].key).state)

    -- the audit log has the story
    local log = sim.sh("cat " .. q(b.log))
    assert.matches('"event":"refused"', log, 1, true)
    assert.matches('"event":"recalled"', log, 1, true)
    assert.is_nil(log:find(s.app_secret, 1, true))
  end)

  it("refuses bad signatures, stale timestamps and replays with 401", function()
    local b = start_bot("strict")
    local rc, out = post(b, "/say hi", "--staff staff1 --timestamp 1700000000000")
    assert.are.equal(1, rc)
    assert.matches("HTTP 401", out)
    assert.matches("callback.expired", out)
    local body = '{"msgtype":"text","text":{"content":"/say replayed"},"conversationId":"cidBotSpec",' ..
      '"conversationType":"2","senderStaffId":"staff1","isAdmin":false,"robotCode":"' .. s.robot .. '"}'
    local h = require("dingtalk.recall.callback").headers(s.app_secret)
    local function curl(ts, sign)
      return trim((sim.sh("curl -s -o /dev/null -w '%{http_code}' -H " .. q("timestamp: " .. ts) .. " -H " ..
        q("sign: " .. sign) .. " -H 'content-type: application/json' --data-binary " .. q(body) .. " " ..
        q(b.url))))
    end
    assert.are.equal("401", curl(h.timestamp, "AAAA" .. h.sign:sub(5)))
    assert.are.equal(0, #entries(b))
    assert.are.equal("200", curl(h.timestamp, h.sign))
    assert.are.equal(1, #entries(b))
    assert.are.equal("401", curl(h.timestamp, h.sign)) -- the same request again
    assert.are.equal(1, #entries(b))
    -- too large: refused before it is read
    local big = string.rep("x", 70000)
    local code = trim((sim.sh("curl -s -o /dev/null -w '%{http_code}' -H " .. q("timestamp: " .. h.timestamp) ..
      " -H " .. q("sign: " .. h.sign) .. " --data-binary " .. q(big) .. " " .. q(b.url))))
    assert.are.equal("413", code)
  end)

  it("sweeps messages sent with a ttl", function()
    local b = start_bot("ttl", { BOT_TTL = "1s", BOT_SWEEP_EVERY = "1" })
    local rc = post(b, "/say short-lived", "--staff staff1")
    assert.are.equal(0, rc)
    local key = entries(b)[1].key
    local state
    for _ = 1, 40 do
      sim.sh("sleep 0.25")
      state = s:key(key).state
      if state == "recalled" then break end
    end
    assert.are.equal("recalled", state)
  end)
end)
