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
-- file store hands over its entries in order of record (store:entries)
-- and one loop here (collect) filters and groups them, each while it is at
-- hand: 20,000 entries are 20,000 tables scattered in memory, and a second
-- walk over them costs cache misses, not instructions.  Other stores answer queries
-- (store:scan or store:list) and the entries are put together here.
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

local function has_tag(e, tag)
  local tags = e.tags
  for i = 1, #tags do
    if tags[i] == tag then return true end
  end
  return false
end
M.has_tag = has_tag

local NONE = {}

--- collect(list, q, now, window, claims [, into [, known]]) -> the
-- selection (was only when claims), or nil when the entries taken came in
-- another order than oldest first; with into (an array), only appends the
-- entries taken to it and returns it.  known: what the store knows of its
-- list ({sorted, min_t}, File:entries): when it is oldest first and none
-- is past the window, the usual sweep reads only state, conversation,
-- robot and key of each entry.  list: entries in order (a store's own array: read, never
-- changed); q: nil (take them all) or a store's query with resume (see
-- File:entries): the entries matching q, plus those of q's conversation,
-- robot and tag whose state is in q.resume whatever min_t and due_at say.
-- One numeric loop, no call per entry (the entries are scattered tables:
-- each is read once, while at hand).
function M.collect(list, q, now, window, claims, into, known)
  local groups, index, expired, was = {}, {}, {}, claims and {} or nil
  local g, gc, gr, keys, n -- the group at hand, its keys and their count
  -- the group of (c, r) becomes the one at hand
  local function switch(c, r)
    if g then g.n = n end
    local of = index[c]
    if not of then
      of = {}
      index[c] = of
    end
    g = of[r]
    if not g then
      g = { conversation = c, robot = r, keys = {}, n = 0 }
      of[r] = g
      groups[#groups + 1] = g
    end
    gc, gr, keys, n = c, r, g.keys, g.n
  end
  local last, sorted = -math.huge, true
  local cid, robot, tag, states, resume, min_t, due_at
  if q then
    cid, robot, tag, states, resume = q.conversation, q.robot, q.tag, q.states or NONE, q.resume or NONE
    min_t, due_at = q.min_t, q.due_at
  end
  -- by state alone (l:recall{}, the usual sweep): fewer tests per entry
  local by_state = q and not (cid or robot or tag or min_t or due_at)
  local nexp = 0
  local fast = by_state and not into and not was and known and known.sorted and now - known.min_t <= window
  for i = 1, fast and #list or 0 do
    local e = list[i]
    local state = e.state
    if resume[state] or states[state] then
      local c, r = e.conversation, e.robot
      if c ~= gc or r ~= gr then switch(c, r) end
      n = n + 1
      keys[n] = e.key
    end
  end
  for i = 1, fast and 0 or #list do
    local e = list[i]
    local take = true
    if by_state then
      local state = e.state
      take = resume[state] or states[state]
    elseif q then
      local state = e.state
      take = (not cid or e.conversation == cid) and (not robot or e.robot == robot) and (not tag or has_tag(e, tag))
        and (resume[state] or (states[state] and (not min_t or e.sent_at >= min_t)
          and (not due_at or (state == "sent" and e.ttl and e.sent_at + e.ttl <= due_at))))
    end
    if not take then -- luacheck: ignore 542
    elseif into then
      into[#into + 1] = e
    else
      local t = e.sent_at
      if t < last or t ~= t then sorted = false end
      last = t
      if now - t > window then
        nexp = nexp + 1
        expired[nexp] = e.key
      else
        local c, r = e.conversation, e.robot
        if c ~= gc or r ~= gr then switch(c, r) end
        n = n + 1
        keys[n] = e.key
        if was then was[e.key] = e.state end
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
  local entries, err
  if b.entries and not q.last then
    if not selecting then q.states = {} end
    q.resume = RESUMED
    local list, known = b:entries()
    if not list then return nil, known end
    -- in order of record and of send time (the usual case): all done
    local sel = M.collect(list, q, now, window, claims, nil, known)
    if sel then return sel end
    entries = M.collect(list, q, now, window, claims, {})
  else
    entries, err = queried(b, filter, q, selecting, now)
    if not entries then return nil, err end
  end
  -- Oldest first: those nearest to the end of the recall window go first.
  -- (several in one second: in the order recorded where the store keeps
  -- it, the file's sequence; else by key)
  entries = order.by(entries, "sent_at", b.scan and "seq" or "key")
  return M.collect(entries, nil, now, window, claims)
end

return M
