--- A libcurl multi transport that never blocks inside a task of
-- dingtalk.recall.async: when nothing has finished, poll() yields to the
-- host event loop, which resumes the task once a socket of the multi is
-- ready or a timer runs out (see async.lua).  Called outside such a task
-- it behaves like the plain curl transport (blocks in poll()).
--
--   local async = require "dingtalk.recall.async"
--   local client = assert(recall.client { ..., transport = require("dingtalk.recall.transport.async").new() })
--   async.run_uv(uv, function() return client:recall(cid, keys) end, function(report, err) ... end)
local async = require "dingtalk.recall.async"
local curl = require "dingtalk.recall.transport.curl"

-- The curl transport's new, now, start, in_flight and close; only poll
-- differs, plus what a host loop needs to wait on (fds, timeout).
local M = setmetatable({}, { __index = curl })
M.__index = M

--- new([{max_connections = n}]) -> transport
function M.new(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("transport options must be a table", 2) end
  local t = setmetatable(curl.new(opts), M)
  t.name = "async"
  return t
end

--- Completions so far, without blocking the host: drives the transfers
-- once and, when none finished, hands control to the host loop for up
-- to `wait` seconds (less when a socket becomes ready first).
function M:poll(wait)
  local done = self.multi:perform(0)
  if #done > 0 then return done end
  if async.in_task() then
    async.wait(self, wait)
    return (self.multi:perform(0))
  end
  return (self.multi:perform(wait))
end

--- The sockets to watch: array of {fd =, read =, write =}.
function M:fds()
  return self.multi:fds()
end

--- Seconds until curl wants to be driven again (its own timers), or nil.
function M:timeout()
  return self.multi:timeout()
end

return M
