--- Which host this code runs in, so the client can pick its transport:
-- cosockets inside OpenResty (in a phase that allows them), libcurl
-- everywhere else.
--
--   require("dingtalk.recall.hosts").detect() --> "openresty" | "curl"
--
-- Outside nginx (plain Lua, LuaJIT, the CLI) there is no `ngx` and the
-- answer is "curl".  Inside nginx the answer depends on the phase: the
-- init, init_worker, set, header_filter, body_filter, log, balancer and
-- exit_worker phases cannot use cosockets, so the client falls back to
-- the (blocking) libcurl transport there; prefer to recall from a
-- content/access/rewrite handler or from a timer (ngx.timer.at/every).
-- Nothing happens at require.
local M = {}

--- Phases in which cosockets, ngx.thread and ngx.semaphore waits work
-- (lua-nginx-module's documented contexts for all three).
M.COSOCKET_PHASES = {
  rewrite = true, server_rewrite = true, access = true, content = true, timer = true,
  ssl_cert = true, ssl_session_fetch = true, ssl_client_hello = true,
}

--- The current nginx phase ("content", "timer", "init_worker", ...), or
-- nil outside OpenResty.
function M.phase()
  local ngx = _G.ngx
  if type(ngx) ~= "table" or type(ngx.get_phase) ~= "function" then return nil end
  local ok, phase = pcall(ngx.get_phase)
  if ok and type(phase) == "string" then return phase end
  return nil
end

--- Whether cosockets can be used right now.
function M.cosockets()
  local phase = M.phase()
  return phase ~= nil and M.COSOCKET_PHASES[phase] == true
end

--- The transport name for this host: "openresty" or "curl".
function M.detect()
  if M.cosockets() then return "openresty" end
  return "curl"
end

return M
