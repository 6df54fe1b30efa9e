--- dingtalk_recall: the Neovim side of dingtalk-recall.
--
--   require("dingtalk_recall").setup {
--     robot_code = "ding...", conversation = "cid...",      -- defaults for the commands
--     endpoint = "https://api.dingtalk.io", ca_file = nil, ledger = "~/.local/state/dingtalk-recall/ledger",
--     access_token_env = "DINGTALK_ACCESS_TOKEN",             -- where credentials are read, at use
--     app_key_env = "DINGTALK_APP_KEY", app_secret_env = "DINGTALK_APP_SECRET",
--   }
--   :DingtalkRecall [conversation=CID] [robot=CODE] key1 key2 ...   (or a range of lines holding keys)
--   :DingtalkUndo [last N | since 1h30m | tag T | all] [conversation=CID]
--
-- Recalls run on the editor's libuv loop (vim.uv or vim.loop) through
-- dingtalk.recall.async: curl's sockets are watched with uv poll handles
-- and a uv timer, so the editor never waits on the network.  Secrets are
-- read from the environment (or the CLI's config file, or a
-- token_provider function) when a command runs; they are kept in no
-- vim variable and never shown.  Nothing happens at require.
--
-- Here: setup, settings, the client and the queue of recalls; beside it
-- native (finding the core), results (the buffer and notifications),
-- commands (the user commands and their completion), state (shared).
local M = {}

local unpack = table.unpack or unpack -- luacheck: ignore 113 143

local function pack(...) return { n = select("#", ...), ... } end

-- setup{} options and their types.
local OPTION_TYPES = {
  endpoint = "string", ca_file = "string", robot_code = "string", conversation = "string",
  ledger = "string", redis = "string", access_token_env = "string", app_key_env = "string", app_secret_env = "string",
  token_provider = "function", config_file = { string = true, boolean = true }, cpath = "string",
  qps = "number", concurrency = "number", timeout = "number", connect_timeout = "number",
  max_retries = "number", results = "string", conversations = "table", tags = "table",
  notify = "boolean",
}

local state = require "dingtalk_recall.state"
local opt = state.opt
local results = require "dingtalk_recall.results"
local commands = require "dingtalk_recall.commands"

local function uv() return vim.uv or vim.loop end

--- Puts the native core on package.cpath (setup{cpath=},
-- vim.g.dingtalk_recall_cpath, the plugin's own build/5.1) and loads it:
-- -> pcall(require, "dingtalk.recall.core").  Idempotent.
function M.find_core()
  return require("dingtalk_recall.native").find_core(state.options.cpath)
end

---------------------------------------------------------------------------
-- Settings and credentials
---------------------------------------------------------------------------

local function nonempty(v)
  if v == nil or v == "" then return nil end
  return v
end

--- The effective settings: setup{} first, then the environment, then the
-- CLI's config file (dingtalk.recall.config: DINGTALK_ENDPOINT,
-- DINGTALK_CA_FILE, DINGTALK_ROBOT_CODE, DINGTALK_RECALL_LEDGER, the
-- file).  -> settings | nil, err.
-- settings.credentials names the source; settings.secret holds the
-- values for the client (never shown).
function M.settings()
  local ok, core = M.find_core()
  if not ok then
    return nil, "the native module dingtalk.recall.core cannot be loaded (see :checkhealth dingtalk_recall)"
  end
  local s = { secret = {} }
  local base = {}
  local has_config, config = pcall(require, "dingtalk.recall.config")
  if has_config then
    -- config_file = false: the environment only (DINGTALK_ENDPOINT, ...).
    local path = type(state.options.config_file) == "string" and vim.fn.expand(state.options.config_file) or nil
    local loaded, err = config.load { path = path, no_file = state.options.config_file == false }
    if not loaded then return nil, err end
    base = loaded
    s.config_file = loaded.file
  end
  for _, k in ipairs { "endpoint", "ca_file", "robot_code", "ledger", "redis", "qps", "concurrency", "timeout",
    "connect_timeout", "max_retries" } do
    local v = state.options[k]
    if v == nil then v = base[k] end
    if type(v) == "string" and (k == "ca_file" or k == "ledger") then v = vim.fn.expand(v) end
    s[k] = v
  end
  s.conversation = state.options.conversation
  s.endpoint_shown = s.endpoint or core.DEFAULT_ENDPOINT

  local tok_env, key_env, secret_env = opt("access_token_env"), opt("app_key_env"), opt("app_secret_env")
  local tok = nonempty(os.getenv(tok_env))
  local ak, as = nonempty(os.getenv(key_env)), nonempty(os.getenv(secret_env))
  if state.options.token_provider then
    s.secret.token_provider, s.credentials = state.options.token_provider, "token_provider (setup)"
  elseif tok then
    s.secret.access_token, s.credentials = tok, "$" .. tok_env
  elseif ak and as then
    s.secret.app_key, s.secret.app_secret = ak, as
    s.credentials = "$" .. key_env .. " + $" .. secret_env
  elseif ak or as then
    return nil, core.error("config.credentials", ak and ("$" .. key_env .. " is set but $" .. secret_env .. " is not")
      or ("$" .. secret_env .. " is set but $" .. key_env .. " is not"))
  elseif base.credentials then
    s.secret.access_token, s.secret.app_key, s.secret.app_secret = base.access_token, base.app_key, base.app_secret
    s.credentials = base.credentials
  else
    s.credentials = nil
  end
  return s
