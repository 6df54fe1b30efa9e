--- A sliding-window rate limiter: never more than `rate` starts in any
-- window of `window` seconds.  Pure Lua, clock supplied by the caller, so
-- every host (plain Lua, OpenResty, Neovim) shares it.  The OpenResty
-- adapter has its own shared-dict limiter for several workers.
local M = {}
M.__index = M

--- new(rate [, window]) -> limiter; rate 0 or nil disables it.
function M.new(rate, window)
  return setmetatable({
    rate = rate or 0,
    window = window or 1.0,
    ring = {},   -- start times of the last `rate` starts
    pos = 0,
  }, M)
end

--- Seconds to wait before the next start is allowed (0 when allowed now).
function M:delay(now)
  if self.rate <= 0 then return 0 end
  local oldest = self.ring[(self.pos % self.rate) + 1]
  if oldest == nil then return 0 end
  local wait = oldest + self.window - now
  return wait > 0 and wait or 0
end

--- Records a start at `now`.
function M:take(now)
  if self.rate <= 0 then return end
  self.pos = self.pos % self.rate + 1
  self.ring[self.pos] = now
end

return M
