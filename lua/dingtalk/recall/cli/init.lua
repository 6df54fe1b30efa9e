--- dingtalk.recall.cli: the logic of the `dingtalk-recall` command.
--
--   local cli = require "dingtalk.recall.cli"
--   os.exit(cli.main(arg))
--
-- main(argv [, env]) returns the exit status and never calls os.exit, so
-- it runs in-process under tests.  env may replace stdout, stderr,
-- stdin (objects with write / read), getenv, isatty(fd) and the ledger's
-- clock (a function returning epoch seconds).
--
-- The commands are a declarative table (dingtalk.recall.cli.commands):
-- each names its options (kind, type, validator) and a handler.  One
-- preamble runs before every handler: parse and check the options (exit 2
-- on any bad one, nothing sent), load the config, open the ledger when the
-- command keeps one; the client is made by ctx:client() when first needed.
-- Every output goes through dingtalk.recall.report.render: escaped and
-- redacted there.
--
-- Exit status: 0 every key recalled (or the command did what it said);
-- 1 some keys failed or errored; 2 usage or validation error (nothing
-- sent); 3 nothing could be done (credentials, config, ledger, network).
-- The access token and app secret are never printed.
local core = require "dingtalk.recall.core"
local config = require "dingtalk.recall.config"
local render = require "dingtalk.recall.report.render"
local commands = require "dingtalk.recall.cli.commands"

local M = {}

M.EXIT = commands.EXIT -- (defined once, beside the commands that return them)
local EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, EXIT_FATAL = M.EXIT.ok, M.EXIT.partial, M.EXIT.usage, M.EXIT.fatal

M.to_json = function(v) return render.json(v) end
M.json_array = render.array

local COMMANDS, GLOBAL = commands.COMMANDS, commands.GLOBAL
local SHORT = { h = "help", q = "quiet", n = "dry-run" }

local function usage_text(cmd)
  local c = COMMANDS[cmd]
  return (c and c.usage or commands.MAIN_USAGE) .. commands.COMMON_USAGE
end

---------------------------------------------------------------------------
-- argument parsing (from the table)
---------------------------------------------------------------------------
local function spec_of(command, name)
  if GLOBAL[name] then return GLOBAL[name] end
  local c = COMMANDS[command]
  return c and c.options[name]
end

local function any_spec(name)
  if GLOBAL[name] then return GLOBAL[name] end
  for _, c in pairs(COMMANDS) do
    if c.options[name] then return c.options[name] end
  end
  return nil
end

