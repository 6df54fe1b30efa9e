-- spec/helpers/shell.lua: the shell plumbing every test helper shares
-- (simulator, nginx, redis, the faulty server, fault environments).
-- Plain Lua 5.1-5.4 and LuaJIT; io/os only; never loads the project.
local M = {}

--- Quotes s for sh.
function M.quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

--- Runs a shell command; returns its stdout+stderr and its exit code.
function M.sh(cmd)
  local p = assert(io.popen("(" .. cmd .. ") 2>&1; echo \"__rc=$?\"", "r"))
  local out = p:read("*a")
  p:close()
  local body, rc = out:match("^(.*)__rc=(%d+)%s*$")
  return body or out, tonumber(rc) or -1
end

function M.trim(s) return (s:gsub("^%s+", ""):gsub("%s+$", "")) end

--- The whole file, or "" when it cannot be read.
function M.read_file(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("*a")
  f:close()
  return s
end

--- Writes the file, then chmods it to `mode` when given.
function M.write_file(path, s, mode)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
  if mode then M.sh("chmod " .. mode .. " " .. M.quote(path)) end
end

-- Random numbers (ports) that leave math.random's state alone.
local rng
function M.rand_int(lo, hi)
  if not rng then
    local f = io.open("/dev/urandom", "rb")
    local seed = os.time()
    if f then
      local b = f:read(4)
      f:close()
      seed = b:byte(1) * 16777216 + b:byte(2) * 65536 + b:byte(3) * 256 + b:byte(4)
    end
    rng = seed % 2147483646 + 1
  end
  rng = (rng * 48271) % 2147483647
  return lo + rng % (hi - lo + 1)
end

-- The pid of this Lua process (the parent of the shell io.popen starts),
-- for watchdogs that stop servers once the test process is gone.
local pid
function M.own_pid()
  if not pid then pid = M.trim(M.sh("echo $PPID")) end
  return pid
end

return M
