--- dingtalk.recall.ledger.plans: how the ledger hands its selection to
-- the engine and persists what comes back.
--
-- One core plan per (conversation, robot) group; a `chunk` of keys (whole
-- batches of 20: chunk // 20 batches, at least one) is marked `recalling`
-- durably before the first of its batches is sent.  Outcomes are written
-- with the next chunk's marks (one durable write per chunk) and at the end
-- of the run.  A crash loses only outcomes not written yet: those keys stay
-- `recalling`, and the next recall sends them again and counts the server's
-- "already recalled" as recalled.  A chunk smaller than a batch cuts the
-- group into plans of `chunk` keys.
--
-- When the engine runs the plans side by side, the next chunk's marks go
-- out while a chunk is sent: written at once (any reader sees them), their
-- fsync in a thread of the store's (File:update async), waited for before
-- the first batch they cover.  So the disk's wait leaves the event loop,
-- and a crash leaves at most two chunks of a conversation marked but not
-- sent: the next recall sends them.
local core = require "dingtalk.recall.core"
local report = require "dingtalk.recall.report"
local changeset = require "dingtalk.recall.ledger.changes"

local M = {}

local MAX_KEYS = core.MAX_KEYS or 20

-- Batches per durable chunk.
local function per_chunk(chunk)
  return math.max(1, math.floor(chunk / MAX_KEYS))
end

--- make(groups, chunk, refused) -> plans, refused_changes (ledger.changes).
-- groups: {conversation, robot, keys} in order.  A group the core refuses whole
-- (a conversation or robot the API cannot take) ends in `refused` unsent.
function M.make(groups, chunk, refused)
  local plans, ch = {}, changeset.new()
  local step = chunk < MAX_KEYS and chunk or nil
  for _, g in ipairs(groups) do
    for first = 1, #g.keys, step or #g.keys do
      local keys = g.keys
      if step then
        keys = {}
        for i = first, math.min(#g.keys, first + step - 1) do keys[#keys + 1] = g.keys[i] end
      end
      local plan, err = core.plan(g.conversation, g.robot, keys)
      if plan then
        plans[#plans + 1] = plan
      else
        local outcomes = report.fail(refused, keys, err)
        for _, k in ipairs(keys) do ch:outcome(refused, k, outcomes[k]) end
      end
    end
  end
  return plans, ch
end

--- hooks(o) -> engine hooks, plus hooks.error() -> the first store error
-- and hooks.elsewhere() -> the keys left to other hosts.  o: chunk, plans
-- (the run's plans, from make), save(changes) -> true | false, err
-- (changes: ledger.changes), on_progress, and for a store shared by several hosts (Redis)
-- claim and was (below).
--
-- Marks (file store): when a plan's batch opens its next chunk, that
-- chunk is marked `recalling` in one durable write together with the
-- outcomes known so far, and so is the same chunk of every other plan
-- that has reached the chunk before it (the engine starts batches round
-- robin over the plans, so they move in step): one fsync per chunk of the
-- whole run rather than per chunk of each conversation, and no plan is
-- marked more than two chunks ahead of what it sends (the next one goes
-- ahead: see the top).  Without o.plans
-- (a client run plan after plan), or with a chunk smaller than a batch
-- (plans of `chunk` keys of one group), each plan is marked on its own.
--
-- claim(marks) -> {key = true} | nil, err, and was(key) -> the state a key
-- was selected in: a store shared by several hosts (Redis).  Each batch's
-- keys are claimed (with a lease) right before the batch is sent, so two
-- hosts sweeping at once share the work batch by batch.  A batch holding
-- a key another host claimed first is not sent (ledger.elsewhere): its keys
-- are that host's, or stay claimed by this one until the lease ends and a
-- later run takes them over; nothing is written for them, and they leave
-- this run's report (hooks.elsewhere()).
function M.hooks(o)
  local chunk, save, claim, was = o.chunk, o.save, o.claim, o.was
  local per = per_chunk(chunk)
  local together = chunk >= MAX_KEYS and o.plans or nil -- plans marked in step
  local marked = {}   -- plan -> the last chunk marked
  local started = {}  -- plan -> the chunk of its last batch started
  local pending = changeset.new()  -- outcomes not written yet
  local skipped = {}  -- keys of batches left to other hosts (claim)
  local elsewhere = {}
  local failed
  local ahead -- marks written ahead: {sync = handle or nil, chunk, covers = {plan = true}}
  local round = 0 -- the highest chunk whose first batch started
  -- Writes changes (async: the fsync may still run; -> true, sync).
  local function write(changes, async)
    if failed then return false, failed end
    local ok, err = save(changes, async)
    if not ok then
      failed = err
      return false, err
    end
    pending = changeset.new()
    return true, err
  end
  -- Waits until the marks written ahead are durable.
  local function settle_ahead()
    local a = ahead
    ahead = nil
    if not (a and a.sync) then return true end
    local ok, err = a.sync:wait()
    if not ok then
      failed = failed or err
      return false, err
    end
    return true
  end
  local hooks = {}
  local function claim_batch(plan, i)
    local marks = {}
    for j, k in ipairs(plan[i]) do marks[j] = { key = k, state = "recalling", was = was(k) } end
    local mine, err = claim(marks)
    if not mine then
      failed = err
      return false, err
    end
    for _, k in ipairs(plan[i]) do
      if not mine[k] then
        for _, k2 in ipairs(plan[i]) do
          skipped[k2] = true
          elsewhere[#elsewhere + 1] = k2
        end
        return false, core.error("ledger.elsewhere", "another host holds keys of this batch: it recalls them")
      end
    end
    -- the outcomes known so far, once a chunk's worth of batches started
    local ci = math.ceil(i / per)
    if ci > (marked[plan] or 0) then
      marked[plan] = ci
      if pending.count > 0 then return write(pending) end
    end
    return true
  end
  -- Adds chunk ci of plan p to changes as `recalling`.
  local function mark(ch, p, ci)
    for b = (ci - 1) * per + 1, math.min(ci * per, p.nbatches) do ch:add_all(p[b], "recalling") end
    marked[p] = ci
  end
  -- Durably `recalling` before any batch of chunk ci of plan is sent,
  -- with the same chunk of every plan in step and the outcomes known so
  -- far, in one write.
  local function mark_now(plan, ci)
    local ch = pending
    mark(ch, plan, ci)
    if together then
      for _, q in ipairs(together) do
        if (marked[q] or 0) < ci and (started[q] or 0) == ci - 1 and q.nbatches > (ci - 1) * per then
          mark(ch, q, ci)
        end
      end
    end
    return write(ch)
  end
  -- Marks chunk ci + 1 of every plan marked up to ci that has one, with
  -- the outcomes known so far, in one write whose fsync runs while chunk
  -- ci is sent (the store's async write; a store without one writes at
  -- once).  Each of those plans waits for it before its first batch of
  -- chunk ci + 1 (on_batch_start).
  local function write_ahead(ci)
    local ch, covers = pending, {}
    for _, q in ipairs(together) do
      if marked[q] == ci and q.nbatches > ci * per then
        mark(ch, q, ci + 1)
        covers[q] = true
      end
    end
    if next(covers) == nil then return true end
    local ok, sync = write(ch, true)
    if not ok then return false, sync end
    ahead = { sync = sync, chunk = ci + 1, covers = covers }
    return true
  end
  function hooks.on_batch_start(plan, i)
    if failed then return false, failed end
    if claim then return claim_batch(plan, i) end
    local ci = math.ceil(i / per)
    started[plan] = ci
    if ahead and ahead.covers[plan] and ci >= ahead.chunk then
      -- this chunk was marked ahead: durable before any of it is sent
      local ok, err = settle_ahead()
      if not ok then return false, err end
    end
    if ci > (marked[plan] or 0) then
      local ok, err = mark_now(plan, ci)
      if not ok then return false, err end
    end
    if together and ci > round then
      -- the first batch of a chunk of the run: the next chunk goes ahead
      round = ci
      if not ahead then
        local ok, err = write_ahead(ci)
        if not ok then return false, err end
      end
    end
  end
  function hooks.on_batch_done(_, _, keys, outcomes, r)
    if not claim then return pending:outcomes(r, keys, outcomes) end
    for _, k in ipairs(keys) do
      if not skipped[k] then pending:outcome(r, k, outcomes[k]) end
    end
  end
  hooks.on_progress = o.on_progress
  --- Writes the outcomes not written yet; true | false, err.
  function hooks.flush()
    if ahead then settle_ahead() end
    if pending.count == 0 then return not failed, failed end
    return write(pending)
  end
  --- The first store error (after which nothing more is sent).
  function hooks.error() return failed end
  --- The keys of batches left to other hosts.
  function hooks.elsewhere() return elsewhere end
  --- Once the run is over (flushed): the hooks let go of the store, the
  -- plans and the changes.  LuaJIT's compiled traces keep the functions
  -- they called (these hooks) as constants until the traces are flushed;
  -- without this, each such hook would keep a recall's store (a file
  -- store's every entry: megabytes) and plans alive, and every later
  -- collection cycle would mark them again.  A hook called afterwards
  -- refuses (the run is over).
  function hooks.release()
    failed = failed or core.error("ledger.invalid", "this recall is over: its hooks were released")
    save, claim, was, together, ahead = nil, nil, nil, nil, nil
    marked, started, pending, skipped = {}, {}, changeset.new(), {}
    hooks.on_progress = nil
  end
  return hooks
end

--- run_sequential(client, plans, hooks, chunk) -> report: for a client
-- without a run method (an object with recall(cid, keys, opts), e.g. a
-- wrapper): one client:recall per chunk, one after another, its report
-- folded in through the report module.
function M.run_sequential(client, plans, hooks, chunk)
  local per = per_chunk(chunk)
  local r = report.new()
  local done, total, elapsed = 0, 0, 0
  for _, plan in ipairs(plans) do total = total + plan.total + plan.ninvalid end
  r.total = total
  local function finish(plan, i, outcomes)
    hooks.on_batch_done(plan, i, plan[i], outcomes, r)
    done = done + #plan[i]
    if hooks.on_progress then hooks.on_progress(done, total) end
  end
  for _, plan in ipairs(plans) do
    if plan.ninvalid > 0 then
      local keys = {}
      for k in pairs(plan.invalid) do keys[#keys + 1] = k end
      table.sort(keys)
      hooks.on_batch_done(plan, 0, keys, report.fail_map(r, plan.invalid), r)
      done = done + #keys
    end
    for first = 1, plan.nbatches, per do
      local last = math.min(plan.nbatches, first + per - 1)
      local keys, refused, why = {}, false, nil
      for i = first, last do
        local ok, err = hooks.on_batch_start(plan, i, plan[i])
        if ok == false then refused, why = true, err end
        for _, k in ipairs(plan[i]) do keys[#keys + 1] = k end
      end
      local rep, err
      if refused then
        err = why
      else
        rep, err = client:recall(plan.conversation, keys, { robot_code = plan.robot, ambiguous = true })
      end
      if rep then
        report.count(r, rep)
        elapsed = elapsed + (tonumber(rep.elapsed) or 0)
      end
      for i = first, last do
        if rep then
          finish(plan, i, report.absorb(r, plan[i], rep))
        else
          finish(plan, i, report.fail(r, plan[i], err))
        end
      end
    end
  end
  return report.finish(r, elapsed)
end

return M
