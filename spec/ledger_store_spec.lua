-- The ledger: what does not depend on the store (the fields a record
-- takes, how a recall marks and persists keys) on the file store, and the
-- cases of each store alone.  No server: recalls go to a fake transport.
local ledger = require "dingtalk.recall.ledger"
local core = require "dingtalk.recall.core"
local journal = require "dingtalk.recall.journal"
local changes = require "dingtalk.recall.ledger.changes"
local redis_helper = require "spec.helpers.redis"
local shell = require "spec.helpers.shell"
local lh = require "spec.helpers.ledger"

local sh, sh_quote, trim, read_file = shell.sh, shell.quote, shell.trim, shell.read_file
local keys_of, set_of, fake_client = lh.keys_of, lh.set_of, lh.fake_client
local LUA = os.getenv("DINGTALK_RECALL_TEST_LUA") or "lua"
local CID_A = "cidLedgerA"

local has_socket = pcall(require, "socket")
local has_redis = redis_helper.available()

describe("ledger", function()
  local rs, dir
  local n = 0

  setup(function()
    dir = trim(sh("mktemp -d ${TMPDIR:-/tmp}/dingtalk-ledger-store.XXXXXX"))
    if has_redis and has_socket then rs = redis_helper.start() end
  end)
  teardown(function()
    if rs then rs:stop() end
    if dir then sh("rm -rf " .. sh_quote(dir)) end
  end)

  local function open(opts)
    n = n + 1
    return assert(ledger.open(dir .. "/l" .. n .. "/ledger", opts))
  end

  describe("(any store)", function()
    it("refuses an entry without key, conversation or robot; raises on wrong types", function()
      local l = open()
      for _, bad in ipairs {
        { conversation = CID_A, robot = "r" },
        { key = "", conversation = CID_A, robot = "r" },
        { key = "k", robot = "r" },
        { key = "k", conversation = CID_A },
      } do
        local ok, err = l:record(bad)
        assert.is_nil(ok)
        assert.are.equal("ledger.invalid", err.code)
        assert.is_true(core.is_error(err))
      end
      assert.has_error(function() l:record("k") end)
      assert.has_error(function()
        l:record { key = "k", conversation = CID_A, robot = "r", tags = 5 }
      end)
      assert.has_error(function()
        l:record { key = "k", conversation = CID_A, robot = "r", sent_at = "now" }
      end)
      assert.has_error(function() l:list { conversaton = CID_A } end)
      assert.has_error(function() l:list { since = "600" } end)
      assert.has_error(function() l:list { state = "gone" } end)
      assert.has_error(function() l:get(5) end)
      assert.are.same({}, l:list())
      l:close()
      assert.has_error(function() l:list() end)
    end)

    it("refuses a record spelled with the API's wire names, naming the ledger's field", function()
      local l = open()
      for wire, ours in pairs { processQueryKey = "key", openConversationId = "conversation", robotCode = "robot",
        msgKey = "msg_key" } do
        local e = { key = "kw", conversation = CID_A, robot = "r" }
        e[ours] = nil
        e[wire] = ours == "msg_key" and "sampleText" or "w"
        local ok, err = l:record(e)
        assert.is_nil(ok, wire)
        assert.are.equal("ledger.invalid", err.code)
        assert.truthy(err.message:find("'" .. wire .. "'", 1, true), err.message)
        assert.truthy(err.message:find("'" .. ours .. "'", 1, true), err.message)
        local mok, merr = l:record_many { { key = "km", conversation = CID_A, robot = "r" }, e }
        assert.is_nil(mok)
        assert.are.equal("ledger.invalid", merr.code)
      end
      -- a misspelt field is refused too, rather than silently dropped
      local ok, err = l:record { key = "kt", conversation = CID_A, robot = "r", tag = "deploy" }
      assert.is_nil(ok)
      assert.truthy(err.message:find("'tag'", 1, true), err.message)
      -- sent_at and ttl must be finite
      assert.is_nil((l:record { key = "kn", conversation = CID_A, robot = "r", sent_at = 0 / 0 }))
      assert.is_nil((l:record { key = "kn", conversation = CID_A, robot = "r", ttl = math.huge }))
      assert.are.same({}, l:list()) -- nothing was written
      -- an entry read back may be recorded again as it is
      assert(l:record { key = "kr", conversation = CID_A, robot = "r", tags = { "a" }, msg_key = "sampleText" })
      local back = l:get("kr")
      assert(l:record(back))
      assert.are.equal("sampleText", l:get("kr").msg_key)
      l:close()
    end)


    it("marks each chunk of the whole run in one durable write, before any of its batches is sent", function()
      -- (the next chunk's marks go ahead while a chunk is sent: their fsync
      -- runs in a thread, waited for before the first of their batches)
      local l = open { chunk = 20 } -- one batch of 20 keys per chunk
      local cids = { "cidM1", "cidM2", "cidM3" }
      local entries = {}
      for _, cid in ipairs(cids) do
        for i = 1, 60 do entries[#entries + 1] = { key = cid .. "-" .. i, conversation = cid, robot = "r" } end
      end
      assert(l:record_many(entries))
      local writes = {}
      local durable = {} -- key -> whether its mark's write is known durable
      local update = l.backend.update
      l.backend.update = function(b, ch, now, async)
        local w = { marks = {}, outcomes = 0, async = async }
        local marks = {}
        for _, set in ipairs(ch.sets) do
          for _, k in ipairs(changes.keys(set)) do
            if set.state == "recalling" then
              local cid = k:match("^(.-)%-")
              w.marks[cid] = (w.marks[cid] or 0) + 1
              marks[#marks + 1] = k
            else
              w.outcomes = w.outcomes + 1
            end
          end
        end
        writes[#writes + 1] = w
        local ok, sync = update(b, ch, now, async)
        local function done() for _, k in ipairs(marks) do durable[k] = true end end
        if not (ok and sync) then
          done()
          return ok, sync
        end
        -- the fsync runs in a thread: durable once waited for
        return ok, { wait = function()
          local wok, werr = sync:wait()
          if wok then done() end
          return wok, werr
        end }
      end
      -- Another reader of the same journal sees every key of a request
      -- `recalling` before the request is answered: the mark was written,
      -- and waited for when its fsync ran apart.
      local reader = assert(ledger.open(l.location))
      local unmarked, undurable = {}, {}
      local c = fake_client(nil, { concurrency = 4 }, function(req)
        for _, k in ipairs(req.keys) do
          if reader:get(k).state ~= "recalling" then unmarked[#unmarked + 1] = k end
          if not durable[k] then undurable[#undurable + 1] = k end
        end
      end)
      local rep = assert(l:recall(c, {}))
      assert.are.equal(180, #rep.recalled)
      assert.are.same({}, unmarked)
      assert.are.same({}, undurable)
      -- chunk 1 at once; chunks 2 and 3 ahead, their fsync apart
      assert.are.same({ false, true, true, false }, { not not writes[1].async, not not writes[2].async,
        not not writes[3].async, not not writes[4].async })
      -- 3 chunks of 3 conversations: 3 writes of marks (not 9), each one
      -- chunk (20 keys) of every conversation, then the last outcomes
      local with_marks = 0
      for _, w in ipairs(writes) do
        if next(w.marks) then
          with_marks = with_marks + 1
          assert.are.same({ cidM1 = 20, cidM2 = 20, cidM3 = 20 }, w.marks)
        end
      end
      assert.are.equal(3, with_marks)
      assert.are.equal(4, #writes)
      assert.are.equal(0, writes[1].outcomes)
      assert.are.equal(180, #reader:list { state = "recalled" })
      l:close()
      reader:close()
    end)

    it("marks and settles keys recalled outside l:recall (the CLI's recall KEY...)", function()
      local l = open()
      assert(l:record_many {
        { key = "kr", conversation = CID_A, robot = "r" }, { key = "kf", conversation = CID_A, robot = "r" },
        { key = "ka", conversation = CID_A, robot = "r" }, { key = "ke", conversation = CID_A, robot = "r" },
      })
      assert(l:mark({ "kr", "kf", "ka", "ke", "notInTheLedger" }, "recalling"))
      assert.are.equal("recalling", l:get("kr").state)
      assert.has_error(function() l:mark({ "kr" }, "gone") end)
      local r = { recalled = { "kr", "ka" }, already_recalled = { "ka" }, failed = { kf = "MSG_NOT_FOUND" },
        errors = { ke = { code = "system.error", message = "boom" } } }
      assert(l:settle(r, { "kr", "kf", "ka", "ke" }))
      assert.are.equal("recalled", l:get("kr").state)
      assert.are.equal("recalled", l:get("ka").state)
      assert.are.equal("failed", l:get("kf").state)
      assert.are.equal("MSG_NOT_FOUND", l:get("kf").reason)
      assert.are.equal("error", l:get("ke").state)
      assert.are.equal("system.error", l:get("ke").code)
      -- what the journal holds, read afresh
      local again = assert(ledger.open(l.location))
      assert.are.equal("failed", again:get("kf").state)
    end)

    it("writes a state change line that any JSON reader decodes, whatever its keys hold", function()
      local l = open()
      local cjson = require "cjson"
      local plain, odd = { "kA+/=", "kB" }, { 'q"uote', "back\\slash", "tab\tkey", "del\127" }
      local all = {}
      for _, k in ipairs(plain) do all[#all + 1] = k end
      for _, k in ipairs(odd) do all[#all + 1] = k end
      for _, k in ipairs(all) do assert(l:record { key = k, conversation = CID_A, robot = "r" }) end
      local a, b = changes.new(), changes.new()
      for _, k in ipairs(plain) do a:add(k, "recalling") end
      for _, k in ipairs(odd) do b:add(k, "recalled") end
      assert(l.backend:update(a, 1000))
      assert(l.backend:update(b, 1001))
      local lines = {}
      for line in read_file(l.location):gmatch("[^\n]+") do lines[#lines + 1] = cjson.decode(line) end
      assert.are.same({ e = "s", s = "recalling", u = 1000, k = plain }, lines[#lines - 1])
      assert.are.same({ e = "s", s = "recalled", u = 1001, k = odd }, lines[#lines])
      local fresh = assert(ledger.open(l.location)) -- replays the journal from disk
      for _, k in ipairs(plain) do assert.are.equal("recalling", fresh:get(k).state) end
      for _, k in ipairs(odd) do assert.are.equal("recalled", fresh:get(k).state, k) end
      assert.are.equal("recalling", l:get("kB").state)
      l:close()
      fresh:close()
    end)

    it("reads back only what others appended: its own appends are applied as written", function()
      local l = open()
      local other = assert(ledger.open(l.location))
      assert(l:record { key = "k1", conversation = CID_A, robot = "r" })
      local reads = 0
      local read = journal.read
      journal.read = function(...)
        reads = reads + 1
        return read(...)
      end
      local ok, err = pcall(function()
        assert(l:record { key = "k2", conversation = CID_A, robot = "r", tags = "a" })
        assert.are.equal(0, reads)
        assert.are.same({ "a" }, l:get("k2").tags)
        reads = 0
        assert(other:record { key = "k3", conversation = CID_A, robot = "r" })
        reads = 0
        assert(l:record { key = "k4", conversation = CID_A, robot = "r" }) -- k3 came in between
        assert.are.equal(1, reads)
        assert.are.same(set_of { "k1", "k2", "k3", "k4" }, set_of(keys_of(l:list())))
      end)
      journal.read = read
      assert(ok, err)
      -- journal.append says where its lines went, and the journal's id
      local path = dir .. "/append/journal"
      local a1, s1, e1, id1 = journal.append(path, { "one", "two" })
      assert.is_true(a1)
      assert.are.same({ 0, 8 }, { s1, e1 })
      local data, off, id = journal.read(path)
      assert.are.same({ "one\ntwo\n", 8, id1 }, { data, off, id })
      local _, s2, e2, id2 = journal.append(path, "three")
      assert.are.same({ 8, 14, id1 }, { s2, e2, id2 })
      l:close()
      other:close()
    end)
  end)

  describe("(file store alone)", function()
    it("appends key lines {head, parts, tail}: the keys of batch arrays as JSON strings, checked first", function()
      local cjson = require "cjson"
      local path = dir .. "/keylines/journal"
      local odd = { 'q"uote', "back\\slash", "nl\nx", "\0z", "\1\31\127", "caf\195\169", "\255raw" }
      local plain = { "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "kB+/=" }
      assert.is_true((journal.append(path, { "first", { '{"k":[', { plain, {}, odd }, "]}" }, "last" })))
      local data = journal.read(path)
      local lines = {}
      for line in data:gmatch("[^\n]+") do lines[#lines + 1] = line end
      assert.are.equal(3, #lines) -- no raw newline from a key
      assert.are.same({ "first", "last" }, { lines[1], lines[3] })
      local want = {}
      for _, k in ipairs(plain) do want[#want + 1] = k end
      for _, k in ipairs(odd) do want[#want + 1] = k end
      assert.are.same({ k = want }, cjson.decode(lines[2]))
      assert.are.equal('{"k":["' .. plain[1] .. '","kB+/=",', lines[2]:sub(1, #plain[1] + 17))
      assert.are.equal(journal.keys_line('{"k":[', { plain, {}, odd }, "]}"), lines[2])
      -- checked before anything is written: a bad key line raises, the journal stays as it was
      for _, bad in ipairs { { "h", { { 1 } }, "t" }, { "h", { "k" }, "t" }, { "h", {}, "t\n" }, { "h", nil, "t" },
        { 7, {}, "t" } } do
        assert.has_error(function() journal.append(path, { "ok", bad }) end)
      end
      assert.has_error(function() journal.keys_line("h", { { "a", false } }, "t") end)
      assert.are.equal(data, (journal.read(path)))
    end)

    it("appends with its fsync in a thread: the lines readable at once, wait() says when durable", function()
      local path = dir .. "/async/journal"
      local pid = trim(sh("echo $PPID")) -- this process (the shell's parent)
      local function fds() -- descriptors open in this process
        local count = 0
        local p = assert(io.popen("ls /proc/" .. pid .. "/fd"))
        for _ in p:lines() do count = count + 1 end
        p:close()
        return count
      end
      local ok, s0, s1, id, first = journal.append(path, "first", true) -- a new journal: durable at once
      assert.are.same({ true, 0, 6 }, { ok, s0, s1 })
      assert.are.equal("string", type(id))
      assert.is_true(first:wait())
      local before = fds()
      local handles = {}
      for i = 1, 50 do
        local aok, _, stop, _, sync = journal.append(path, { "line " .. i }, true)
        assert.is_true(aok)
        assert.are.equal(stop, #journal.read(path)) -- readable before it is durable
        handles[i] = sync
      end
      for i = 1, 25 do
        assert.is_true(handles[i]:wait())
        assert.is_true(handles[i]:wait()) -- the same answer again
      end
      for i = 26, 50 do handles[i] = nil end -- waited for when collected: no thread, no descriptor left
      collectgarbage()
      collectgarbage()
      assert.is_true(fds() <= before)
      local plain = { journal.append(path, "sync") }
      assert.are.equal(4, #plain) -- no handle without async
      local lines = 0
      for _ in journal.read(path):gmatch("\n") do lines = lines + 1 end
      assert.are.equal(52, lines)
    end)

    it("applies its own state changes in order with its records, in memory as on disk", function()
      local l = open()
      assert(l:record { key = "k1", conversation = CID_A, robot = "r" })
      assert(l:mark({ "k1", "k2" }, "recalling")) -- k2 is not recorded yet: passed over
      assert(l:record { key = "k2", conversation = CID_A, robot = "r" })
      assert(l:mark({ "k1" }, "recalled"))
      assert(l:mark({ "k1" }, "failed"))
      local fresh = assert(ledger.open(l.location)) -- replays the journal from disk
      for _, which in ipairs { l, fresh } do
        assert.are.equal("failed", which:get("k1").state)
        assert.are.equal("sent", which:get("k2").state)
        assert.are.same({ "k2" }, keys_of(which:list { state = "sent" }))
      end
      l:close()
      fresh:close()
    end)

    it("creates its directory 0700 and its journal 0600", function()
      local base = dir .. "/perm/a/b"
      local l = assert(ledger.open(base .. "/ledger"))
      assert(l:record { key = "k", conversation = CID_A, robot = "r" })
      local out = sh("stat -c '%a %n' " .. sh_quote(dir .. "/perm") .. " " .. sh_quote(dir .. "/perm/a") .. " " ..
        sh_quote(base) .. " " .. sh_quote(base .. "/ledger"))
      assert.are.same({ "700", "700", "700", "600" }, (function()
        local t = {}
        for m in out:gmatch("(%d+) ") do t[#t + 1] = m end
        return t
      end)())
      l:close()
    end)

    it("defaults to $XDG_DATA_HOME/dingtalk-recall/ledger, else ~/.local/share", function()
      local code = "local l = assert(require('dingtalk.recall.ledger').open()) " ..
        "assert(l:record{key='k',conversation='cid',robot='r'}) io.write(l.location)"
      local xdg = dir .. "/xdg"
      local out, rc = sh("XDG_DATA_HOME=" .. sh_quote(xdg) .. " " .. LUA .. " -e " .. sh_quote(code))
      assert.are.equal(0, rc, out)
      assert.are.equal(xdg .. "/dingtalk-recall/ledger", out)
      assert.truthy(read_file(xdg .. "/dingtalk-recall/ledger"):find('"k":"k"', 1, true))
      local home = dir .. "/home"
      out, rc = sh("env -u XDG_DATA_HOME HOME=" .. sh_quote(home) .. " " .. LUA .. " -e " .. sh_quote(code))
      assert.are.equal(0, rc, out)
      assert.are.equal(home .. "/.local/share/dingtalk-recall/ledger", out)
      out = sh("HOME=" .. sh_quote(home) .. " XDG_DATA_HOME= " .. LUA ..
        " -e \"io.write(require('dingtalk.recall.ledger').default_path())\"")
      assert.are.equal(home .. "/.local/share/dingtalk-recall/ledger", out)
    end)

    it("skips a torn line and keeps appending after it", function()
      local path = dir .. "/torn/ledger"
      local l = assert(ledger.open(path))
      assert(l:record { key = "k1", conversation = CID_A, robot = "r" })
      local f = assert(io.open(path, "ab"))
      f:write('{"e":"r","k":"half') -- a write cut short
      f:close()
      local l2 = assert(ledger.open(path))
      assert.are.equal(1, #l2:list())
      assert(l2:record { key = "k2", conversation = CID_A, robot = "r" })
      assert.are.same(set_of { "k1", "k2" }, set_of(keys_of(l:list())))
      assert.are.same(set_of { "k1", "k2" }, set_of(keys_of(assert(ledger.open(path)):list())))
      local lines = {}
      for line in read_file(path):gmatch("[^\n]+") do lines[#lines + 1] = line end
      assert.are.equal(3, #lines)
      assert.are.equal('{"e":"r","k":"half', lines[2])
    end)

    it("compacts a long journal: same entries, fewer lines, old entries dropped", function()
      local path = dir .. "/compact/ledger"
      local now = os.time()
      local l = assert(ledger.open(path, { compact_min = 50, retention = 3600, clock = function() return now end }))
      local other = assert(ledger.open(path))
      assert(l:record { key = "old", conversation = CID_A, robot = "r", sent_at = now - 7200 })
      for i = 1, 10 do
        assert(l:record { key = "k" .. i, conversation = CID_A, robot = "r",
          sent_at = now - i, tags = "t" .. i % 2 })
      end
      local fc = fake_client { k3 = "SYSTEM_ERROR" }
      assert(l:recall(fc, {}))
      for _ = 1, 30 do assert(l:recall(fc, { state = "failed" })) end
      local lines = 0
      for _ in read_file(path):gmatch("[^\n]+") do lines = lines + 1 end
      assert.is_true(lines < 50, lines .. " lines")
      assert.is_nil(l:get("old"))
      assert.is_nil(other:get("old")) -- the other reader follows the new journal
      assert.are.equal(10, #other:list())
      assert.are.equal("failed", other:get("k3").state)
      assert.are.equal("SYSTEM_ERROR", other:get("k3").reason)
      assert.are.equal("recalled", other:get("k4").state)
      assert.are.same({ "t1" }, other:get("k1").tags)
      assert.are.equal(5, #other:list { tag = "t0" })
      assert.is_nil(io.open(path .. ".tmp"))
    end)

    it("answers nil, err for a location it cannot use", function()
      local ok, err = ledger.open("/dev/null/ledger")
      assert.is_nil(ok)
      assert.are.equal("ledger.io", err.code)
      assert.truthy(tostring(err):find("/dev/null/ledger", 1, true))
      local l = assert(ledger.open(dir .. "/ro/ledger"))
      sh("mkdir -p " .. sh_quote(dir .. "/ro") .. " && chmod 500 " .. sh_quote(dir .. "/ro"))
      local _, not_root = sh("test $(id -u) -eq 0")
      if not_root ~= 0 then -- root writes anyway
        local rok, rerr = l:record { key = "k", conversation = CID_A, robot = "r" }
        assert.is_nil(rok)
        assert.are.equal("ledger.io", rerr.code)
      end
      sh("chmod 700 " .. sh_quote(dir .. "/ro"))
      ok, err = ledger.open("ftp://host/x")
      assert.is_nil(ok)
      assert.are.equal("ledger.invalid", err.code)
      assert.has_error(function() ledger.open(5) end)
      assert.has_error(function() ledger.open(nil, { clock = 5 }) end)
    end)
  end)

  describe("(redis store alone)", function()
    local redis_store = require "dingtalk.recall.ledger.redis"

    it("parses redis:// URLs", function()
      local p = redis_store.parse_url
      assert.are.same({ host = "127.0.0.1", port = 6379, db = 0 }, p("redis://"))
      assert.are.same({ host = "10.0.0.5", port = 6390, db = 3 }, p("redis://10.0.0.5:6390/3"))
      assert.are.same({ host = "::1", port = 7000, db = 0 }, p("redis://[::1]:7000"))
      assert.are.same({ host = "h", port = 6379, db = 0, password = "p@ss" }, p("redis://:p%40ss@h"))
      assert.are.same({ host = "h", port = 6379, db = 1, user = "u", password = "pw" }, p("redis://u:pw@h/1"))
      assert.is_nil(p("redis://h/x"))
      assert.is_nil(p("redis://h:99999"))
    end)

    it("answers nil, err when the server is unreachable, without the password", function()
      if not has_socket then return pending("luasocket is not installed for " .. _VERSION) end
      local ok, err = ledger.open("redis://:s3cret@127.0.0.1:1/0")
      assert.is_nil(ok)
      assert.are.equal("ledger.redis", err.code)
      assert.is_nil(tostring(err):find("s3cret", 1, true))
      assert.truthy(tostring(err):find("127.0.0.1:1", 1, true))
    end)

    it("selects the database of the URL, keeps prefixes apart and reconnects", function()
      if not (has_socket and has_redis) then return pending("redis-server or luasocket missing") end
      local url2 = rs.url:gsub("/0$", "/2")
      local l = assert(ledger.open(url2, { prefix = "iso:" }))
      assert(l:record { key = "k", conversation = CID_A, robot = "r" })
      assert.are.equal("1", (rs:cli("-n", "2", "EXISTS", "iso:e:k")))
      assert.are.equal("0", (rs:cli("-n", "0", "EXISTS", "iso:e:k")))
      local l2 = assert(ledger.open(url2, { prefix = "other:" }))
      assert.are.same({}, l2:list())
      -- the server drops every client: the next call reconnects
      rs:cli("CLIENT", "KILL", "TYPE", "normal")
      assert.are.equal("sent", l:get("k").state)
      l:close()
      l2:close()
    end)

    it("accepts a connected client of lua-redis as opts.redis_client", function()
      local okr, lua_redis = pcall(require, "redis")
      if not okr then return pending("lua-redis is not packaged for " .. _VERSION .. " (Debian: 5.1-5.3)") end
      if not has_redis then return pending("redis-server missing") end
      local rc = lua_redis.connect("127.0.0.1", rs.port)
      local l = assert(ledger.open(rs.url, { redis_client = rc, prefix = "lr:" }))
      assert(l:record { key = "k", conversation = CID_A, robot = "r", tags = "a" })
      assert.are.same({ "k" }, keys_of(l:list { tag = "a" }))
      assert(l:recall(fake_client(), {}))
      assert.are.equal("recalled", l:get("k").state)
      l:close()
      assert.is_true(rc:ping()) -- the caller's client is left open
      rc:quit()
      assert.has_error(function() ledger.open(rs.url, { redis_client = {} }) end)
    end)
  end)
end)
