-- Issue 10, class 5: files on shared machines.  The ledger's journal, its
-- lock file, the compaction's temporary file and the config file are
-- opened without following symbolic links, never block on a FIFO, are
-- refused unless they are regular files of this user, are kept 0600, and
-- live in a directory others cannot write (or a sticky one of this user).
local core = require "dingtalk.recall.core"
local ledger = require "dingtalk.recall.ledger"
local config = require "dingtalk.recall.config"
local shell = require "spec.helpers.shell"

local q, sh, trim, read_file, write_file = shell.quote, shell.sh, shell.trim, shell.read_file, shell.write_file
local LUA = os.getenv("DINGTALK_RECALL_TEST_LUA") or "lua"
local IS_ROOT = trim((sh("id -u"))) == "0"

-- The journal functions: their own module after the C split, core's before.
local J = (function()
  local ok, j = pcall(require, "dingtalk.recall.journal")
  if ok and type(j) == "table" then return j end
  return { append = core.journal_append, read = core.journal_read, compact = core.journal_compact }
end)()

local function mode(path) return trim((sh("stat -c %a " .. q(path)))) end
local function kind(path) return trim((sh("stat -c %F " .. q(path)))) end
local function is_link(path) return select(2, sh("test -L " .. q(path))) == 0 end

local function clock()
  return require("dingtalk.recall.clock").now()
end

local ENTRY = { key = "kFiles1", conversation = "cidFiles", robot = "rFiles" }

