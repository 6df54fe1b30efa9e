--- The libcurl transport for plain Lua and the CLI: one multi handle,
-- connections reused, transfers driven by libcurl's socket and timer
-- callbacks (curl_multi_socket_action, poll()).  The engine
-- asks it for three things: now(), start(built, tag) and poll(wait).
local curl = require "dingtalk.recall.curl"

local M = {}
M.__index = M

function M.new(opts)
  opts = opts or {}
  return setmetatable({
    multi = curl.multi { max_connections = opts.max_connections },
    name = "curl",
  }, M)
end

M.now = curl.now

--- Starts a built request and sends it now (the server counts a request
-- against the QPS budget when it arrives, and the engine may ask its
-- limiter, a Redis round trip, before it polls); tag comes back with its
-- completion from poll().
function M:start(built, tag)
  return self.multi:start(built, tag) -- what finishes stays queued for poll()
end

--- Waits up to `wait` seconds for completions; returns an array of
-- {tag, status, headers, body} or {tag, error}.
function M:poll(wait)
  return (self.multi:perform(wait))
end

function M:in_flight()
  return self.multi:in_flight()
end

function M:close()
  self.multi:close()
end

return M
