--- dingtalk.recall.ledger.select: the stores' queries, and what a recall
-- recalls now (l:select, l:recall).
--
--   local select = require "dingtalk.recall.ledger.select"
--   local q = select.query(filter, now, states)        -- a store's query
--   local sel = select.recall(store, filter, now, window)
--   -- sel: groups ({conversation, robot, keys}, oldest first), expired
--   -- (keys past the recall window), total, was ({key = state}: a store
--   -- shared by hosts, which claims keys from the state they were in)
--
-- A recall selects the filter's entries (default state: sent) and the keys
-- an interrupted recall left `recalling`, each once, oldest first.  The
-- file store hands over its entries as columns in order of record
-- (store:entries: one array per field) and one loop here (collect)
-- filters and groups them.  Other stores answer queries (store:scan or
-- store:list) and the entries are put together here.  One test of an
-- entry against a query (matches) serves both.
local order = require "dingtalk.recall.ledger.order"

local M = {}

local DEFAULT_RECALL_STATES = { "sent" }
local FINAL = { recalled = true, expired = true }
-- States a recall selects whatever its filter's time and due fields say
-- (an interrupted recall's keys).
local RESUMED = { recalling = true }
M.FINAL = FINAL

--- query(filter, now [, states]) -> the stores' query: {conversation,
-- robot, tag, states (set), min_t, last, due_at}.
function M.query(filter, now, states)
  local q = { conversation = filter.conversation, robot = filter.robot, tag = filter.tag }
  if filter.since then q.min_t = now - filter.since end
  if filter.last then q.last = math.max(0, math.floor(filter.last)) end
  if filter.due then q.due_at = now end
  if states then
    q.states = {}
    for _, s in ipairs(states) do q.states[s] = true end
  end
  return q
end

-- tags: an entry's array of tags, or nil (none).
local function has_tag(tags, tag)
  if not tags then return false end
  for i = 1, #tags do
    if tags[i] == tag then return true end
  end
  return false
end
M.has_tag = has_tag

local NONE = {}

--- matches(c, i, q) -> whether entry i of the columns c matches the query
-- q: its conversation, robot and tag, and then its state in q.resume
-- (taken whatever min_t and due_at say), or in q.states (nil: any) and
-- min_t and due_at.  The one test of an entry against a query, for every
-- store that keeps columns and for the entries a store answered.
local function matches(c, i, q)
  if (q.conversation and c.conversation[i] ~= q.conversation) or (q.robot and c.robot[i] ~= q.robot)
    or (q.tag and not has_tag(c.tags[i], q.tag)) then
    return false
  end
  local state = c.state[i]
  if q.resume and q.resume[state] then return true end
  if q.states and not q.states[state] then return false end
  local t = c.sent_at[i]
  if q.min_t and (t ~= t or t < q.min_t) then return false end -- (NaN: never)
  if q.due_at then
    local ttl = c.ttl[i]
    return state == "sent" and ttl ~= nil and t + ttl <= q.due_at
  end
  return true
end
M.matches = matches

