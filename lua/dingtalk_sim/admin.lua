-- dingtalk_sim.admin: the simulator's admin API under /_sim/ (loopback only).
-- No side effects at require time.
local cjson = require "cjson"
local state = require "dingtalk_sim.state"
local request = require "dingtalk_sim.request"

local ngx = ngx
local type, pairs, ipairs, tostring, tonumber, floor = type, pairs, ipairs, tostring, tonumber, math.floor
local concat, str_sub = table.concat, string.sub

local M = {}

local null = cjson.null

local function reply(status, tbl)
  local body = type(tbl) == "string" and tbl or cjson.encode(tbl)
  ngx.status = status
  ngx.header["Content-Type"] = "application/json"
  ngx.header["Content-Length"] = #body
  ngx.print(body)
end

local function bad(rid, msg, status)
  return reply(status or 400, { code = "sim.badRequest", message = msg, requestid = rid })
end

local function loopback(addr)
  if not addr then return false end
  return str_sub(addr, 1, 4) == "127." or addr == "::1" or str_sub(addr, 1, 5) == "unix:"
    or str_sub(addr, 1, 11) == "::ffff:127."
end

local function body_table()
  local body = request.read_body()
  if not body or body:match("^%s*$") then return {} end
  local ok, v = pcall(cjson.decode, body)
  if not ok or type(v) ~= "table" then return nil end
  return v
end

local function val(v)
  if v == null then return nil end
  return v
end

-- Every answer code the simulator can give, for the stats.
M.CODES = {
  "ok", "invalid.openConversationId", "invalidParameter.robotCode",
  "invalidParameter.processQueryKeys.overMax", "not.allowed.robotCode", "invalidParameter.param.invalid",
  "invalidParameter.robotCode.notExsit", "miss.chatbotId", "invalidParameter.processQueryKey.missing",
  "invalid.processQueryKey", "miss.openConversationId", "bot.stopped", "template.not.existed",
  "template.stopped", "system.error", "AuthenticationFailed.MissingParameter", "InvalidAuthentication",
  "invalidClientIdOrSecret", "Forbidden.AccessDenied.AccessTokenPermissionDenied",
  "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi", "Forbidden.AccessDenied.QpsLimitForApi",
  "Forbidden.AccessDenied.ApiCountLimitForOrg", "InvalidAction.NotFound", "MethodNotAllowed",
}
local STATUSES = { 200, 302, 400, 403, 404, 405, 444, 500, 502 }
local ENDPOINTS = { "accessToken", "corpAccessToken", "send", "recall", "other" }

local function stats(d)
  local g = function(k) return d:get(k) or 0 end
  local requests, codes, statuses, faults = {}, {}, {}, {}
  for _, e in ipairs(ENDPOINTS) do requests[e] = g("s:req:" .. e) end
  for _, c in ipairs(M.CODES) do
    local v = d:get("s:code:" .. c)
    if v then codes[c] = v end
  end
  for _, s in ipairs(STATUSES) do
    local v = d:get("s:status:" .. s)
    if v then statuses[tostring(s)] = v end
  end
  for f in pairs(state.FAULTS) do
    local v = d:get("s:fault:" .. f)
    if v then faults[f] = v end
  end
  local inflight = g("s:in_flight")
  return {
    requests = requests, codes = codes, status = statuses, faults = faults,
    throttled = g("s:throttled"),
    token_fetches = g("s:token_fetches"),
    tokens_issued = g("s:tokens_issued"),
    recall_calls = g("s:recall_calls"),
    recall_keys = g("s:recall_keys"),
    max_recall_calls_in_any_1s = g("s:max_recall_1s"),
    max_in_flight = g("s:max_in_flight"),
    in_flight = inflight > 0 and inflight or 0,
    sent = g("s:sent"),
    seeded = g("s:seeded"),
    recalled = g("s:recalled"),
    redirects_followed = g("s:redirects_followed"),
    age = g("age"),
  }
end

local function config_view(d)
  local rt = state.get_runtime(d) or {}
  return {
    qps = rt.qps, latency = rt.latency, faults = rt.faults, seed = rt.seed or null,
    token_ttl = rt.token_ttl,
    static_token = (d:get("cfg:static_token") or "") ~= "" and d:get("cfg:static_token") or null,
    first_app = state.first_app(d),
  }
end

local function check_names(list)
  if type(list) ~= "table" then return nil, "each script queue must be an array of fault names" end
  for _, f in ipairs(list) do
    if f ~= "ok" and not state.FAULTS[f] then
      return nil, "unknown script entry '" .. tostring(f) .. "' (use 'ok' or a fault name)"
    end
  end
  return true
end

local KINDS = { "recall", "send", "token" }

local function script(d, b, rid)
  for _, k in ipairs(KINDS) do
    if b[k] ~= nil then
      local ok, err = check_names(b[k])
      if not ok then return bad(rid, err) end
    end
  end
  if b.clear then
    for _, k in ipairs(KINDS) do d:delete("q:" .. k) end
  end
  for _, k in ipairs(KINDS) do
    for _, f in ipairs(b[k] or {}) do d:rpush("q:" .. k, f) end
  end
  local q = {}
  for _, k in ipairs(KINDS) do q[k] = d:llen("q:" .. k) or 0 end
  return reply(200, { queued = q })
