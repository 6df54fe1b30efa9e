-- spec/helpers/cli.lua: the one way the specs run the dingtalk-recall CLI.
--
--   local cli = require "spec.helpers.cli"
--   local r = cli.run({ "recall", "--conversation", CID, ... }, { env = {...}, stdin = "k1\n" })
--   -- r.code, r.stdout, r.stderr
--   r = cli.spawn({ "token", "--json" }, { env = {...} })   -- bin/dingtalk-recall as a child
--
-- cli.run calls require("dingtalk.recall.cli").main in this Lua state,
-- the way bin/dingtalk-recall does, with what a process would have:
--   env    the whole environment the CLI sees (name = value; false or nil
--          leaves a name out); nothing else leaks in (no HOME unless given)
--   stdin  a string (default ""), or a file-like object of one's own;
--   isatty a boolean or function(fd)
--          (default false: no terminal, as under a test)
--   clock  the ledger's clock (epoch seconds; default os.time)
-- A run starts as a fresh process would: no token cached in this state
-- (token.clear_cache(), also after the run, so that it leaves none to the
-- test either).  While it runs, io.stdout, io.stderr, io.stdin, io.write,
-- io.read and print are its own captures (a stray write is caught, not lost on the test's
-- terminal), and os.exit raises: main must return its status, never exit.
--
-- cli.spawn runs `$DINGTALK_RECALL_TEST_LUA bin/dingtalk-recall` for what
-- only a process shows (the launcher, its exit status, real stdout and
-- stderr, a pipe on stdin): the same options, plus pipe = true (stdin
-- through a pipe instead of a file), lua (the interpreter) and timeout
-- (seconds, through timeout(1): exit 124 when it hangs).  The child
-- inherits this process's environment without any DINGTALK_* variable,
-- then env's.  A child that dies of a signal fails the test.
-- Both return {code =, stdout =, stderr =}.
local shell = require "spec.helpers.shell"

local M = {}

M.LUA = os.getenv("DINGTALK_RECALL_TEST_LUA") or "lua"
M.LAUNCHER = "bin/dingtalk-recall"

-- The variables a child never inherits (the CLI's, the bot's).
M.SCRUB = { "DINGTALK_ACCESS_TOKEN", "DINGTALK_APP_KEY", "DINGTALK_APP_SECRET", "DINGTALK_ENDPOINT",
  "DINGTALK_CA_FILE", "DINGTALK_ROBOT_CODE", "DINGTALK_RECALL_LEDGER", "DINGTALK_RECALL_REDIS",
  "DINGTALK_RECALL_CONFIG", "DINGTALK_CALLBACK_SECRET" }

