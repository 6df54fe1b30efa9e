-- spec/helpers/fake_transport.lua: a transport with its own clock, for
-- behaviour tests of the engine that run in milliseconds (no sockets, no
-- sleeps).  The engine calls only T.now(), T:start(built, tag) and
-- T:poll(wait); here poll advances the fake clock instead of waiting.
--
--   local fake = require "spec.helpers.fake_transport"
--   local T = fake.new { latency = 0.05, answer = function(req) return fake.ok(req) end }
--   T.sent    -- every request started, in order: {seq, at, url, kind, cid, robot, keys, token}
--   T.peak    -- the most requests in flight at once
--
-- answer(req) returns one reply: {status =, body =, headers =} or
-- {error = err} (a transport error), optionally with latency = seconds.
-- Helpers: fake.ok(req [, failed]) (every key recalled except those in
-- `failed` = {key = reason}), fake.code(status, code [, extra fields]),
-- fake.token(req [, expire_in]).
local cjson = require "cjson"

local M = {}

local function json_array(list)
  local out = {}
  for i, v in ipairs(list) do out[i] = cjson.encode(v) end
  return "[" .. table.concat(out, ",") .. "]"
end

local JSON = { ["content-type"] = "application/json" }

--- A recall answer: every key recalled except those in failed ({key = reason}).
function M.ok(req, failed)
  local succ, fails = {}, {}
  for _, k in ipairs(req.keys or {}) do
    if failed and failed[k] ~= nil then
      fails[#fails + 1] = cjson.encode(k) .. ":" .. cjson.encode(failed[k])
    else
      succ[#succ + 1] = k
    end
  end
  return { status = 200, headers = JSON,
    body = '{"successResult":' .. json_array(succ) .. ',"failedResult":{' .. table.concat(fails, ",") .. "}}" }
end

--- An error answer of the API: status and code (extra: more JSON fields).
function M.code(status, code, extra)
  local t = { code = code, message = "fake " .. code, requestid = "req-fake" }
  for k, v in pairs(extra or {}) do t[k] = v end
  return { status = status, headers = JSON, body = cjson.encode(t) }
end

--- A token answer.
function M.token(_, expire_in)
  return { status = 200, headers = JSON,
    body = cjson.encode { accessToken = "fake-token-" .. tostring(expire_in or 7200), expireIn = expire_in or 7200 } }
end

local function header(built, name)
  for n, v in pairs(built.headers or {}) do
    if type(n) == "string" and n:lower() == name then return v end
  end
end

function M.new(o)
  o = o or {}
  local self = { t = o.t or 0, latency = o.latency or 0.01, answer = o.answer or M.ok, pending = {},
    sent = {}, in_flight = 0, peak = 0, polls = 0, slept = 0, seq = 0 }
  self.now = function() return self.t end

  function self.start(_, built, tag)
    if o.refuse_start then
      local err = o.refuse_start(built)
      if err then return nil, err end
    end
    self.seq = self.seq + 1
    local ok, body = pcall(cjson.decode, built.body or "")
    if not ok then body = {} end
    local req = { seq = self.seq, at = self.t, url = built.url, tag = tag, body = body,
      kind = built.url:find("accessToken", 1, true) and "token" or
        (built.url:find("recall", 1, true) and "recall" or "send"),
      cid = body.openConversationId, robot = body.robotCode, keys = body.processQueryKeys,
      token = header(built, "x-acs-dingtalk-access-token") }
    self.sent[#self.sent + 1] = req
    local reply = self.answer(req, self)
    self.pending[#self.pending + 1] = { req = req, reply = reply,
      done_at = self.t + (reply.latency or self.latency) }
    self.in_flight = self.in_flight + 1
    if self.in_flight > self.peak then self.peak = self.in_flight end
    return true
  end

  function self.poll(_, wait)
    self.polls = self.polls + 1
    assert(wait >= 0 and wait == wait, "poll with a bad wait: " .. tostring(wait))
    local first
    for _, p in ipairs(self.pending) do
      if not first or p.done_at < first then first = p.done_at end
    end
    local target = self.t + wait
    if first and first < target then target = first end
    if target > self.t then
      if not first or target < first then self.slept = self.slept + (target - self.t) end
      self.t = target
    end
    local done, keep = {}, {}
    for _, p in ipairs(self.pending) do
      if p.done_at <= self.t then
        local r = p.reply
        done[#done + 1] = { tag = p.req.tag, status = r.status, headers = r.headers or {}, body = r.body,
          error = r.error }
        self.in_flight = self.in_flight - 1
      else
        keep[#keep + 1] = p
      end
    end
    self.pending = keep
    return done
  end

  function self.close() end
  return self
end

--- The recall requests of T.sent, in order.
function M.recalls(T)
  local out = {}
  for _, r in ipairs(T.sent) do
    if r.kind == "recall" then out[#out + 1] = r end
  end
  return out
end

return M
