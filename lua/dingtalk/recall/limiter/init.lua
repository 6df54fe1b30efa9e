--- A sliding-window rate limiter: never more than `rate` starts in any
-- window of `window` seconds.  Pure Lua, clock supplied by the caller, so
-- every host (plain Lua, OpenResty, Neovim) shares it.
--
-- The limiter interface the engine uses (this one, and the shared ones of
-- OpenResty and Redis):
--   lim:acquire(now) -> 0 when a start was taken and counted at `now`,
--                       else the seconds to wait (> 0) before asking again.
-- The engine calls acquire once per start attempt and never busy-polls.
local M = {}
M.__index = M

--- The highest rate accepted (starts per window); the server's own limit
-- is 20/s, so this only guards against nonsense.
M.MAX_RATE = 10000

--- new(rate [, window]) -> limiter; rate 0 or nil disables it.  rate must
-- be an integer 0..MAX_RATE and window finite and > 0 (the client checks
-- its options before; a wrong value here is a programming error).
function M.new(rate, window)
  rate, window = rate or 0, window or 1.0
  if type(rate) ~= "number" or rate ~= rate or rate < 0 or rate > M.MAX_RATE or rate % 1 ~= 0 then
    error("limiter.new: rate must be an integer 0.." .. M.MAX_RATE, 2)
  end
  if type(window) ~= "number" or not (window > 0 and window < 3600) then
    error("limiter.new: window must be a number of seconds in (0, 3600)", 2)
  end
  return setmetatable({
    rate = rate,
    window = window,
    ring = {},   -- start times of the last `rate` starts
    pos = 0,
  }, M)
end

--- Seconds to wait before a start is allowed at `now` (0: allowed now);
-- takes nothing.
function M:wait(now)
  local rate = self.rate
  if rate <= 0 then return 0 end
  local oldest = self.ring[(self.pos % rate) + 1]
  if oldest ~= nil then
    local wait = oldest + self.window - now
    if wait > 0 then return wait end
  end
  return 0
end

--- Counts a start at `at` without asking (a start made or promised).
function M:take(at)
  local rate = self.rate
  if rate <= 0 then return end
  self.pos = self.pos % rate + 1
  self.ring[self.pos] = at
end

--- Takes a start at `now` if one is allowed: returns 0, else the seconds
-- to wait before the next start is allowed.
function M:acquire(now)
  local wait = self:wait(now)
  if wait > 0 then return wait end
  self:take(now)
  return 0
end

--- The starts counted in the window that ends at `now` (their times).
function M:recent(now)
  local list = {}
  for _, at in pairs(self.ring) do
    if at + self.window > now then list[#list + 1] = at end
  end
  return list
end

--- Wraps a limiter of the older delay(now)/take(now) shape (a host's own)
-- in the acquire interface; a limiter with acquire is returned as is.
function M.wrap(lim)
  if lim == nil or lim.acquire then return lim end
  return {
    inner = lim, rate = lim.rate, window = lim.window,
    acquire = function(self, now)
      local d = self.inner:delay(now)
      if d > 0 then return d end
      self.inner:take(now)
      return 0
    end,
  }
end

return M
