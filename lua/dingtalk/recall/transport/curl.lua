--- The libcurl transport for plain Lua and the CLI: one multi handle,
-- connections reused, transfers driven by libcurl's socket and timer
-- callbacks (curl_multi_socket_action, poll()).  The engine
-- asks it for now(), start(built, tag) and poll(wait), and for recall
-- batches start_batch(plan, keys, target, token, tag).
local curl = require "dingtalk.recall.curl"

local M = {}
M.__index = M

function M.new(opts)
  opts = opts or {}
  return setmetatable({
    multi = curl.multi { max_connections = opts.max_connections },
    name = "curl",
    -- A field, not only a method: the engine uses it when the transport
    -- itself has it, so a wrapper that proxies this one through __index
    -- (to log or count start()) still sees every request in start().
    start_batch = M.start_batch,
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

--- Starts batch `keys` (core.batch(plan, i)) of `plan` for `target` with
-- `token`: the request core.build_batch(plan, i, target, token) builds,
-- sent like start() without a built table (a handle keeps the URL and
-- headers of its last batch and writes only the body).  -> id | nil, err
-- [, true when the builder refused it: nothing was sent].
function M:start_batch(plan, keys, target, token, tag)
  return self.multi:start_batch(plan, keys, target, token, tag)
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
