--- dingtalk.recall.cli.commands: the CLI's commands as one declarative
-- table.  Each command: usage (its help text), options (name -> {kind =
-- "value" | "flag" | "multi", check = fn(string) -> value | nil, why}),
-- args_max (positional arguments allowed), check(opts, args) -> why |
-- nil (a cross-option rule), config (false: no config), ledger (true: open
-- it in the preamble; "wet": unless --dry-run) and run(ctx), the handler.
-- The preamble (dingtalk.recall.cli) parses and checks every option with
-- these validators, loads the config and opens the ledger first.
local core = require "dingtalk.recall.core"
local selector = require "dingtalk.recall.selector"
local render = require "dingtalk.recall.report.render"
local U = require "dingtalk.recall.cli.usage"

local M = {}

-- The exit statuses, one table for the commands and the preamble
-- (dingtalk.recall.cli.EXIT): 0 done, 1 some keys not recalled, 2 usage
-- (nothing sent), 3 nothing could be done.
M.EXIT = { ok = 0, partial = 1, usage = 2, fatal = 3 }
local EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, EXIT_FATAL = M.EXIT.ok, M.EXIT.partial, M.EXIT.usage, M.EXIT.fatal
local array = render.array

---------------------------------------------------------------------------
-- validators: the same bounds as the client's options
---------------------------------------------------------------------------
local function number(min, max, integer, strict_min)
  return function(s)
    local x = type(s) == "string" and (s:match("^%d+%.?%d*$") or s:match("^%.%d+$")) and tonumber(s)
    if not x or x ~= x or x == math.huge then return nil, "'" .. tostring(s) .. "' is not a number" end
    if integer and x ~= math.floor(x) then return nil, "wants a whole number" end
    if x < min or (strict_min and x == min) then
      return nil, "must be " .. (strict_min and "more than " or "at least ") .. min
    end
    if x > max then return nil, "must be at most " .. max end
    return x
  end
end

local function nonempty(s)
  if s == "" then return nil, "must not be empty" end
  return s
end

