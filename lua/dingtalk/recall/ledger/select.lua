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
-- file store does it in one pass over its entries (store:select), handing
-- each entry to a collector while it is at hand: 20,000 entries are
-- 20,000 tables scattered in memory, and a second walk over them costs
-- cache misses, not instructions.  Other stores answer queries
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

--- collector(now, window, claims) -> c: c.add(e) takes the entries
-- oldest first; c.done() -> the selection (was only when claims), or nil
-- when the entries came in another order (c.add does not check that they
-- do: c.done says whether they did).
function M.collector(now, window, claims)
  local groups, index, expired, was = {}, {}, {}, claims and {} or nil
  local g, gc, gr
  local last, sorted = -math.huge, true
  local c = {}
  function c.add(e)
    local t = e.sent_at
    if t < last or t ~= t then sorted = false end
    last = t
    if now - t > window then
      expired[#expired + 1] = e.key
      return
    end
    local cid, robot = e.conversation, e.robot
    if cid ~= gc or robot ~= gr then
      local of = index[cid]
      if not of then
        of = {}
        index[cid] = of
      end
      g = of[robot]
      if not g then
        g = { conversation = cid, robot = robot, keys = {} }
        of[robot] = g
        groups[#groups + 1] = g
      end
      gc, gr = cid, robot
    end
    local keys = g.keys
    keys[#keys + 1] = e.key
    if was then was[e.key] = e.state end
  end
  function c.done()
    if not sorted then return nil end
    local total = #expired
    for i = 1, #groups do total = total + #groups[i].keys end
    return { groups = groups, expired = expired, was = was, total = total }
  end
  return c
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
  if b.select and not q.last then
    if not selecting then q.states = {} end
    q.resume = RESUMED
    local c = M.collector(now, window, claims)
    local ok, serr = b:select(q, c.add)
    if not ok then return nil, serr end
    -- in order of record and of send time (the usual case): all done
    local sel = c.done()
    if sel then return sel end
    entries = {}
    ok, serr = b:select(q, function(e) entries[#entries + 1] = e end)
    if not ok then return nil, serr end
  else
    entries, err = queried(b, filter, q, selecting, now)
    if not entries then return nil, err end
  end
  -- Oldest first: those nearest to the end of the recall window go first.
  -- (several in one second: in the order recorded where the store keeps
  -- it, the file's sequence; else by key)
  entries = order.by(entries, "sent_at", b.scan and "seq" or "key")
  local c = M.collector(now, window, claims)
  local add = c.add
  for i = 1, #entries do add(entries[i]) end
  return c.done()
end

return M
