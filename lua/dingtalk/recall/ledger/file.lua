--- dingtalk.recall.ledger.file: the ledger's local store, a journal of
-- JSON lines kept by the C core (core.journal_*: flock, O_APPEND, fsync).
--
-- Each line is one event:
--   {"e":"r","k":key,"c":cid,"r":robot,"t":sent_at,"g":[tags],"l":ttl,"m":msgKey,"u":at}
--       a record (with "s", "why", "code" when a compaction wrote it)
--   {"e":"s","s":state,"u":at,"k":[keys],"why":{key:reason},"code":{key:code}}
--       a state change of several keys
--   {"e":"h","id":nonce,"at":time}   the header of a compacted journal
-- Reading replays the events in file order; every call first reads what
-- other processes appended since (only the new bytes).  Lines that do not
-- decode (a torn write) are skipped.  When the journal holds many more
-- events than entries it is compacted: rewritten as one line per entry,
-- dropping entries older than the retention.
local journal = require "dingtalk.recall.journal"
local hostclock = require "dingtalk.recall.clock"
local cjson_mod = require "cjson"
local order = require "dingtalk.recall.ledger.order"
local changeset = require "dingtalk.recall.ledger.changes"
local selection = require "dingtalk.recall.ledger.select"

local cjson = cjson_mod.new and cjson_mod.new() or cjson_mod

local M = {}
local File = {}
File.__index = File

local DEFAULT_RETENTION = 7 * 86400
local STATES = { sent = true, recalling = true, recalled = true, failed = true, error = true, expired = true }
local COMPACT_MIN = 4096   -- events before a compaction is considered

local function str(v)
  if type(v) == "string" then return v end
  return nil
end
local tointeger = math.tointeger -- luacheck: ignore 143
-- A finite number of the journal (a send time, a TTL, a time of change),
-- else nil: NaN and infinities, which cjson reads, are not times, and
-- could not be written back by a compaction.
local function num(v)
  if type(v) ~= "number" or v ~= v or v == math.huge or v == -math.huge then return nil end
  return tointeger and tointeger(v) or v -- 5.3+: 100, not 100.0, as Redis gives
end

-- The state is kept in columns, one array per field indexed by the
-- entry's order of record (its sequence number), and one map from key to
-- index: 20,000 entries are a dozen arrays, not 20,000 tables, so the
-- collector marks a few arrays instead of walking scattered tables, and a
-- sweep over one field reads memory in order.
--   st = {index = {key = i}, n (entries), key, conversation, robot,
--   sent_at, tags (nil: none), ttl, msg_key, state, reason, code,
--   updated_at (each {i = value}), events, pending, min_t (the oldest send
--   time), max_t, unsorted (order of record is not oldest first, or may
--   not be)}

-- A new table of the entry at index i (tags copied; with seq: its sequence
-- number too, for sorting).
local function entry(st, i, seq)
  local tags, t = {}, st.tags[i]
  if t then
    for j = 1, #t do tags[j] = t[j] end
  end
  return {
    key = st.key[i], conversation = st.conversation[i], robot = st.robot[i], sent_at = st.sent_at[i],
    tags = tags, ttl = st.ttl[i], msg_key = st.msg_key[i], state = st.state[i], reason = st.reason[i],
    code = st.code[i], updated_at = st.updated_at[i], seq = seq and i or nil,
  }
end

