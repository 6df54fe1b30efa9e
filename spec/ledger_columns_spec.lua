-- The file store keeps its entries in columns (one array per field); the
-- selection reads them there, and reads the entries other stores answer
-- as tables through select.columns.  One test of an entry against a query
-- (select.matches) serves both: the same ledger, selected through the
-- file store's columns and through its answers to queries alone, gives
-- the same selection, and order.indices sorts as order.by does.
local ledger = require "dingtalk.recall.ledger"
local select = require "dingtalk.recall.ledger.select"
local order = require "dingtalk.recall.ledger.order"
local shell = require "spec.helpers.shell"

local NOW = 2000000000

-- a small deterministic generator (the same cases on every runtime)
local function rng(seed)
  local s = seed
  return function(n)
    s = (s * 1103515245 + 12345) % 2147483648
    return s % n + 1
  end
end

describe("ledger columns", function()
  local dir
  setup(function()
    dir = shell.trim(shell.sh("mktemp -d"))
  end)
  teardown(function()
    shell.sh("rm -rf " .. shell.quote(dir))
  end)

  it("order.indices and order.by sort as a comparator would, NaN and non-numbers as 0", function()
    local rand = rng(7)
    local odd = { 0 / 0, "x", false }
    local function norm(v) return (type(v) == "number" and v == v) and v or 0 end
    for case = 1, 300 do
      local n = rand(40) - 1
      local values, entries, idx, ties = {}, {}, {}, {}
      local mode = case % 4 -- 0: random, 1: ascending, 2: descending, 3: few distinct values and odd ones
      for i = 1, n do
        local v
        if mode == 1 then v = i elseif mode == 2 then v = n - i else v = rand(mode == 3 and 3 or 1000) end
        if mode == 3 and rand(5) == 1 then v = odd[rand(#odd)] end
        values[i], ties[i] = v, ("k%03d"):format(n + 1 - i) -- string ties, in the other order than i
        entries[i] = { t = v, key = ties[i] }
        idx[i] = i
      end
      for _, desc in ipairs { false, true } do
        for _, tie in ipairs { "index", "key" } do
          local tie_of = tie == "key" and function(i) return ties[i] end or function(i) return i end
          local want = {}
          for i = 1, n do want[i] = i end
          table.sort(want, function(a, b)
            local va, vb = norm(values[a]), norm(values[b])
            if va ~= vb then
              if desc then return va > vb end
              return va < vb
            end
            if desc then return tie_of(a) > tie_of(b) end
            return tie_of(a) < tie_of(b)
          end)
          local copy = {}
          for j, i in ipairs(idx) do copy[j] = i end
          local got = order.indices(values, copy, desc, tie == "key" and ties or nil)
          assert.are.same(want, got, ("case %d, %s, %s"):format(case, tostring(desc), tie))
          if tie == "key" then
            local sorted = order.by(entries, "t", "key", desc)
            for j, i in ipairs(want) do assert.are.equal(entries[i], sorted[j], "order.by, case " .. case) end
          end
        end
      end
    end
  end)

  it("selects through its columns what it selects through its answers to queries", function()
    local rand = rng(11)
    local cids, robots, tagset = { "cidA", "cidB", "cidC" }, { "r1", "r2" }, { "x", "y", "z" }
    local states = { "sent", "sent", "sent", "recalling", "recalled", "failed", "error", "expired" }
    local filters = {
      {}, { conversation = "cidA" }, { robot = "r2" }, { tag = "x" }, { since = 3600 }, { due = true },
      { state = "failed" }, { state = "recalled" }, { last = 5 }, { last = 0 }, { conversation = "cidB", tag = "y" },
      { since = 100000, robot = "r1" },
    }
    for case = 1, 12 do
      local path = dir .. "/j" .. case
      local l = assert(ledger.open(path, { clock = function() return NOW end }))
      local n, used = 30 + rand(50), {}
      -- odd cases: recorded oldest first, all within the recall window (the
      -- usual sweep's fast path); even cases: in no order, some past it
      local in_order = case % 2 == 1
      for i = 1, n do
        -- distinct send times (ties break by sequence in one store, by key
        -- in the other)
        local t
        if in_order then
          t = NOW - 10 * (n - i) - 1
        else
          repeat t = NOW - rand(ledger.RECALL_WINDOW + 20000) until not used[t]
        end
        used[t] = true
        local tags = {}
        for _, tag in ipairs(tagset) do
          if rand(3) == 1 then tags[#tags + 1] = tag end
        end
        assert(l:record { key = ("key%03d"):format(i), conversation = cids[rand(#cids)], robot = robots[rand(2)],
          sent_at = t, tags = tags, ttl = rand(2) == 1 and rand(50000) or nil })
      end
      -- some state changes, some of them with reasons and codes
      for i = 1, n do
        local s = states[rand(#states)]
        if s ~= "sent" then assert(l:mark({ ("key%03d"):format(i) }, s)) end
      end
      local file = l.backend
      -- the same store, seen only through its answers to queries
      local queried = { list = function(_, q) return file:list(q) end }
      for fi, filter in ipairs(filters) do
        local a = assert(select.recall(file, filter, NOW, ledger.RECALL_WINDOW))
        local b = assert(select.recall(queried, filter, NOW, ledger.RECALL_WINDOW))
        assert.are.same(b, a, ("case %d, filter %d"):format(case, fi))
        -- and a query's entries are those matches() takes from the columns
        local q = select.query(filter, NOW, filter.state and { filter.state } or nil)
        local listed = assert(file:list(q))
        local c, want = file:entries(), 0
        for i = 1, c.n do
          if select.matches(c, i, q) then want = want + 1 end
        end
        if q.last then want = math.min(want, q.last) end
        assert.are.equal(want, #listed, ("case %d, filter %d"):format(case, fi))
      end
      l:close()
    end
  end)

  it("hands out copies: changing what get and list answer changes nothing stored", function()
    local l = assert(ledger.open(dir .. "/copies", { clock = function() return NOW end }))
    assert(l:record { key = "k1", conversation = "cidA", robot = "r1", sent_at = NOW - 5, tags = { "a" } })
    local e = assert(l:get("k1"))
    e.state, e.tags[1] = "recalled", "changed"
    local listed = assert(l:list {})
    listed[1].tags[2] = "more"
    local again = assert(l:get("k1"))
    assert.are.equal("sent", again.state)
    assert.are.same({ "a" }, again.tags)
    assert.is_nil(again.seq)
    l:close()
  end)

  it("reads a journal of hostile events into sane entries, selects and compacts it without raising", function()
    local path = dir .. "/hostile"
    local l = assert(ledger.open(path, { clock = function() return NOW end }))
    assert(l:record { key = "k0", conversation = "cidA", robot = "r1", sent_at = NOW - 50 })
    local f = assert(io.open(path, "ab"))
    for _, line in ipairs {
      '{"e":"r","k":123,"c":"cidA","r":"r1"}', -- a key that is not a string: skipped
      '{"e":"r","k":"a","c":{},"r":[],"t":"soon","g":[1,{},"ok",true],"l":"x","m":5,"u":"y","s":7}',
      '{"e":"r","k":"b","c":"cidA","r":"r1","t":1e308,"s":"weird","why":{},"code":[]}',
      '{"e":"r","k":"c","c":"cidA","r":"r1","t":-1e308,"l":1e308}',
      '{"e":"r","k":"d","c":"cidA","r":"r1","t":NaN}',
      '{"e":"r","k":"f","c":"cidA","r":"r1","t":1e999,"l":-1e999}', -- infinities
      '{"e":"s","s":"recalled","k":[{},1,true,"a","nokey"],"why":"x","code":5}',
      '{"e":"s","s":5,"k":["b"]}',
      '{"e":"s","s":"failed","k":{"x":"c"}}',
      '{"e":"s","s":"failed","k":["c"],"why":{"c":{}},"code":{"c":7}}',
      '[1,2,3]', '"a string"', '{"e":"h"}', '{"e":"zz","k":"e"}', '{}',
    } do
      f:write(line, "\n")
    end
    f:close()
    local function check(lg)
      local a = assert(lg:get("a"))
      assert.are.same({ "", "", 0, { "ok" }, "recalled" }, { a.conversation, a.robot, a.sent_at, a.tags, a.state })
      assert.is_nil(a.ttl)
      assert.is_nil(a.msg_key)
      assert.are.equal("weird", assert(lg:get("b")).state)
      local c = assert(lg:get("c"))
      assert.are.same({ "failed", nil, nil }, { c.state, c.reason, c.code })
      assert.is_nil(lg:get("nokey"))
      assert.is_nil(lg:get("e"))
      local listed = assert(lg:list {})
      local keys = {}
      for _, e in ipairs(listed) do keys[#keys + 1] = e.key end
      table.sort(keys)
      local want = { "a", "b", "c", "k0" }
      if lg:get("d") then want = { "a", "b", "c", "d", "k0" } end -- (when cjson reads NaN)
      if lg:get("f") then
        want[#want + 1] = "f"
        table.sort(want)
        assert.are.same({ 0 }, { lg:get("f").sent_at, lg:get("f").ttl }) -- not times: 0 and none
      end
      assert.are.same(want, keys)
      local sel = assert(lg:select {})
      for _, g in ipairs(sel.groups) do
        for _, k in ipairs(g.keys) do assert.are.equal("string", type(k)) end
      end
      assert.is_true(sel.total >= 1)
    end
    local l2 = assert(ledger.open(path, { clock = function() return NOW end }))
    check(l2)
    -- a compaction writes back what it keeps (send times of 0 and -1e308 are
    -- past the retention: dropped) as lines that read back the same
    assert(l2.backend:compact())
    local l3 = assert(ledger.open(path, { clock = function() return NOW end }))
    local listed = assert(l3:list {})
    assert.are.same({ "b", "k0" }, { listed[1].key, listed[2].key })
    assert.are.equal(2, #listed)
    assert.are.same({ "weird", 1e308 }, { listed[1].state, listed[1].sent_at })
    assert(l3:select {})
    l:close()
    l2:close()
    l3:close()
  end)

  it("collect takes a NaN send time as 0 (past the window), as order.indices sorts it", function()
    local c = select.columns {
      { key = "k1", conversation = "cidA", robot = "r1", sent_at = NOW - 10, state = "sent" },
      { key = "k2", conversation = "cidA", robot = "r1", sent_at = 0 / 0, state = "sent" },
      { key = "k3", conversation = "cidA", robot = "r1", sent_at = NOW - 5, state = "sent" },
    }
    local idx = order.indices(c.sent_at, { 1, 2, 3 })
    local sel = assert(select.collect(c, nil, NOW, ledger.RECALL_WINDOW, false, nil, nil, idx))
    assert.are.same({ "k2" }, sel.expired)
    assert.are.same({ "k1", "k3" }, sel.groups[1].keys)
  end)
end)