end

local function robot(d, b, rid)
  local code = val(b.code)
  if type(code) ~= "string" or code == "" then return bad(rid, "robot: 'code' (string) is required") end
  local key = "robot:" .. code
  if b.delete then
    d:delete(key)
    return reply(200, { deleted = code })
  end
  local app, stopped, tpl, has_excl = state.parse_robot(d:get(key))
  if not app then
    app, stopped, tpl, has_excl = state.first_app(d), false, "ok", false
  end
  if val(b.app) ~= nil then
    if type(b.app) ~= "string" or not d:get("app:" .. b.app) then
      return bad(rid, "robot: unknown app '" .. tostring(b.app) .. "' (create it with /_sim/app first)")
    end
    app = b.app
  end
  if val(b.stopped) ~= nil then stopped = b.stopped and true or false end
  if val(b.template) ~= nil then
    if b.template ~= "ok" and b.template ~= "missing" and b.template ~= "stopped" then
      return bad(rid, "robot: template must be 'ok', 'missing' or 'stopped'")
    end
    tpl = b.template
  end
  local excl = val(b.exclude)
  if excl ~= nil then
    if type(excl) ~= "table" then return bad(rid, "robot: exclude must be an array of openConversationIds") end
    for _, cid in ipairs(excl) do
      d:set(state.excl_key(code, tostring(cid)), true)
      has_excl = true
    end
  end
  local incl = val(b.include)
  if type(incl) == "table" then
    for _, cid in ipairs(incl) do d:delete(state.excl_key(code, tostring(cid))) end
  end
  d:set(key, state.robot_record(app, stopped, tpl, has_excl))
  return reply(200, { code = code, app = app, stopped = stopped, template = tpl })
end

local function app_cmd(d, b, rid)
  local key = val(b.key)
  if type(key) ~= "string" or key == "" then return bad(rid, "app: 'key' (string) is required") end
  local secret, perm = state.parse_app(d:get("app:" .. key))
  if val(b.secret) ~= nil then
    if type(b.secret) ~= "string" or b.secret == "" then return bad(rid, "app: secret must be a non-empty string") end
    secret = b.secret
  end
  if not secret then return bad(rid, "app: a new app needs a 'secret'") end
  if perm == nil then perm = true end
  if val(b.recall_permission) ~= nil then perm = b.recall_permission and true or false end
  d:set("app:" .. key, state.app_record(secret, perm))
  return reply(200, { key = key, recall_permission = perm })
end

local function expire_tokens(d, b)
  local gen = d:incr("tokgen", 1, 0)
  local st = val(b.static_token)
  if type(st) == "string" and st ~= "" then
    state.put_token(d, st, state.first_app(d), 0)
    d:set("cfg:static_token", st)
  else
    d:set("cfg:static_token", "")
    st = null
  end
  state.bump_version(d)
  return reply(200, { tokgen = gen, static_token = st })
end

-- What the simulator knows of one processQueryKey, or nil.
local function view(m, mp, age, k)
  local rec, flags = m:get(mp .. k)
  if not rec then return nil end
  local cid, robot_code, sent = rec:match("^([^\1]*)\1([^\1]*)\1([^\1]*)$")
  local sent_at = tonumber(sent) - age
  return {
    key = k, openConversationId = cid, robotCode = robot_code, sent_at = sent_at,
    age = ngx.now() - sent_at, state = flags and "recalled" or "sent", recalled_at = flags or null,
  }
end

local function key_view(d, m, k, rid)
  local v = view(m, state.msg_prefix(d, m), d:get("age") or 0, k)
  if not v then
    return reply(404, { code = "sim.notFound", message = "no such processQueryKey: " .. k, requestid = rid })
  end
  return reply(200, v)
end

M.MAX_KEYS = 10000

