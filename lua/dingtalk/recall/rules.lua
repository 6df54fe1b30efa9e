--- dingtalk.recall.rules: wire recall into a bot, declaratively.
--
--   local rules = require "dingtalk.recall.rules"
--   local r = rules.new { ledger = l, client = c, admins = { "staff1" }, allow_group_admins = true }
--   local result = r:handle(msg)     -- msg: a verified callback (dingtalk.recall.callback)
--   if result then reply(result.reply) end
--   rules.sweep(l, c)                -- from a timer or cron: recall messages whose ttl elapsed
--   rules.on("recalled", function(ev) audit(ev) end)
--
-- Chat commands (in a group, from an allowed sender):
--   /recall last [N]     the last N messages of this bot in this group (default 1)
--   /recall since 10m    those sent in the last 10 minutes (s, m, h, d; combined: 1h30m)
--   /recall tag <tag>    those sent with this tag
--   /recall all          everything recorded for this group, after a confirmation:
--                        the bot answers with a code, and only "/recall all confirm <code>"
--                        from the same sender within 2 minutes runs it
--   /recall help         the list above
-- Allowed: staff ids in `admins`, and group admins (isAdmin in the
-- callback) unless allow_group_admins = false.  Anyone else gets a
-- refusal and nothing is recalled.
--
-- Events (rules.on for every rule set, r:on for one): "command" (an
-- authorised command is about to run), "refused", "confirm" (a
-- confirmation was asked), "recalled" (a recall ran: ev.report),
-- "failed" (a recall ran and some keys were not recalled, or it could
-- not run: ev.report, ev.err), "swept" (rules.sweep ran).  Handlers get
-- one event table; an error in a handler is caught and listed in
-- result.hook_errors, it never stops the command.
local selector = require "dingtalk.recall.selector"
local render = require "dingtalk.recall.report.render"

local M = {}

local CONFIRM_TTL = 120
local DEFAULT_REPLIES = {
  refused = "Sorry, you are not allowed to recall messages here.",
  group_only = "Recall works in group chats only.",
  nothing = "Nothing to recall.",
}

local EVENTS = { command = true, refused = true, confirm = true, recalled = true, failed = true, swept = true }
M.EVENTS = EVENTS

local USAGE = table.concat({
  "Usage:",
  "/recall last [N] - recall the last N messages (default 1)",
  "/recall since 10m - recall what was sent in the last 10 minutes (s, m, h, d)",
  "/recall tag <tag> - recall the messages sent with this tag",
  "/recall all - recall everything recorded for this group (asks for confirmation)",
}, "\n")
M.USAGE = USAGE

---------------------------------------------------------------------------
-- hooks
---------------------------------------------------------------------------
local function add_hook(list, event, fn)
  if type(event) ~= "string" or not EVENTS[event] then
    error("unknown rules event '" .. tostring(event) .. "'", 3)
  end
  if type(fn) ~= "function" then error("rules.on expects a function", 3) end
  list[event] = list[event] or {}
  table.insert(list[event], fn)
  return fn
end

local function remove_hook(list, event, fn)
  local l = list[event]
  if not l then return false end
  for i = #l, 1, -1 do
    if l[i] == fn then
      table.remove(l, i)
      return true
    end
  end
  return false
end

local global_hooks = {}

--- rules.on(event, fn) -> fn: a handler for every rule set and rules.sweep.
function M.on(event, fn) return add_hook(global_hooks, event, fn) end
--- rules.off(event, fn) -> removed?
function M.off(event, fn) return remove_hook(global_hooks, event, fn) end