-- A state change of the keys of an array (why, code: {key = string}?).
local function apply_keys(st, state, at, keys, why, code)
  local index, states, reasons, codes, updated = st.index, st.state, st.reason, st.code, st.updated_at
  if why or code then
    for _, key in ipairs(keys) do
      local i = index[key]
      if i then
        states[i] = state
        reasons[i] = why and str(why[key]) or nil
        codes[i] = code and str(code[key]) or nil
        if at then updated[i] = at end
      end
    end
    return
  end
  for j = 1, #keys do
    local i = index[keys[j]]
    if i then
      states[i] = state
      -- (tested first: on Lua 5.1 and LuaJIT, t[i] = nil for an absent i
      -- still makes a key in t's hash part)
      if reasons[i] ~= nil then reasons[i] = nil end
      if codes[i] ~= nil then codes[i] = nil end
      if at then updated[i] = at end
    end
  end
end

-- Replays one decoded event into st.
local function apply(st, ev)
  st.events = st.events + 1
  local kind = ev.e
  if kind == "r" then
    local key = str(ev.k)
    if not key then return end
    local i = st.index[key]
    local sent = num(ev.t) or 0
    if not i then
      i = st.n + 1
      st.n = i
      st.index[key], st.key[i], st.state[i] = i, key, "sent"
      if sent < st.max_t or sent ~= sent then st.unsorted = true else st.max_t = sent end
    elseif st.sent_at[i] ~= sent then
      st.unsorted = true -- (a key recorded again with another time)
    end
    if sent < st.min_t then st.min_t = sent end
    st.conversation[i], st.robot[i] = str(ev.c) or "", str(ev.r) or ""
    st.sent_at[i] = sent
    local tags
    if type(ev.g) == "table" then
      for _, t in ipairs(ev.g) do
        if type(t) == "string" then
          tags = tags or {}
          tags[#tags + 1] = t
        end
      end
    end
    st.tags[i], st.ttl[i], st.msg_key[i] = tags, num(ev.l), str(ev.m)
    st.updated_at[i] = num(ev.u) or st.updated_at[i]
    if str(ev.s) then
      st.state[i], st.reason[i], st.code[i] = ev.s, str(ev.why), str(ev.code)
    end
  elseif kind == "s" then
    local state = str(ev.s)
    if not state or type(ev.k) ~= "table" then return end
    local why = type(ev.why) == "table" and ev.why or nil
    local code = type(ev.code) == "table" and ev.code or nil
    apply_keys(st, state, num(ev.u), ev.k, why, code)
  end
end

local function replay(st, data)
  for line in data:gmatch("[^\n]+") do
    local ok, ev = pcall(cjson.decode, line)
    if ok and type(ev) == "table" then apply(st, ev) end
  end
end

-- st.pending: this store's own state changes, written to the journal
-- (and counted in st.events) but not yet applied to the entries: a recall
-- writes 20,000 keys' marks and outcomes and seldom reads them back, so
-- they are applied at the next read (catch_up), in order, before anything
-- read or written after them.
local function new_state()
  return { index = {}, n = 0, key = {}, conversation = {}, robot = {}, sent_at = {}, tags = {}, ttl = {},
    msg_key = {}, state = {}, reason = {}, code = {}, updated_at = {}, events = 0, pending = {},
    min_t = math.huge, max_t = -math.huge, unsorted = false }
end

-- Applies st.pending (each {sets, at}: a ledger.changes' sets).
local function catch_up(st)
  local pending = st.pending
  if pending[1] == nil then return end
  st.pending = {}
  for _, p in ipairs(pending) do
    for _, set in ipairs(p.sets) do
      for _, part in ipairs(set.parts) do apply_keys(st, set.state, p.at, part, set.why, set.code) end
    end
  end
end

local function encode(t)
  return cjson.encode(t)
end

-- A state change's line: {"e":"s","s":state,"u":at,"k":[keys],"why":{..},"code":{..}}.
-- Its keys (thousands in one line during a recall, handed over as the
-- plans' batch arrays) go to journal.append as a key line {head, parts,
-- tail}, written in C with no Lua string of its own; a set with reasons
-- or codes (failures: few) goes through cjson.
local function encode_state(set, now)
  if set.why or set.code or not STATES[set.state] then
    return encode { e = "s", s = set.state, u = now, k = changeset.keys(set), why = set.why, code = set.code }
  end
  return { '{"e":"s","s":"' .. set.state .. '","u":' .. encode(now) .. ',"k":[', set.parts, "]}" }
end

-- cjson encodes an empty table as {}: no tags are left out instead.
local function tags_json(tags)
  if #tags == 0 then return nil end
  return tags
end

--- file.open(path, opts, clock) -> store | nil, err
function M.open(path, opts, clock)
  local self = setmetatable({
    path = path, location = path, kind = "file", clock = clock,
    retention = opts.retention or DEFAULT_RETENTION,
    compact_min = opts.compact_min or COMPACT_MIN,
    st = new_state(), offset = 0, id = nil,
  }, File)
  -- The first read creates nothing; the first write creates the journal
  -- (directories 0700, file 0600).  Reading now reports a bad path early.
  local ok, err = self:refresh()
  if not ok then return nil, err end
  return self
end

--- Reads what was appended since the last read (everything after a compaction).
function File:refresh()
  local data, off, id, reset = journal.read(self.path, self.offset, self.id)
  if not data then return nil, off end
  if reset then self.st = new_state() else catch_up(self.st) end
  self.offset, self.id = off, id
  replay(self.st, data)
  return true
end

-- Appends the lines; apply_to(st) replays the same events into the state
-- (queued: it only queues state changes in st.pending, behind those
-- already there).  When nobody else wrote since this store last read,
-- they are applied so instead of being read back.  -> true [, sync]
-- (async: see File:update) | nil, err.
function File:append(lines, apply_to, queued, async)
  local ok, start, stop, id, sync = journal.append(self.path, lines, async)
  if not ok then return nil, start end
  if start == self.offset and id == self.id then
    if not queued then catch_up(self.st) end
    apply_to(self.st)
    self.offset = stop
  else
    local err
    ok, err = self:refresh()
    if not ok then return nil, err end
  end
  local st = self.st
  if st.events >= self.compact_min and st.events > 4 * st.n then
    -- A failed compaction loses nothing (the journal stays as it was).
    self:compact()
  end
  return true, sync
end

--- Rewrites the journal as one line per entry (dropping entries older
-- than the retention).  Returns true | nil, err.
function File:compact()
  local cutoff = self.clock() - self.retention
  local fresh
  local ok, off, id = journal.compact(self.path, function(data)
    local st = new_state()
    replay(st, data)
    local lines = { encode { e = "h", id = tostring(hostclock.now()) .. "-" .. (tostring(st):match("%x+$") or ""),
      at = self.clock() } }
    fresh = new_state()
    for i = 1, st.n do -- in order of record
      if st.sent_at[i] >= cutoff or st.state[i] == "recalling" then
        local ev = { e = "r", k = st.key[i], c = st.conversation[i], r = st.robot[i], t = st.sent_at[i],
          g = st.tags[i], l = st.ttl[i], m = st.msg_key[i], u = st.updated_at[i], s = st.state[i],
          why = st.reason[i], code = st.code[i] }
        lines[#lines + 1] = encode(ev)
      end
    end
    replay(fresh, table.concat(lines, "\n"))
    return lines
  end)
  if not ok then return nil, off end
  self.st, self.offset, self.id = fresh, off, id
  return true
end

function File:record(entries)
  local lines, events = {}, {}
  for i, e in ipairs(entries) do
    local ev = { e = "r", k = e.key, c = e.conversation, r = e.robot, t = e.sent_at, g = tags_json(e.tags),
      l = e.ttl, m = e.msg_key, u = e.updated_at }
    lines[i], events[i] = encode(ev), ev
  end
  return self:append(lines, function(st)
    for _, ev in ipairs(events) do apply(st, ev) end
  end)
end

--- changes: a ledger.changes (sets of keys by state); one line per state.
-- async: the fsync runs in a thread (-> true, sync: sync:wait() -> true |
-- nil, err once the lines are durable).
function File:update(changes, now, async)
  if changes.count == 0 then return true end
  local lines = {}
  for i, set in ipairs(changes.sets) do lines[i] = encode_state(set, now) end
  local sets = {}
  for i, set in ipairs(changes.sets) do
    sets[i] = { state = set.state, parts = set.parts, why = set.why, code = set.code }
  end
  return self:append(lines, function(st)
    st.events = st.events + #lines
    st.pending[#st.pending + 1] = { sets = sets, at = num(now) }
  end, true, async)
end

function File:get(key)
  local ok, err = self:refresh()
  if not ok then return nil, err end
  local i = self.st.index[key]
  return i and entry(self.st, i) or nil
end

local matches = selection.matches

-- The indices of the entries matching q, in order of record, or with
-- q.last the newest q.last of them, newest first.
local function matching(st, q)
  local idx, n = {}, 0
  for i = 1, st.n do
    if matches(st, i, q) then
      n = n + 1
      idx[n] = i
    end
  end
  if q.last then
    idx = order.indices(st.sent_at, idx, true)
    for j = n, q.last + 1, -1 do idx[j] = nil end
  end
  return idx
end

-- The entries matching q as new tables (with seq: the order of record
-- too), after reading what was appended since the last read: in order of
-- record or, newest_first, newest first; with q.last the newest q.last of
-- them, newest first.
local function found(self, q, newest_first, seq)
  local ok, err = self:refresh()
  if not ok then return nil, err end
  local st, out = self.st, {}
  local idx = matching(st, q)
  if newest_first and not q.last then idx = order.indices(st.sent_at, idx, true) end
  for j, i in ipairs(idx) do out[j] = entry(st, i, seq) end
  return out
end

--- q: {conversation, robot, tag, states (set), min_t, last, due_at} ->
-- the matching entries (new tables, with seq: the order of record), in
-- order of record, or with q.last the newest q.last of them, newest first
-- | nil, err.
function File:scan(q)
  return found(self, q, false, true)
end

--- The entries in order of record as columns, after reading what was
-- appended since the last read: the store's own state (the caller must
-- not change it: {n, key, conversation, robot, sent_at, tags, ttl, state,
-- ...}), and what is known of it: {sorted (oldest first: by send time),
-- min_t (the oldest send time)}.  The ledger's selection of a recall
-- (ledger/select.lua).
function File:entries()
  local ok, err = self:refresh()
  if not ok then return nil, err end
  local st = self.st
  return st, { sorted = not st.unsorted, min_t = st.min_t }
end

--- q: {conversation, robot, tag, states (set), min_t, last, due_at}
-- -> copies, newest first (by send time, then by order of record).
function File:list(q)
  return found(self, q, true, false)
end

function File.close() end

M.File = File
return M
