#!/usr/bin/env lua
--- A recall on a luv (libuv) event loop, next to other work that keeps
-- running: here a 50 ms heartbeat timer.
--
--   DINGTALK_ACCESS_TOKEN=... DINGTALK_ROBOT_CODE=ding... \
--     lua examples/luv_loop.lua <openConversationId> <processQueryKey>...
--
-- Also read: DINGTALK_APP_KEY + DINGTALK_APP_SECRET (instead of a token),
-- DINGTALK_ENDPOINT, DINGTALK_CA_FILE.  Needs lua-luv (`require "luv"`)
-- and the core on package.cpath (e.g. LUA_CPATH='build/5.4/?.so;;').
--
-- How it works: the client's transport is dingtalk.recall.transport.async,
-- whose poll() yields instead of blocking when called inside an async
-- task.  async.run_uv runs the recall as such a task and resumes it when
-- one of curl's sockets is ready (uv poll handles) or curl's timer is due
-- (a uv timer).  Any other loop can do the same with the step API:
--
--   local task = async.start(function() return client:recall(cid, keys) end)
--   -- on each wake-up: local done, report, err = task:step()
--   -- until done, wait on task:fds() ({fd, read, write}) and task:timeout()
local uv = require "luv"
local recall = require "dingtalk.recall"
local async = require "dingtalk.recall.async"

local function env(name)
  local v = os.getenv(name)
  if v == "" then return nil end
  return v
end

local cid = arg[1]
local keys = {}
for i = 2, #arg do keys[#keys + 1] = arg[i] end
if not cid or #keys == 0 then
  io.stderr:write("usage: lua examples/luv_loop.lua <openConversationId> <processQueryKey>...\n")
  os.exit(2)
end

local token = env("DINGTALK_ACCESS_TOKEN")
local client, err = recall.client {
  robot_code = env("DINGTALK_ROBOT_CODE"),
  endpoint = env("DINGTALK_ENDPOINT"),
  ca_file = env("DINGTALK_CA_FILE"),
  access_token = token,
  app_key = not token and env("DINGTALK_APP_KEY") or nil,
  app_secret = not token and env("DINGTALK_APP_SECRET") or nil,
  transport = require("dingtalk.recall.transport.async").new(),
}
if not client then
  io.stderr:write("luv_loop: ", tostring(err), "\n")
  os.exit(2)
end

-- Other work on the same loop: it keeps its pace during the recall.
local ticks = 0
local heartbeat = uv.new_timer()
heartbeat:start(50, 50, function() ticks = ticks + 1 end)

local started = uv.hrtime()
local exit_code = 1
async.run_uv(uv, function()
  return client:recall(cid, keys, {
    on_progress = function(done, total) io.write(("progress %d/%d\n"):format(done, total)) end,
  })
end, function(report, rerr)
  heartbeat:stop()
  heartbeat:close()
  local seconds = (uv.hrtime() - started) / 1e9
  if not report then
    io.stderr:write("luv_loop: ", tostring(rerr), "\n")
    exit_code = 2
    return
  end
  for _, k in ipairs(report.recalled) do io.write("recalled ", k, "\n") end
  for k, reason in pairs(report.failed) do io.write("failed ", k, " ", tostring(reason), "\n") end
  for k, e in pairs(report.errors) do io.write("error ", k, " ", tostring(e), "\n") end
  io.write(("heartbeat: %d ticks of 50 ms during the %.2f s recall\n"):format(ticks, seconds))
  exit_code = report.ok and 0 or 1
end)

uv.run()
client:close()
os.exit(exit_code)