--- A file-like sink: write(...) keeps strings and numbers; text() gives them back.
function M.sink()
  local parts = {}
  local s = {}
  function s.write(self, ...)
    for i = 1, select("#", ...) do
      local v = select(i, ...)
      assert(type(v) == "string" or type(v) == "number", "write: a string or a number, got " .. type(v))
      parts[#parts + 1] = tostring(v)
    end
    return self
  end
  function s.flush(self) return self end
  function s.setvbuf() return true end
  function s.close() return true end
  function s.text() return table.concat(parts) end
  return s
end

--- A file-like source reading the string data: read("*a"/"a", "*l"/"l", n) and lines().
function M.source(data)
  local pos = 1
  local src = {}
  local function one(fmt)
    fmt = type(fmt) == "string" and fmt:gsub("^%*", "") or fmt
    if fmt == "a" then
      local rest = data:sub(pos)
      pos = #data + 1
      return rest
    end
    if pos > #data then return nil end
    if type(fmt) == "number" then
      local s = data:sub(pos, pos + fmt - 1)
      pos = pos + #s
      return s
    end
    local nl = data:find("\n", pos, true)
    local line = data:sub(pos, (nl or #data + 1) - 1)
    pos = (nl or #data) + 1
    if fmt == "L" and nl then return line .. "\n" end
    return line
  end
  function src.read(_, ...)
    if select("#", ...) == 0 then return one("l") end
    local out = {}
    for i = 1, select("#", ...) do out[i] = one((select(i, ...))) end
    return (rawget(table, "unpack") or rawget(_G, "unpack"))(out, 1, select("#", ...))
  end
  function src.lines() return function() return one("l") end end
  function src.close() return true end
  return src
end

local function getenv_of(env)
  local copy = {}
  for k, v in pairs(env or {}) do
    if v then copy[k] = tostring(v) end
  end
  return function(name) return copy[name] end
end

local EXIT_CALLED = "cli.main called os.exit"

--- cli.run(argv [, o]) -> {code, stdout, stderr}: in-process (see the top).
function M.run(argv, o)
  o = o or {}
  local tokens = require "dingtalk.recall.token"
  local main = require("dingtalk.recall.cli").main
  local out, err = M.sink(), M.sink()
  local inp = type(o.stdin) == "table" and o.stdin or M.source(o.stdin or "")
  local tty = o.isatty
  local isatty = type(tty) == "function" and tty or function() return tty == true end
  local saved = { exit = os.exit, stdout = io.stdout, stderr = io.stderr, stdin = io.stdin, print = print,
    write = io.write, read = io.read }
  tokens.clear_cache()
  os.exit = function() error(EXIT_CALLED, 2) end -- luacheck: ignore 122
  io.stdout, io.stderr, io.stdin = out, err, inp -- luacheck: ignore 122
  io.write = function(...) return out:write(...) end -- luacheck: ignore 122
  io.read = function(...) return inp:read(...) end -- luacheck: ignore 122
  _G.print = function(...)
    local t = {}
    for i = 1, select("#", ...) do t[i] = tostring((select(i, ...))) end
    out:write(table.concat(t, "\t"), "\n")
  end
  local ok, code = pcall(main, argv, { stdout = out, stderr = err, stdin = inp, getenv = getenv_of(o.env),
    isatty = isatty, clock = o.clock })
  os.exit = saved.exit -- luacheck: ignore 122
  io.stdout, io.stderr, io.stdin = saved.stdout, saved.stderr, saved.stdin -- luacheck: ignore 122
  io.write, io.read = saved.write, saved.read -- luacheck: ignore 122
  _G.print = saved.print
  tokens.clear_cache()
  if not ok then error("cli.main raised (it must return a status): " .. tostring(code), 2) end
  assert(type(code) == "number" and code >= 0 and code <= 3, "cli.main returned " .. tostring(code))
  return { code = code, stdout = out.text(), stderr = err.text() }
end

--- cli.spawn(argv [, o]) -> {code, stdout, stderr}: a child process (see the top).
function M.spawn(argv, o)
  o = o or {}
  local q = shell.quote
  local parts = { "env" }
  for _, k in ipairs(M.SCRUB) do parts[#parts + 1] = "-u " .. k end
  local names = {}
  for k, v in pairs(o.env or {}) do if v then names[#names + 1] = k end end
  table.sort(names)
  for _, k in ipairs(names) do parts[#parts + 1] = k .. "=" .. q(o.env[k]) end
  local qa = {}
  for i, a in ipairs(argv) do qa[i] = q(a) end
  local inp, out, err = os.tmpname(), os.tmpname(), os.tmpname()
  shell.write_file(inp, o.stdin or "")
  local timeout = o.timeout and ("timeout " .. tonumber(o.timeout) .. " ") or ""
  local cmd = table.concat(parts, " ") .. " " .. timeout .. (o.lua or M.LUA) .. " " .. M.LAUNCHER .. " " ..
    table.concat(qa, " ") .. " >" .. q(out) .. " 2>" .. q(err)
  if o.pipe then
    cmd = "cat " .. q(inp) .. " | " .. cmd
  else
    cmd = cmd .. " <" .. q(inp)
  end
  local _, rc = shell.sh(cmd)
  local r = { code = rc, stdout = shell.read_file(out), stderr = shell.read_file(err) }
  os.remove(inp)
  os.remove(out)
  os.remove(err)
  assert(rc >= 0 and rc < 128, "the CLI died of a signal or gave no status: " .. rc .. "\n" .. r.stderr)
  return r
end

return M