--- parse(argv) -> {command, opts, args} | nil, message.  Options are
-- checked by their command's validators: opts holds checked values
-- (numbers as numbers, durations in seconds).
function M.parse(argv)
  local raw, args, command, order = {}, {}, nil, {}
  local i, n = 1, #argv
  local only_args = false
  while i <= n do
    local a = argv[i]
    if type(a) ~= "string" then return nil, "arguments must be strings" end
    if only_args or a == "-" or a:sub(1, 1) ~= "-" then
      if command == nil then command = a else args[#args + 1] = a end
    elseif a == "--" then
      only_args = true
    else
      local name, value
      if a:sub(1, 2) == "--" then
        name, value = a:match("^%-%-([^=]+)=(.*)$")
        if not name then name = a:sub(3) end
      else
        name = SHORT[a:sub(2)]
        if not name then return nil, "unknown option " .. render.escape(a) end
      end
      local spec = any_spec(name)
      if not spec then return nil, "unknown option --" .. render.escape(name) end
      if spec.kind == "flag" then
        if value ~= nil then return nil, "--" .. name .. " takes no value" end
        raw[name] = true
      else
        if value == nil then
          i = i + 1
          value = argv[i]
          if value == nil then return nil, "--" .. name .. " needs a value" end
        end
        if spec.kind == "multi" then
          raw[name] = raw[name] or {}
          table.insert(raw[name], value)
        else
          if raw[name] ~= nil then return nil, "--" .. name .. " given twice" end
          raw[name] = value
        end
      end
      order[#order + 1] = name
    end
    i = i + 1
  end
  if command and not COMMANDS[command] then
    return nil, "unknown command '" .. render.escape(command) .. "'"
  end
  local opts = {}
  local seen = {}
  for _, name in ipairs(order) do
    if not seen[name] then
      seen[name] = true
      local spec
      if command then spec = spec_of(command, name) else spec = any_spec(name) end
      if command and not spec then
        return nil, "--" .. name .. " does not apply to '" .. command .. "'"
      end
      local v = raw[name]
      if spec.check then
        local values = spec.kind == "multi" and v or { v }
        local out = {}
        for j, x in ipairs(values) do
          local ok, why = spec.check(x)
          if ok == nil then return nil, "--" .. name .. ": " .. render.escape(why) end
          out[j] = ok
        end
        v = spec.kind == "multi" and out or out[1]
      end
      opts[name] = v
    end
  end
  return { command = command, opts = opts, args = args }
end

---------------------------------------------------------------------------
-- the run context
---------------------------------------------------------------------------
-- isatty(3) through the journal module (plain libc, no process); a
-- `test -t` child only when that module is older than its isatty.
local function default_isatty(fd)
  local ok, journal = pcall(require, "dingtalk.recall.journal")
  if ok and type(journal) == "table" and journal.isatty then return journal.isatty(fd) end
  local a, _, c = os.execute("test -t " .. tonumber(fd))
  if type(a) == "number" then return a == 0 end
  return a == true and (c == nil or c == 0)
end

local Ctx = {}
Ctx.__index = Ctx
M.Ctx = Ctx
Ctx.EXIT = M.EXIT

--- The secrets this run knows: redacted from every output.
function Ctx:secrets()
  local list = {}
  local cfg = self.cfg or {}
  for _, k in ipairs { "access_token", "app_secret", "suite_secret" } do
    if type(cfg[k]) == "string" then list[#list + 1] = cfg[k] end
  end
  for _, v in ipairs(render.secrets_of(self._client)) do list[#list + 1] = v end
  return list
end

function Ctx:out(...)
  self.stdout:write(...)
end

--- A line for a human on stderr (not with --quiet); safe(...) pieces.
function Ctx:note(...)
  if self.opts.quiet then return end
  self.stderr:write(...)
end

--- s, redacted and escaped: any text that did not come from this program.
function Ctx:safe(s)
  return render.safe(s, self:secrets())
end

function Ctx:json(doc)
  self:out(render.json(doc, { secrets = self:secrets() }), "\n")
end

--- fail(code, msg [, errobj]): prints the failure (JSON too with --json)
-- and returns code.  msg is this program's text; errobj's fields are
-- escaped and redacted by the renderer.
function Ctx:fail(code, msg, errobj)
  self.code = code
  local secrets = self:secrets()
  if self.opts.json then
    if errobj then
      self:out(render.error(errobj, "json", { secrets = secrets, context = msg, exit_code = code,
        command = self.command }), "\n")
    else
      self:json { error = { code = code == EXIT_USAGE and "usage" or "error", message = msg }, exit_code = code,
        command = self.command }
    end
  end
  local text = msg and render.safe(msg, secrets) or nil
  if errobj then
    text = render.error(errobj, "text", { secrets = secrets, context = msg })
  end
  self.stderr:write("dingtalk-recall: ", text or "failed", "\n")
  if code == EXIT_USAGE and not errobj then
    self.stderr:write("see: dingtalk-recall ", self.command and (self.command .. " ") or "", "--help\n")
  end
  return code
end

-- Errors that mean nothing could be done at all: credentials, network.
-- Read from the core's catalogue (fatal, auth) when it has one.
local FATAL_CODES = {
  InvalidAuthentication = true, invalidClientIdOrSecret = true,
  ["AuthenticationFailed.MissingParameter"] = true,
  ["Forbidden.AccessDenied.AccessTokenPermissionDenied"] = true,
  ["Forbidden.AccessDenied.ApiCountLimitForOrg"] = true,
  ["response.redirect"] = true, ["response.invalid"] = true,
}
local function is_fatal(err)
  local code = type(err) == "table" and type(err.code) == "string" and err.code or ""
  local info = type(core.codes) == "table" and core.codes[code]
  if info and (info.fatal or info.auth) then return true end
  return FATAL_CODES[code] or code:match("^transport%.") ~= nil or code:match("^token%.") ~= nil
end
M.is_fatal = is_fatal
Ctx.is_fatal = is_fatal

local CLIENT_NUMBERS = { "qps", "concurrency", "timeout" }

function Ctx:load_config()
  if self.cfg then return self.cfg end
  local o = self.opts
  local flags = { endpoint = o.endpoint, ca_file = o["ca-file"], ledger = o.ledger }
  for _, k in ipairs(CLIENT_NUMBERS) do flags[k] = o[k] end
  local cfg, err = config.load { path = o.config, getenv = self.getenv, flags = flags }
  if not cfg then
    return nil, self:fail(err.code == "config.invalid" and EXIT_USAGE or EXIT_FATAL, nil, err)
  end
  self.cfg = cfg
  -- The client's own rules judge the numbers (a probe client, no I/O):
  -- an option the client would refuse is a usage error, nothing sent.
  local probe = { access_token = "probe" }
  for _, k in ipairs(CLIENT_NUMBERS) do probe[k] = cfg[k] end
  local ok, c, perr = pcall(require("dingtalk.recall").client, probe)
  if not ok or not c then
    local e = ok and perr or core.error("invalidParameter.param.invalid", tostring(c))
    return nil, self:fail(EXIT_USAGE, "bad option", e)
  end
  if c.close then pcall(c.close, c) end
  return cfg
end

--- ctx:client([robot]) -> client | nil (the failure is printed, ctx.code set).
function Ctx:client(robot)
  if self._client then return self._client end
  local cfg = assert(self.cfg)
  if not config.has_credentials(cfg) then
    return nil, self:fail(EXIT_FATAL, "no credentials: set DINGTALK_ACCESS_TOKEN, or DINGTALK_APP_KEY and " ..
      "DINGTALK_APP_SECRET, or put them in " .. (config.default_path(self.getenv) or "a config file") ..
      " (chmod 600)")
  end
  local ok, client, err = pcall(require("dingtalk.recall").client, config.client_options(cfg, { robot_code = robot }))
  if not ok then
    return nil, self:fail(EXIT_USAGE, "bad option", core.error("invalidParameter.param.invalid", tostring(client)))
  end
  if not client then
    return nil, self:fail(err.code == "invalid.endpoint" and EXIT_USAGE or EXIT_FATAL, "cannot make a client", err)
  end
  self._client = client
  return client
end

--- ctx:ledger_args(ledger) -> location, opts for ledger.open: the
-- configured ledger, or one Redis for the fleet (the redis branch's
-- config), else the default file found through this run's environment (""
-- when it has no HOME: ledger.open says so); the run's clock when main was
-- given one.
function Ctx:ledger_args(ledger)
  local cfg = assert(self.cfg)
  return cfg.ledger or cfg.redis or ledger.default_path(self.getenv) or "", { clock = self.clock }
end

function Ctx:open_ledger()
  if self.ledger then return self.ledger end
  local ok, ledger = pcall(require, "dingtalk.recall.ledger")
  if not ok then return nil, self:fail(EXIT_FATAL, "the ledger module is not available: " .. tostring(ledger)) end
  local l, err = ledger.open(self:ledger_args(ledger))
  if not l then return nil, self:fail(EXIT_FATAL, "cannot open the ledger", err) end
  self.ledger = l
  return l
end

function Ctx:close()
  if self._client then pcall(self._client.close, self._client) end
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

-- exit status of a recall report (read from its fields, never re-classified)
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

function Ctx:print_report(report, what)
  local status = report_status(report)
  local fmt = self.opts.json and "json" or "text"
  self:out(render.render(report, fmt, { secrets = self:secrets(), command = what, exit_code = status,
    ok = status == EXIT_OK }), fmt == "json" and "\n" or "")
  return status
end

-- Prints the batches a recall would send (dry run).
function Ctx:print_batches(groups, what)
  local batches, total = {}, 0
  for _, g in ipairs(groups) do
    for first = 1, #g.keys, core.MAX_KEYS do
      local batch = {}
      for j = first, math.min(#g.keys, first + core.MAX_KEYS - 1) do batch[#batch + 1] = g.keys[j] end
      total = total + #batch
      -- (the JSON keeps the API's names: scripts read them)
      batches[#batches + 1] = { openConversationId = g.conversation, robotCode = g.robot,
        processQueryKeys = render.array(batch) }
    end
  end
  if self.opts.json then
    self:json { dry_run = true, command = what, total = total, batches = render.array(batches), exit_code = 0 }
    return EXIT_OK
  end
  self:out(string.format("dry run: would recall %d key%s in %d request%s; nothing sent\n", total,
    total == 1 and "" or "s", #batches, #batches == 1 and "" or "s"))
  for i, b in ipairs(batches) do
    self:out(string.format("batch %d: conversation %s robot %s, %d keys\n", i, self:safe(b.openConversationId),
      self:safe(b.robotCode), #b.processQueryKeys))
    for _, k in ipairs(b.processQueryKeys) do self:out("  ", self:safe(k), "\n") end
  end
  return EXIT_OK
end

---------------------------------------------------------------------------
-- main
---------------------------------------------------------------------------

--- check(parsed) -> parsed | nil, why: the command's own rules on its
-- arguments and options (the part of the preamble that needs no config).
function M.check(parsed)
  local cmd = COMMANDS[parsed.command]
  if not cmd then return nil, "no command" end
  if cmd.args_max and #parsed.args > cmd.args_max then
    return nil, "unexpected argument '" .. render.escape(parsed.args[cmd.args_max + 1]) .. "'"
  end
  if cmd.check then
    local why = cmd.check(parsed.opts, parsed.args)
    if why then return nil, why end
  end
  return parsed
end

-- The preamble every command shares, then its handler.
local function run_command(ctx, cmd)
  local ok, why = M.check { command = ctx.command, opts = ctx.opts, args = ctx.args }
  if not ok then return ctx:fail(EXIT_USAGE, why) end
  if cmd.config ~= false then
    if not ctx:load_config() then return ctx.code end
  end
  if cmd.ledger == true or (cmd.ledger == "wet" and not ctx.opts["dry-run"]) then
    if not ctx:open_ledger() then return ctx.code end
  end
  return cmd.run(ctx)
end

--- main(argv [, env]) -> exit status
function M.main(argv, env)
  env = env or {}
  argv = argv or {}
  local list = {}
  for i = 1, #argv do list[i] = argv[i] end
  local ctx = setmetatable({
    stdout = env.stdout or io.stdout, stderr = env.stderr or io.stderr, stdin = env.stdin or io.stdin,
    getenv = env.getenv or os.getenv, isatty = env.isatty or default_isatty, clock = env.clock, opts = {},
  }, Ctx)
  local parsed, perr = M.parse(list)
  if not parsed then
    for _, a in ipairs(list) do if a == "--json" then ctx.opts.json = true end end
    for _, a in ipairs(list) do
      if COMMANDS[a] then ctx.command = a break end
    end
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
  ctx.usage_text = usage_text
  local ok, code = xpcall(function() return run_command(ctx, COMMANDS[parsed.command]) end, debug.traceback)
  ctx:close()
  if not ok then
    -- Still one JSON document with --json; the message is escaped and redacted.
    local msg = tostring(code):match("^[^\n]*")
    return ctx:fail(EXIT_FATAL, "internal error: " .. msg)
  end
  return code
end

return M
