--- dingtalk.recall.callback: check a whole incoming bot callback request.
--
--   local callback = require "dingtalk.recall.callback"
--   local store = callback.memory_store()          -- or an OpenResty shared dict
--   local msg, err = callback.verify(headers, body, { app_secret = secret, replay_store = store })
--   if not msg then return answer(callback.http_status(err), tostring(err)) end
--   -- msg: the decoded JSON body (text.content, conversationId, senderStaffId, isAdmin, ...)
--
-- DingTalk signs only the `timestamp` header (sign = base64(HMAC-SHA256(
-- appSecret, timestamp "\n" appSecret))), not the body, and accepts it
-- for an hour either way.  So a captured request could be replayed, body
-- and all, for up to two hours: given a replay store, verify() accepts
-- each signature once.  A store is anything with add(key, value, ttl) ->
-- truthy | false, "exists" (an ngx.shared.DICT has exactly that); the
-- in-memory one below serves one process.
local core = require "dingtalk.recall.core"

local M = {}

M.WINDOW_MS = 3600000    -- |now - timestamp| allowed by the core
M.MAX_BODY = 65536       -- default refusal size for bodies

local json_decode
local function decode(s)
  if not json_decode then
    local cjson = require "cjson.safe"
    local inst = cjson.new and cjson.new() or cjson
    if inst.decode_max_depth then inst.decode_max_depth(32) end
    json_decode = inst.decode
  end
  return json_decode(s)
end

local function cb_error(code, msg)
  return nil, core.error(code, msg)
end

-- One header, by case-insensitive name; a string, nil, or false when it
-- came more than once (an array, as OpenResty gives repeated headers).
local function header(headers, name)
  local v = headers[name]
  if v == nil then
    for k, x in pairs(headers) do
      if type(k) == "string" and k:lower() == name then
        v = x
        break
      end
    end
  end
  if type(v) == "table" then return false end
  if v ~= nil and type(v) ~= "string" and type(v) ~= "number" then return false end
  return v
end

-- Current wall clock in milliseconds.
local function now_ms()
  local ok, socket = pcall(require, "socket")
  if ok and type(socket) == "table" and socket.gettime then
    return math.floor(socket.gettime() * 1000)
  end
  return os.time() * 1000
end

--- callback.verify(headers, body, opts) -> message table | nil, err
-- headers: a table of request headers (any case); body: the raw body.
-- opts.app_secret: the bot's AppSecret (required); opts.replay_store:
-- refuse a signature seen before; opts.now_ms: the clock (testing);
-- opts.max_body: refuse longer bodies before parsing (default 65536).
-- Error codes: callback.bad_timestamp, callback.expired,
-- callback.bad_signature, callback.no_secret (from the core), and
-- callback.too_large, callback.bad_body, callback.replayed,
-- callback.store (the replay store failed).
function M.verify(headers, body, opts)
  if type(headers) ~= "table" then error("callback.verify: headers must be a table", 2) end
  if body ~= nil and type(body) ~= "string" then error("callback.verify: body must be a string", 2) end
  if type(opts) ~= "table" then error("callback.verify: opts must be a table", 2) end
  if opts.app_secret ~= nil and type(opts.app_secret) ~= "string" then
    error("callback.verify: opts.app_secret must be a string", 2)
  end
  if opts.now_ms ~= nil and type(opts.now_ms) ~= "number" then
    error("callback.verify: opts.now_ms must be a number", 2)
  end
  local store = opts.replay_store
  if store ~= nil and (type(store) ~= "table" and type(store) ~= "userdata") then
    error("callback.verify: opts.replay_store must have an add method", 2)
  end
  local max_body = opts.max_body or M.MAX_BODY
  if type(max_body) ~= "number" then error("callback.verify: opts.max_body must be a number", 2) end

  body = body or ""
  if #body > max_body then
    return cb_error("callback.too_large", "the body is " .. #body .. " bytes; at most " .. max_body .. " are accepted")
  end
  local ts, sign = header(headers, "timestamp"), header(headers, "sign")
  if ts == false then return cb_error("callback.bad_timestamp", "the timestamp header is repeated or not text") end
  if sign == false then return cb_error("callback.bad_signature", "the sign header is repeated or not text") end
  local ok, err = core.verify_callback(ts, sign, opts.app_secret, opts.now_ms)
  if not ok then return nil, err end

  if body == "" then return cb_error("callback.bad_body", "the body is empty") end
  local msg = decode(body)
  if type(msg) ~= "table" or msg[1] ~= nil then
    return cb_error("callback.bad_body", "the body is not a JSON object")
  end

  if store then
    -- The signature stays acceptable until timestamp + window: remember
    -- it that long (at least a second).
    local now = opts.now_ms or now_ms()
    local ttl = math.max(1, math.ceil((tonumber(ts) + M.WINDOW_MS - now) / 1000) + 1)
    local added, serr = store:add("dtr:cb:" .. sign, true, ttl)
    if not added then
      if serr == "exists" then
        return cb_error("callback.replayed", "this signature was accepted before: a replayed request")
      end
      return cb_error("callback.store", "the replay store failed: " .. tostring(serr))
    end
  end
  return msg
end

--- The HTTP status to answer a refused callback with.
function M.http_status(err)
  local code = type(err) == "table" and err.code or ""
  if code == "callback.too_large" then return 413 end
  if code == "callback.bad_body" then return 400 end
  if code == "callback.store" or code == "callback.no_secret" then return 500 end
  return 401
end

--- callback.sign(timestamp, app_secret) -> sign | nil, err
M.sign = core.sign_callback

--- Headers for a signed request at now_ms (default: now); for tests and
-- examples/post-callback.lua.
function M.headers(app_secret, at_ms)
  local ts = string.format("%d", math.floor(at_ms or now_ms()))
  local sign, err = core.sign_callback(ts, app_secret)
  if not sign then return nil, err end
  return { timestamp = ts, sign = sign, ["content-type"] = "application/json" }
end

---------------------------------------------------------------------------
-- In-memory replay store (one process)
---------------------------------------------------------------------------
local Memory = {}
Memory.__index = Memory

--- callback.memory_store{ max = 100000, clock = fn } -> store
-- clock: seconds (default os.time).  When full of live entries, add()
-- refuses (false, "full") rather than forget a signature early.
function M.memory_store(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("callback.memory_store expects a table", 2) end
  return setmetatable({
    max = opts.max or 100000, clock = opts.clock or os.time, items = {}, count = 0,
  }, Memory)
end

function Memory:purge(t)
  t = t or self.clock()
  for k, exp in pairs(self.items) do
    if exp <= t then
      self.items[k] = nil
      self.count = self.count - 1
    end
  end
end

--- add(key, value, ttl) -> true | false, "exists" | false, "full"
function Memory:add(key, _, ttl)
  local t = self.clock()
  local exp = self.items[key]
  if exp and exp > t then return false, "exists" end
  if not exp and self.count >= self.max then
    self:purge(t)
    if self.count >= self.max then return false, "full" end
  end
  if not exp then self.count = self.count + 1 end
  self.items[key] = t + (ttl or 0)
  return true
end

function Memory:get(key)
  local exp = self.items[key]
  if exp and exp > self.clock() then return true end
  return nil
end

return M
