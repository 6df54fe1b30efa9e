--- dingtalk.recall.ledger: the ledger of sent messages.
--
--   local ledger = require "dingtalk.recall.ledger"
--   local l = assert(ledger.open())                 -- $XDG_DATA_HOME/dingtalk-recall/ledger
--   l:attach(client)                                -- every client:send is recorded
--   client:send(cid, "sampleText", { content = "hi" }, { tags = { "deploy" } })
--   local report = assert(l:recall(client, { tag = "deploy", since = 600 }))
--
-- Every entry has a state: sent -> recalling -> recalled | failed (the
-- server's reason) | error (the error's code) | expired (older than the
-- 24 h recall window: never sent to the API).  A recall marks each chunk
-- of keys `recalling` durably before sending it, so a recall killed midway
-- is finished by the next l:recall: keys still `recalling` are selected
-- again and the server's "already recalled" answer counts as recalled.
-- The ledger selects and persists; the engine (through the client) sends,
-- and the report module decides each key's outcome.
--
-- Two stores share this interface: the local journal (ledger/file.lua, the
-- default, crash-safe and shared by the processes of one host) and Redis
-- (ledger/redis.lua, shared by several hosts and nginx workers).
local core = require "dingtalk.recall.core"
local config = require "dingtalk.recall.config"
local report = require "dingtalk.recall.report"
local plans_mod = require "dingtalk.recall.ledger.plans"
local selection = require "dingtalk.recall.ledger.select"
local changeset = require "dingtalk.recall.ledger.changes"

local M = {}

--- Seconds after sending when the API no longer recalls a message.
M.RECALL_WINDOW = 86400

--- Read-only view of the reasons meaning "this message is already
-- recalled" (the one list is core.reasons; see dingtalk.recall.report).
M.ALREADY_RECALLED = setmetatable({}, {
  __index = function(_, reason) return report.already_recalled(reason) or nil end,
  __newindex = function() error("ledger.ALREADY_RECALLED is read-only: the reasons are core.reasons", 2) end,
})

--- Every state an entry can have.
M.STATES = { sent = true, recalling = true, recalled = true, failed = true, error = true, expired = true }


-- Keys of one conversation marked `recalling` ahead of sending.  A mark
-- is a durable write (fsync); a larger chunk means fewer of them, and a
-- crash leaves at most twice this many keys per conversation marked but
-- not yet sent (the next chunk is marked while one is sent): the next
-- recall sends them (nothing is lost or recalled twice).
local DEFAULT_CHUNK = 500

local FILTER_FIELDS = {
  conversation = "string", robot = "string", tag = "string", since = "number", last = "number",
  state = "string", due = "boolean",
}

local Ledger = {}
Ledger.__index = Ledger

local function invalid(msg)
  return nil, core.error("ledger.invalid", msg,
    { hint = "See README, \"The ledger of sent messages\", for the fields of an entry." })
end

local function default_path(getenv)
  local base = config.xdg_dir("XDG_DATA_HOME", ".local/share", getenv)
  return base and base .. "/dingtalk-recall/ledger"
end
M.default_path = default_path

