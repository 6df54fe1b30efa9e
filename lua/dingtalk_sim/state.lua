-- dingtalk_sim.state: shared-dict state of the DingTalk simulator.
--
-- Everything the simulator knows lives in two lua_shared_dicts so that several
-- nginx workers share it:
--   dingtalk_sim       config, apps, robots, tokens, counters, script queues
--   dingtalk_sim_msgs  sent messages (optional: falls back to dingtalk_sim)
--
-- This module has no side effects at require time.
local cjson = require "cjson"

local ngx = ngx
local has_bit, bit = pcall(require, "bit") -- LuaJIT (always there under OpenResty)
if not has_bit then
  -- plain arithmetic fallback so the module also loads under PUC Lua (tools, linters)
  bit = {
    band = function(a, b)
      local r, p = 0, 1
      a, b = a % 4294967296, b % 4294967296
      while a > 0 and b > 0 do
        if a % 2 == 1 and b % 2 == 1 then r = r + p end
        a, b, p = math.floor(a / 2), math.floor(b / 2), p * 2
      end
      return r
    end,
    bxor = function(a, b)
      local r, p = 0, 1
      a, b = a % 4294967296, b % 4294967296
      while a > 0 or b > 0 do
        if a % 2 ~= b % 2 then r = r + p end
        a, b, p = math.floor(a / 2), math.floor(b / 2), p * 2
      end
      return r
    end,
    rshift = function(a, n) return math.floor((a % 4294967296) / 2 ^ n) end,
  }
end

local floor, tonumber, tostring, type, pairs, ipairs = math.floor, tonumber, tostring, type, pairs, ipairs
local random, format, concat = math.random, string.format, table.concat

local M = {}
local TWO32_ = 4294967296

M.DICT = "dingtalk_sim"
M.MSGS = "dingtalk_sim_msgs"
M.RECALL_WINDOW = 86400 -- seconds after which a message can no longer be recalled
M.SEP = "\1"            -- field separator inside stored records

M.DEFAULT_APP_KEY = "dingsimappkey"
M.DEFAULT_APP_SECRET = "sim-app-secret"
M.DEFAULT_ROBOT = "dingsimrobot"
M.DEFAULT_STATIC_TOKEN = "sim-static-token"

-- Faults. "pre" faults answer instead of doing the work; "post" faults do the
-- work (messages get recalled / stored) and then damage or delay the answer.
M.FAULTS = {
  system_error = "pre", throttle = "pre", throttle_api = "pre", quota = "pre",
  invalid_token = "pre", capitalised = "pre", reset = "pre", html = "pre",
  ban = "pre", redirect = "pre",
  malformed = "post", truncated = "post", huge = "post", trickle = "post",
  slow = "post", reset_after = "post", failed_key = "post",
}

function M.dicts()
  local d = ngx.shared[M.DICT]
  if not d then
    error("dingtalk-sim: missing 'lua_shared_dict " .. M.DICT .. " 64m;' in the http block", 2)
  end
  return d, ngx.shared[M.MSGS] or d
end

local function json_string(s)
  return cjson.encode(tostring(s))
end
M.json_string = json_string

