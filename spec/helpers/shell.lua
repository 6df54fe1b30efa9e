-- spec/helpers/shell.lua: the shell plumbing every test helper shares
-- (simulator, nginx, redis, the faulty server, fault environments).
-- Plain Lua 5.1-5.4 and LuaJIT; io/os only; loads nothing of the library.
local M = {}

-- Quoting, trimming and whole-file reads are the simulator launcher's own
-- (dingtalk_sim.proc, plain Lua as well): one copy for the launcher and
-- the test helpers.
local proc = require "dingtalk_sim.proc"
--- Quotes s for sh.
M.quote = proc.quote
--- s without leading and trailing white space.
M.trim = proc.trim
--- Whether the file exists and can be opened for reading.
M.exists = proc.exists
--- The whole file, or nil when it cannot be read.
M.read = proc.read_file

-- The lines a shell prints when a child it waits for dies of a signal
-- (dash and bash: the signal's description alone on a line, maybe with
-- "(core dumped)"), and the sanitizers' reports.
local CRASH_LINES = { "Segmentation fault", "Aborted", "Bus error", "Illegal instruction",
  "Floating point exception", "Killed", "Trace/breakpoint trap" }

--- Why `out`/`rc` (a child's output and exit status) show a crash, or nil.
-- An exit status over 128 is a signal (128 + its number); so is a shell's
-- "Segmentation fault" line, which is printed even when a later command of
-- the same shell succeeds.
function M.crashed(out, rc)
  if rc and rc > 128 and rc < 256 then return "killed by signal " .. (rc - 128) end
  for line in (out or ""):gmatch("[^\n]+") do
    local l = line:gsub("%s*%(core dumped%)%s*$", ""):gsub("%s+$", "")
    for _, c in ipairs(CRASH_LINES) do
      -- "Segmentation fault", or a shell's "sh: 1: cmd: Segmentation fault"
      if l == c or l:sub(-(#c + 2)) == ": " .. c then return "\"" .. line .. "\"" end
    end
    if line:find("ERROR: AddressSanitizer", 1, true) or line:find("runtime error:", 1, true)
      or line:find("ERROR: LeakSanitizer", 1, true) then
      return "\"" .. line .. "\""
    end
  end
  return nil
end

--- Runs a shell command; returns its stdout+stderr and its exit code.
-- The whole shell's stderr is captured, so its own message about a child
-- that died of a signal is too.  Raises when the command crashed (see
-- M.crashed) unless opts.signal_ok (a test that kills on purpose).
-- Lua 5.1's io.popen():close() gives no status: the shell echoes it.
function M.sh(cmd, opts)
  local p = assert(io.popen("{ (" .. cmd .. "); echo \"__rc=$?\"; } 2>&1", "r"))
  local out = p:read("*a")
  p:close()
  local body, rc = out:match("^(.*)__rc=(%d+)%s*$")
  body, rc = body or out, tonumber(rc) or -1
  if rc == -1 and not (opts and opts.signal_ok) then
    error("the shell running a child gave no exit status (killed?): " .. cmd .. "\n" .. out, 2)
  end
  local why = not (opts and opts.signal_ok) and M.crashed(body, rc)
  if why then error("a child crashed (" .. why .. "): " .. cmd .. "\n" .. body, 2) end
  return body, rc
end

--- The whole file, or "" when it cannot be read.
function M.read_file(path) return M.read(path) or "" end

local root_dir
--- The checkout's root, absolute, with a trailing slash (found from this
-- file's own path, whatever the current directory).
function M.repo_root()
  if root_dir then return root_dir end
  local src = debug.getinfo(1, "S").source
  local root = "./"
  if src:sub(1, 1) == "@" then
    root = src:sub(2):match("^(.*)spec/helpers/shell%.lua$") or "./"
    if root == "" then root = "./" end
  end
  if root:sub(1, 1) ~= "/" then
    root = M.trim(M.sh("cd " .. M.quote(root) .. " && pwd")) .. "/"
  end
  root_dir = root
  return root
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

--- pin_apart(measured, master) -> the cores left to the others ("0",
-- "0-2", ...), or nil on one core: the benches' DINGTALK_BENCH_PIN=1.  The
-- process `measured` (every thread of it) goes on the last core, the
-- server whose master is `master` (it and its children) on the others, so
-- that the CPU time measured is not shared with a server's on one core.
function M.pin_apart(measured, master)
  local n = tonumber(M.trim(M.sh("nproc"))) or 1
  if n < 2 then return nil end
  local others = n == 2 and "0" or ("0-" .. (n - 2))
  M.sh("taskset -apc " .. (n - 1) .. " " .. measured .. " >/dev/null")
  M.sh("for p in " .. master .. " $(pgrep -P " .. master .. "); do taskset -pc " .. others ..
    " $p; done >/dev/null")
  return others
end

return M
