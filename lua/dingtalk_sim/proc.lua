-- dingtalk_sim.proc: the shell, file and process plumbing of the simulator's
-- launcher (dingtalk_sim.main).  Pure Lua (io/os), 5.1-5.4 and LuaJIT.
-- Failures raise { exit = code, msg = text }, which main() turns into a
-- message on stderr and an exit status.
local M = {}

function M.die(msg, code)
  error({ exit = code or 1, msg = msg }, 0)
end

--- Leaves main() with this status (and nothing on stderr).
function M.finish(code)
  error({ exit = code or 0 }, 0)
end

function M.quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- os.execute returns differ between 5.1/LuaJIT and 5.2+
function M.run(cmd)
  local a, _, c = os.execute(cmd)
  if type(a) == "number" then
    local code = a
    if code >= 256 then code = math.floor(code / 256) end
    return a == 0, code
  end
  return a == true, c or (a and 0 or 1)
end

function M.capture(cmd)
  local p = io.popen(cmd, "r")
  if not p then return "" end
  local out = p:read("*a") or ""
  p:close()
  return out
end

function M.trim(s) return (s:gsub("^%s+", ""):gsub("%s+$", "")) end

function M.exists(path)
  local f = io.open(path, "r")
  if f then f:close() return true end
  return false
end

function M.read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

function M.write_file(path, s)
  local f, err = io.open(path, "wb")
  if not f then M.die("cannot write " .. path .. ": " .. tostring(err)) end
  f:write(s)
  f:close()
end

function M.tail(path, n)
  local s = M.read_file(path)
  if not s then return "" end
  local lines = {}
  for l in s:gmatch("[^\n]+") do lines[#lines + 1] = l end
  local out = {}
  for i = math.max(1, #lines - (n or 20) + 1), #lines do out[#out + 1] = lines[i] end
  return table.concat(out, "\n")
end

function M.dirname(p)
  local d = p:match("^(.*)/[^/]*$")
  if d == nil then return "." end
  if d == "" then return "/" end
  return d
end

function M.abspath(p)
  if p:sub(1, 1) == "/" then return p end
  return M.trim(M.capture("pwd")) .. "/" .. p
end

-- shell test: the process exists and is not a zombie waiting to be reaped
function M.alive_test(pid)
  return "{ kill -0 " .. pid .. " 2>/dev/null && ! grep -q '^[0-9]* ([^)]*) Z' /proc/" .. pid ..
    "/stat 2>/dev/null; }"
end

-- LuaSocket when the running Lua has it: probes and short waits in-process.
local function luasocket()
  local ok, socket = pcall(require, "socket")
  if ok and type(socket) == "table" and socket.connect and socket.sleep then return socket end
  return nil
end

--- Sleeps s seconds (fractions ok).
function M.sleep(s)
  local socket = luasocket()
  if socket then return socket.sleep(s) end
  M.run("sleep " .. s)
end

--- The process exists and is not a zombie: /proc/PID/stat where there is a
-- /proc (no process started), else the shell's kill -0 and grep.
function M.pid_alive(pid)
  if M.exists("/proc/self/stat") then
    local st = M.read_file("/proc/" .. pid .. "/stat")
    local state = st and st:match("^.*%) (%a)") -- after the command's name, which may hold ") "
    return state ~= nil and state ~= "Z" and state ~= "X"
  end
  return M.run(M.alive_test(pid))
end

function M.has_bash()
  return M.exists("/bin/bash") or M.exists("/usr/bin/bash")
end

--- Something answers on host:port: a connect in-process (LuaSocket), else
-- bash's /dev/tcp; nil when neither is there.
function M.listening(host, port)
  local socket = luasocket()
  if socket then
    local c = socket.connect(host, port)
    if c then c:close() end
    return c ~= nil
  end
  if not M.has_bash() then return nil end
  return M.run("bash -c " .. M.quote("(exec 3<>/dev/tcp/" .. host .. "/" .. port .. ") 2>/dev/null"))
end

--- The pid in DIR/nginx.pid when that process is alive, else nil.
function M.nginx_pid(dir)
  local pid = M.trim(M.read_file(dir .. "/nginx.pid") or "")
  if pid:match("^%d+$") and M.pid_alive(pid) then return pid end
  return nil
end

--- Whether the launcher runs as root, and the hard limit of open files:
-- from /proc/self where there is one, else id -u and ulimit -Hn.
function M.uid_and_nofile()
  local status, limits = M.read_file("/proc/self/status"), M.read_file("/proc/self/limits")
  local uid = status and status:match("\nUid:%s*(%d+)")
  local hard = limits and limits:match("\nMax open files%s+%S+%s+(%S+)")
  if not uid or not hard then
    local out = M.capture("id -u 2>/dev/null; ulimit -Hn 2>/dev/null")
    uid, hard = out:match("^%s*(%d+)%s+(%S+)")
  end
  return tonumber(uid), tonumber(hard) or (hard == "unlimited" and math.huge) or nil
end

--- A free TCP port on host, from the kernel (bind to port 0): lua-socket
-- when the running Lua has it, else perl (Debian's perl-base, always there).
function M.kernel_port(host)
  local ok, socket = pcall(require, "socket")
  if ok and type(socket) == "table" and socket.bind then
    local s = socket.bind(host, 0)
    if s then
      local _, port = s:getsockname()
      s:close()
      port = tonumber(port)
      if port and port > 0 then return port end
    end
  end
  local family = host:find(":", 1, true) and "IO::Socket::IP" or "IO::Socket::INET"
  local out = M.capture("perl -M" .. family .. " -e " .. M.quote(
    "my $s = " .. family .. "->new(Listen => 1, LocalAddr => '" .. host .. "', LocalPort => 0) or exit 1; " ..
    "print $s->sockport, qq(\\n)") .. " 2>/dev/null")
  local port = tonumber(M.trim(out))
  if port and port > 0 then return port end
  return nil
end

-- The environment nginx starts with: no Lua search paths or init code of
-- the caller's (a `luarocks path` for Lua 5.4 would make nginx's LuaJIT
-- load 5.4 modules through `;;`).
M.CLEAN_ENV = "env -u LUA_PATH -u LUA_CPATH -u LUA_INIT" ..
  " -u LUA_PATH_5_2 -u LUA_CPATH_5_2 -u LUA_INIT_5_2 -u LUA_PATH_5_3 -u LUA_CPATH_5_3 -u LUA_INIT_5_3" ..
  " -u LUA_PATH_5_4 -u LUA_CPATH_5_4 -u LUA_INIT_5_4 "

return M
