--- dingtalk.recall.cli: the logic of the `dingtalk-recall` command.
--
--   local cli = require "dingtalk.recall.cli"
--   os.exit(cli.main(arg))
--
-- main(argv [, env]) returns the exit status and never calls os.exit, so
-- it runs in-process under tests.  env may replace stdout, stderr,
-- stdin (objects with write / read), getenv and isatty(fd).
--
-- Exit status: 0 every key recalled (or the command did what it said);
-- 1 some keys failed or errored; 2 usage or validation error (nothing
-- sent); 3 nothing could be done (credentials, config, ledger, network).
-- The access token and app secret are never printed.
local core = require "dingtalk.recall.core"
local config = require "dingtalk.recall.config"
local rules = require "dingtalk.recall.rules"

local M = {}

local EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, EXIT_FATAL = 0, 1, 2, 3
M.EXIT = { ok = EXIT_OK, partial = EXIT_PARTIAL, usage = EXIT_USAGE, fatal = EXIT_FATAL }

---------------------------------------------------------------------------
-- JSON output (sorted keys; arrays marked, so an empty one prints [])
---------------------------------------------------------------------------
local ARRAY = {}
local function array(t)
  return setmetatable(t or {}, ARRAY)
end

local function encode(v, out)
  local t = type(v)
  if v == nil then
    out[#out + 1] = "null"
  elseif t == "boolean" then
    out[#out + 1] = tostring(v)
  elseif t == "number" then
    if v ~= v or v == math.huge or v == -math.huge then
      out[#out + 1] = "null"
    elseif v == math.floor(v) and math.abs(v) < 1e15 then
      out[#out + 1] = string.format("%d", v)
    else
      out[#out + 1] = string.format("%.6g", v)
    end
  elseif t == "string" then
    out[#out + 1] = core.json_string(v)
  elseif t == "table" and getmetatable(v) == ARRAY then
    out[#out + 1] = "["
    for i = 1, #v do
      if i > 1 then out[#out + 1] = "," end
      encode(v[i], out)
    end
    out[#out + 1] = "]"
  elseif t == "table" then
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = tostring(k) end
    table.sort(keys)
    out[#out + 1] = "{"
    for i, k in ipairs(keys) do
      if i > 1 then out[#out + 1] = "," end
      out[#out + 1] = core.json_string(k)
      out[#out + 1] = ":"
      local x = v[k]
      if x == nil then x = v[tonumber(k)] end
      encode(x, out)
    end
    out[#out + 1] = "}"
  else
    out[#out + 1] = "null"
  end
  return out
end

local function to_json(v)
  return table.concat(encode(v, {}))
end
M.to_json = to_json
M.json_array = array

local function err_json(e)
  if type(e) ~= "table" then return { code = "error", message = tostring(e) } end
  return {
    code = e.code, message = e.message, status = e.status ~= 0 and e.status or nil,
    request_id = e.request_id, retryable = e.retryable and true or false,
  }
end

---------------------------------------------------------------------------
-- usage texts
---------------------------------------------------------------------------
local COMMON = [[
common options:
  --endpoint URL     API endpoint (env DINGTALK_ENDPOINT; default https://api.dingtalk.io)
  --ca-file FILE     CA bundle for a private CA (env DINGTALK_CA_FILE)
  --ledger PATH|URL  the ledger: a file, or redis://host:port/db (env DINGTALK_RECALL_LEDGER)
                     env DINGTALK_RECALL_REDIS=URL: one QPS budget and token for many hosts
  --config FILE      config file (default $XDG_CONFIG_HOME/dingtalk-recall/config.lua)
  --json             print one JSON document on stdout
  --dry-run          validate and show what would be done; send nothing
  --quiet            no progress bar and no notes on stderr
  --help             this text

credentials: DINGTALK_ACCESS_TOKEN, or DINGTALK_APP_KEY + DINGTALK_APP_SECRET, or the
config file (access_token, or app_key + app_secret; chmod 600).  Never printed.
exit status: 0 all recalled; 1 some keys failed; 2 usage or validation error (nothing
sent); 3 nothing could be done (credentials, config, ledger, network).
]]

local USAGE = {
  main = [[
usage: dingtalk-recall <command> [options]

Recall (un-send) DingTalk group messages sent by an app bot.

commands:
  recall   --conversation CID --robot CODE [KEY ...]   recall keys (args, or stdin with - or a pipe)
  undo     --conversation CID [--last N | --since 10m | --tag T] [--robot CODE]
                                                       recall messages recorded in the ledger
  send     --conversation CID --robot CODE --text "..." [--tag T] [--ttl 1h]
                                                       send a text message and record it
  sweep                                                recall recorded messages whose ttl elapsed
  ledger   [list|show KEY] [filters]                   show what the ledger holds
  token                                                check the credentials
  help [COMMAND]                                       help on a command

]],
  recall = [[
usage: dingtalk-recall recall --conversation CID --robot CODE [KEY ...] [options]

Recalls the messages with these processQueryKeys, in batches of 20.  Keys come from the
arguments; with "-", or with no keys and stdin not a terminal, from stdin (whitespace
or newline separated; lines starting with # are skipped).

  --conversation CID   the openConversationId the messages were sent to (required)
  --robot CODE         the robotCode that sent them (env DINGTALK_ROBOT_CODE)
  --qps N              requests per second (default 20)
  --concurrency N      requests in flight (default 4)
  --timeout S          per-request timeout in seconds

]],
  undo = [[
usage: dingtalk-recall undo --conversation CID [--last N | --since 10m | --tag T] [options]

Recalls messages recorded in the ledger (by `send`, a bot, or any client the ledger
is attached to) for this conversation.  Without a selector: the last message.

  --conversation CID   the group (required)
  --last N             the last N messages
  --since DURATION     messages sent within DURATION (s, m, h, d; e.g. 10m, 1h30m)
  --tag T              messages sent with tag T
  --robot CODE         only those sent by this robot

]],
  send = [[
usage: dingtalk-recall send --conversation CID --robot CODE --text "..." [options]

Sends a text message (msgKey sampleText) to a group and records it in the ledger.
Prints the processQueryKey, so it pipes into `dingtalk-recall recall ... -`.

  --conversation CID   the group's openConversationId (required)
  --robot CODE         the robot to send as (required, or env DINGTALK_ROBOT_CODE)
  --text TEXT          the message (required)
  --tag T              a tag for `undo --tag` (repeatable)
  --ttl DURATION       recall it automatically (at the next `sweep`) after DURATION

]],
  sweep = [[
usage: dingtalk-recall sweep [options]

Recalls every message in the ledger whose ttl has elapsed.  Run it from cron or a
systemd timer, e.g. every minute: * * * * * dingtalk-recall sweep --quiet

]],
  ledger = [[
usage: dingtalk-recall ledger [list] [filters] [options]
       dingtalk-recall ledger show KEY [options]

Lists what the ledger holds, newest first, or shows one entry.

filters:
  --conversation CID   --robot CODE   --tag T   --since DURATION   --last N
  --state STATE        (sent, recalled, failed, ...)
  --due                only messages whose ttl has elapsed and are not yet recalled

]],
  token = [[
usage: dingtalk-recall token [options]

Checks the credentials: with an app key and secret, fetches an access token (and
prints only that it worked); a static DINGTALK_ACCESS_TOKEN cannot be checked without
a call and is reported as set.

]],
}

local function usage_text(cmd)
  local head = USAGE[cmd] or USAGE.main
  return head .. COMMON
end

---------------------------------------------------------------------------
-- argument parsing
---------------------------------------------------------------------------
-- kind: "value", "flag", "multi" (repeatable value)
local OPTIONS = {
  endpoint = "value", ["ca-file"] = "value", ledger = "value", config = "value",
  json = "flag", ["dry-run"] = "flag", quiet = "flag", help = "flag", ["no-progress"] = "flag",
  conversation = "value", robot = "value", text = "value", tag = "multi", ttl = "value",
  last = "value", since = "value", state = "value", due = "flag",
  qps = "value", concurrency = "value", timeout = "value",
}
local SHORT = { h = "help", q = "quiet", n = "dry-run" }
local GLOBAL = { endpoint = true, ["ca-file"] = true, ledger = true, config = true, json = true,
  ["dry-run"] = true, quiet = true, help = true, ["no-progress"] = true }
local ALLOWED = {
  recall = { conversation = true, robot = true, qps = true, concurrency = true, timeout = true },
  undo = { conversation = true, robot = true, last = true, since = true, tag = true, qps = true,
    concurrency = true, timeout = true },
  send = { conversation = true, robot = true, text = true, tag = true, ttl = true, timeout = true },
  sweep = { qps = true, concurrency = true, timeout = true },
  ledger = { conversation = true, robot = true, tag = true, since = true, last = true, state = true, due = true },
  token = { timeout = true },
  help = {},
}

local function usage_error(msg)
  return nil, msg
end

--- parse(argv) -> {command, opts, args} | nil, message
function M.parse(argv)
  local opts, args, command = { tag = {} }, {}, nil
  local i, n = 1, #argv
  local only_args = false
  while i <= n do
    local a = argv[i]
    if type(a) ~= "string" then return usage_error("arguments must be strings") end
    if only_args or a == "-" or a:sub(1, 1) ~= "-" then
      if command == nil then
        command = a
      else
        args[#args + 1] = a
      end
    elseif a == "--" then
      only_args = true
    else
      local name, value
      if a:sub(1, 2) == "--" then
        name, value = a:match("^%-%-([^=]+)=(.*)$")
        if not name then name = a:sub(3) end
      else
        name = SHORT[a:sub(2)]
        if not name then return usage_error("unknown option " .. a) end
      end
      local kind = OPTIONS[name]
      if not kind then return usage_error("unknown option --" .. name) end
      if kind == "flag" then
        if value ~= nil then return usage_error("--" .. name .. " takes no value") end
        opts[name] = true
      else
        if value == nil then
          i = i + 1
          value = argv[i]
          if value == nil then return usage_error("--" .. name .. " needs a value") end
        end
        if kind == "multi" then
          table.insert(opts[name], value)
        else
          if opts[name] ~= nil then return usage_error("--" .. name .. " given twice") end
          opts[name] = value
        end
      end
    end
    i = i + 1
  end
  if #opts.tag == 0 then opts.tag = nil end
  if command and not ALLOWED[command] then return usage_error("unknown command '" .. command .. "'") end
  if command then
    for name in pairs(opts) do
      if not GLOBAL[name] and not ALLOWED[command][name] then
        return usage_error("--" .. name .. " does not apply to '" .. command .. "'")
      end
    end
  end
  return { command = command, opts = opts, args = args }
end

---------------------------------------------------------------------------
-- the run context
---------------------------------------------------------------------------
local function default_isatty(fd)
  local a, _, c = os.execute("test -t " .. tonumber(fd))
  if type(a) == "number" then return a == 0 end
  return a == true and (c == nil or c == 0)
end

local Ctx = {}
Ctx.__index = Ctx

function Ctx:out(...)
  self.stdout:write(...)
end

function Ctx:note(...)
  if self.opts.quiet then return end
  self.stderr:write(...)
end

function Ctx:fail(code, msg, errobj)
  if self.opts.json then
    local e = errobj and err_json(errobj) or { code = code == EXIT_USAGE and "usage" or "error", message = msg }
    if errobj and msg and msg ~= errobj.message then e.context = msg end
    self:out(to_json({ error = e, exit_code = code }), "\n")
  end
  local text = msg
  if errobj then
    text = (msg and (msg .. ": ") or "") .. tostring(errobj)
    if errobj.hint and errobj.hint ~= "" then text = text .. "\n  hint: " .. errobj.hint end
  end
  self.stderr:write("dingtalk-recall: ", text, "\n")
  if code == EXIT_USAGE and not errobj then
    self.stderr:write("see: dingtalk-recall ", self.command and (self.command .. " ") or "", "--help\n")
  end
  return code
end

-- Errors that mean nothing could be done at all: credentials, network.
local FATAL_CODES = {
  InvalidAuthentication = true, invalidClientIdOrSecret = true,
  ["AuthenticationFailed.MissingParameter"] = true,
  ["Forbidden.AccessDenied.AccessTokenPermissionDenied"] = true,
  ["Forbidden.AccessDenied.ApiCountLimitForOrg"] = true,
  ["response.redirect"] = true, ["response.invalid"] = true,
}
local function is_fatal(err)
  local code = type(err) == "table" and err.code or ""
  return FATAL_CODES[code] or code:match("^transport%.") ~= nil or code:match("^token%.") ~= nil
end
M.is_fatal = is_fatal

function Ctx:load_config()
  if self.cfg then return self.cfg end
  local o = self.opts
  local flags = { endpoint = o.endpoint, ca_file = o["ca-file"], ledger = o.ledger }
  local nums = { qps = o.qps, concurrency = o.concurrency, timeout = o.timeout }
  for k, v in pairs(nums) do
    local x = tonumber(v)
    if v ~= nil and (not x or x < 0) then
      return nil, self:fail(EXIT_USAGE, "--" .. k .. " wants a non-negative number")
    end
    flags[k] = x
  end
  local cfg, err = config.load { path = o.config, getenv = self.getenv, flags = flags }
  if not cfg then
    return nil, self:fail(err.code == "config.invalid" and EXIT_USAGE or EXIT_FATAL, nil, err)
  end
  self.cfg = cfg
  return cfg
end

function Ctx:make_client(robot)
  local cfg = assert(self.cfg)
  if not config.has_credentials(cfg) then
    return nil, self:fail(EXIT_FATAL, "no credentials: set DINGTALK_ACCESS_TOKEN, or DINGTALK_APP_KEY and " ..
      "DINGTALK_APP_SECRET, or put them in " .. (config.default_path(self.getenv) or "a config file") ..
      " (chmod 600)")
  end
  local ok, client, err = pcall(require("dingtalk.recall").client, config.client_options(cfg, { robot_code = robot }))
  if not ok then return nil, self:fail(EXIT_USAGE, "bad option: " .. tostring(client)) end
  if not client then
    return nil, self:fail(err.code == "invalid.endpoint" and EXIT_USAGE or EXIT_FATAL, "cannot make a client", err)
  end
  self.client = client
  return client
end

function Ctx:open_ledger(opts)
  local cfg = assert(self.cfg)
  local ok, ledger = pcall(require, "dingtalk.recall.ledger")
  if not ok then return nil, self:fail(EXIT_FATAL, "the ledger module is not available: " .. tostring(ledger)) end
  local l, err = ledger.open(cfg.ledger or cfg.redis, opts) -- one Redis for the fleet
  if not l then return nil, self:fail(EXIT_FATAL, "cannot open the ledger", err) end
  self.ledger = l
  return l
end

function Ctx:close()
  if self.client then pcall(self.client.close, self.client) end
  if self.ledger then pcall(self.ledger.close, self.ledger) end
end

function Ctx:progress()
  if self.opts.quiet or self.opts["no-progress"] or not self.isatty(2) then return nil end
  local stderr, last = self.stderr, -1
  return function(done, total)
    if total <= 0 then return end
    local width = 30
    local filled = math.floor(width * done / total)
    if filled == last and done < total then return end
    last = filled
    stderr:write("\r[", string.rep("#", filled), string.rep(".", width - filled), "] ",
      tostring(done), "/", tostring(total), " keys")
    if done >= total then stderr:write("\n") end
  end
end

---------------------------------------------------------------------------
-- reports
---------------------------------------------------------------------------
local function sorted_keys(t)
  local ks = {}
  for k in pairs(t or {}) do ks[#ks + 1] = k end
  table.sort(ks)
  return ks
end

-- exit status of a recall report
local function report_status(report)
  if report.ok and #(report.expired or {}) == 0 then return EXIT_OK end
  if #(report.recalled or {}) == 0 and next(report.failed or {}) == nil and #(report.expired or {}) == 0 then
    local all_fatal = next(report.errors or {}) ~= nil
    for _, e in pairs(report.errors or {}) do
      if not is_fatal(e) then all_fatal = false break end
    end
    if all_fatal then return EXIT_FATAL end
  end
  return EXIT_PARTIAL
end
M.report_status = report_status

-- Text from the server or the input, made safe for one output line:
-- control characters (newlines, ANSI escapes) become \xNN.
local function oneline(v)
  return (tostring(v):gsub("[%c\127]", function(c) return ("\\x%02x"):format(c:byte()) end))
end

function Ctx:print_report(report, what)
  local status = report_status(report)
  if self.opts.json then
    local errors = {}
    for k, e in pairs(report.errors or {}) do errors[k] = err_json(e) end
    local failed = {}
    for k, r in pairs(report.failed or {}) do failed[k] = tostring(r) end
    self:out(to_json {
      recalled = array(report.recalled or {}), failed = failed, errors = errors,
      expired = array(report.expired or {}), already_recalled = array(report.already_recalled or {}),
      ok = status == EXIT_OK, total = report.total or 0,
      requests = report.requests, retries = report.retries, throttled = report.throttled,
      elapsed = report.elapsed, exit_code = status, command = what,
    }, "\n")
    return status
  end
  local nfail, nerr = #sorted_keys(report.failed), #sorted_keys(report.errors)
  local total = report.total or (#(report.recalled or {}) + nfail + nerr)
  self:out(string.format("recalled %d of %d keys", #(report.recalled or {}), total))
  if report.requests then
    self:out(string.format(" (%d request%s, %d retr%s, %.2f s)", report.requests,
      report.requests == 1 and "" or "s", report.retries or 0, report.retries == 1 and "y" or "ies",
      report.elapsed or 0))
  end
  self:out("\n")
  local already = {}
  for _, k in ipairs(report.already_recalled or {}) do already[k] = true end
  for _, k in ipairs(report.recalled or {}) do
    self:out("recalled  ", oneline(k), already[k] and "  (it already was)" or "", "\n")
  end
  for _, k in ipairs(sorted_keys(report.failed)) do
    self:out("failed    ", oneline(k), "  ", oneline(report.failed[k]), "\n")
  end
  for _, k in ipairs(sorted_keys(report.errors)) do
    local e = report.errors[k]
    self:out("error     ", oneline(k), "  ", type(e) == "table" and (oneline(e.code) .. ": " .. oneline(e.message))
      or oneline(e), "\n")
  end
  for _, k in ipairs(report.expired or {}) do self:out("expired   ", oneline(k), "  too old to recall\n") end
  return status
end

-- Prints the batches a recall would send (dry run).
function Ctx:print_batches(groups, what)
  local batches, total = {}, 0
  for _, g in ipairs(groups) do
    local batch = {}
    for _, k in ipairs(g.keys) do
      batch[#batch + 1] = k
      total = total + 1
      if #batch == core.MAX_KEYS then
        batches[#batches + 1] = { openConversationId = g.conversation, robotCode = g.robot,
          processQueryKeys = array(batch) }
        batch = {}
      end
    end
    if #batch > 0 then
      batches[#batches + 1] = { openConversationId = g.conversation, robotCode = g.robot,
        processQueryKeys = array(batch) }
    end
  end
  if self.opts.json then
    self:out(to_json { dry_run = true, command = what, total = total, batches = array(batches), exit_code = 0 }, "\n")
    return EXIT_OK
  end
  self:out(string.format("dry run: would recall %d key%s in %d request%s; nothing sent\n", total,
    total == 1 and "" or "s", #batches, #batches == 1 and "" or "s"))
  for i, b in ipairs(batches) do
    self:out(string.format("batch %d: conversation %s robot %s, %d keys\n", i, b.openConversationId,
      b.robotCode, #b.processQueryKeys))
    for _, k in ipairs(b.processQueryKeys) do self:out("  ", k, "\n") end
  end
  return EXIT_OK
end

-- Groups ledger entries by (conversation, robot), in order.
local function group_entries(entries)
  local groups, index = {}, {}
  for _, e in ipairs(entries) do
    local id = tostring(e.conversation) .. "\0" .. tostring(e.robot)
    local g = index[id]
    if not g then
      g = { conversation = e.conversation, robot = e.robot, keys = {} }
      index[id] = g
      groups[#groups + 1] = g
    end
    g.keys[#g.keys + 1] = e.key
  end
  return groups
end

---------------------------------------------------------------------------
-- commands
---------------------------------------------------------------------------
local commands = {}

local function read_keys(ctx, args)
  local keys, from_stdin = {}, false
  for _, a in ipairs(args) do
    if a == "-" then
      from_stdin = true
    else
      keys[#keys + 1] = a
    end
  end
  if #args == 0 and not ctx.isatty(0) then from_stdin = true end
  if from_stdin then
    local text = ctx.stdin:read("*a") or ""
    for line in (text .. "\n"):gmatch("([^\n]*)\n") do
      if not line:match("^%s*#") then
        for k in line:gmatch("[^%s,]+") do keys[#keys + 1] = k end
      end
    end
  end
  return keys
end

function commands.recall(ctx)
  local o = ctx.opts
  local cfg = ctx:load_config()
  if not cfg then return ctx.code end
  local cid, robot = o.conversation, o.robot or cfg.robot_code
  if not cid or cid == "" then return ctx:fail(EXIT_USAGE, "--conversation CID is required") end
  if not robot or robot == "" then return ctx:fail(EXIT_USAGE, "--robot CODE is required (or DINGTALK_ROBOT_CODE)") end
  local keys = read_keys(ctx, ctx.args)
  if #keys == 0 then
    return ctx:fail(EXIT_USAGE, "no keys given (as arguments, or on stdin with - or a pipe)")
  end
  -- Everything is checked before anything is sent.
  local ok, err = core.validate { openConversationId = cid, robotCode = robot, processQueryKeys = { "k" } }
  if not ok then return ctx:fail(EXIT_USAGE, "invalid request", err) end
  local unique, seen, bad = {}, {}, {}
  for _, k in ipairs(keys) do
    if not seen[k] then
      seen[k] = true
      unique[#unique + 1] = k
      local kok, kerr = core.validate { openConversationId = cid, robotCode = robot, processQueryKeys = { k } }
      if not kok then bad[#bad + 1] = { k, kerr } end
    end
  end
  if #bad > 0 then
    for i = 2, #bad do ctx.stderr:write("dingtalk-recall: invalid key ", bad[i][1], ": ", bad[i][2].message, "\n") end
    return ctx:fail(EXIT_USAGE, "invalid key " .. bad[1][1] .. "; nothing was sent", bad[1][2])
  end
  if o["dry-run"] then
    return ctx:print_batches({ { conversation = cid, robot = robot, keys = unique } }, "recall")
  end
  local client = ctx:make_client(robot)
  if not client then return ctx.code end
  local report, rerr = client:recall(cid, unique, { on_progress = ctx:progress() })
  if not report then return ctx:fail(EXIT_USAGE, "recall refused", rerr) end
  -- As the ledger does: a key the server says is already recalled is
  -- recalled (the client already counts those of a retried batch).
  local already = require("dingtalk.recall.client").ALREADY_RECALLED
  report.already_recalled = report.already_recalled or {}
  for _, k in ipairs(unique) do
    local reason = report.failed[k]
    if reason ~= nil and already[reason] then
      report.failed[k] = nil
      report.recalled[#report.recalled + 1] = k
      report.already_recalled[#report.already_recalled + 1] = k
    end
  end
  report.ok = next(report.failed) == nil and next(report.errors) == nil
  return ctx:print_report(report, "recall")
end

local function ledger_filter(ctx, o, defaults)
  local filter = {}
  for k, v in pairs(defaults or {}) do filter[k] = v end
  filter.conversation = o.conversation
  filter.robot = o.robot
  if o.tag then
    if #o.tag > 1 then return nil, ctx:fail(EXIT_USAGE, "give --tag once") end
    filter.tag = o.tag[1]
  end
  if o.since then
    local s, why = rules.parse_duration(o.since)
    if not s then return nil, ctx:fail(EXIT_USAGE, "--since: " .. why) end
    filter.since = s
  end
  if o.last then
    local n = tonumber(o.last)
    if not n or n < 1 or n ~= math.floor(n) then
      return nil, ctx:fail(EXIT_USAGE, "--last wants a whole number >= 1")
    end
    filter.last = n
  end
  if o.state then
    local ok, ledger = pcall(require, "dingtalk.recall.ledger")
    if ok and ledger.STATES and not ledger.STATES[o.state] then
      local names = {}
      for k in pairs(ledger.STATES) do names[#names + 1] = k end
      table.sort(names)
      return nil, ctx:fail(EXIT_USAGE, "--state must be one of " .. table.concat(names, ", "))
    end
    filter.state = o.state
  end
  if o.due then filter.due = true end
  return filter
end

function commands.undo(ctx)
  local o = ctx.opts
  if not o.conversation or o.conversation == "" then
    return ctx:fail(EXIT_USAGE, "--conversation CID is required")
  end
  local selectors = (o.last and 1 or 0) + (o.since and 1 or 0) + (o.tag and 1 or 0)
  if selectors > 1 then return ctx:fail(EXIT_USAGE, "give one of --last, --since and --tag") end
  local filter = ledger_filter(ctx, o)
  if not filter then return ctx.code end
  if selectors == 0 then filter.last = 1 end
  local cfg = ctx:load_config()
  if not cfg then return ctx.code end
  local l = ctx:open_ledger()
  if not l then return ctx.code end
  local selection = { state = "sent" }
  for k, v in pairs(filter) do selection[k] = v end
  local entries, lerr = l:list(selection)
  if not entries then return ctx:fail(EXIT_FATAL, "cannot read the ledger", lerr) end
  if #entries == 0 then
    if o.json then
      ctx:out(to_json { recalled = array(), failed = {}, errors = {}, expired = array(), ok = true, total = 0,
        exit_code = 0, command = "undo", note = "nothing matched" }, "\n")
    else
      ctx:out("nothing to recall: no recorded message matches\n")
    end
    return EXIT_OK
  end
  if o["dry-run"] then return ctx:print_batches(group_entries(entries), "undo") end
  local client = ctx:make_client()
  if not client then return ctx.code end
  local report, err = l:recall(client, filter, { on_progress = ctx:progress() })
  if not report then return ctx:fail(is_fatal(err) and EXIT_FATAL or EXIT_PARTIAL, "undo failed", err) end
  return ctx:print_report(report, "undo")
end

function commands.send(ctx)
  local o = ctx.opts
  local cfg = ctx:load_config()
  if not cfg then return ctx.code end
  local cid, robot = o.conversation, o.robot or cfg.robot_code
  if not cid or cid == "" then return ctx:fail(EXIT_USAGE, "--conversation CID is required") end
  if not robot or robot == "" then return ctx:fail(EXIT_USAGE, "--robot CODE is required (or DINGTALK_ROBOT_CODE)") end
  if not o.text then return ctx:fail(EXIT_USAGE, "--text TEXT is required") end
  if #ctx.args > 0 then return ctx:fail(EXIT_USAGE, "unexpected argument '" .. ctx.args[1] .. "'") end
  local ttl
  if o.ttl then
    local why
    ttl, why = rules.parse_duration(o.ttl)
    if not ttl then return ctx:fail(EXIT_USAGE, "--ttl: " .. why) end
    if ttl <= 0 then return ctx:fail(EXIT_USAGE, "--ttl must be positive") end
  end
  local request = { openConversationId = cid, robotCode = robot, msgKey = "sampleText",
    msgParam = { content = o.text } }
  local built, berr = core.build_send(request, { access_token = "dry-run", endpoint = cfg.endpoint })
  if not built then return ctx:fail(EXIT_USAGE, "invalid message", berr) end
  if o["dry-run"] then
    if o.json then
      ctx:out(to_json { dry_run = true, command = "send", openConversationId = cid, robotCode = robot,
        msgKey = "sampleText", text = o.text, tags = array(o.tag or {}), ttl = ttl, exit_code = 0 }, "\n")
    else
      ctx:out("dry run: would send sampleText to conversation ", cid, " as robot ", robot,
        ttl and (" (ttl " .. ttl .. " s)") or "", o.tag and (" tags " .. table.concat(o.tag, ",")) or "",
        "; nothing sent\n")
    end
    return EXIT_OK
  end
  local l = ctx:open_ledger()
  if not l then return ctx.code end
  local client = ctx:make_client(robot)
  if not client then return ctx.code end
  l:attach(client)
  local key, err = client:send(cid, "sampleText", { content = o.text }, { tags = o.tag, ttl = ttl })
  if not key then
    return ctx:fail(is_fatal(err) and EXIT_FATAL or EXIT_PARTIAL, "send failed", err)
  end
  if o.json then
    ctx:out(to_json { processQueryKey = key, openConversationId = cid, robotCode = robot,
      tags = array(o.tag or {}), ttl = ttl, exit_code = 0 }, "\n")
  else
    ctx:out(key, "\n")
  end
  return EXIT_OK
end

function commands.sweep(ctx)
  local o = ctx.opts
  if #ctx.args > 0 then return ctx:fail(EXIT_USAGE, "unexpected argument '" .. ctx.args[1] .. "'") end
  local cfg = ctx:load_config()
  if not cfg then return ctx.code end
  local l = ctx:open_ledger()
  if not l then return ctx.code end
  local entries, lerr = l:list { due = true }
  if not entries then return ctx:fail(EXIT_FATAL, "cannot read the ledger", lerr) end
  if #entries == 0 then
    if o.json then
      ctx:out(to_json { recalled = array(), failed = {}, errors = {}, expired = array(), ok = true, total = 0,
        exit_code = 0, command = "sweep", note = "nothing due" }, "\n")
    elseif not o.quiet then
      ctx:out("nothing due\n")
    end
    return EXIT_OK
  end
  if o["dry-run"] then return ctx:print_batches(group_entries(entries), "sweep") end
  local client = ctx:make_client()
  if not client then return ctx.code end
  local report, err = rules.sweep(l, client, { on_progress = ctx:progress() })
  if not report then return ctx:fail(is_fatal(err) and EXIT_FATAL or EXIT_PARTIAL, "sweep failed", err) end
  return ctx:print_report(report, "sweep")
end

local function num(n)
  if type(n) ~= "number" then return tostring(n) end
  if n == math.floor(n) then return string.format("%d", n) end
  return string.format("%.3g", n)
end

local function iso(t)
  if type(t) ~= "number" then return "-" end
  return os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(t))
end

local function entry_json(e)
  return {
    key = e.key, conversation = e.conversation, robot = e.robot, sent_at = e.sent_at,
    tags = array(e.tags or {}), ttl = e.ttl, state = e.state, reason = e.reason, code = e.code,
    updated_at = e.updated_at,
  }
end

function commands.ledger(ctx)
  local o = ctx.opts
  local sub = ctx.args[1] or "list"
  local cfg = ctx:load_config()
  if not cfg then return ctx.code end
  if sub == "show" then
    local key = ctx.args[2]
    if not key or ctx.args[3] then return ctx:fail(EXIT_USAGE, "usage: dingtalk-recall ledger show KEY") end
    local l = ctx:open_ledger()
    if not l then return ctx.code end
    local e = l:get(key)
    if not e then
      if o.json then ctx:out(to_json { error = { code = "ledger.not_found", message = "no such key" },
        exit_code = EXIT_PARTIAL }, "\n") end
      ctx.stderr:write("dingtalk-recall: the ledger has no key ", key, "\n")
      return EXIT_PARTIAL
    end
    if o.json then
      ctx:out(to_json(entry_json(e)), "\n")
    else
      local rows = {
        { "key", e.key }, { "conversation", e.conversation }, { "robot", e.robot },
        { "sent_at", iso(e.sent_at) }, { "state", e.state }, { "tags", table.concat(e.tags or {}, ",") },
        { "ttl", e.ttl and (num(e.ttl) .. " s") or nil }, { "reason", e.reason }, { "code", e.code },
        { "updated_at", e.updated_at and iso(e.updated_at) or nil },
      }
      for _, r in ipairs(rows) do
        if r[2] ~= nil and r[2] ~= "" then ctx:out(string.format("%-13s %s\n", r[1], oneline(r[2]))) end
      end
    end
    return EXIT_OK
  elseif sub ~= "list" then
    return ctx:fail(EXIT_USAGE, "unknown ledger command '" .. sub .. "' (list or show KEY)")
  end
  if ctx.args[2] then return ctx:fail(EXIT_USAGE, "unexpected argument '" .. ctx.args[2] .. "'") end
  local filter = ledger_filter(ctx, o)
  if not filter then return ctx.code end
  local l = ctx:open_ledger()
  if not l then return ctx.code end
  local entries, err = l:list(filter)
  if not entries then return ctx:fail(EXIT_FATAL, "cannot read the ledger", err) end
  if o.json then
    local out = {}
    for i, e in ipairs(entries) do out[i] = entry_json(e) end
    ctx:out(to_json { entries = array(out), count = #entries, exit_code = 0 }, "\n")
    return EXIT_OK
  end
  if #entries == 0 then
    ctx:out("no entries\n")
    return EXIT_OK
  end
  local w = { 3, 5, 12, 5 }
  for _, e in ipairs(entries) do
    w[1] = math.max(w[1], #tostring(e.key))
    w[2] = math.max(w[2], #tostring(e.state or "-"))
    w[3] = math.max(w[3], #tostring(e.conversation))
    w[4] = math.max(w[4], #tostring(e.robot))
  end
  local fmt = "%-" .. w[1] .. "s  %-" .. w[2] .. "s  %-20s  %-" .. w[3] .. "s  %-" .. w[4] .. "s  %s\n"
  ctx:out((fmt:format("KEY", "STATE", "SENT (UTC)", "CONVERSATION", "ROBOT", "TAGS/TTL"):gsub("%s+\n$", "\n")))
  for _, e in ipairs(entries) do
    local extra = table.concat(e.tags or {}, ",")
    if e.ttl then extra = extra .. (extra ~= "" and " " or "") .. "ttl=" .. num(e.ttl) .. "s" end
    ctx:out((fmt:format(oneline(e.key), oneline(e.state or "-"), iso(e.sent_at), oneline(e.conversation),
      oneline(e.robot), oneline(extra)):gsub("%s+\n$", "\n")))
  end
  return EXIT_OK
end

function commands.token(ctx)
  local o = ctx.opts
  if #ctx.args > 0 then return ctx:fail(EXIT_USAGE, "unexpected argument '" .. ctx.args[1] .. "'") end
  local cfg = ctx:load_config()
  if not cfg then return ctx.code end
  local client = ctx:make_client()
  if not client then return ctx.code end
  local checked = cfg.access_token == nil
  if o["dry-run"] then checked = false end
  if checked then
    local tok, err = client:token()
    if not tok then return ctx:fail(EXIT_FATAL, "the credentials do not work", err) end
  end
  local msg = checked and ("ok: the credentials work (" .. cfg.credentials .. "); a token was fetched")
    or ("ok: credentials are set (" .. cfg.credentials .. ")" ..
      (cfg.access_token and "; a static token is used as is and cannot be checked without a call" or
        "; dry run, nothing fetched"))
  if o.json then
    ctx:out(to_json { ok = true, checked = checked, credentials = cfg.credentials,
      endpoint = cfg.endpoint, exit_code = 0 }, "\n")
  else
    ctx:out(msg, "\n")
  end
  return EXIT_OK
end

function commands.help(ctx)
  local topic = ctx.args[1]
  if topic and not USAGE[topic] then return ctx:fail(EXIT_USAGE, "no help on '" .. topic .. "'") end
  ctx:out(usage_text(topic))
  return EXIT_OK
end

---------------------------------------------------------------------------
-- main
---------------------------------------------------------------------------
--- main(argv [, env]) -> exit status
function M.main(argv, env)
  env = env or {}
  argv = argv or {}
  local list = {}
  for i = 1, #argv do list[i] = argv[i] end
  local ctx = setmetatable({
    stdout = env.stdout or io.stdout, stderr = env.stderr or io.stderr, stdin = env.stdin or io.stdin,
    getenv = env.getenv or os.getenv, isatty = env.isatty or default_isatty, opts = {},
  }, Ctx)
  -- Every failure path stores its status in ctx.code as well.
  local fail = ctx.fail
  ctx.fail = function(self, code, ...)
    self.code = code
    return fail(self, code, ...)
  end
  local parsed, perr = M.parse(list)
  if not parsed then
    for _, a in ipairs(list) do if a == "--json" then ctx.opts.json = true end end
    return ctx:fail(EXIT_USAGE, perr)
  end
  ctx.opts, ctx.args, ctx.command = parsed.opts, parsed.args, parsed.command
  if parsed.opts.help or parsed.command == nil then
    if parsed.command == nil and not parsed.opts.help then
      ctx.stderr:write(usage_text("main"))
      return EXIT_USAGE
    end
    ctx:out(usage_text(parsed.command ~= "help" and parsed.command or nil))
    return EXIT_OK
  end
  local ok, code = pcall(commands[parsed.command], ctx)
  ctx:close()
  if not ok then
    ctx.stderr:write("dingtalk-recall: internal error: ", tostring(code), "\n")
    return EXIT_FATAL
  end
  return code
end

return M