local function state(s)
  local ok, ledger = pcall(require, "dingtalk.recall.ledger")
  if ok and ledger.STATES and not ledger.STATES[s] then
    local names = {}
    for k in pairs(ledger.STATES) do names[#names + 1] = k end
    table.sort(names)
    return nil, "must be one of " .. table.concat(names, ", ")
  end
  return s
end

local NEED_ROBOT = "--robot CODE is required (or DINGTALK_ROBOT_CODE)"
local V = { kind = "value" }
local function value(check) return { kind = "value", check = check } end
local FLAG = { kind = "flag" }

local O = {
  conversation = value(nonempty), robot = value(nonempty), text = value(nonempty),
  tag = { kind = "multi", check = selector.tag }, ttl = value(selector.duration),
  last = value(selector.count), since = value(selector.duration), all = FLAG,
  state = value(state), due = FLAG,
  qps = value(number(0, 10000)), concurrency = value(number(1, 1024, true)),
  timeout = value(number(0, 3600, false, true)),
}

--- Options every command takes.
M.GLOBAL = {
  endpoint = V, ["ca-file"] = V, ledger = V, config = V,
  json = FLAG, ["dry-run"] = FLAG, quiet = FLAG, help = FLAG, ["no-progress"] = FLAG,
}

local function pick(...)
  local t = {}
  for _, name in ipairs { ... } do t[name] = assert(O[name], name) end
  return t
end

---------------------------------------------------------------------------
-- helpers
---------------------------------------------------------------------------

local function read_keys(ctx, args)
  local keys, from_stdin = {}, false
  for _, a in ipairs(args) do
    if a == "-" then from_stdin = true else keys[#keys + 1] = a end
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

-- The ledger filter of --conversation/--robot/--last/--since/--tag/--state/--due.
local function ledger_filter(o)
  local filter = { conversation = o.conversation, robot = o.robot, state = o.state, due = o.due or nil }
  local sel = o.last and { kind = "last", n = o.last } or o.since and { kind = "since", seconds = o.since }
    or o.tag and { kind = "tag", tag = o.tag[1] } or nil
  for k, v in pairs(sel and selector.filter(sel) or {}) do filter[k] = v end
  if o.last and o.since then filter.since = o.since end -- ledger list combines them
  if o.tag then filter.tag = o.tag[1] end
  return filter
end
M.ledger_filter = ledger_filter

--- selection(opts) -> filter | nil, why: undo's selector options, the
-- same answer as selector.parse on "last N" / "since D" / "tag T" / "all".
function M.selection(o)
  local n = (o.last and 1 or 0) + (o.since and 1 or 0) + (o.tag and 1 or 0) + (o.all and 1 or 0)
  if n > 1 then return nil, "give one of --last, --since, --tag and --all" end
  if o.tag and #o.tag > 1 then return nil, "give --tag once" end
  if n == 0 then return { last = 1 } end
  return ledger_filter { last = o.last, since = o.since, tag = o.tag }
end

local function nothing_json(ctx, what, note)
  ctx:json { recalled = array(), failed = {}, errors = {}, expired = array(), ok = true, total = 0,
    exit_code = 0, command = what, note = note }
end

---------------------------------------------------------------------------
-- the commands
---------------------------------------------------------------------------
local C = {}
M.COMMANDS = C

C.recall = {
  usage = U.recall,
  options = pick("conversation", "robot", "qps", "concurrency", "timeout"),
  run = function(ctx)
    local o, cfg = ctx.opts, ctx.cfg
    local cid, robot = o.conversation, o.robot or cfg.robot_code
    if not cid then return ctx:fail(EXIT_USAGE, "--conversation CID is required") end
    if not robot or robot == "" then return ctx:fail(EXIT_USAGE, NEED_ROBOT) end
    local keys = read_keys(ctx, ctx.args)
    if #keys == 0 then
      return ctx:fail(EXIT_USAGE, "no keys given (as arguments, or on stdin with - or a pipe)")
    end
    -- Everything is checked, once, before anything is sent: the plan made
    -- here is the one the client runs.
    local plan, err = core.plan(cid, robot, keys)
    if not plan then return ctx:fail(EXIT_USAGE, "invalid request", err) end
    local unique, seen, bad = {}, {}, {}
    for _, k in ipairs(keys) do
      if not seen[k] then
        seen[k] = true
        unique[#unique + 1] = k
        if plan.invalid[k] then bad[#bad + 1] = { k, plan.invalid[k] } end
      end
    end
    if #bad > 0 then
      for i = 2, #bad do
        ctx.stderr:write("dingtalk-recall: invalid key ", ctx:safe(bad[i][1]), ": ", ctx:safe(bad[i][2].message), "\n")
      end
      return ctx:fail(EXIT_USAGE, "invalid key " .. bad[1][1] .. "; nothing was sent", bad[1][2])
    end
    if o["dry-run"] then
      return ctx:print_batches({ { conversation = cid, robot = robot, keys = unique } }, "recall")
    end
    -- The ledger's entries among these keys: marked recalling first (as
    -- l:recall does), then with their outcome.
    -- No ledger (none configured, or it cannot be opened): recall all the same.
    local ledger = require "dingtalk.recall.ledger"
    local lok, l, lerr = pcall(ledger.open, ctx:ledger_args(ledger))
    if not (lok and l) then
      ctx:note("dingtalk-recall: note: the ledger is not updated (", ctx:safe(tostring(lok and lerr or l)), ")\n")
      l = { list = function() return {} end, clock = ctx.clock or os.time }
    else
      ctx.ledger = l
    end
    local known, entries = {}, l:list { conversation = cid } or {}
    for _, e in ipairs(entries) do if seen[e.key] then known[#known + 1] = e.key end end
    if #known > 0 then
      local mok, merr = l:mark(known, "recalling")
      if not mok then return ctx:fail(EXIT_FATAL, "cannot write the ledger", merr) end
    end
    local client = ctx:client(robot)
    if not client then return ctx.code end
    -- ambiguous: these keys may have been recalled before (by a bot, an
    -- earlier run): the server's "already recalled" then counts recalled.
    local report = client:run({ plan }, { on_progress = ctx:progress() }, { ambiguous = true })
    if #known > 0 then
      local uok, uerr = l:settle(report, known)
      if not uok then ctx:note("dingtalk-recall: the ledger was not updated: ", ctx:safe(tostring(uerr)), "\n") end
    end
    return ctx:print_report(report, "recall")
  end,
}

C.undo = {
  usage = U.undo,
  options = pick("conversation", "robot", "last", "since", "tag", "all", "qps", "concurrency", "timeout"),
  args_max = 0,
  check = function(o)
    if not o.conversation then return "--conversation CID is required" end
    local _, why = M.selection(o)
    return why
  end,
  ledger = true,
  run = function(ctx)
    local o, l = ctx.opts, ctx.ledger
    local filter = assert(M.selection(o))
    filter.conversation, filter.robot = o.conversation, o.robot
    -- what l:recall would recall now (the ledger decides), shown or done
    local sel, lerr = l:select(filter)
    if not sel then return ctx:fail(EXIT_FATAL, "cannot read the ledger", lerr) end
    if sel.total == 0 then
      if o.json then nothing_json(ctx, "undo", "nothing matched")
      else ctx:out("nothing to recall: no recorded message matches\n") end
      return EXIT_OK
    end
    if o["dry-run"] then return ctx:print_batches(sel.groups, "undo") end
    local client = ctx:client()
    if not client then return ctx.code end
    local report, err = l:recall(client, filter, { on_progress = ctx:progress() })
    if not report then return ctx:fail(ctx.is_fatal(err) and EXIT_FATAL or EXIT_PARTIAL, "undo failed", err) end
    return ctx:print_report(report, "undo")
  end,
}

C.send = {
  usage = U.send,
  options = pick("conversation", "robot", "text", "tag", "ttl", "timeout"),
  args_max = 0,
  run = function(ctx)
    local o, cfg = ctx.opts, ctx.cfg
    local cid, robot = o.conversation, o.robot or cfg.robot_code
    if not cid then return ctx:fail(EXIT_USAGE, "--conversation CID is required") end
    if not robot or robot == "" then return ctx:fail(EXIT_USAGE, NEED_ROBOT) end
    if not o.text then return ctx:fail(EXIT_USAGE, "--text TEXT is required") end
    local request = { openConversationId = cid, robotCode = robot, msgKey = "sampleText",
      msgParam = { content = o.text } }
    local built, berr = core.build_send(request, { access_token = "dry-run", endpoint = cfg.endpoint })
    if not built then return ctx:fail(EXIT_USAGE, "invalid message", berr) end
    local ttl = o.ttl
    if o["dry-run"] then
      if o.json then
        ctx:json { dry_run = true, command = "send", openConversationId = cid, robotCode = robot,
          msgKey = "sampleText", text = o.text, tags = array(o.tag or {}), ttl = ttl, exit_code = 0 }
      else
        ctx:out("dry run: would send sampleText to conversation ", ctx:safe(cid), " as robot ", ctx:safe(robot),
          ttl and (" (ttl " .. ttl .. " s)") or "", o.tag and (" tags " .. ctx:safe(table.concat(o.tag, ","))) or "",
          "; nothing sent\n")
      end
      return EXIT_OK
    end
    local l = ctx:open_ledger()
    if not l then return ctx.code end
    local client = ctx:client(robot)
    if not client then return ctx.code end
    l:attach(client)
    local key, err = client:send(cid, "sampleText", { content = o.text }, { tags = o.tag, ttl = ttl })
    if not key then
      return ctx:fail(ctx.is_fatal(err) and EXIT_FATAL or EXIT_PARTIAL, "send failed", err)
    end
    if o.json then
      ctx:json { processQueryKey = key, openConversationId = cid, robotCode = robot, tags = array(o.tag or {}),
        ttl = ttl,
        exit_code = 0 }
    else
      ctx:out(ctx:safe(key), "\n")
    end
    return EXIT_OK
  end,
}

C.sweep = {
  usage = U.sweep,
  options = pick("qps", "concurrency", "timeout"),
  args_max = 0,
  ledger = true,
  run = function(ctx)
    local o, l = ctx.opts, ctx.ledger
    local sel, lerr = l:select { due = true }
    if not sel then return ctx:fail(EXIT_FATAL, "cannot read the ledger", lerr) end
    if sel.total == 0 then
      if o.json then nothing_json(ctx, "sweep", "nothing due")
      elseif not o.quiet then ctx:out("nothing due\n") end
      return EXIT_OK
    end
    if o["dry-run"] then return ctx:print_batches(sel.groups, "sweep") end
    local client = ctx:client()
    if not client then return ctx.code end
    local report, err = require("dingtalk.recall.rules").sweep(l, client, { on_progress = ctx:progress() })
    if not report then return ctx:fail(ctx.is_fatal(err) and EXIT_FATAL or EXIT_PARTIAL, "sweep failed", err) end
    return ctx:print_report(report, "sweep")
  end,
}

local function num(n)
  if type(n) ~= "number" then return tostring(n) end
  if n == math.floor(n) then return string.format("%d", n) end
  return string.format("%.3g", n)
end

local function iso(t)
  if type(t) ~= "number" or t ~= t or math.abs(t) > 1e11 then return "-" end
  return os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(t))
end

local function entry_json(e)
  return {
    key = e.key, conversation = e.conversation, robot = e.robot, sent_at = e.sent_at,
    tags = array(e.tags or {}), ttl = e.ttl, state = e.state, reason = e.reason, code = e.code,
    updated_at = e.updated_at,
  }
end

local function ledger_show(ctx, key)
  local o, l = ctx.opts, ctx.ledger
  local e = l:get(key)
  if not e then
    if o.json then
      ctx:json { error = { code = "ledger.not_found", message = "no such key" }, exit_code = EXIT_PARTIAL }
    end
    ctx.stderr:write("dingtalk-recall: the ledger has no key ", ctx:safe(key), "\n")
    return EXIT_PARTIAL
  end
  if o.json then
    ctx:json(entry_json(e))
    return EXIT_OK
  end
  local rows = {
    { "key", e.key }, { "conversation", e.conversation }, { "robot", e.robot },
    { "sent_at", iso(e.sent_at) }, { "state", e.state }, { "tags", table.concat(e.tags or {}, ",") },
    { "ttl", e.ttl and (num(e.ttl) .. " s") or nil }, { "reason", e.reason }, { "code", e.code },
    { "updated_at", e.updated_at and iso(e.updated_at) or nil },
  }
  for _, r in ipairs(rows) do
    if r[2] ~= nil and r[2] ~= "" then ctx:out(string.format("%-13s %s\n", r[1], ctx:safe(r[2]))) end
  end
  return EXIT_OK
end

C.ledger = {
  usage = U.ledger,
  options = pick("conversation", "robot", "tag", "since", "last", "state", "due"),
  args_max = 2,
  check = function(o, args)
    local sub = args[1] or "list"
    if sub == "show" then
      if not args[2] then return "usage: dingtalk-recall ledger show KEY" end
    elseif sub ~= "list" then
      return "unknown ledger command '" .. render.escape(sub) .. "' (list or show KEY)"
    elseif args[2] then
      return "unexpected argument '" .. render.escape(args[2]) .. "'"
    end
    if o.tag and #o.tag > 1 then return "give --tag once" end
  end,
  ledger = true,
  run = function(ctx)
    local o, l = ctx.opts, ctx.ledger
    if ctx.args[1] == "show" then return ledger_show(ctx, ctx.args[2]) end
    local entries, err = l:list(ledger_filter(o))
    if not entries then return ctx:fail(EXIT_FATAL, "cannot read the ledger", err) end
    if o.json then
      local out = {}
      for i, e in ipairs(entries) do out[i] = entry_json(e) end
      ctx:json { entries = array(out), count = #entries, exit_code = 0 }
      return EXIT_OK
    end
    if #entries == 0 then
      ctx:out("no entries\n")
      return EXIT_OK
    end
    local rows, w = {}, { 3, 5, 12, 5 }
    for i, e in ipairs(entries) do
      local extra = table.concat(e.tags or {}, ",")
      if e.ttl then extra = extra .. (extra ~= "" and " " or "") .. "ttl=" .. num(e.ttl) .. "s" end
      local r = { ctx:safe(e.key), ctx:safe(e.state or "-"), iso(e.sent_at), ctx:safe(e.conversation),
        ctx:safe(e.robot), ctx:safe(extra) }
      rows[i] = r
      w[1], w[2] = math.max(w[1], #r[1]), math.max(w[2], #r[2])
      w[3], w[4] = math.max(w[3], #r[4]), math.max(w[4], #r[5])
    end
    local fmt = "%-" .. w[1] .. "s  %-" .. w[2] .. "s  %-20s  %-" .. w[3] .. "s  %-" .. w[4] .. "s  %s\n"
    ctx:out((fmt:format("KEY", "STATE", "SENT (UTC)", "CONVERSATION", "ROBOT", "TAGS/TTL"):gsub("%s+\n$", "\n")))
    for _, r in ipairs(rows) do
      ctx:out((fmt:format(r[1], r[2], r[3], r[4], r[5], r[6]):gsub("%s+\n$", "\n")))
    end
    return EXIT_OK
  end,
}

C.token = {
  usage = U.token,
  options = pick("timeout"),
  args_max = 0,
  run = function(ctx)
    local o, cfg = ctx.opts, ctx.cfg
    local client = ctx:client()
    if not client then return ctx.code end
    local checked = cfg.access_token == nil and not o["dry-run"]
    if checked then
      local tok, err = client:token()
      if not tok then return ctx:fail(EXIT_FATAL, "the credentials do not work", err) end
    end
    if o.json then
      ctx:json { ok = true, checked = checked, credentials = cfg.credentials, endpoint = cfg.endpoint, exit_code = 0 }
    else
      ctx:out(ctx:safe(checked and ("ok: the credentials work (" .. cfg.credentials .. "); a token was fetched")
        or ("ok: credentials are set (" .. cfg.credentials .. ")" ..
          (cfg.access_token and "; a static token is used as is and cannot be checked without a call" or
            "; dry run, nothing fetched"))), "\n")
    end
    return EXIT_OK
  end,
}

C.help = {
  options = {},
  args_max = 1,
  config = false,
  check = function(_, args)
    if args[1] and not C[args[1]] then return "no help on '" .. render.escape(args[1]) .. "'" end
  end,
  run = function(ctx)
    ctx:out(ctx.usage_text(ctx.args[1]))
    return EXIT_OK
  end,
}

M.MAIN_USAGE, M.COMMON_USAGE = U.main, U.common

return M
