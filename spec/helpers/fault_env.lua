-- spec/helpers/fault_env.lua: environments for spec/faults_spec.lua that the
-- simulator cannot make: a private mount namespace (a tmpfs that fills up or
-- turns read-only, a resolver that fails at once), and a Redis that dies and
-- comes back.  Plain Lua 5.1-5.4 and LuaJIT, io/os only.
--
--   local env = require "spec.helpers.fault_env"
--   if env.can_unshare() then
--     local result = env.in_namespace("disk_full", { sim_url, token, robot, keys_file }, { tmpfs = "1m" })
--   end
--   env.redis_kill(r); env.redis_restart(r)   -- r from spec.helpers.redis
--
-- Why namespaces: the tests run as root, and root writes through chmod 0500
-- and 0400, so permissions cannot make a ledger unwritable.  A tmpfs mounted
-- in a namespace of its own (`unshare -m`) can be filled or remounted
-- read-only, and it vanishes with the child process: nothing is left on the
-- host even when a test dies.
local M = {}

local shell = require "spec.helpers.shell"
local sh_quote, sh, trim = shell.quote, shell.sh, shell.trim
M.sh_quote = sh_quote

M.sh = sh


local function decode(s)
  local ok, cjson = pcall(require, "cjson.safe")
  if ok and type(cjson) == "table" then return cjson.decode(s) end
  return require("spec.helpers.sim").json.decode(s)
end

local unshare_ok
--- Can we make a private mount namespace and mount a tmpfs in it?
function M.can_unshare()
  if unshare_ok == nil then
    local _, rc = sh("command -v unshare >/dev/null && d=$(mktemp -d) && " ..
      "unshare -m sh -c \"mount -t tmpfs -o size=64k tmpfs $d && touch $d/x\"; r=$?; rmdir \"$d\" 2>/dev/null; exit $r")
    unshare_ok = rc == 0
  end
  return unshare_ok
end

local function lua_cmd()
  return os.getenv("DINGTALK_RECALL_TEST_LUA") or "lua"
end

--- Runs spec/helpers/fault_child.lua SCENARIO in a private mount namespace.
-- args: the rest of its command line after DIR.  opts.tmpfs: a size ("1m")
-- for a tmpfs on DIR; opts.resolv: the text of a resolv.conf to bind-mount.
-- Returns the decoded RESULT table, and the whole output.
function M.in_namespace(scenario, args, opts)
  opts = opts or {}
  local dir = trim(sh("mktemp -d ${TMPDIR:-/tmp}/dtr-faults-ns.XXXXXX"))
  local setup = {}
  if opts.tmpfs then
    setup[#setup + 1] = "mount -t tmpfs -o size=" .. opts.tmpfs .. ",mode=0700 tmpfs " .. sh_quote(dir)
  end
  if opts.resolv then
    local f = assert(io.open(dir .. ".resolv", "w"))
    f:write(opts.resolv)
    f:close()
    setup[#setup + 1] = "mount --bind " .. sh_quote(dir .. ".resolv") .. " /etc/resolv.conf"
  end
  local q = {}
  for i, a in ipairs(args or {}) do q[i] = sh_quote(a) end
  setup[#setup + 1] = "exec " .. lua_cmd() .. " spec/helpers/fault_child.lua " .. sh_quote(scenario) .. " " ..
    sh_quote(dir) .. " " .. table.concat(q, " ")
  local out, rc = sh("unshare -m sh -c " .. sh_quote(table.concat(setup, " && ")))
  sh("rm -rf " .. sh_quote(dir) .. " " .. sh_quote(dir .. ".resolv"))
  local line = out:match("RESULT ([^\n]*)")
  local res = line and decode(line)
  if type(res) ~= "table" then
    error("fault child " .. scenario .. " gave no result (rc " .. rc .. "):\n" .. out, 2)
  end
  return res, out
end

---------------------------------------------------------------------------
-- Redis that dies and comes back (a server from spec.helpers.redis)
---------------------------------------------------------------------------
--- Kills the server at once (SIGKILL: no goodbye to its clients) and
-- waits until it is gone (spec.helpers.redis's kill); true when it no longer
-- answers PING.
function M.redis_kill(r)
  r:kill()
  local _, rc = r:cli("PING")
  return rc ~= 0
end

--- Starts the server again on the same port and directory (it loads the
-- dump.rdb a SAVE left there; spec.helpers.redis's restart).  Returns true
-- once it answers PING.
function M.redis_restart(r)
  return (pcall(r.restart, r))
end

--- A fresh client of the simulator s for a fault row (and so fresh
-- connections: libcurl replays a request on a reused connection that
-- closed before answering, which would hide a reset from the engine):
-- concurrency 4, no QPS limit, max_retries 2, short backoffs; `extra`
-- overrides (app_key drops the static token).
function M.client(s, extra)
  local cfg = { robot_code = s.robot, endpoint = s.url, access_token = s.token, concurrency = 4, qps = 0,
    max_retries = 2, backoff_base = 0.01, backoff_max = 0.05 }
  for k, v in pairs(extra or {}) do cfg[k] = v end
  if cfg.app_key then cfg.access_token = nil end
  return assert(require("dingtalk.recall").client(cfg))
end

return M
