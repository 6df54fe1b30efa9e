--- The libcurl transport for plain Lua and the CLI: one multi handle,
-- connections reused, transfers driven by curl_multi_poll.  The engine
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

--- Starts a built request; tag comes back with its completion.
function M:start(built, tag)
  return self.multi:add(built, tag)
end

--- Waits up to `wait` seconds for completions; returns an array of
-- {tag, status, headers, body} or {tag, error}.
function M:poll(wait)
  local done = self.multi:perform(wait)
  return done
end

function M:in_flight()
  return self.multi:in_flight()
end

function M:close()
  self.multi:close()
end

return M