--- ledger.open([location [, opts]]) -> ledger | nil, err
-- location: nil (the local journal at $XDG_DATA_HOME/dingtalk-recall/ledger),
-- a file path, or a URL redis://[user:password@]host[:port][/db].
-- opts: clock (function returning epoch seconds), chunk (keys of one
-- conversation marked `recalling` ahead of sending, default 500; the
-- chunks of all conversations are marked in one durable write), retention (seconds an entry
-- is kept, default 7 days), on_record_error(err, info) (attach's failures),
-- redis_client (a connected client with :eval, e.g. resty.redis),
-- prefix (Redis key prefix), timeout (Redis seconds), lease (Redis:
-- seconds a host's claim on keys it recalls holds before another host may
-- take them over, default 60), owner (Redis: this host's name in claims).
function M.open(location, opts)
  if location ~= nil and type(location) ~= "string" then
    error("ledger.open: location must be a string (a path or a redis:// URL) or nil", 2)
  end
  if opts ~= nil and type(opts) ~= "table" then error("ledger.open: opts must be a table", 2) end
  opts = opts or {}
  for name, want in pairs { clock = "function", chunk = "number", retention = "number",
    on_record_error = "function", prefix = "string", timeout = "number", lease = "number", owner = "string" } do
    if opts[name] ~= nil and type(opts[name]) ~= want then
      error(("ledger.open: option '%s' must be a %s"):format(name, want), 2)
    end
  end
  local clock = opts.clock or os.time
  local backend, err
  if location and location:match("^%a[%w+.-]*://") and not location:match("^file://") then
    if not location:match("^redis://") then
      return invalid("unsupported ledger URL scheme in '" .. require("dingtalk.recall.redis").redact(location) ..
        "' (redis:// or a file path)")
    end
    backend, err = require("dingtalk.recall.ledger.redis").open(location, opts, clock)
  else
    local path = location and location:gsub("^file://", "") or default_path()
    if not path or path == "" then
      return invalid("no ledger location: neither XDG_DATA_HOME nor HOME is set")
    end
    backend, err = require("dingtalk.recall.ledger.file").open(path, opts, clock)
  end
  if not backend then return nil, err end
  local chunk = opts.chunk or DEFAULT_CHUNK
  if not (chunk >= 1 and chunk <= 100000) or chunk % 1 ~= 0 then
    if backend.close then backend:close() end
    return invalid("chunk must be a whole number in 1..100000")
  end
  return setmetatable({
    backend = backend, clock = clock, chunk = chunk, on_record_error = opts.on_record_error,
    location = backend.location, kind = backend.kind, record_errors = 0,
  }, Ledger)
end

local function live(self, method)
  if not self.backend then error("ledger:" .. method .. ": the ledger is closed", 3) end
  return self.backend
end

---------------------------------------------------------------------------
-- Recording
---------------------------------------------------------------------------

local function norm_tags(tags)
  local out, seen = {}, {}
  local function add(t)
    t = t:match("^%s*(.-)%s*$")
    if t ~= "" and not seen[t] then
      seen[t] = true
      out[#out + 1] = t
    end
  end
  if tags == nil then return out end
  if type(tags) == "string" then
    for t in tags:gmatch("[^,]+") do add(t) end
  elseif type(tags) == "table" then
    for _, t in ipairs(tags) do
      if type(t) ~= "string" then error("ledger:record: every tag must be a string", 4) end
      add(t)
    end
  else
    error("ledger:record: tags must be a table of strings or a string \"a,b\"", 4)
  end
  return out
end

-- The fields of an entry a caller gives (the ledger's own vocabulary, as
-- l:list answers them), and the wire names the DingTalk API uses for three
-- of them: a record spelled the wire's way is refused, never guessed at.
local RECORD_FIELDS = {
  key = "string", conversation = "string", robot = "string", sent_at = "number", tags = true, ttl = "number",
  msg_key = "string",
  -- an entry read back from l:list may be recorded again: its state and
  -- history are the ledger's own and are not taken from the caller
  state = "string", reason = "string", code = "string", updated_at = "number",
}
local WIRE_NAMES = {
  processQueryKey = "key", openConversationId = "conversation", robotCode = "robot", msgKey = "msg_key",
}

local function finite(v) return v == nil or (v == v and v > -math.huge and v < math.huge) end

-- A normalised entry from the caller's fields.
local function normalize(self, e, now)
  if type(e) ~= "table" then error("ledger:record expects a table", 3) end
  for name, v in pairs(e) do
    local want = RECORD_FIELDS[name]
    if WIRE_NAMES[name] then
      return invalid(("field '%s' is the API's wire name: the ledger's field is '%s'"):format(name,
        WIRE_NAMES[name]))
    elseif not want then
      return invalid(("unknown field '%s' (an entry has key, conversation, robot, sent_at, tags, ttl, msg_key)")
        :format(tostring(name)))
    elseif want ~= true and type(v) ~= want then
      error(("ledger:record: field '%s' must be a %s"):format(name, want), 3)
    end
  end
  local key, cid, robot, ttl = e.key, e.conversation, e.robot, e.ttl
  local tags = norm_tags(e.tags)
  if not key or key == "" then return invalid("key is missing or empty") end
  if not cid or cid == "" then return invalid("conversation is missing or empty (key " .. key .. ")") end
  if not robot or robot == "" then return invalid("robot is missing or empty (key " .. key .. ")") end
  if not finite(e.sent_at) or not finite(ttl) then
    return invalid("sent_at and ttl must be finite numbers (key " .. key .. ")")
  end
  if ttl and ttl < 0 then return invalid("ttl must not be negative (key " .. key .. ")") end
  return {
    key = key, conversation = cid, robot = robot, sent_at = e.sent_at or self.clock(), tags = tags,
    ttl = ttl, msg_key = e.msg_key, updated_at = now,
  }
end

--- l:record{key=, conversation=, robot= [, sent_at=, tags=, ttl=,
-- msg_key=]} -> true | nil, err.  Recording a key again updates its fields
-- and keeps its state.  A wire name (processQueryKey, openConversationId,
-- robotCode, msgKey) or an unknown field answers nil, err (ledger.invalid);
-- a field of the wrong type raises.
function Ledger:record(e)
  local b = live(self, "record")
  local entry, err = normalize(self, e, self.clock())
  if not entry then return nil, err end
  return b:record({ entry })
end

--- l:record_many{entry, ...} -> true | nil, err: one durable write for all.
function Ledger:record_many(list)
  local b = live(self, "record_many")
  if type(list) ~= "table" then error("ledger:record_many expects an array of entries", 2) end
  local now, entries = self.clock(), {}
  for i, e in ipairs(list) do
    local entry, err = normalize(self, e, now)
    if not entry then return nil, err end
    entries[i] = entry
  end
  if #entries == 0 then return true end
  return b:record(entries)
end

--- l:attach(client): wraps client.on_sent (keeping a previous hook) so
-- every client:send is recorded.  A failed record does not fail the send
-- (the message is out): it calls opts.on_record_error(err, info) and
-- counts in l.record_errors / l.last_record_error.
function Ledger:attach(client)
  live(self, "attach")
  if type(client) ~= "table" then error("ledger:attach expects a client", 2) end
  local prev = client.on_sent
  client.on_sent = function(info)
    local ok, err = self:record(info)
    if not ok then
      self.record_errors = self.record_errors + 1
      self.last_record_error = err
      if self.on_record_error then self.on_record_error(err, info) end
    end
    if prev then return prev(info) end
  end
  return client
end

---------------------------------------------------------------------------
-- Queries
---------------------------------------------------------------------------

local function check_filter(filter, method, extra)
  if filter == nil then return {} end
  if type(filter) ~= "table" then error("ledger:" .. method .. ": the filter must be a table", 3) end
  for k, v in pairs(filter) do
    local want = FILTER_FIELDS[k] or (extra and extra[k])
    if not want then error(("ledger:%s: unknown filter field '%s'"):format(method, tostring(k)), 3) end
    if type(v) ~= want then error(("ledger:%s: filter field '%s' must be a %s"):format(method, k, want), 3) end
  end
  if filter.state and not M.STATES[filter.state] then
    error(("ledger:%s: unknown state '%s'"):format(method, filter.state), 3)
  end
  return filter
end

--- l:get(key) -> entry | nil (unknown) | nil, err
function Ledger:get(key)
  local b = live(self, "get")
  if type(key) ~= "string" then error("ledger:get expects a key (string)", 2) end
  return b:get(key)
end

--- l:list(filter) -> array of entries, newest first | nil, err
-- filter: conversation, robot, tag, since (seconds ago), last (N), state,
-- due (ttl elapsed and still `sent`).
function Ledger:list(filter)
  local b = live(self, "list")
  filter = check_filter(filter, "list")
  if filter.last and filter.last < 1 then return {} end
  return b:list(selection.query(filter, self.clock(), filter.state and { filter.state } or nil))
end

---------------------------------------------------------------------------
-- Recall
---------------------------------------------------------------------------

--- l:select(filter) -> selection | nil, err: what l:recall(client, filter)
-- would recall now, without recalling: selection.groups (each
-- {conversation, robot, keys}, oldest first), selection.expired (keys past
-- the recall window: they are never sent) and selection.total.
function Ledger:select(filter)
  local b = live(self, "select")
  filter = check_filter(filter, "select")
  local sel, err = selection.recall(b, filter, self.clock(), M.RECALL_WINDOW)
  if not sel then return nil, err end
  sel.was = nil
  return sel
end

--- l:recall(client, filter [, opts]) -> report | nil, err
-- Recalls what the filter selects (default state: sent) plus any key left
-- `recalling` by an earlier, interrupted recall (of the same conversation,
-- robot and tag when the filter names them).
--
-- The ledger selects and persists; the client's engine sends and the
-- report module decides each key's outcome.  Every (conversation, robot)
-- group is one plan, and all plans run in one engine run (one pool, fair
-- across conversations).  Keys are marked `recalling` durably `chunk` keys
-- of each conversation at a time (one write for every conversation at that
-- chunk) before they are sent, and their outcomes written with the next
-- marks and at the end (see ledger/plans.lua).  A key the server calls
-- already recalled ends `recalled` (the message is gone, whoever recalled
-- it).  A client without a run method (any object with
-- recall(cid, keys, opts)) is called once per chunk, one after another.
--
-- The report is the engine's (recalled, already_recalled, failed, errors,
-- requests, retries, throttled, token_fetches, total) plus expired (keys
-- older than the recall window, never sent).  Every selected key is in
-- exactly one of recalled, failed, errors and expired, or, on a store
-- shared by several hosts (Redis), in elsewhere: keys another host claimed
-- first (they are not counted in total).
-- opts.on_progress(done, total) is called as batches finish.
function Ledger:recall(client, filter, opts)
  local b = live(self, "recall")
  if type(client) ~= "table" or (type(client.run) ~= "function" and type(client.recall) ~= "function") then
    error("ledger:recall expects a client (with a run or a recall method)", 2)
  end
  filter = check_filter(filter, "recall")
  if opts ~= nil and type(opts) ~= "table" then error("ledger:recall: opts must be a table", 2) end
  opts = opts or {}
  local sel, err = selection.recall(b, filter, self.clock(), M.RECALL_WINDOW)
  if not sel then return nil, err end
  local was, expired_keys, total = sel.was, sel.expired, sel.total
  if #expired_keys > 0 then
    local expired = changeset.new()
    for _, k in ipairs(expired_keys) do expired:add(k, "expired", "RECALL_WINDOW_PASSED") end
    local ok, uerr = b:update(expired, self.clock())
    if not ok then return nil, uerr end
    if opts.on_progress then opts.on_progress(#expired_keys, total) end
  end

  -- The plans and the hooks that persist them (ledger/plans.lua).
  local refused = report.new()
  local plans, refused_changes = plans_mod.make(sel.groups, self.chunk, refused)
  refused.total = refused_changes.count
  if refused_changes.count > 0 then
    local ok, uerr = b:update(refused_changes, self.clock())
    if not ok then return nil, uerr end
  end

  local rep = report.new()
  local store_err
  local hooks_elsewhere = {}
  if #plans > 0 then
    -- -> true [, sync] | false, err (async: the store may answer a handle
    -- whose sync:wait() says when the write is durable)
    local function save(changes, async)
      if store_err then return false, store_err end
      if changes.count == 0 then return true end
      local ok, uerr = b:update(changes, self.clock(), async)
      if not ok then
        store_err = uerr
        return false, uerr
      end
      return true, uerr
    end
    local offset = #expired_keys + refused_changes.count
    local hooks = plans_mod.hooks {
      -- plans marked in step only where the engine runs them side by side
      chunk = self.chunk, plans = type(client.run) == "function" and plans or nil, save = save,
      on_progress = opts.on_progress and function(done) opts.on_progress(offset + done, total) end,
      claim = b.claim and function(marks) return b:claim(marks) end,
      was = b.claim and function(k) return was[k] end,
    }
    if type(client.run) == "function" then
      rep = client:run(plans, hooks, { ambiguous = true })
    else
      rep = plans_mod.run_sequential(client, plans, hooks, self.chunk)
    end
    store_err = store_err or hooks.error()
    hooks_elsewhere = hooks.elsewhere()
    if not store_err then
      local ok, ferr = hooks.flush()
      if not ok then store_err = ferr end
    end
    hooks.release()
  end
  if store_err then return nil, store_err end
  report.merge(rep, refused)
  rep.expired = expired_keys
  -- Keys of batches another host holds (a store shared by hosts): theirs to
  -- recall, not in this report.
  local elsewhere = {}
  for _, k in ipairs(hooks_elsewhere) do
    elsewhere[#elsewhere + 1] = k
    rep.errors[k] = nil
  end
  rep.elsewhere = elsewhere
  rep.total = total - #elsewhere
  return report.finish(rep, rep.elapsed or 0)
end

--- l:close(): releases the store (the Redis connection).  Safe twice.
--- l:mark(keys, state) -> true | nil, err: the entries of these keys (an
-- array; keys not in the ledger are passed over) take the state, in one
-- durable write.  For a recall made outside l:recall (the CLI's
-- `recall KEY...`): mark them "recalling" first, then l:settle.
function Ledger:mark(keys, state)
  if type(keys) ~= "table" then error("ledger:mark: keys must be an array", 2) end
  if not M.STATES[state] then error("ledger:mark: unknown state " .. tostring(state), 2) end
  local ch = changeset.new()
  for _, k in ipairs(keys) do ch:add(k, state) end
  if ch.count == 0 then return true end
  return self.backend:update(ch, self.clock())
end

--- l:settle(r, keys) -> true | nil, err: each key's entry takes the
-- outcome the report module gives it in the report r (recalled, already
-- recalled, failed with the reason, error with the code), in one write.
function Ledger:settle(r, keys)
  if type(r) ~= "table" or type(keys) ~= "table" then error("ledger:settle(report, keys)", 2) end
  local ch = changeset.new()
  for _, k in ipairs(keys) do ch:outcome(r, k, report.outcome(r, k)) end
  if ch.count == 0 then return true end
  return self.backend:update(ch, self.clock())
end

function Ledger:close()
  if self.backend then
    self.backend:close()
    self.backend = nil
  end
end

M.Ledger = Ledger
return M
