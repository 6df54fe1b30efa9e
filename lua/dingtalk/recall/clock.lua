--- The host's clock, in one place: seconds (a float) for measuring
-- intervals within one process, and a sleep.  Inside OpenResty it is
-- nginx's (ngx.now after ngx.update_time, ngx.sleep), so nginx never loads
-- libcurl; elsewhere it is the libcurl transport module's (CLOCK_MONOTONIC,
-- nanosleep).  Never compare its readings across processes or hosts (use
-- os.time or the server's clock for that).  Looked up at each call, so
-- requiring this module does nothing.
local M = {}

local function host()
  local ngx = rawget(_G, "ngx")
  if type(ngx) == "table" and type(ngx.now) == "function" and type(ngx.sleep) == "function" then
    return ngx
  end
  return nil
end

local curl -- the libcurl module, loaded at the first call outside nginx

function M.now()
  local ngx = host()
  if ngx then
    ngx.update_time()
    return ngx.now()
  end
  curl = curl or require "dingtalk.recall.curl"
  return curl.now()
end

function M.sleep(seconds)
  local ngx = host()
  if ngx then return ngx.sleep(seconds) end
  curl = curl or require "dingtalk.recall.curl"
  return curl.sleep(seconds)
end

return M