-- Parse "name=rate,name=rate" (rate defaults to 1). Returns list, failed_key
-- rate, or nil and an error message.
function M.parse_faults(spec)
  local list, failed_key = {}, 0
  if spec == nil or spec == "" or spec == "none" then return list, 0 end
  if type(spec) ~= "string" then return nil, "faults must be a string like 'system_error=0.1,reset=0.05'" end
  local total = 0
  for item in spec:gmatch("[^,]+") do
    local name, rate = item:match("^%s*([%w_]+)%s*=%s*([%d%.eE%-]+)%s*$")
    if not name then
      name = item:match("^%s*([%w_]+)%s*$")
      rate = name and "1"
    end
    if not name then return nil, "bad fault item '" .. item .. "' (want name=rate)" end
    if not M.FAULTS[name] then
      local names = {}
      for k in pairs(M.FAULTS) do names[#names + 1] = k end
      table.sort(names)
      return nil, "unknown fault '" .. name .. "' (known: " .. concat(names, ", ") .. ")"
    end
    local r = tonumber(rate)
    if not r or r < 0 or r > 1 then return nil, "fault rate for " .. name .. " must be in [0, 1]" end
    if name == "failed_key" then
      failed_key = r
    elseif r > 0 then
      total = total + r
      list[#list + 1] = { name = name, rate = r }
    end
  end
  if total > 1 + 1e-9 then return nil, "fault rates add up to more than 1" end
  return list, failed_key
end

-- Validate/normalise a runtime config table {qps, latency, faults, seed, token_ttl}.
function M.check_runtime(c)
  local qps = tonumber(c.qps or 0)
  if not qps or qps < 0 then return nil, "qps must be a number >= 0" end
  local latency = tonumber(c.latency or 0)
  if not latency or latency < 0 then return nil, "latency must be a number >= 0" end
  local ttl = tonumber(c.token_ttl or 7200)
  if not ttl or ttl <= 0 then return nil, "token_ttl must be > 0" end
  local faults = c.faults
  if faults == nil or faults == cjson.null then faults = "" end
  local ok, err = M.parse_faults(faults)
  if not ok then return nil, err end
  local seed = c.seed
  if seed == cjson.null then seed = nil end
  if seed ~= nil then
    seed = tonumber(seed)
    if not seed then return nil, "seed must be a number" end
    seed = floor(seed)
  end
  return { qps = floor(qps), latency = latency, faults = faults, seed = seed, token_ttl = floor(ttl) }
end

-- Normalise a launch config (what bin/dingtalk-sim writes): apps, robots,
-- static token and the runtime config.
function M.check_launch(conf)
  conf = conf or {}
  local out, err = M.check_runtime(conf)
  if not out then return nil, err end
  local apps = {}
  for _, a in ipairs(conf.apps or {}) do
    if type(a.key) ~= "string" or a.key == "" or type(a.secret) ~= "string" or a.secret == "" then
      return nil, "every app needs a non-empty key and secret"
    end
    apps[#apps + 1] = { key = a.key, secret = a.secret, recall_permission = a.recall_permission ~= false }
  end
  if #apps == 0 then
    apps[1] = { key = M.DEFAULT_APP_KEY, secret = M.DEFAULT_APP_SECRET, recall_permission = true }
  end
  local known = {}
  for _, a in ipairs(apps) do known[a.key] = true end
  local robots = {}
  for _, r in ipairs(conf.robots or {}) do
    if type(r.code) ~= "string" or r.code == "" then return nil, "every robot needs a code" end
    local app = r.app or apps[1].key
    if not known[app] then return nil, "robot " .. r.code .. " belongs to unknown app " .. tostring(app) end
    robots[#robots + 1] = { code = r.code, app = app }
  end
  if #robots == 0 then robots[1] = { code = M.DEFAULT_ROBOT, app = apps[1].key } end
  out.apps = apps
  out.robots = robots
  local st = conf.static_token
  if st == nil then st = M.DEFAULT_STATIC_TOKEN end
  if st == false or st == "" then st = nil end
  out.static_token = st
  return out
end

---------------------------------------------------------------------------
-- records
---------------------------------------------------------------------------
local SEP = M.SEP

function M.app_record(secret, perm)
  return secret .. SEP .. (perm and "1" or "0")
end

function M.parse_app(rec)
  if not rec then return nil end
  local secret, perm = rec:match("^(.*)\1([01])$")
  return secret, perm == "1"
end

function M.robot_record(app, stopped, template, has_excl)
  return app .. SEP .. (stopped and "1" or "0") .. SEP .. template .. SEP .. (has_excl and "1" or "0")
end

function M.parse_robot(rec)
  if not rec then return nil end
  local app, stopped, tpl, ex = rec:match("^(.*)\1([01])\1([^\1]*)\1([01])$")
  return app, stopped == "1", tpl, ex == "1"
end

function M.excl_key(code, cid)
  return "rx:" .. code .. SEP .. cid
end

-- Messages live under their bare key in their own dict, or under "m:" when
-- they share the main dict.
function M.msg_prefix(d, m)
  return m == d and "m:" or ""
end

local multi
function M.multi_worker()
  if multi == nil then multi = (ngx.worker.count() or 1) > 1 end
  return multi
end

function M.bump_version(d)
  return d:incr("cfg:version", 1, 0)
end

function M.set_runtime(d, rt)
  d:set("cfg:json", cjson.encode(rt))
  M.bump_version(d)
end

function M.get_runtime(d)
  local s = d:get("cfg:json")
  return s and cjson.decode(s) or nil
end

function M.first_app(d)
  return d:get("cfg:first_app")
end

function M.put_token(d, token, app, ttl)
  local gen = d:get("tokgen") or 0
  return d:set("tok:" .. token, app .. SEP .. gen, ttl or 0)
end

-- Install the launch config: apps, robots, the static token, runtime config.
function M.apply_launch(d, launch, runtime)
  for _, a in ipairs(launch.apps) do
    d:set("app:" .. a.key, M.app_record(a.secret, a.recall_permission))
  end
  d:set("cfg:first_app", launch.apps[1].key)
  for _, r in ipairs(launch.robots) do
    d:set("robot:" .. r.code, M.robot_record(r.app, false, "ok", false))
  end
  if launch.static_token then M.put_token(d, launch.static_token, launch.apps[1].key, 0) end
  d:set("cfg:static_token", launch.static_token or "")
  M.set_runtime(d, runtime or {
    qps = launch.qps, latency = launch.latency, faults = launch.faults,
    seed = launch.seed, token_ttl = launch.token_ttl,
  })
end

-- Clear all state and counters. Keeps the runtime config (qps, latency,
-- faults, seed, token_ttl) unless `all` is true, then it goes back to the
-- launch values. Apps, robots and the static token return to the launch set.
function M.reset(all)
  local d, m = M.dicts()
  local ver = d:get("cfg:version") or 0
  local tokgen = d:get("tokgen") or 0
  local launch_s = d:get("cfg:launch")
  local runtime = (not all) and M.get_runtime(d) or nil
  d:flush_all()
  d:flush_expired()
  if m ~= d then
    m:flush_all()
    m:flush_expired()
  end
  d:set("cfg:version", ver)
  d:set("tokgen", tokgen + 1) -- tokens issued before the reset stay invalid
  local launch = launch_s and cjson.decode(launch_s) or assert(M.check_launch({}))
  -- keys are hash32(seq): start the sequence somewhere else on every reset
  local start = launch.seed and M.hash32(launch.seed + tokgen) or
    M.hash32(floor(ngx.now() * 1000) % TWO32_ + (ngx.worker.pid() or 0))
  d:set("seq", start % 2147483648)
  d:set("cfg:launch", cjson.encode(launch))
  M.apply_launch(d, launch, runtime)
end

-- Called from init_by_lua (or lazily on the first request).
function M.init(conf)
  local launch, err = M.check_launch(conf)
  if not launch then error("dingtalk-sim: bad config: " .. err, 2) end
  local d = M.dicts()
  d:set("cfg:launch", cjson.encode(launch))
  M.reset(true)
end

---------------------------------------------------------------------------
-- per-worker config cache
---------------------------------------------------------------------------
local cache = { version = false }

function M.config(d)
  local v = d:get("cfg:version")
  if v == nil then
    -- mounted without init_by_lua: install the defaults once
    if d:add("cfg:lazyinit", true) then M.init(nil) end
    v = d:get("cfg:version")
  end
  if v ~= cache.version then
    local rt = M.get_runtime(d) or {}
    local list, fk = M.parse_faults(rt.faults)
    cache.qps = rt.qps or 0
    cache.latency = rt.latency or 0
    cache.fault_list = (list and #list > 0) and list or nil
    cache.failed_key = fk or 0
    cache.seed = rt.seed or 0
    cache.token_ttl = rt.token_ttl or 7200
    cache.tokgen = d:get("tokgen") or 0
    cache.faults = rt.faults or ""
    if rt.seed and cache.seeded ~= rt.seed then
      cache.seeded = rt.seed
      math.randomseed(rt.seed + (ngx.worker.id() or 0))
    end
    cache.version = v
  end
  return cache
end

function M.seed_worker()
  math.randomseed(floor(ngx.now() * 1000) + ngx.worker.pid() * 7919)
end

---------------------------------------------------------------------------
-- random helpers
---------------------------------------------------------------------------
local band, bxor, rshift = bit.band, bit.bxor, bit.rshift
local TWO32 = 4294967296

local function u32(x) return x % TWO32 end

local function mul32(a, b)
  local alo, ahi = a % 65536, floor(a / 65536)
  return (alo * b + ((ahi * b) % 65536) * 65536) % TWO32
end

-- lowbias32 integer hash (bijective on 32 bits)
local function hash32(x)
  x = u32(x)
  x = u32(bxor(x, rshift(x, 16)))
  x = mul32(x, 0x7feb352d)
  x = u32(bxor(x, rshift(x, 15)))
  x = mul32(x, 0x846ca68b)
  x = u32(bxor(x, rshift(x, 16)))
  return x
end
M.hash32 = hash32

-- Deterministic uniform number in [0, 1) from the seed and a shared counter,
-- so fault decisions do not depend on which worker answers.
function M.rand(d, counter, seed)
  local n = d:incr(counter, 1, 0)
  local h = hash32(hash32(u32(seed or 0)) + n)
  h = hash32(bxor(h, 0x5bd1e995) % TWO32)
  return h / TWO32
end

function M.request_id()
  return format("%08X-%04X-%04X-%04X-%04X%08X",
    random(0, 0xffffffff), random(0, 0xffff), band(random(0, 0xffff), 0x0fff) + 0x4000,
    random(0x8000, 0xbfff), random(0, 0xffff), random(0, 0xffffffff))
end

function M.token_string()
  return format("%08x%08x%08x%08x", random(0, 0xffffffff), random(0, 0xffffffff),
    random(0, 0xffffffff), random(0, 0xffffffff))
end

-- A fresh processQueryKey: 44 base64 characters (like the real ones), unique
-- thanks to a shared sequence number hashed into the first four bytes.
local char = string.char
function M.new_key(d)
  local n = d:incr("seq", 1, 0)
  local h = hash32(n)
  local b = {
    char(floor(h / 16777216) % 256, floor(h / 65536) % 256, floor(h / 256) % 256, h % 256),
  }
  for i = 2, 8 do
    local r = random(0, 0xffffffff)
    b[i] = char(floor(r / 16777216) % 256, floor(r / 65536) % 256, floor(r / 256) % 256, r % 256)
  end
  return ngx.encode_base64(concat(b))
end

---------------------------------------------------------------------------
-- counters
---------------------------------------------------------------------------
function M.count(d, key, n)
  d:incr(key, n or 1, 0)
end

-- Sliding one-second window of recall start times. Per-millisecond buckets
-- are retired (subtracted from the running window count) once they fall out
-- of the window; a bucket is retired exactly once thanks to an atomic add.
function M.record_recall_start(d, now)
  local t = floor(now * 1000)
  d:incr("w:b:" .. t, 1, 0)
  local last = d:get("w:last")
  if not last or t > last then d:set("w:last", t) end
  local tail = d:get("w:tail")
  local limit = t - 1000
  if last and limit > last then limit = last end
  if tail and tail <= limit then
    for b = tail, limit do
      local key = "w:b:" .. b
      local c = d:get(key)
      if c and d:add("w:r:" .. b, true, 5) then
        d:delete(key)
        d:incr("w:win", -c, 0)
      end
    end
  end
  if not tail or tail < t - 999 then d:set("w:tail", t - 999) end
  local win = d:incr("w:win", 1, 0)
  local max = d:get("s:max_recall_1s") or 0
  if win > max then d:set("s:max_recall_1s", win) end
end

return M