end

local function fingerprint(s)
  local parts = {}
  for _, k in ipairs { "endpoint", "ca_file", "robot_code", "redis", "qps", "concurrency", "timeout",
    "connect_timeout", "max_retries" } do
    parts[#parts + 1] = tostring(s[k])
  end
  for _, k in ipairs { "access_token", "app_key", "app_secret", "token_provider" } do
    parts[#parts + 1] = tostring(s.secret[k])
  end
  return table.concat(parts, "\0")
end

--- The client for the current settings (made once, kept while they hold).
-- -> client, settings | nil, err
function M.client()
  local s, err = M.settings()
  if not s then return nil, err end
  local core = require "dingtalk.recall.core"
  if not s.credentials then
    return nil, core.error("config.credentials", "no DingTalk credentials: set $" .. opt("access_token_env") ..
      ", or $" .. opt("app_key_env") .. " and $" .. opt("app_secret_env") ..
      ", or give setup{ token_provider = fn }")
  end
  local fp = fingerprint(s)
  if state.cached and state.cached.fingerprint == fp and state.cached.generation == state.generation then
    return state.cached.client, s
  end
  if state.cached and not state.running then state.cached.client:close() end
  local recall = require "dingtalk.recall"
  local transport = require("dingtalk.recall.transport.async").new { max_connections = s.concurrency }
  local client
  client, err = recall.client {
    robot_code = s.robot_code, endpoint = s.endpoint, ca_file = s.ca_file, qps = s.qps,
    concurrency = s.concurrency, timeout = s.timeout, connect_timeout = s.connect_timeout,
    max_retries = s.max_retries, transport = transport, redis = s.redis,
    access_token = s.secret.access_token, app_key = s.secret.app_key, app_secret = s.secret.app_secret,
    token_provider = s.secret.token_provider,
  }
  if not client then
    transport:close()
    return nil, err
  end
  state.cached = { client = client, fingerprint = fp, generation = state.generation }
  return client, s
end

--- setup(opts): remembers the options (see the top of this file).  Wrong
-- types raise.  May be called again; the next command uses the new ones.
function M.setup(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("dingtalk_recall.setup expects a table", 2) end
  for k, v in pairs(opts) do
    local want = OPTION_TYPES[k]
    if want == nil then error("dingtalk_recall.setup: unknown option '" .. tostring(k) .. "'", 2) end
    local okt = type(want) == "table" and want[type(v)] or type(v) == want
    if not okt then
      error(("dingtalk_recall.setup: option '%s' must be a %s"):format(k,
        type(want) == "table" and "string or boolean" or want), 2)
    end
  end
  if opts.results ~= nil and opts.results ~= "buffer" and opts.results ~= "notify" then
    error("dingtalk_recall.setup: results must be \"buffer\" or \"notify\"", 2)
  end
  state.options = {}
  for k, v in pairs(opts) do state.options[k] = v end
  state.generation = state.generation + 1
  return M
end

---------------------------------------------------------------------------
-- Running recalls on the editor's loop, one at a time
---------------------------------------------------------------------------

local function pump()
  if state.running or #state.queue == 0 then return end
  local job = table.remove(state.queue, 1)
  state.running = job
  local async = require "dingtalk.recall.async"
  job.handle = async.run_uv(uv(), job.fn, function(...)
    local r = pack(...)
    vim.schedule(function()
      state.running = nil
      local ok, err = true, nil
      if job.on_done then ok, err = pcall(job.on_done, unpack(r, 1, r.n)) end
      pump() -- the queue goes on even when a callback failed
      if not ok then error(err, 0) end
    end)
  end)
end

-- Queues fn(client) to run as an async task; on_done gets its results in
-- the main loop (vim.schedule), or nil, err when no client can be made.
local function submit(fn, on_done)
  local client, s = M.client()
  if not client then
    local err = s
    vim.schedule(function() if on_done then on_done(nil, err) end end)
    return nil, err
  end
  local job = { on_done = on_done }
  job.fn = function() return fn(client, s) end
  state.queue[#state.queue + 1] = job
  pump()
  return job
end

--- recall(cid, keys [, opts [, on_done]]) -> job | nil, err.  Returns at
-- once; on_done(report | nil, err) runs later in the main loop.  opts:
-- robot_code, on_progress(done, total) (called in a fast callback).
function M.recall(cid, keys, opts, on_done)
  if type(keys) ~= "table" then error("dingtalk_recall.recall: keys must be a table", 2) end
  if opts ~= nil and type(opts) ~= "table" then error("dingtalk_recall.recall: opts must be a table", 2) end
  if on_done ~= nil and type(on_done) ~= "function" then
    error("dingtalk_recall.recall: on_done must be a function", 2)
  end
  return submit(function(client) return client:recall(cid, keys, opts) end, on_done)
end

--- undo(filter [, on_done]) -> job | nil, err: recalls what the ledger
-- recorded (setup{ledger=}, $DINGTALK_RECALL_LEDGER, the config file's or
-- the CLI's default), filter {last = N | since = seconds | tag = T,
-- conversation =}; on_done gets the ledger's report.
function M.undo(filter, on_done)
  if type(filter) ~= "table" then error("dingtalk_recall.undo: filter must be a table", 2) end
  return submit(function(client, s)
    local core = require "dingtalk.recall.core"
    local okl, ledger = pcall(require, "dingtalk.recall.ledger")
    if not okl then
      return nil, core.error("config.ledger", "the ledger module cannot be loaded (see :checkhealth dingtalk_recall)")
    end
    -- No location: the CLI's default ($XDG_DATA_HOME/dingtalk-recall/ledger).
    local l, err = ledger.open(s.ledger or s.redis) -- one Redis for the fleet, as the CLI
    if not l then return nil, err end
    local report, rerr = l:recall(client, filter)
    if l.close then l:close() end
    return report, rerr
  end, on_done)
end

--- Whether a recall is running, and how many wait.
function M.status()
  return { running = state.running ~= nil, queued = #state.queue }
end

--- Stops the running recall and drops the queued ones.  Transfers in
-- flight are abandoned with the client (a new one is made next time).
function M.cancel()
  for i = #state.queue, 1, -1 do
    local job = table.remove(state.queue, i)
    if job.on_done then job.on_done(nil, require("dingtalk.recall.core").error("async.cancelled", "cancelled")) end
  end
  if state.running and state.running.handle then
    state.running.handle.cancel()
    if state.cached then state.cached.client:close() end
    state.cached = nil
  end
end

-- Showing results (dingtalk_recall.results) and the commands
-- (dingtalk_recall.commands), as the plugin's own functions.
M.report_lines = results.report_lines
M.show = results.show
M.command_recall = commands.command_recall
M.command_undo = commands.command_undo
M.parse_duration = commands.parse_duration
M.parse_undo = commands.parse_undo
M.complete_recall = commands.complete_recall
M.complete_undo = commands.complete_undo

return M