-- POST /_sim/keys {"keys": [...]}: the views of many keys in one answer,
-- {"keys": {KEY: view}, "missing": [KEY...]} (in the order asked).
local function keys_view(d, m, b, rid)
  local list = val(b.keys)
  if type(list) ~= "table" then return bad(rid, "keys: 'keys' (an array of processQueryKeys) is required") end
  if #list > M.MAX_KEYS then return bad(rid, "keys: at most " .. M.MAX_KEYS .. " keys a call") end
  local mp, age = state.msg_prefix(d, m), d:get("age") or 0
  local views, missing = {}, {}
  local empty = true
  for _, k in ipairs(list) do
    if type(k) ~= "string" or k == "" then return bad(rid, "keys: every key must be a non-empty string") end
    local v = view(m, mp, age, k)
    if v then
      views[k], empty = v, false
    else
      missing[#missing + 1] = k
    end
  end
  return reply(200, '{"keys":' .. (empty and "{}" or cjson.encode(views)) .. ',"missing":' ..
    (missing[1] and cjson.encode(missing) or "[]") .. "}")
end

local function seed_keys(d, m, b, rid)
  local cid, robot_code = val(b.openConversationId), val(b.robotCode)
  local count = tonumber(val(b.count) or 1)
  if type(cid) ~= "string" or type(robot_code) ~= "string" then
    return bad(rid, "seed_keys: openConversationId and robotCode (strings) are required")
  end
  if not count or count < 0 or count > 2000000 then return bad(rid, "seed_keys: count must be 0..2000000") end
  local aged = tonumber(val(b.age) or 0) or 0
  local stored = ngx.now() - aged + (d:get("age") or 0)
  local rec = cid .. state.SEP .. robot_code .. state.SEP .. stored
  local keys = {}
  local mp = state.msg_prefix(d, m)
  for i = 1, floor(count) do
    local k = state.new_key(d)
    local ok, err = m:set(mp .. k, rec, 0, 0)
    if not ok then return bad(rid, "seed_keys: storage error after " .. (i - 1) .. " keys: " .. tostring(err), 500) end
    keys[i] = '"' .. k .. '"'
  end
  d:incr("s:seeded", #keys, 0)
  return reply(200, '{"keys":[' .. concat(keys, ",") .. ']}')
end

local function issue_token(d, cfg, b, rid)
  local app = val(b.app) or state.first_app(d)
  if type(app) ~= "string" or not d:get("app:" .. app) then return bad(rid, "token: unknown app") end
  local tok = state.token_string()
  local ttl = tonumber(val(b.ttl)) or cfg.token_ttl
  state.put_token(d, tok, app, ttl)
  return reply(200, { accessToken = tok, expireIn = ttl, app = app })
end

function M.handle(d, m, cfg, rid, uri)
  if not loopback(ngx.var.remote_addr) then
    return reply(403, { code = "sim.forbidden", message = "the admin API answers loopback clients only",
      requestid = rid })
  end
  local method = ngx.req.get_method()
  local path = str_sub(uri, 6) -- after "/_sim"

  if path == "/redirected" then
    -- a client that follows the redirect fault lands here: count it as an API request
    d:incr("s:req:other", 1, 0)
    d:incr("s:redirects_followed", 1, 0)
    return reply(404, { code = "sim.redirected", requestid = rid,
      message = "you followed the simulator's redirect fault; DingTalk clients should not follow redirects" })
  end

  local k = path:match("^/key/(.+)$")
  if not k and path == "/key" then k = ngx.req.get_uri_args().key end
  if type(k) == "string" and k ~= "" then
    if method ~= "GET" then return bad(rid, "use GET", 405) end
    return key_view(d, m, k, rid)
  end

  local gets = {
    ["/stats"] = function() return reply(200, stats(d)) end,
    ["/ping"] = function() return reply(200, { ok = true }) end,
    ["/config"] = function() return reply(200, config_view(d)) end,
    ["/script"] = function()
      local q = {}
      for _, kind in ipairs(KINDS) do
        q[kind] = d:llen("q:" .. kind) or 0
      end
      return reply(200, { queued = q })
    end,
  }
  local posts = {
    ["/reset"] = function(b) state.reset(b.all and true or false); return reply(200, { ok = true }) end,
    ["/config"] = function(b)
      local cur = state.get_runtime(d) or {}
      for _, f in ipairs({ "qps", "latency", "faults", "seed", "token_ttl" }) do
        if b[f] ~= nil then cur[f] = b[f] end
      end
      if b.seed == null then cur.seed = nil end
      local rt, err = state.check_runtime(cur)
      if not rt then return bad(rid, err) end
      if b.seed ~= nil then d:set("fseq", 0); d:set("kseq", 0) end
      state.set_runtime(d, rt)
      return reply(200, config_view(d))
    end,
    ["/script"] = function(b) return script(d, b, rid) end,
    ["/robot"] = function(b) return robot(d, b, rid) end,
    ["/app"] = function(b) return app_cmd(d, b, rid) end,
    ["/expire_tokens"] = function(b) return expire_tokens(d, b) end,
    ["/age"] = function(b)
      local s = tonumber(val(b.seconds))
      if not s then return bad(rid, "age: 'seconds' (number) is required") end
      return reply(200, { age = d:incr("age", s, 0) })
    end,
    ["/seed_keys"] = function(b) return seed_keys(d, m, b, rid) end,
    ["/keys"] = function(b) return keys_view(d, m, b, rid) end,
    ["/token"] = function(b) return issue_token(d, cfg, b, rid) end,
  }
  local g, p = gets[path], posts[path]
  if not g and not p then
    return reply(404, { code = "sim.notFound", message = "unknown admin path /_sim" .. path, requestid = rid })
  end
  if method == "GET" and g then return g() end
  if method == "POST" and p then
    local b = body_table()
    if not b then return bad(rid, "the body must be a JSON object") end
    return p(b)
  end
  ngx.header["Allow"] = (g and "GET" or "") .. (g and p and ", " or "") .. (p and "POST" or "")
  return reply(405, { code = "MethodNotAllowed", message = "method " .. method .. " not allowed on /_sim" .. path,
    requestid = rid })
end

return M
