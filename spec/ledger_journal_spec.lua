-- The journal's appends streamed to the file (dtr_jline.c, dtr_journal.c):
-- lines and keys longer than the 32 KB buffer, keys needing escapes across
-- its edges, and a write that fails midway (the file's size limit) cut
-- back off the journal.
local journal = require "dingtalk.recall.journal"
local cjson = require "cjson"
local shell = require "spec.helpers.shell"

local sh, sh_quote, trim, read_file = shell.sh, shell.quote, shell.trim, shell.read_file
local LUA = os.getenv("DINGTALK_RECALL_TEST_LUA") or "lua"

local function lines_of(data)
  local t = {}
  for line in data:gmatch("[^\n]+") do t[#t + 1] = line end
  return t
end

describe("journal appends", function()
  local dir
  setup(function() dir = trim(sh("mktemp -d ${TMPDIR:-/tmp}/dingtalk-journal.XXXXXX")) end)
  teardown(function() if dir then sh("rm -rf " .. sh_quote(dir)) end end)

  it("streams lines and keys longer than its buffer, escaped keys across its edges, as keys_line gives them", function()
    local path = dir .. "/long/journal"
    -- 6,000 batch arrays' worth of keys (a line of ~280 KB), every 7th needing escapes
    local parts, want = {}, {}
    for b = 1, 300 do
      local part = {}
      for i = 1, 20 do
        local k = ("K%05d-%s"):format((b - 1) * 20 + i, ("x"):rep(30))
        if i % 7 == 0 then k = k .. '"\\\n\1\127' end
        part[i] = k
        want[#want + 1] = k
      end
      parts[b] = part
    end
    -- keys longer than the buffer: plain, and full of bytes that need escapes
    local plain_big = ("p"):rep(70000)
    local odd_big = ('"\n\0z\\'):rep(9000) .. "end"
    parts[#parts + 1] = { plain_big, odd_big, "after" }
    for _, k in ipairs { plain_big, odd_big, "after" } do want[#want + 1] = k end
    local plain_line = ("L"):rep(100000) -- a plain line longer than the buffer
    local key_line = { '{"k":[', parts, "]}" }
    local ok, start, stop = journal.append(path, { "first", key_line, plain_line, "last" })
    assert.is_true(ok)
    local data = read_file(path)
    assert.are.same({ 0, #data }, { start, stop })
    local lines = lines_of(data)
    assert.are.equal(4, #lines)
    assert.are.same({ "first", plain_line, "last" }, { lines[1], lines[3], lines[4] })
    assert.are.equal(journal.keys_line(key_line[1], parts, key_line[3]), lines[2])
    assert.are.same({ k = want }, cjson.decode(lines[2]))
    -- a second append lands right after, offsets and all
    local ok2, s2, e2 = journal.append(path, { { "[", { { "a", "b" } }, "]" } })
    assert.is_true(ok2)
    assert.are.same({ #data, #data + 10 }, { s2, e2 })
    assert.are.equal(data .. '["a","b"]\n', read_file(path))
  end)

  it("checks every key before writing any: a bad one far into a long line leaves the journal as it was", function()
    local path = dir .. "/checked/journal"
    assert.is_true((journal.append(path, "before")))
    local parts = {}
    for b = 1, 500 do
      parts[b] = {}
      for i = 1, 20 do parts[b][i] = ("key-%d-%d"):format(b, i) end
    end
    parts[500][20] = 42
    assert.has_error(function() journal.append(path, { { "[", parts, "]" } }) end)
    parts[500][20] = "fine"
    parts[501] = "not an array"
    assert.has_error(function() journal.append(path, { { "[", parts, "]" } }) end)
    assert.are.equal("before\n", read_file(path))
    assert.is_true((journal.append(path, {}))) -- nothing to append: nothing written
    assert.are.equal("before\n", read_file(path))
  end)

  it("cuts a write that fails midway (the file size limit) back off the journal", function()
    local path = dir .. "/limit/journal"
    assert.is_true((journal.append(path, "kept")))
    -- a child with a 64 KB file size limit (SIGXFSZ ignored: write fails
    -- with EFBIG) appends ~150 KB: some 32 KB pieces go out, then one fails
    local script = dir .. "/limit.lua"
    local f = assert(io.open(script, "w"))
    f:write([[
      local journal = require "dingtalk.recall.journal"
      local part = {}
      for i = 1, 3000 do part[i] = ("k%06d-%s"):format(i, ("y"):rep(40)) end
      local ok, err = journal.append(arg[1], { { "[", { part }, "]" } })
      io.write(tostring(ok), " ", err and err.code or "", " ", err and err.message or "")
    ]])
    f:close()
    local out = sh("trap '' XFSZ; ulimit -f 64; " .. LUA .. " " .. sh_quote(script) .. " " .. sh_quote(path))
    assert.matches("^nil ledger.io .*write", out)
    assert.are.equal("kept\n", read_file(path))
    assert.is_true((journal.append(path, "next")))
    assert.are.equal("kept\nnext\n", read_file(path))
  end)
end)
