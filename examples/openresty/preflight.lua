-- examples/openresty/preflight.lua: checks made once, in nginx's master at
-- start (init_by_lua), that would otherwise only show as every callback
-- answering {"error":"the bot is not configured"} and a line in error.log.
--
-- Started as root, nginx runs its workers as `nobody` unless nginx.conf names
-- a `user`; `nobody` cannot create or lock the ledger's journal in the
-- prefix.  nginx then refuses to start, with the cause on stderr.
local M = {}

local function conf_names_user(path)
  local f = io.open(path, "rb")
  if not f then return false end
  local text = f:read("*a")
  f:close()
  for line in text:gmatch("[^\n]+") do
    if line:match("^%s*user%s+[^;%s]+") then return true end
  end
  return false
end

local function is_root()
  local p = io.popen("id -u 2>/dev/null")
  if not p then return false end
  local uid = p:read("*l")
  p:close()
  return uid == "0"
end

function M.check()
  local ledger = os.getenv("DINGTALK_RECALL_LEDGER")
  if ledger and ledger:match("^rediss?://") then return end -- no file to lock
  local prefix = ngx.config.prefix()
  if is_root() and not conf_names_user(prefix .. "nginx.conf") then
    error("\nexamples/openresty: nginx was started as root, so its workers would run as `nobody`, who cannot " ..
      "open the ledger's lock file (" .. (ledger or (prefix .. "ledger")) .. "): every callback would answer " ..
      "\"the bot is not configured\".\nStart nginx as your own user, or add `user <name>;` (a user that owns " ..
      "the ledger's folder) at the top of nginx.conf.", 0)
  end
end

return M
