--- dingtalk.recall.config: credentials and settings for the CLI and bots,
-- from command-line flags, the environment and a config file.
--
--   local config = require "dingtalk.recall.config"
--   local cfg, err = config.load { path = "--config value or nil", flags = { endpoint = ... } }
--   local client = recall.client(config.client_options(cfg, { robot_code = ... }))
--
-- Precedence, field by field: flags, then the environment, then the file.
-- Credentials go as a unit: DINGTALK_ACCESS_TOKEN, else DINGTALK_APP_KEY +
-- DINGTALK_APP_SECRET, else the file's access_token, else its app_key +
-- app_secret.
--
-- The file ($XDG_CONFIG_HOME/dingtalk-recall/config.lua, or --config FILE)
-- is either `key = value` lines (# or -- comments; values may be quoted)
-- or a Lua file run in an empty environment that sets or returns the
-- keys.  It is refused when group or others may read or write it, since
-- it holds secrets.  No message ever quotes a value from it.
local core = require "dingtalk.recall.core"

local M = {}

-- Keys a config file may hold, and their types.
local KEYS = {
  access_token = "string", app_key = "string", app_secret = "string", robot_code = "string",
  endpoint = "string", ca_file = "string", ledger = "string", redis = "string",
  qps = "number", concurrency = "number", timeout = "number", connect_timeout = "number",
  max_retries = "number",
}
M.KEYS = KEYS

-- Environment variables, and the field each sets.
local ENV = {
  { "DINGTALK_ENDPOINT", "endpoint" },
  { "DINGTALK_CA_FILE", "ca_file" },
  { "DINGTALK_ROBOT_CODE", "robot_code" },
  { "DINGTALK_RECALL_LEDGER", "ledger" },
  { "DINGTALK_RECALL_REDIS", "redis" },  -- the QPS budget and token shared by every host (docs/scale-out.md)
}

local function cfg_error(code, msg)
  return nil, core.error(code, msg)
end

-- Whether something is at path.  Opened read-write, which never blocks on
-- a FIFO (read-only would wait for a writer); only ENOENT means absent.
local function exists_entry(path)
  local f, _, code = io.open(path, "r+b")
  if f then f:close() return true end
  return code ~= 2
end

local function sh_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

--- The XDG base directory named by the environment variable var (e.g.
-- "XDG_CONFIG_HOME"), else $HOME/fallback (e.g. ".config"); nil when neither is
-- known.  A relative value is ignored, as the XDG Base Directory rules say.
function M.xdg_dir(var, fallback, getenv)
  getenv = getenv or os.getenv
  local base = getenv(var)
  if type(base) == "string" and base:sub(1, 1) == "/" then return base end
  local home = getenv("HOME")
  if not home or home == "" then return nil end
  return home .. "/" .. fallback
end

--- The default config file path, or nil when no home is known.
function M.default_path(getenv)
  local base = M.xdg_dir("XDG_CONFIG_HOME", ".config", getenv)
  return base and base .. "/dingtalk-recall/config.lua"
end

--- The permission bits of path as {group_read, group_write, other_read,
-- other_write}, or nil, why; also nil, why for anything but a regular file
-- (a FIFO, a directory, a device, a socket).  lfs when present, else stat(1).
local function mode_of(path)
  local ok, lfs = pcall(require, "lfs")
  if ok and type(lfs) == "table" and lfs.attributes then
    local attr = lfs.attributes(path)
    if not attr then return nil, "cannot stat it" end
    if attr.mode ~= "file" then return nil, "it is not a regular file (" .. tostring(attr.mode) .. ")" end
    local p = attr.permissions
    if type(p) == "string" and #p == 9 then
      return { p:sub(4, 4) == "r", p:sub(5, 5) == "w", p:sub(7, 7) == "r", p:sub(8, 8) == "w" }
    end
  end
  -- GNU stat: "<octal mode> <type>"; BSD stat: "<octal mode> <type letter>"
  local pipe = io.popen("stat -L -c '%a %F' -- " .. sh_quote(path) .. " 2>/dev/null || stat -L -f '%Lp %HT' " ..
    sh_quote(path) .. " 2>/dev/null")
  local out = pipe and pipe:read("*a") or ""
  if pipe then pipe:close() end
  local oct, kind = out:match("^(%d%d%d%d?) ([^\n]*)")
  if not oct then return nil, "cannot read its permissions" end
  if not (kind:match("^regular") or kind:match("^Regular")) then
    return nil, "it is not a regular file (" .. kind:gsub("%c", "?") .. ")"
  end
  local g, o = tonumber(oct:sub(-2, -2)), tonumber(oct:sub(-1))
  return { g >= 4, g % 4 >= 2, o >= 4, o % 4 >= 2 }
end

--- Opens a config file that mode_of said is regular, without ever blocking:
-- read-write first (Linux never blocks opening a FIFO read-write, should the
-- file have been replaced by one since), read-only when that is refused (a
-- 0400 file).  A file that cannot seek (a FIFO, a socket) or holds more than
-- MAX_CONFIG_BYTES is refused.  Returns the file | nil, why.
local MAX_CONFIG_BYTES = 65536
M.MAX_CONFIG_BYTES = MAX_CONFIG_BYTES
local function open_config(path)
  local f = io.open(path, "r+b") or io.open(path, "rb")
  if not f then return nil, "cannot open it" end
  local size = f:seek("end")
  if not size then
    f:close()
    return nil, "it is not a regular file"
  end
  if size > MAX_CONFIG_BYTES then
    f:close()
    return nil, "it holds " .. size .. " bytes (at most " .. MAX_CONFIG_BYTES .. ")"
  end
  f:seek("set")
  return f
end

local function unquote(v)
  local q = v:sub(1, 1)
  if (q == '"' or q == "'") and #v >= 2 and v:sub(-1) == q then return v:sub(2, -2), true end
  return v, false
end

-- `key = value` lines; nil when some line is not of that form.
local function parse_lines(text)
  local t = {}
  local n = 0
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    line = line:gsub("\r$", "")
    local stripped = line:match("^%s*(.-)%s*$")
    if stripped ~= "" and not stripped:match("^#") and not stripped:match("^%-%-") then
      local k, v = stripped:match("^([%a_][%w_]*)%s*=%s*(.-)%s*,?$")
      if not k then return nil end
      local quoted
      v, quoted = unquote(v)
      if not quoted then
        v = v:gsub("%s+%-%-.*$", "")
        -- a table, a call, words: not a plain value; let Lua judge it
        if v:match("[%s{}%[%]()]") or v:match("^function") then return nil end
      end
      t[k] = { value = v, quoted = quoted, line = n }
    end
  end
  return t
end

-- A Lua file in an empty environment; the keys it sets or returns.
local function run_lua(text, name)
  if text:sub(1, 1) == "\27" then return nil, "it is precompiled Lua; only source is accepted" end
  local env = {}
  local chunk, err
  if setfenv and loadstring then -- luacheck: ignore
    chunk, err = loadstring(text, "=" .. name) -- luacheck: ignore
    if chunk then setfenv(chunk, env) end -- luacheck: ignore
  else
    chunk, err = load(text, "=" .. name, "t", env)
  end
  if not chunk then
    -- The message may quote the text (a secret): keep the line number only.
    local line = tostring(err):match(":(%d+):")
    return nil, "it is neither key = value lines nor valid Lua (syntax error" ..
      (line and (" on line " .. line) or "") .. ")"
  end
  local ok, ret = pcall(chunk)
  if not ok then
    local line = tostring(ret):match(":(%d+):")
    return nil, "running it failed" .. (line and (" on line " .. line) or "")
  end
  if type(ret) == "table" then return ret end
  if ret ~= nil then return nil, "it returned a " .. type(ret) .. ", not a table" end
  return env
end

--- Reads and checks a config file: a table of settings, or nil, err
-- (codes config.insecure, config.unreadable, config.invalid).
function M.read_file(path)
  if type(path) ~= "string" then error("config.read_file expects a path", 2) end
  if not exists_entry(path) then return cfg_error("config.unreadable", "cannot open the config file " .. path) end
  -- Its type and mode first: opening a FIFO for reading would block.
  local bits, why = mode_of(path)
  if not bits then
    return cfg_error("config.unreadable", "the config file " .. path .. ": " .. why)
  end
  if bits[1] or bits[2] or bits[3] or bits[4] then
    return cfg_error("config.insecure", "the config file " .. path ..
      " holds secrets but group or others may read or write it; run: chmod 600 " .. path)
  end
  local f, ferr = open_config(path)
  if not f then return cfg_error("config.unreadable", "the config file " .. path .. ": " .. ferr) end
  local text = f:read(MAX_CONFIG_BYTES + 1) or ""
  f:close()
  if #text > MAX_CONFIG_BYTES then
    return cfg_error("config.unreadable", "the config file " .. path .. " holds more than " ..
      MAX_CONFIG_BYTES .. " bytes")
  end
  local out = {}
  local lines = parse_lines(text)
  if lines then
    for k, item in pairs(lines) do
      local want = KEYS[k]
      if not want then
        return cfg_error("config.invalid", "the config file " .. path .. ": unknown key '" .. k ..
          "' on line " .. item.line)
      end
      if want == "number" then
        local num = tonumber(item.value)
        if not num then
          return cfg_error("config.invalid", "the config file " .. path .. ": '" .. k ..
            "' on line " .. item.line .. " must be a number")
        end
        out[k] = num
      else
        out[k] = item.value
      end
    end
    return out
  end
  local t, err = run_lua(text, path)
  if not t then return cfg_error("config.invalid", "the config file " .. path .. ": " .. err) end
  for k, v in pairs(t) do
    local want = KEYS[k]
    if type(k) ~= "string" or not want then
      return cfg_error("config.invalid", "the config file " .. path .. ": unknown key '" .. tostring(k) .. "'")
    end
    if want == "number" and type(v) == "string" and tonumber(v) then v = tonumber(v) end
    if type(v) ~= want then
      return cfg_error("config.invalid", "the config file " .. path .. ": '" .. k .. "' must be a " .. want)
    end
    out[k] = v
  end
  return out
end

local function nonempty(v)
  if v == nil or v == "" then return nil end
  return v
end

--- Settings from flags, the environment and the config file.
-- opts.path: an explicit file (must exist); opts.getenv (default
-- os.getenv); opts.flags: {endpoint, ca_file, ledger, robot_code, ...};
-- opts.no_file: skip the default file.
-- -> cfg | nil, err.  cfg.credentials names where the credentials came
-- from (never their values); cfg.file is the file read, if any.
function M.load(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("config.load expects a table", 2) end
  local getenv = opts.getenv or os.getenv
  local file_cfg = {}
  local path = opts.path
  if path == nil then path = nonempty(getenv("DINGTALK_RECALL_CONFIG")) end
  local file
  if path then
    local t, err = M.read_file(path)
    if not t then return nil, err end
    file_cfg, file = t, path
  elseif not opts.no_file then
    local p = M.default_path(getenv)
    if p and exists_entry(p) then
      local t, err = M.read_file(p)
      if not t then return nil, err end
      file_cfg, file = t, p
    end
  end

  local cfg = { file = file }
  -- plain settings: file < env < flags
  for k in pairs(KEYS) do
    if k ~= "access_token" and k ~= "app_key" and k ~= "app_secret" then cfg[k] = file_cfg[k] end
  end
  for _, e in ipairs(ENV) do
    local v = nonempty(getenv(e[1]))
    if v then cfg[e[2]] = v end
  end
  for k, v in pairs(opts.flags or {}) do
    if v ~= nil then cfg[k] = v end
  end

  -- credentials, as a unit
  local tok = nonempty(getenv("DINGTALK_ACCESS_TOKEN"))
  local ak, as = nonempty(getenv("DINGTALK_APP_KEY")), nonempty(getenv("DINGTALK_APP_SECRET"))
  if tok then
    cfg.access_token, cfg.credentials = tok, "DINGTALK_ACCESS_TOKEN"
  elseif ak or as then
    if not (ak and as) then
      return cfg_error("config.credentials", (ak and "DINGTALK_APP_KEY is set but DINGTALK_APP_SECRET is not"
        or "DINGTALK_APP_SECRET is set but DINGTALK_APP_KEY is not"))
    end
    cfg.app_key, cfg.app_secret, cfg.credentials = ak, as, "DINGTALK_APP_KEY + DINGTALK_APP_SECRET"
  elseif nonempty(file_cfg.access_token) then
    cfg.access_token, cfg.credentials = file_cfg.access_token, "access_token in " .. file
  elseif nonempty(file_cfg.app_key) or nonempty(file_cfg.app_secret) then
    if not (nonempty(file_cfg.app_key) and nonempty(file_cfg.app_secret)) then
      return cfg_error("config.credentials", "the config file " .. file .. " has only one of app_key and app_secret")
    end
    cfg.app_key, cfg.app_secret = file_cfg.app_key, file_cfg.app_secret
    cfg.credentials = "app_key + app_secret in " .. file
  end
  return cfg
end

--- True when cfg holds some credentials.
function M.has_credentials(cfg)
  return cfg.access_token ~= nil or (cfg.app_key ~= nil and cfg.app_secret ~= nil)
end

--- Options for recall.client from cfg (extra: fields that win).
function M.client_options(cfg, extra)
  local o = {
    access_token = cfg.access_token, app_key = cfg.app_key, app_secret = cfg.app_secret,
    robot_code = cfg.robot_code, endpoint = cfg.endpoint, ca_file = cfg.ca_file,
    qps = cfg.qps, concurrency = cfg.concurrency, timeout = cfg.timeout,
    connect_timeout = cfg.connect_timeout, max_retries = cfg.max_retries, redis = cfg.redis,
  }
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

return M
