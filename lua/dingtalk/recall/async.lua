--- Non-blocking recalls from any event loop.
--
-- A task runs a function (typically `client:recall(...)` on a client whose
-- transport is dingtalk.recall.transport.async) in a coroutine.  Whenever
-- the transport has nothing finished it yields back to the host instead of
-- blocking; the host waits on what the task says and steps it again:
--
--   local task = async.start(function() return client:recall(cid, keys) end)
--   while true do
--     local done, report, err = task:step()     -- runs until it would block
--     if done then break end
--     -- wait until one of task:fds() ({fd=, read=, write=}) is ready,
--     -- or task:timeout() seconds have passed (nil: no deadline), then loop
--   end
--
-- async.run_uv(uv, fn, on_done) does exactly that on a libuv loop (luv's
-- `require "luv"`, Neovim's `vim.uv or vim.loop`) with poll handles and a
-- timer, and calls on_done with fn's results.
--
-- Host-neutral: no globals, nothing happens at require.
local core = require "dingtalk.recall.core"

local M = {}

local unpack = table.unpack or unpack -- luacheck: ignore 113 143
local now = require("dingtalk.recall.curl").now

local function pack(...)
  return { n = select("#", ...), ... }
end

-- Private marker yielded by tasks, so a stray coroutine.yield in user
-- code is told apart from "waiting on the host".
local WAIT = {}

-- coroutine -> task, for the tasks alive in this Lua state.
local tasks = setmetatable({}, { __mode = "k" })

--- Whether the running code is inside an async task (and so may wait).
function M.in_task()
  local co = coroutine.running()
  return co ~= nil and tasks[co] ~= nil
end

--- Inside a task: hands control to the host until a socket of `source`
-- (anything with fds() and optionally timeout(), such as the async
-- transport) is ready, or `seconds` have passed.  source may be nil.
function M.wait(source, seconds)
  if seconds ~= nil and type(seconds) ~= "number" then error("async.wait: seconds must be a number", 2) end
  if not M.in_task() then error("async.wait called outside an async task", 2) end
  coroutine.yield(WAIT, source, seconds)
end

--- Inside a task: sleeps without blocking the host.
function M.sleep(seconds)
  if type(seconds) ~= "number" then error("async.sleep: seconds must be a number", 2) end
  if not M.in_task() then error("async.sleep called outside an async task", 2) end
  local deadline = now() + seconds
  repeat
    coroutine.yield(WAIT, nil, deadline - now())
  until now() >= deadline
end

local Task = {}
Task.__index = Task

--- async.start(fn, ...) -> task.  Nothing runs until the first step().
function M.start(fn, ...)
  if type(fn) ~= "function" then error("async.start expects a function", 2) end
  local args = pack(...)
  local co = coroutine.create(function() return fn(unpack(args, 1, args.n)) end)
  local task = setmetatable({ co = co, done = false }, Task)
  tasks[co] = task
  return task
end

--- task:step() -> true, fn's results... when fn has returned; false when
-- it waits (on task:fds() / task:timeout()).  Raises what fn raised (with
-- the task's traceback); later calls repeat the outcome.
function Task:step()
  if self.done then
    if self.error ~= nil then error(self.error, 0) end
    return true, unpack(self.results, 1, self.results.n)
  end
  local r = pack(coroutine.resume(self.co))
  if not r[1] then
    self.done, self.source, self.deadline = true, nil, nil
    local e = r[2]
    self.error = type(e) == "string" and debug.traceback(self.co, e) or e
    error(self.error, 0)
  end
  if coroutine.status(self.co) == "dead" then
    self.done, self.source, self.deadline = true, nil, nil
    self.results = pack(unpack(r, 2, r.n))
    return true, unpack(self.results, 1, self.results.n)
  end
  if r[2] ~= WAIT then
    self.done, self.source, self.deadline = true, nil, nil
    self.error = "an async task yielded on its own (coroutine.yield outside a coroutine it created)"
    error(self.error, 0)
  end
  self.source = r[3]
  local wait = r[4]
  self.deadline = wait and now() + (wait > 0 and wait or 0) or nil
  return false
end

--- The sockets to wait on before the next step: array of {fd=, read=, write=}.
function Task:fds()
  local s = self.source
  if self.done or not s or not s.fds then return {} end
  return s:fds()
end

--- Seconds the host may wait at most before the next step (0: step now),
-- or nil when only the sockets matter.
function Task:timeout()
  if self.done then return 0 end
  local t
  if self.deadline then
    t = self.deadline - now()
    if t < 0 then t = 0 end
  end
  local s = self.source
  local st = s and s.timeout and s:timeout()
  if st and (t == nil or st < t) then t = st end
  return t
end

--- Gives the task up: later steps return true, nil, err (async.cancelled).
-- Transfers already started stay in the transport until client:close().
function Task:cancel()
  if self.done then return end
  self.done, self.source, self.deadline = true, nil, nil
  self.results = pack(nil, core.error("async.cancelled", "the task was cancelled"))
end

---------------------------------------------------------------------------
-- libuv (luv, Neovim's vim.uv / vim.loop)
---------------------------------------------------------------------------

-- A socket curl only wants to write to is connecting.  It is looked at
-- every CONNECT_POLL seconds rather than with a poll handle: a refused
-- connection makes libuv report POLLERR as EBADF, which luv prints on
-- stderr (through Neovim's screen).
local CONNECT_POLL = 0.01

local function as_error(e)
  if core.is_error(e) then return e end
  return core.error("async.failed", tostring(e))
end

--- async.run_uv(uv, fn [, on_done]) -> handle
-- Runs fn as a task on the libuv loop `uv` and returns at once.  When fn
-- returns, on_done(...) gets its results; if fn raises, on_done(nil, err)
-- with err an error object of code "async.failed" (message with the
-- traceback), as an uncaught error in a luv callback would end the
-- process.  handle:cancel() stops waiting (on_done(nil, async.cancelled)).
-- In Neovim on_done runs in a fast callback: wrap UI work in vim.schedule.
-- handle.steps counts the task's steps; handle.done() tells if it ended.
function M.run_uv(uv, fn, on_done)
  if type(uv) ~= "table" and type(uv) ~= "userdata" then error("async.run_uv expects the luv module", 2) end
  if type(fn) ~= "function" then error("async.run_uv expects a function", 2) end
  if on_done ~= nil and type(on_done) ~= "function" then error("async.run_uv: on_done must be a function", 2) end
  local task = M.start(fn)
  local timer = assert(uv.new_timer())
  local polls = {}
  local finished = false
  local handle = { task = task, steps = 0 }

  -- Poll handles are made afresh at every step: curl may have closed a
  -- socket and opened another under the same number, which a kept
  -- handle would no longer see.
  local function clear()
    for i = #polls, 1, -1 do
      local p = polls[i]
      polls[i] = nil
      if not p:is_closing() then p:close() end
    end
  end

  local function finish(...)
    finished = true
    clear()
    if not timer:is_closing() then
      timer:stop()
      timer:close()
    end
    if on_done then on_done(...) end
  end

  local wake
  local function arm()
    clear()
    local fds = task:fds()
    local connecting = false
    for i = 1, #fds do
      local f = fds[i]
      if f.read then
        local p = uv.new_poll(f.fd)
        if p then
          polls[#polls + 1] = p
          p:start(f.write and "rw" or "r", wake)
        end
      elseif f.write then
        connecting = true
      end
    end
    local t = task:timeout()
    if connecting and (t == nil or t > CONNECT_POLL) then t = CONNECT_POLL end
    if t == nil and #polls == 0 then t = 1 end -- nothing to watch: look again soon
    timer:stop()
    if t then timer:start(math.ceil(t * 1000), 0, wake) end
  end

  function wake()
    if finished then return end
    handle.steps = handle.steps + 1
    local r = pack(pcall(task.step, task))
    if not r[1] then return finish(nil, as_error(r[2])) end
    if r[2] then return finish(unpack(r, 3, r.n)) end
    arm()
  end

  function handle.cancel()
    if finished then return end
    task:cancel()
    finish(nil, core.error("async.cancelled", "the task was cancelled"))
  end
  function handle.done() return finished end

  timer:start(0, 0, wake)
  return handle
end

return M
