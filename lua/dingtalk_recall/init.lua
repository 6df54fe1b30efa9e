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

local DEFAULTS = {
  access_token_env = "DINGTALK_ACCESS_TOKEN",
  app_key_env = "DINGTALK_APP_KEY",
  app_secret_env = "DINGTALK_APP_SECRET",
  results = "buffer", -- "buffer" (scratch buffer + notification) or "notify"
  notify = true,
}

local options = {}        -- setup{} as given (may hold a token_provider; never shown)
local generation = 0      -- bumped by setup(): the cached client is then rebuilt
local cached              -- { client =, fingerprint =, generation = }
local queue, running = {}, nil

local function opt(name)
  local v = options[name]
  if v == nil then v = DEFAULTS[name] end
  return v
end

local function uv() return vim.uv or vim.loop end

---------------------------------------------------------------------------
-- Finding the native module
---------------------------------------------------------------------------

-- The plugin's folder (holding lua/ and, after `make`, build/).
local function plugin_root()
  local src = debug.getinfo(1, "S").source
  if src:sub(1, 1) ~= "@" then return nil end
  return src:sub(2):match("^(.*)/lua/dingtalk_recall/init%.lua$")
end

local function file_exists(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end

local function add_cpath(entry)
  if not entry or entry == "" then return end
  if not entry:find("?", 1, true) then entry = entry:gsub("/+$", "") .. "/?.so" end
  if not (";" .. package.cpath .. ";"):find(";" .. entry .. ";", 1, true) then
    package.cpath = entry .. ";" .. package.cpath
  end
end

--- Puts the native core on package.cpath: setup{cpath=},
-- vim.g.dingtalk_recall_cpath (a folder or a ?-pattern), then the
-- plugin's own build/5.1 (after `make LUA_VERSION=5.1`).  Idempotent.
function M.find_core()
  local root = plugin_root()
  if root and file_exists(root .. "/build/5.1/dingtalk/recall/core.so") then
    add_cpath(root .. "/build/5.1/?.so")
  end
  local g = vim.g.dingtalk_recall_cpath
  if type(g) == "string" then add_cpath(vim.fn.expand(g)) end
  if type(options.cpath) == "string" then add_cpath(vim.fn.expand(options.cpath)) end
  return pcall(require, "dingtalk.recall.core")
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
    local path = type(options.config_file) == "string" and vim.fn.expand(options.config_file) or nil
    local loaded, err = config.load { path = path, no_file = options.config_file == false }
    if not loaded then return nil, err end
    base = loaded
    s.config_file = loaded.file
  end
  for _, k in ipairs { "endpoint", "ca_file", "robot_code", "ledger", "redis", "qps", "concurrency", "timeout",
    "connect_timeout", "max_retries" } do
    local v = options[k]
    if v == nil then v = base[k] end
    if type(v) == "string" and (k == "ca_file" or k == "ledger") then v = vim.fn.expand(v) end
    s[k] = v
  end
  s.conversation = options.conversation
  s.endpoint_shown = s.endpoint or core.DEFAULT_ENDPOINT

  local tok_env, key_env, secret_env = opt("access_token_env"), opt("app_key_env"), opt("app_secret_env")
  local tok = nonempty(os.getenv(tok_env))
  local ak, as = nonempty(os.getenv(key_env)), nonempty(os.getenv(secret_env))
  if options.token_provider then
    s.secret.token_provider, s.credentials = options.token_provider, "token_provider (setup)"
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
  if cached and cached.fingerprint == fp and cached.generation == generation then
    return cached.client, s
  end
  if cached and not running then cached.client:close() end
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
  cached = { client = client, fingerprint = fp, generation = generation }
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
  options = {}
  for k, v in pairs(opts) do options[k] = v end
  generation = generation + 1
  return M
end

---------------------------------------------------------------------------
-- Running recalls on the editor's loop, one at a time
---------------------------------------------------------------------------

local function pump()
  if running or #queue == 0 then return end
  local job = table.remove(queue, 1)
  running = job
  local async = require "dingtalk.recall.async"
  job.handle = async.run_uv(uv(), job.fn, function(...)
    local r = pack(...)
    vim.schedule(function()
      running = nil
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
  queue[#queue + 1] = job
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
  return { running = running ~= nil, queued = #queue }
end

--- Stops the running recall and drops the queued ones.  Transfers in
-- flight are abandoned with the client (a new one is made next time).
function M.cancel()
  for i = #queue, 1, -1 do
    local job = table.remove(queue, i)
    if job.on_done then job.on_done(nil, require("dingtalk.recall.core").error("async.cancelled", "cancelled")) end
  end
  if running and running.handle then
    running.handle.cancel()
    if cached then cached.client:close() end
    cached = nil
  end
end

---------------------------------------------------------------------------
-- Showing results
---------------------------------------------------------------------------

-- The secrets known now (the environment's, the client's token and app
-- secret): the renderer redacts them from every line shown.
local function secrets()
  local list = {}
  for _, name in ipairs { opt("access_token_env"), opt("app_secret_env") } do
    local v = os.getenv(name)
    if v then list[#list + 1] = v end
  end
  if cached and cached.client then
    for _, v in ipairs(require("dingtalk.recall.report.render").secrets_of(cached.client)) do list[#list + 1] = v end
  end
  return list
end

--- report_lines(title, report | nil, err) -> lines, summary, level.
-- Rendered by dingtalk.recall.report.render: every line escaped (no
-- newline, no control character: the buffer shows whatever the server
-- sent) and redacted.
function M.report_lines(title, report, err)
  local render = require "dingtalk.recall.report.render"
  local levels = vim.log.levels
  if not report then
    local line = render.safe(title, secrets()) .. ": " .. render.error(err, "chat", { secrets = secrets() })
    return { line }, line, levels.ERROR
  end
  local lines, summary = render.render(report, "lines", { title = title, secrets = secrets() })
  local ok = #(report.recalled or {}) > 0
  local bad = next(report.failed or {}) ~= nil or next(report.errors or {}) ~= nil or #(report.expired or {}) > 0
  local level = not bad and levels.INFO or (ok and levels.WARN or levels.ERROR)
  return lines, summary, level
end

local BUF_NAME = "dingtalk-recall://results"

--- Shows lines in the results scratch buffer (made or reused); -> bufnr.
function M.show(lines)
  local buf = vim.fn.bufnr(BUF_NAME)
  if buf < 0 or not vim.api.nvim_buf_is_valid(buf) then
    buf = vim.api.nvim_create_buf(false, true)
    vim.api.nvim_buf_set_name(buf, BUF_NAME)
    vim.api.nvim_buf_set_option(buf, "buftype", "nofile")
    vim.api.nvim_buf_set_option(buf, "bufhidden", "hide")
    vim.api.nvim_buf_set_option(buf, "swapfile", false)
    vim.api.nvim_buf_set_option(buf, "filetype", "dingtalkrecall")
  end
  vim.api.nvim_buf_set_option(buf, "modifiable", true)
  vim.api.nvim_buf_set_lines(buf, 0, -1, false, lines)
  vim.api.nvim_buf_set_option(buf, "modifiable", false)
  if vim.fn.bufwinnr(buf) < 0 then
    -- A split at the bottom; the cursor stays where the user is typing.
    local prev = vim.api.nvim_get_current_win()
    vim.cmd("botright split")
    local win = vim.api.nvim_get_current_win()
    vim.api.nvim_win_set_buf(win, buf)
    vim.api.nvim_win_set_height(win, math.min(#lines + 1, 15))
    if vim.api.nvim_win_is_valid(prev) then vim.api.nvim_set_current_win(prev) end
  end
  return buf
end

-- Shows an outcome.  usage: a wrong command line, told by notification
-- only (an error: inside vim.cmd() it raises, like any failing command).
local function present(title, report, err, usage)
  local lines, summary, level = M.report_lines(title, report, err)
  if opt("results") == "buffer" and not usage then M.show(lines) end
  M.last = { title = title, lines = lines, summary = summary, report = report, err = err }
  -- For statuslines and scripts: autocmd User DingtalkRecallDone (M.last holds the outcome).
  pcall(vim.api.nvim_exec_autocmds, "User", { pattern = "DingtalkRecallDone", modeline = false })
  if opt("notify") or usage then vim.notify(summary, level) end
end

---------------------------------------------------------------------------
-- Commands
---------------------------------------------------------------------------

local function split_args(fargs)
  local named, rest = {}, {}
  for _, a in ipairs(fargs) do
    local k, v = a:match("^(%a+)=(.+)$")
    if k == "conversation" or k == "cid" then
      named.conversation = v
    elseif k == "robot" then
      named.robot = v
    else
      rest[#rest + 1] = a
    end
  end
  return named, rest
end

--- :DingtalkRecall [conversation=CID] [robot=CODE] key...  With no key
-- and a range, the keys are the words of those lines.
function M.command_recall(o)
  local named, keys = split_args(o.fargs or {})
  if #keys == 0 and (o.range or 0) > 0 then
    for _, line in ipairs(vim.api.nvim_buf_get_lines(0, o.line1 - 1, o.line2, false)) do
      for w in line:gmatch("%S+") do keys[#keys + 1] = w end
    end
  end
  local title = "DingTalk recall"
  if #keys == 0 then
    return present(title, nil, "give the keys (processQueryKey) to recall, or a range of lines holding them", true)
  end
  local cid = named.conversation or options.conversation
  if not cid then
    return present(title, nil, "no conversation: give conversation=CID or setup{ conversation = ... }", true)
  end
  local job, err = M.recall(cid, keys, { robot_code = named.robot }, function(report, rerr)
    present(title, report, rerr)
  end)
  if job and running ~= job then vim.notify(title .. ": queued behind the running recall", vim.log.levels.INFO) end
  return job, err
end

--- "90", "90s", "10m", "1h30m", "2d" -> seconds | nil, message (the
-- selector module's durations, as /recall and the CLI read them).
function M.parse_duration(s)
  return require("dingtalk.recall.selector").duration(s)
end

--- Parses the arguments of :DingtalkUndo -> filter | nil, message.
-- The selector words (last N | since D | tag T | all) are the selector
-- module's; no words: the last message.
function M.parse_undo(fargs)
  local selector = require "dingtalk.recall.selector"
  local named, rest = split_args(fargs or {})
  local filter = { last = 1 }
  if #rest > 0 then
    local sel, why = selector.parse(rest)
    if not sel then return nil, why end
    filter = selector.filter(sel)
  end
  filter.conversation = named.conversation
  return filter
end

--- :DingtalkUndo [last N | since 1h30m | tag T | all] [conversation=CID]
function M.command_undo(o)
  local filter, msg = M.parse_undo(o.fargs)
  local title = "DingTalk undo"
  if not filter then return present(title, nil, msg, true) end
  if not filter.conversation then filter.conversation = options.conversation end
  if not (filter.last or filter.since or filter.tag) and not filter.conversation then
    return present(title, nil, "all needs a conversation: conversation=CID or setup{ conversation = ... }", true)
  end
  return M.undo(filter, function(report, err) present(title, report, err) end)
end

local function complete_from(list, lead)
  local out = {}
  for _, v in ipairs(list) do
    if v:sub(1, #lead) == lead then out[#out + 1] = v end
  end
  return out
end

local function conversation_items()
  local items = {}
  local seen = {}
  local function add(c)
    if type(c) == "string" and not seen[c] then
      seen[c] = true
      items[#items + 1] = "conversation=" .. c
    end
  end
  add(options.conversation)
  for _, c in ipairs(options.conversations or {}) do add(c) end
  if #items == 0 then items[1] = "conversation=" end
  return items
end

--- Completion of :DingtalkRecall (argument names, known conversations).
function M.complete_recall(lead)
  if lead:match("^robot=") then
    return options.robot_code and complete_from({ "robot=" .. options.robot_code }, lead) or {}
  end
  local items = conversation_items()
  items[#items + 1] = "robot="
  return complete_from(items, lead)
end

--- Completion of :DingtalkUndo.
function M.complete_undo(lead, line)
  local words = {}
  for w in line:gmatch("%S+") do words[#words + 1] = w end
  -- The word before the one being completed.
  local prev = words[#words]
  if lead ~= "" then prev = words[#words - 1] end
  if prev == "last" then return complete_from({ "1", "5", "10", "20" }, lead) end
  if prev == "since" then return complete_from({ "5m", "10m", "30m", "1h", "2h", "1d" }, lead) end
  if prev == "tag" then
    local tags = {}
    for _, t in ipairs(options.tags or {}) do tags[#tags + 1] = t end
    return complete_from(tags, lead)
  end
  local items = { "last", "since", "tag", "all" }
  for _, c in ipairs(conversation_items()) do items[#items + 1] = c end
  return complete_from(items, lead)
end

return M