local function emit(own, event, ev, errors)
  ev.event = event
  for _, list in ipairs({ global_hooks, own or {} }) do
    local l = list[event]
    if l then
      for _, fn in ipairs(l) do
        local ok, err = pcall(fn, ev)
        if not ok and errors then errors[#errors + 1] = event .. ": " .. tostring(err) end
      end
    end
  end
end

---------------------------------------------------------------------------
-- parsing
---------------------------------------------------------------------------
--- rules.parse_duration("1h30m") -> seconds | nil, message: the
-- selector module's (dingtalk.recall.selector.duration).
M.parse_duration = selector.duration

local function words(text)
  local t = {}
  for w in text:gmatch("%S+") do t[#t + 1] = w end
  return t
end

--- rules.parse(text) -> command | nil, why.  nil, nil when the text is
-- not a /recall command at all.  command = {action = "last", n} |
-- {action = "since", seconds} | {action = "tag", tag} | {action = "all"} |
-- {action = "confirm", code} | {action = "help"}.
function M.parse(text)
  if type(text) ~= "string" then return nil end
  local s = text:gsub("^%s+", "")
  -- DingTalk may leave "@Bot " mentions in the text.
  while s:match("^@%S+%s") do s = s:gsub("^@%S+%s+", "") end
  local w = words(s)
  if not w[1] or w[1]:lower() ~= "/recall" then return nil end
  local sub = w[2] and w[2]:lower()
  if sub == nil or sub == "help" then return { action = "help" } end
  if sub == "all" and #w == 4 and w[3]:lower() == "confirm" then
    return { action = "confirm", code = w[4]:upper() }
  end
  -- last / since / tag / all: the selector module's words and answers.
  if selector.KINDS[sub] then
    local rest = {}
    for i = 2, #w do rest[#rest + 1] = w[i] end
    local sel, why = selector.parse(rest)
    if not sel then
      if sub == "all" then return nil, "usage: /recall all, then /recall all confirm <code>" end
      return nil, "usage: /recall " .. why
    end
    if sel.kind == "last" then return { action = "last", n = sel.n } end
    if sel.kind == "since" then return { action = "since", seconds = sel.seconds } end
    if sel.kind == "tag" then return { action = "tag", tag = sel.tag } end
    return { action = "all" }
  end
  return nil, "unknown command '/recall " .. render.escape(w[2]) .. "'"
end

---------------------------------------------------------------------------
-- the rule set
---------------------------------------------------------------------------
local Rules = {}
Rules.__index = Rules

local function random_code(rand)
  local alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
  local f = not rand and io.open("/dev/urandom", "rb")
  local bytes = f and f:read(4)
  if f then f:close() end
  local out = {}
  for i = 1, 4 do
    local n
    if bytes and #bytes == 4 then n = bytes:byte(i) else n = math.floor((rand or math.random)() * 256) end
    local j = n % #alphabet + 1
    out[i] = alphabet:sub(j, j)
  end
  return table.concat(out)
end

--- rules.new(opts) -> rule set.
-- opts.ledger, opts.client (both required for commands that recall);
-- opts.admins: staff ids allowed (a list, or a set); opts.allow_group_admins
-- (default true); opts.match_robot: recall only what the addressed robot
-- sent (default true); opts.clock (seconds, default os.time);
-- opts.confirm_ttl (default 120); opts.replies: override texts
-- (refused, group_only, nothing); opts.random: for confirmation codes;
-- opts.pending: where confirmations wait (default a private table).
function M.new(opts)
  if type(opts) ~= "table" then error("rules.new expects a table of options", 2) end
  local admins = {}
  if opts.admins ~= nil then
    if type(opts.admins) ~= "table" then error("rules.new: admins must be a list of staff ids", 2) end
    for k, v in pairs(opts.admins) do
      if type(k) == "number" and type(v) == "string" then
        admins[v] = true
      elseif type(k) == "string" and v then
        admins[k] = true
      end
    end
  end
  for _, name in ipairs({ "clock", "random" }) do
    if opts[name] ~= nil and type(opts[name]) ~= "function" then
      error("rules.new: " .. name .. " must be a function", 2)
    end
  end
  local replies = {}
  for k, v in pairs(DEFAULT_REPLIES) do replies[k] = v end
  for k, v in pairs(opts.replies or {}) do replies[k] = v end
  return setmetatable({
    ledger = opts.ledger, client = opts.client, admins = admins,
    allow_group_admins = opts.allow_group_admins ~= false,
    match_robot = opts.match_robot ~= false,
    clock = opts.clock or os.time, confirm_ttl = opts.confirm_ttl or CONFIRM_TTL,
    random = opts.random, replies = replies, hooks = {},
    -- where "/recall all" confirmations wait: a table, or a table-like
    -- proxy (OpenResty: onto a shared dict, so any worker can confirm)
    pending = opts.pending or {},
  }, Rules)
end

--- r:on(event, fn) -> fn;  r:off(event, fn) -> removed?
function Rules:on(event, fn) return add_hook(self.hooks, event, fn) end
function Rules:off(event, fn) return remove_hook(self.hooks, event, fn) end

--- r:authorized(msg) -> true | false
function Rules:authorized(msg)
  local staff = msg.senderStaffId
  if type(staff) == "string" and staff ~= "" and self.admins[staff] then return true end
  if self.allow_group_admins and msg.isAdmin == true then return true end
  return false
end

--- A short text for a recall report (the report renderer's chat reply).
function M.summary(report, secrets)
  return render.render(report, "chat", { secrets = secrets })
end

--- audit(ev) -> the record of one event for an audit log (plain fields,
-- ready for a JSON line: event, command, sender, conversation, reason,
-- err as text, and with a report the counts recalled and not_recalled),
-- or nil for a sweep that found nothing due (nothing worth a line).
function M.audit(ev)
  if ev.event == "swept" and ev.report and ev.report.total == 0 then return nil end
  local line = {
    event = ev.event, command = ev.command, sender = ev.sender, conversation = ev.conversation,
    reason = ev.reason, err = ev.err and tostring(ev.err) or nil,
  }
  if ev.report then
    line.recalled = #ev.report.recalled
    local n = 0
    for _ in pairs(ev.report.failed or {}) do n = n + 1 end
    for _ in pairs(ev.report.errors or {}) do n = n + 1 end
    line.not_recalled = n
  end
  return line
end

-- The secrets of a client (its token and app secret), for redaction.
local function client_secrets(client) return render.secrets_of(client) end

local function event_base(msg, cmd)
  return {
    command = cmd and cmd.action, args = cmd, sender = msg.senderStaffId, sender_nick = msg.senderNick,
    is_admin = msg.isAdmin == true, conversation = msg.conversationId, robot = msg.robotCode,
  }
end

-- Runs a recall over the ledger with filter; fills result.
function Rules:_recall(msg, cmd, filter, result)
  local ev = event_base(msg, cmd)
  ev.filter = filter
  emit(self.hooks, "command", ev, result.hook_errors)
  if not (self.ledger and self.client) then
    error("rules: this rule set needs a ledger and a client to recall", 3)
  end
  local report, err = self.ledger:recall(self.client, filter)
  if not report then
    result.err = err
    result.reply = "Recall failed: " .. render.error(err, "chat", { secrets = client_secrets(self.client) })
    ev.err = err
    emit(self.hooks, "failed", ev, result.hook_errors)
    return result
  end
  result.report = report
  if (report.total or 0) == 0 then
    result.reply = self.replies.nothing
    return result
  end
  result.reply = M.summary(report, client_secrets(self.client))
  ev.report = report
  emit(self.hooks, "recalled", ev, result.hook_errors)
  if next(report.failed or {}) ~= nil or next(report.errors or {}) ~= nil then
    emit(self.hooks, "failed", ev, result.hook_errors)
  end
  return result
end

--- r:handle(msg) -> result | nil (not a /recall command)
-- msg: a verified callback (the decoded JSON body).  result = {reply =
-- text for the group, report = recall report | nil, refused = bool,
-- needs_confirmation = bool, code = confirmation code, command = action,
-- err = error | nil, hook_errors = {...}}.
function Rules:handle(msg)
  if type(msg) ~= "table" then error("rules:handle expects a callback table", 2) end
  local text = type(msg.text) == "table" and msg.text.content or nil
  if msg.msgtype ~= nil and msg.msgtype ~= "text" then return nil end
  local cmd, why = M.parse(text)
  if not cmd and not why then return nil end
  local result = { refused = false, needs_confirmation = false, hook_errors = {}, command = cmd and cmd.action }

  if not self:authorized(msg) then
    result.refused = true
    result.reply = self.replies.refused
    local ev = event_base(msg, cmd)
    ev.reason = "not an allowed staff id or group admin"
    emit(self.hooks, "refused", ev, result.hook_errors)
    return result
  end
  if not cmd then
    result.reply = why .. "\n" .. USAGE
    return result
  end
  if cmd.action == "help" then
    result.reply = USAGE
    return result
  end
  local cid = msg.conversationId
  if msg.conversationType ~= nil and tostring(msg.conversationType) ~= "2" then
    result.reply = self.replies.group_only
    return result
  end
  if type(cid) ~= "string" or cid == "" then
    result.reply = "This callback names no conversation; nothing was recalled."
    return result
  end
  local filter = { conversation = cid }
  if self.match_robot and type(msg.robotCode) == "string" and msg.robotCode ~= "" then
    filter.robot = msg.robotCode
  end
  local now = self.clock()
  local sender = tostring(msg.senderStaffId or msg.senderId or "")
  local pkey = cid .. "\0" .. sender

  if cmd.action == "last" then
    filter.last = cmd.n
  elseif cmd.action == "since" then
    filter.since = cmd.seconds
  elseif cmd.action == "tag" then
    filter.tag = cmd.tag
  elseif cmd.action == "all" then
    -- forget stale prompts, then ask
    for k, p in pairs(self.pending) do
      if p.expires <= now then self.pending[k] = nil end
    end
    local count_filter = { state = "sent" }
    for k, v in pairs(filter) do count_filter[k] = v end
    local entries = self.ledger and self.ledger:list(count_filter) or {}
    if #entries == 0 then
      result.reply = self.replies.nothing
      return result
    end
    local code = random_code(self.random)
    self.pending[pkey] = { code = code, expires = now + self.confirm_ttl, filter = filter }
    result.needs_confirmation = true
    result.code = code
    result.reply = "This recalls " .. (#entries == 1 and "the 1 recorded message" or
      ("all " .. #entries .. " recorded messages")) .. " of this group. " ..
      "To go ahead, send: /recall all confirm " .. code .. " (within " .. math.floor(self.confirm_ttl / 60 + 0.5) ..
      " minutes)."
    local ev = event_base(msg, cmd)
    ev.code = code
    ev.count = #entries
    emit(self.hooks, "confirm", ev, result.hook_errors)
    return result
  elseif cmd.action == "confirm" then
    local p = self.pending[pkey]
    if not p or p.expires <= now then
      self.pending[pkey] = nil
      result.reply = "There is no pending /recall all for you here (or it expired); send /recall all first."
      return result
    end
    if p.code ~= cmd.code then
      result.reply = "That confirmation code does not match; nothing was recalled."
      return result
    end
    self.pending[pkey] = nil
    filter = p.filter
  end
  return self:_recall(msg, cmd, filter, result)
end

--- r:sweep([opts]) -> report | nil, err: rules.sweep with this set's
-- ledger, client and hooks.
function Rules:sweep(opts)
  return M.sweep(self.ledger, self.client, opts, self.hooks)
end

--- rules.sweep(ledger, client [, opts]) -> report | nil, err
-- Recalls every recorded message whose ttl has elapsed by the ledger's
-- clock (its `due` filter; open the ledger with opts.clock to drive it).
-- opts.on_progress(done, total).  Fires "swept" (and "failed" when some
-- keys were not recalled, or the sweep could not run).
function M.sweep(ledger, client, opts, own_hooks)
  if type(ledger) ~= "table" then error("rules.sweep expects a ledger", 2) end
  if type(client) ~= "table" then error("rules.sweep expects a client", 2) end
  if opts ~= nil and type(opts) ~= "table" then error("rules.sweep: opts must be a table", 2) end
  local filter = { due = true }
  local report, err = ledger:recall(client, filter, { on_progress = opts and opts.on_progress })
  local ev = { command = "sweep", filter = filter, report = report, err = err }
  if not report then
    emit(own_hooks, "failed", ev)
    return nil, err
  end
  emit(own_hooks, "swept", ev)
  if next(report.failed or {}) ~= nil or next(report.errors or {}) ~= nil then
    emit(own_hooks, "failed", ev)
  end
  return report
end

return M
