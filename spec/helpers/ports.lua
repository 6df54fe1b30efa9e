-- spec/helpers/ports.lua: loopback ports for the servers the specs start
-- (simulator, nginx, redis), safe when several suites run side by side
-- (`make test` runs five runtimes at once, other checkouts may run theirs).
--
--   local ports = require "spec.helpers.ports"
--   local port = ports.claim()      -- a port no other claimer holds
--   ...                             -- start the server; on "address in use"
--   ports.release(port)             -- (someone outside the scheme) claim again
--
-- Two rules make it collision-safe:
-- 1. ports come from 20000-32767, below Linux's ephemeral range
--    (/proc/sys/net/ipv4/ip_local_port_range, 32768-60999 by default), so
--    no outgoing connection of any process ever holds one;
-- 2. a claim is a directory made atomically (mkdir) under
--    $TMPDIR/dingtalk-recall-ports/, owned by the claiming Lua process: no
--    two claimers get the same port while the owner lives; the claim of a
--    process that is gone is taken over.
-- Servers started by another program can still hold a port: callers retry
-- with a new claim on "address in use".  Plain Lua 5.1-5.4 / LuaJIT, io/os;
-- with LuaFileSystem (busted's own dependency) most claims need no shell.
local M = {}

local shell = require "spec.helpers.shell"
local sh, quote = shell.sh, shell.quote

M.LOW, M.HIGH = 20000, 32767
M.DIR = (os.getenv("TMPDIR") or "/tmp") .. "/dingtalk-recall-ports"

local lfs_ok, lfs = pcall(require, "lfs")
if not lfs_ok then lfs = nil end

-- Whether process pid is alive; nil when this cannot be told without a shell.
local function alive(pid)
  if not pid:match("^%d+$") then return false end
  local self = io.open("/proc/self/stat", "rb")
  if not self then return nil end
  self:close()
  local f = io.open("/proc/" .. pid .. "/stat", "rb")
  return f ~= nil and (f:close() or true)
end

-- One try at port in Lua alone (LuaFileSystem's mkdir is atomic too):
-- true (ours), false (held), or nil when a shell must decide.
local function try_lua(port, owner)
  local d = M.DIR .. "/" .. port
  if lfs.mkdir(d) then
    shell.write_file(d .. "/owner", owner .. "\n")
    return true
  end
  local o = shell.trim(shell.read_file(d .. "/owner"))
  if o == "" then return false end -- being claimed right now
  local a = alive(o)
  if a == nil then return nil end
  if a then return false end
  return nil -- a dead owner's claim: the shell takes it over (rm -rf + mkdir)
end

local made_dir
--- claim() -> port: a port that no other claimer on this machine holds.
function M.claim()
  local owner = shell.own_pid()
  if lfs and not made_dir then
    made_dir = lfs.attributes(M.DIR, "mode") == "directory"
  end
  for _ = 1, 200 do
    local port = shell.rand_int(M.LOW, M.HIGH)
    local got = nil
    if lfs and made_dir then got = try_lua(port, owner) end
    if got then return port end
    if got == nil then
      local d = quote(M.DIR .. "/" .. port)
      local script = "mkdir -p " .. quote(M.DIR) .. " 2>/dev/null; chmod 1777 " .. quote(M.DIR) .. " 2>/dev/null; " ..
        "if mkdir " .. d .. " 2>/dev/null; then echo " .. owner .. " >" .. d .. "/owner; exit 0; fi; " ..
        "o=$(cat " .. d .. "/owner 2>/dev/null); " ..
        "if [ -n \"$o\" ] && ! kill -0 \"$o\" 2>/dev/null; then " ..
        "rm -rf " .. d .. " && mkdir " .. d .. " 2>/dev/null && echo " .. owner .. " >" .. d .. "/owner && exit 0; " ..
        "fi; " ..
        "exit 1"
      local _, rc = sh(script)
      made_dir = lfs ~= nil
      if rc == 0 then return port end
    end
  end
  error("no free test port in " .. M.LOW .. "-" .. M.HIGH .. " (see " .. M.DIR .. ")", 2)
end

--- release(port): gives the claim back (idempotent).
function M.release(port)
  if not port then return end
  local d = M.DIR .. "/" .. tostring(port)
  if lfs then
    os.remove(d .. "/owner")
    if lfs.rmdir(d) or not lfs.attributes(d) then return end
  end
  sh("rm -rf " .. quote(d))
end

--- in_use(port) -> bool: something listens on 127.0.0.1:port.
function M.in_use(port)
  local _, rc = sh("bash -c " .. quote("(exec 3<>/dev/tcp/127.0.0.1/" .. port .. ") 2>/dev/null"))
  return rc == 0
end

return M