--- columns(entries) -> the entries (tables, as a store's list gives them)
-- as columns: {n, key, conversation, robot, sent_at, tags, ttl, state}.
function M.columns(entries)
  local c = { n = #entries, key = {}, conversation = {}, robot = {}, sent_at = {}, tags = {}, ttl = {}, state = {} }
  for i, e in ipairs(entries) do
    c.key[i], c.conversation[i], c.robot[i], c.sent_at[i] = e.key, e.conversation, e.robot, e.sent_at
    c.tags[i], c.ttl[i], c.state[i] = e.tags, e.ttl, e.state
  end
  return c
end

--- collect(c, q, now, window, claims [, into [, known [, idx]]]) -> the
-- selection (was only when claims), or nil when the entries taken came in
-- another order than oldest first; with into (an array), only appends the
-- indices of the entries taken to it and returns it.  c: the entries as
-- columns (a store's own: read, never changed; see M.columns), walked in
-- order or in the order of the indices idx.  q: nil (take them all) or a
-- store's query with resume (see matches).  known: what the store knows
-- of its entries ({sorted, min_t}, File:entries): when they are oldest
-- first and none is past the window, the usual sweep reads only the state,
-- conversation, robot and key of each entry, one column at a time.
function M.collect(c, q, now, window, claims, into, known, idx)
  local groups, index, expired, was = {}, {}, {}, claims and {} or nil
  local g, gc, gr, keys, n -- the group at hand, its keys and their count
  -- the group of (cid, r) becomes the one at hand
  local function switch(cid, r)
    if g then g.n = n end
    local of = index[cid]
    if not of then
      of = {}
      index[cid] = of
    end
    g = of[r]
    if not g then
      g = { conversation = cid, robot = r, keys = {}, n = 0 }
      of[r] = g
      groups[#groups + 1] = g
    end
    gc, gr, keys, n = cid, r, g.keys, g.n
  end
  local ckey, cconv, crobot, cstate, csent = c.key, c.conversation, c.robot, c.state, c.sent_at
  local last, sorted = -math.huge, true
  local states, resume = NONE, NONE
  if q then states, resume = q.states or NONE, q.resume or NONE end
  -- by state alone (l:recall{}, the usual sweep): fewer tests per entry
  local by_state = q and not (q.conversation or q.robot or q.tag or q.min_t or q.due_at)
  local nexp = 0
  local fast = by_state and not into and not was and not idx and known and known.sorted
    and now - known.min_t <= window
  for i = 1, fast and c.n or 0 do
    local state = cstate[i]
    if resume[state] or states[state] then
      local cid, r = cconv[i], crobot[i]
      if cid ~= gc or r ~= gr then switch(cid, r) end
      n = n + 1
      keys[n] = ckey[i]
    end
  end
  for j = 1, fast and 0 or (idx and #idx or c.n) do
    local i = idx and idx[j] or j
    local take = true
    if by_state then
      local state = cstate[i]
      take = resume[state] or states[state]
    elseif q then
      take = matches(c, i, q)
    end
    if not take then -- luacheck: ignore 542
    elseif into then
      into[#into + 1] = i
    else
      local t = csent[i]
      if t ~= t then t = 0 end -- NaN: a time of 0, as order.indices sorts it (past the window)
      if t < last then sorted = false end
      last = t
      if now - t > window then
        nexp = nexp + 1
        expired[nexp] = ckey[i]
      else
        local cid, r = cconv[i], crobot[i]
        if cid ~= gc or r ~= gr then switch(cid, r) end
        n = n + 1
        keys[n] = ckey[i]
        if was then was[ckey[i]] = cstate[i] end
      end
    end
  end
  if into then return into end
  if not sorted then return nil end
  if g then g.n = n end
  local total = nexp
  for i = 1, #groups do
    total = total + groups[i].n
    groups[i].n = nil
  end
  return { groups = groups, expired = expired, was = was, total = total }
end

-- The entries of a store without select: the two queries, each entry once.
local function queried(b, filter, q, selecting, now)
  local selected = {}
  if selecting then
    local list, err
    if b.scan then list, err = b:scan(q) else list, err = b:list(q) end
    if not list then return nil, err end
    selected = list
  end
  local rq = M.query({ conversation = filter.conversation, robot = filter.robot, tag = filter.tag }, now,
    { "recalling" })
  local resumed, err
  if b.scan then resumed, err = b:scan(rq) else resumed, err = b:list(rq) end
  if not resumed then return nil, err end
  local seen, entries = {}, {}
  for _, list in ipairs { selected, resumed } do
    for _, e in ipairs(list) do
      if not seen[e.key] and not FINAL[e.state] then
        seen[e.key] = true
        entries[#entries + 1] = e
      end
    end
  end
  return entries
end

--- recall(b, filter, now, window) -> selection | nil, err: what
-- l:recall(client, filter) recalls now (see the top).
function M.recall(b, filter, now, window)
  local selecting = not (filter.last and filter.last < 1) and not FINAL[filter.state]
  local q = M.query(filter, now, filter.state and { filter.state } or DEFAULT_RECALL_STATES)
  local claims = b.claim ~= nil
  -- Oldest first: those nearest to the end of the recall window go first
  -- (several in one second: in the order recorded where the store keeps
  -- it, the file's sequence; else by key).
  if b.entries and not q.last then
    if not selecting then q.states = {} end
    q.resume = RESUMED
    local c, known = b:entries()
    if not c then return nil, known end
    -- in order of record and of send time (the usual case): all done
    local sel = M.collect(c, q, now, window, claims, nil, known)
    if sel then return sel end
    local idx = order.indices(c.sent_at, M.collect(c, q, now, window, claims, {}))
    return M.collect(c, nil, now, window, claims, nil, nil, idx)
  end
  local entries, err = queried(b, filter, q, selecting, now)
  if not entries then return nil, err end
  entries = order.by(entries, "sent_at", b.scan and "seq" or "key")
  return M.collect(M.columns(entries), nil, now, window, claims)
end

return M