describe("files on shared machines (class 5)", function()
  local dir, n = nil, 0
  local target, TARGET_TEXT = nil, "precious data that must survive\n"

  setup(function() dir = trim(sh("mktemp -d ${TMPDIR:-/tmp}/dtr-files.XXXXXX")) end)
  teardown(function()
    if dir and dir:match("dtr%-files") then sh("chmod -R u+rwx " .. q(dir) .. "; rm -rf " .. q(dir)) end
  end)

  -- A fresh directory (mode given) and a victim file outside it.
  local function fresh(m)
    n = n + 1
    local d = dir .. "/d" .. n
    sh("mkdir -p " .. q(d) .. " && chmod " .. (m or "700") .. " " .. q(d))
    target = dir .. "/victim" .. n
    write_file(target, TARGET_TEXT, "644")
    return d
  end

  local function victim_intact()
    assert.are.equal(TARGET_TEXT, read_file(target))
    assert.are.equal("644", mode(target))
  end

  describe("the compaction's temporary file", function()
    it("a symlink planted under its name in a sticky world-writable dir is never followed", function()
      local d = fresh("1777") -- ours and sticky: allowed
      local path = d .. "/ledger"
      assert(J.append(path, { "one", "two", "three" }))
      -- The old fixed name and the first names this process would try.
      local pid = shell.own_pid()
      local planted = { path .. ".tmp" }
      for i = 0, 7 do planted[#planted + 1] = path .. ".tmp." .. pid .. "." .. i end
      for _, p in ipairs(planted) do sh("ln -s " .. q(target) .. " " .. q(p)) end
      local ok, err = J.compact(path, function() return { "compacted" } end)
      assert.is_true(ok, tostring(err))
      victim_intact()
      assert.are.equal("compacted\n", read_file(path))
      assert.are.equal("regular file", kind(path))
      assert.are.equal("600", mode(path))
      for _, p in ipairs(planted) do assert.is_true(is_link(p), p) end -- left alone
      -- no temporary file of ours left behind
      assert.are.equal("", trim((sh("ls " .. q(d) .. " | grep '^ledger\\.tmp\\.' | grep -v '\\.[0-7]$'; true"))))
    end)

    it("a planted regular file under its name is not truncated", function()
      local d = fresh("1777")
      local path = d .. "/ledger"
      assert(J.append(path, "a"))
      local pid = shell.own_pid()
      write_file(path .. ".tmp." .. pid .. ".0", "someone else's file\n", "666")
      assert(J.compact(path, function() return { "b" } end))
      assert.are.equal("someone else's file\n", read_file(path .. ".tmp." .. pid .. ".0"))
      assert.are.equal("b\n", read_file(path))
    end)

    it("the compacted journal is 0600 whatever the umask", function()
      local d = fresh()
      local path = d .. "/ledger"
      assert(J.append(path, "x"))
      local out = sh("umask 000; " .. LUA .. " -e " .. q(
        "local c = require 'dingtalk.recall.core'; local j = c.journal_compact or " ..
        "require('dingtalk.recall.journal').compact; assert(j(" .. ("%q"):format(path) ..
        ", function() return {'y'} end)); print('ok')"))
      assert.matches("ok", out)
      assert.are.equal("600", mode(path))
    end)

    it("compaction in a world-writable directory that is not sticky is refused; the victim stays", function()
      local d = fresh("700")
      local path = d .. "/ledger"
      assert(J.append(path, "x"))
      sh("chmod 777 " .. q(d))
      sh("ln -s " .. q(target) .. " " .. q(path .. ".tmp"))
      local ok, err = J.compact(path, function() return { "y" } end)
      assert.is_nil(ok)
      assert.are.equal("ledger.unsafe", err.code)
      victim_intact()
      assert.are.equal("x\n", read_file(path))
    end)
  end)

  describe("the journal", function()
    it("a journal that is a symlink is refused, never appended to or read", function()
      local d = fresh()
      local path = d .. "/ledger"
      sh("ln -s " .. q(target) .. " " .. q(path))
      local ok, err = J.append(path, "appended")
      assert.is_nil(ok)
      assert.are.equal("ledger.unsafe", err.code)
      assert.matches("symbolic link", err.message)
      local data, rerr = J.read(path)
      assert.is_nil(data)
      assert.are.equal("ledger.unsafe", rerr.code)
      local cok, cerr = J.compact(path, function() return { "z" } end)
      assert.is_nil(cok)
      assert.are.equal("ledger.unsafe", cerr.code)
      victim_intact()
      assert.is_true(is_link(path))
      -- through the ledger
      local l, lerr = ledger.open(path)
      assert.is_nil(l)
      assert.are.equal("ledger.unsafe", lerr.code)
      victim_intact()
    end)

    it("a lock file that is a symlink is refused", function()
      local d = fresh()
      local path = d .. "/ledger"
      sh("ln -s " .. q(target) .. " " .. q(path .. ".lock"))
      local ok, err = J.append(path, "x")
      assert.is_nil(ok)
      assert.are.equal("ledger.unsafe", err.code)
      victim_intact()
    end)

    it("an existing 0644 journal and lock file are made 0600 when opened", function()
      local d = fresh()
      local path = d .. "/ledger"
      assert(J.append(path, "x"))
      sh("chmod 644 " .. q(path) .. " " .. q(path .. ".lock"))
      assert(J.read(path))
      assert.are.equal("600", mode(path))
      assert.are.equal("600", mode(path .. ".lock"))
      sh("chmod 666 " .. q(path))
      local l = assert(ledger.open(path))
      assert(l:record(ENTRY))
      l:close()
      assert.are.equal("600", mode(path))
    end)

    it("a new journal is created 0600 in a 0700 directory even under umask 000", function()
      local d = fresh()
      local path = d .. "/sub/dir/ledger"
      local out = sh("umask 000; " .. LUA .. " -e " .. q("local c = require 'dingtalk.recall.core'; " ..
        "local a = c.journal_append or require('dingtalk.recall.journal').append; assert(a(" ..
        ("%q"):format(path) .. ", 'x')); print('ok')"))
      assert.matches("ok", out)
      assert.are.equal("600", mode(path))
      assert.are.equal("700", mode(d .. "/sub/dir"))
    end)

    it("a directory given as the journal is refused", function()
      local d = fresh()
      local path = d .. "/ledger"
      sh("mkdir " .. q(path))
      for _, fn in ipairs { function() return J.append(path, "x") end, function() return J.read(path) end,
        function() return J.compact(path, function() return {} end) end, function() return ledger.open(path) end } do
        local ok, err = fn()
        assert.is_nil(ok)
        assert.are.equal("ledger.unsafe", err.code)
      end
      assert.are.equal("directory", kind(path))
    end)

    it("a FIFO as the journal is refused at once, for reading and appending", function()
      local d = fresh()
      local path = d .. "/ledger"
      sh("mkfifo " .. q(path))
      local t0 = clock()
      local data, err = J.read(path)
      assert.is_nil(data)
      assert.are.equal("ledger.unsafe", err.code)
      local ok, aerr = J.append(path, "x")
      assert.is_nil(ok)
      assert.are.equal("ledger.unsafe", aerr.code)
      assert.is_true(clock() - t0 < 2)
    end)

    it("a journal with a second hard link is refused", function()
      local d = fresh()
      local path = d .. "/ledger"
      assert(J.append(path, "x"))
      sh("ln " .. q(path) .. " " .. q(d .. "/elsewhere"))
      local ok, err = J.append(path, "y")
      assert.is_nil(ok)
      assert.are.equal("ledger.unsafe", err.code)
      assert.are.equal("x\n", read_file(path))
    end)

    local root_it = IS_ROOT and it or pending
    root_it("a journal owned by another user is refused (run as root)", function()
      local d = fresh()
      local path = d .. "/ledger"
      assert(J.append(path, "x"))
      sh("chown nobody " .. q(path))
      local ok, err = J.append(path, "y")
      assert.is_nil(ok)
      assert.are.equal("ledger.unsafe", err.code)
      assert.matches("another user", err.message)
    end)
  end)

  describe("the journal's directory", function()
    it("a directory writable by others (0777, not sticky) is refused for every operation", function()
      local d = fresh("777")
      local path = d .. "/ledger"
      local ok, err = J.append(path, "x")
      assert.is_nil(ok)
      assert.are.equal("ledger.unsafe", err.code)
      assert.matches("writable by others", err.message)
      assert.is_nil((J.read(path)))
      local l, lerr = ledger.open(path)
      assert.is_nil(l)
      assert.are.equal("ledger.unsafe", lerr.code)
      assert.are.equal("", read_file(path)) -- nothing created
    end)

    it("a sticky world-writable directory of this user is allowed", function()
      local d = fresh("1777")
      local l = assert(ledger.open(d .. "/ledger"))
      assert(l:record(ENTRY))
      l:close()
      assert.are.equal("600", mode(d .. "/ledger"))
    end)

    it("a group-writable directory is trusted (the group is the operator's choice)", function()
      local d = fresh("770")
      assert(J.append(d .. "/ledger", "x"))
    end)

    local root_it = IS_ROOT and it or pending
    root_it("a /tmp-like directory (sticky, 1777) owned by another user is refused (run as root)", function()
      local d = fresh("1777")
      sh("chown nobody " .. q(d))
      local ok, err = J.append(d .. "/ledger", "x")
      assert.is_nil(ok)
      assert.are.equal("ledger.unsafe", err.code)
      local l, lerr = ledger.open(d .. "/ledger")
      assert.is_nil(l)
      assert.are.equal("ledger.unsafe", lerr.code)
    end)

    it("/tmp itself (sticky, owned by root) is refused unless this user is root", function()
      local ok, err = J.read("/tmp/dtr-files-spec-never-created-" .. n)
      if IS_ROOT and trim((sh("stat -c %u /tmp"))) == "0" then
        assert.truthy(ok, tostring(err))
      else
        assert.is_nil(ok)
        assert.are.equal("ledger.unsafe", err.code)
      end
    end)
  end)

  describe("the config file", function()
    -- Runs the CLI's `token --dry-run` with env; returns rc, stderr, seconds.
    local function cli(args, env)
      local parts = { "env -u DINGTALK_ACCESS_TOKEN -u DINGTALK_RECALL_CONFIG -u DINGTALK_APP_KEY" ..
        " -u DINGTALK_APP_SECRET DINGTALK_ENDPOINT=http://127.0.0.1:9" }
      for k, v in pairs(env or {}) do parts[#parts + 1] = k .. "=" .. q(v) end
      local qa = {}
      for i, a in ipairs(args) do qa[i] = q(a) end
      local t0 = clock()
      local _, rc = sh(table.concat(parts, " ") .. " timeout 20 " .. LUA .. " bin/dingtalk-recall " ..
        table.concat(qa, " ") .. " >" .. q(dir .. "/cli.out") .. " 2>" .. q(dir .. "/cli.err") .. " </dev/null")
      return rc, read_file(dir .. "/cli.err"), clock() - t0
    end

    it("a FIFO given with --config is refused at once, the CLI does not hang", function()
      local d = fresh()
      sh("mkfifo -m 600 " .. q(d .. "/config.lua"))
      local rc, se, took = cli { "token", "--dry-run", "--config", d .. "/config.lua" }
      assert.are_not.equal(124, rc, "the CLI hung on the FIFO")
      assert.are.equal(3, rc, se)
      assert.matches("not a regular file", se)
      assert.is_true(took < 10, "took " .. took)
    end)

    it("a FIFO at the default config path ($XDG_CONFIG_HOME) is refused at once", function()
      local d = fresh()
      sh("mkdir -p " .. q(d .. "/xdg/dingtalk-recall") .. " && mkfifo -m 600 " ..
        q(d .. "/xdg/dingtalk-recall/config.lua"))
      local rc, se = cli({ "token", "--dry-run" }, { XDG_CONFIG_HOME = d .. "/xdg" })
      assert.are_not.equal(124, rc, "the CLI hung on the FIFO")
      assert.are.equal(3, rc, se)
      assert.matches("not a regular file", se)
    end)

    it("config.read_file refuses a FIFO, a directory and a device without blocking", function()
      local d = fresh()
      sh("mkfifo -m 600 " .. q(d .. "/fifo") .. " && mkdir -m 700 " .. q(d .. "/adir"))
      for _, p in ipairs { d .. "/fifo", d .. "/adir", "/dev/zero", "/dev/null" } do
        local t0 = clock()
        local cfg, err = config.read_file(p)
        assert.is_nil(cfg, p)
        assert.are.equal("config.unreadable", err.code, p)
        assert.is_true(clock() - t0 < 2, p)
      end
    end)

    it("a config file over 64 KiB is refused", function()
      local d = fresh()
      write_file(d .. "/big.lua", ("-- padding\n"):rep(7000), "600")
      local cfg, err = config.read_file(d .. "/big.lua")
      assert.is_nil(cfg)
      assert.matches("bytes", err.message)
    end)

    it("a 0400 regular config still reads, a 0644 one is refused", function()
      local d = fresh()
      write_file(d .. "/ro.lua", 'app_key = "k"\napp_secret = "s"\n', "400")
      local cfg = assert(config.read_file(d .. "/ro.lua"))
      assert.are.equal("k", cfg.app_key)
      write_file(d .. "/open.lua", 'app_key = "k"\n', "644")
      local bad, err = config.read_file(d .. "/open.lua")
      assert.is_nil(bad)
      assert.are.equal("config.insecure", err.code)
    end)
  end)
end)
