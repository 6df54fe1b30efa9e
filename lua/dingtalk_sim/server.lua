-- dingtalk_sim.server: a DingTalk OpenAPI simulator for nginx + lua.
--
-- Speaks DingTalk's wire format and error codes for the access-token, group
-- message send and group message recall APIs, with fault injection, throttling
-- and an admin API under /_sim/. See docs/simulator.md.
--
-- Mount it in your own OpenResty (http block + a location):
--
--   lua_shared_dict dingtalk_sim 256m;
--   location / { content_by_lua_block { require("dingtalk_sim.server").handle() } }
--
-- (optionally `lua_shared_dict dingtalk_sim_msgs 256m;` to keep messages in a
-- dict of their own, and `init_by_lua_block { require("dingtalk_sim.server").init{...} }`
-- to configure apps/robots/faults at start; without it the defaults are used.)
--
-- No side effects at require time.
local cjson = require "cjson"
local state = require "dingtalk_sim.state"
local admin = require "dingtalk_sim.admin"

local ngx = ngx
local type, tostring, floor, concat = type, tostring, math.floor, table.concat
local str_sub = string.sub
local pcall = pcall

local has_new, new_tab = pcall(require, "table.new")
if not has_new then new_tab = function() return {} end end

local SEP = state.SEP

local M = {}

M.init = state.init

function M.init_worker()
  state.seed_worker()
end

local answer_mod = require "dingtalk_sim.answer"
local request = require "dingtalk_sim.request"
local done, answer, fail = answer_mod.done, answer_mod.answer, answer_mod.fail
local fault_answer, next_fault, error_body = answer_mod.fault_answer, answer_mod.next_fault, answer_mod.error_body
local read_body, json_object = request.read_body, request.json_object
local absent, is_array = request.absent, request.is_array

-- Token check. Returns the app key or answers and returns nil.
local function check_token(ctx)
  local tok = ngx.var.http_x_acs_dingtalk_access_token
  if not tok or tok == "" then
    fail(ctx, 400, "AuthenticationFailed.MissingParameter",
      "Missing the x-acs-dingtalk-access-token header.")
    return nil
  end
  local rec = ctx.d:get("tok:" .. tok)
  local app, gen
  if rec then app, gen = rec:match("^(.*)\1(%d+)$") end
  if not app or tonumber(gen) ~= ctx.cfg.tokgen then
    fail(ctx, 400, "InvalidAuthentication", "The access token is invalid or has expired.")
    return nil
  end
  return app
end

-- Conversation/robot checks shared by send and recall. Answers and returns
-- false on error.
local function check_robot(ctx, app, cid, robot, need_permission)
  if str_sub(cid, 1, 3) ~= "cid" then
    fail(ctx, 400, "invalid.openConversationId",
      "Invalid openConversationId '" .. cid .. "': a group openConversationId starts with 'cid'.")
    return false
  end
  local d = ctx.d
  local owner, stopped, tpl, has_excl = state.parse_robot(d:get("robot:" .. robot))
  if not owner then
    fail(ctx, 400, "invalidParameter.robotCode.notExsit",
      "The bot '" .. robot .. "' does not exist. Check robotCode.")
    return false
  end
  if owner ~= app then
    fail(ctx, 400, "not.allowed.robotCode",
      "Unauthorized robotCode: the bot '" .. robot .. "' does not belong to the app of this access token.")
    return false
  end
  if need_permission then
    local _, perm = state.parse_app(d:get("app:" .. app))
    if not perm then
      fail(ctx, 403, "Forbidden.AccessDenied.AccessTokenPermissionDenied",
        "The app has no permission for this API (qyapi_robot_sendmsg).")
      return false
    end
  end
  if stopped then
    fail(ctx, 400, "bot.stopped", "The group bot '" .. robot .. "' has been disabled.")
    return false
  end
  if tpl == "missing" then
    fail(ctx, 400, "template.not.existed", "The bot template of '" .. robot .. "' does not exist.")
    return false
  elseif tpl == "stopped" then
    fail(ctx, 400, "template.stopped", "The bot template of '" .. robot .. "' has been disabled.")
    return false
  end
  if has_excl and d:get(state.excl_key(robot, cid)) then
    fail(ctx, 400, "invalidParameter.robotCode",
      "Invalid robotCode: the bot '" .. robot .. "' is not a member of the group " .. cid .. ".")
    return false
  end
  return true
end

---------------------------------------------------------------------------
-- API endpoints
---------------------------------------------------------------------------
local function api_token(ctx, corp)
  local d = ctx.d
  d:incr("s:token_fetches", 1, 0)
  local body = json_object(read_body())
  if not body then
    return fail(ctx, 400, "invalidParameter.param.invalid", "The request body must be a JSON object.")
  end
  local key, secret
  if corp then
    key, secret = body.suiteKey, body.suiteSecret
    local corpid, ticket = body.authCorpId, body.suiteTicket
    if type(corpid) ~= "string" or corpid == "" or type(ticket) ~= "string" or ticket == "" then
      return fail(ctx, 400, "invalidClientIdOrSecret",
        "authCorpId and suiteTicket are required (non-empty strings).")
    end
  else
    key, secret = body.appKey, body.appSecret
  end
  local real
  if type(key) == "string" and key ~= "" then real = state.parse_app(d:get("app:" .. key)) end
  if not real or type(secret) ~= "string" or secret ~= real then
    return fail(ctx, 400, "invalidClientIdOrSecret", "Invalid client id or secret (" ..
      (corp and "suiteKey/suiteSecret" or "appKey/appSecret") .. ").")
  end
  local f = next_fault(ctx, "token", false)
  if f then
    if state.FAULTS[f] == "pre" then return fault_answer(ctx, f) end
    ctx.post_fault = f
  end
  local tok = state.token_string()
  local ttl = ctx.cfg.token_ttl
  state.put_token(d, tok, key, ttl)
  d:incr("s:tokens_issued", 1, 0)
  return answer(ctx, 200, '{"expireIn":' .. ttl .. ',"accessToken":"' .. tok .. '"}', "ok")
end

local function str_field(ctx, body, name, miss_code)
  local v = body[name]
  if absent(v) then
    if miss_code then
      fail(ctx, 400, miss_code, "Missing " .. name .. ".")
    else
      fail(ctx, 400, "invalidParameter.param.invalid", "Missing " .. name .. ".")
    end
    return nil
  end
  return v
end

local function check_nonempty_string(ctx, name, v)
  if type(v) ~= "string" or v == "" then
    fail(ctx, 400, "invalidParameter.param.invalid",
      "Invalid parameter " .. name .. ": it must be a non-empty string.")
    return false
  end
  return true
end

-- the token's app and the JSON object body of an API call; nil once an answer is sent
local function authorized_body(ctx)
  local app = check_token(ctx)
  if not app then return nil end
  local body = json_object(read_body())
  if not body then
    fail(ctx, 400, "invalidParameter.param.invalid", "The request body must be a JSON object.")
    return nil
  end
  return app, body
end

-- the body's openConversationId and robotCode; nil once an answer is sent
local function target_fields(ctx, body)
  local cid = str_field(ctx, body, "openConversationId", "miss.openConversationId")
  if not cid then return nil end
  local robot = str_field(ctx, body, "robotCode", "miss.chatbotId")
  if not robot then return nil end
  return cid, robot
end

local function api_send(ctx)
  local d = ctx.d
  local app, body = authorized_body(ctx)
  if not app then return end
  local cid, robot = target_fields(ctx, body)
  if not cid then return end
  local msg_key = str_field(ctx, body, "msgKey")
  if not msg_key then return end
  local msg_param = str_field(ctx, body, "msgParam")
  if not msg_param then return end
  if not check_nonempty_string(ctx, "openConversationId", cid) then return end
  if not check_nonempty_string(ctx, "robotCode", robot) then return end
  if not check_nonempty_string(ctx, "msgKey", msg_key) then return end
  if not check_nonempty_string(ctx, "msgParam", msg_param) then return end
  local ok, p = pcall(cjson.decode, msg_param)
  if not ok or type(p) ~= "table" then
    return fail(ctx, 400, "invalidParameter.param.invalid",
      "Invalid parameter msgParam: it must be a string holding a JSON object, e.g. \"{\\\"content\\\":\\\"hi\\\"}\".")
  end
  if not check_robot(ctx, app, cid, robot, false) then return end
  local f = next_fault(ctx, "send", true)
  if f then
    if state.FAULTS[f] == "pre" then return fault_answer(ctx, f) end
    ctx.post_fault = f
  end
  local key = state.new_key(d)
  local now = ngx.now()
  local age = ctx.d:get("age") or 0
  local okset, err = ctx.m:set(state.msg_prefix(d, ctx.m) .. key, cid .. SEP .. robot .. SEP .. (now + age), 0, 0)
  if not okset then
    return fail(ctx, 500, "system.error", "Simulator storage error: " .. tostring(err))
  end
  d:incr("s:sent", 1, 0)
  return answer(ctx, 200, '{"processQueryKey":"' .. key .. '"}', "ok")
end

local re_find = ngx and ngx.re and ngx.re.find

-- true when every key is at most 128 characters of [A-Za-z0-9+/=_-]; else the bad key
local function check_keys(keys, n)
  local long = false
  for i = 1, n do
    if #keys[i] > 128 then long = true end
  end
  if not long and not re_find(concat(keys, ",", 1, n), "[^A-Za-z0-9+/=_,-]", "jo") then return true end
  for i = 1, n do
    local k = keys[i]
    if #k > 128 or re_find(k, "[^A-Za-z0-9+/=_-]", "jo") then return false, k end
  end
  return true
end

local function api_recall(ctx)
  local d, m = ctx.d, ctx.m
  local now = ngx.now()
  d:incr("s:recall_calls", 1, 0)
  state.record_recall_start(d, now)
  local app, body = authorized_body(ctx)
  if not app then return end
  local keys = body.processQueryKeys
  if type(keys) == "table" then d:incr("s:recall_keys", #keys, 0) end
  local cid, robot = target_fields(ctx, body)
  if not cid then return end
  if absent(keys) or (type(keys) == "table" and next(keys) == nil) then
    return fail(ctx, 400, "invalidParameter.processQueryKey.missing", "Missing processQueryKeys.")
  end
  if not check_nonempty_string(ctx, "openConversationId", cid) then return end
  if not check_nonempty_string(ctx, "robotCode", robot) then return end
  if type(keys) ~= "table" or not is_array(keys) then
    return fail(ctx, 400, "invalidParameter.param.invalid",
      "Invalid parameter processQueryKeys: it must be an array of strings.")
  end
  local n = #keys
  for i = 1, n do
    local k = keys[i]
    if type(k) ~= "string" or k == "" then
      return fail(ctx, 400, "invalidParameter.param.invalid",
        "Invalid parameter processQueryKeys[" .. (i - 1) .. "]: it must be a non-empty string.")
    end
  end
  if n > 20 then
    return fail(ctx, 400, "invalidParameter.processQueryKeys.overMax",
      "processQueryKeys has " .. n .. " entries, more than the maximum of 20. " ..
      "Split processQueryKeys into batches of at most 20 and call the API once per batch.")
  end
  if not check_robot(ctx, app, cid, robot, true) then return end
  local keys_ok, bad_key = check_keys(keys, n)
  if not keys_ok then
    return fail(ctx, 400, "invalid.processQueryKey",
      "Invalid processQueryKey '" .. bad_key .. "'. Check that it is a processQueryKey returned by the send API.")
  end
  local cfg = ctx.cfg
  if cfg.qps > 0 then
    local c = d:incr("qps:" .. app .. ":" .. floor(now), 1, 0, 2)
    if c > cfg.qps then
      d:incr("s:throttled", 1, 0)
      return fail(ctx, 403, "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi",
        "The app has exceeded its limit of " .. cfg.qps .. " calls per second to this API; wait about 1 s and retry.")
    end
  end
  local f = next_fault(ctx, "recall", true)
  local all_fail = false
  if f then
    if state.FAULTS[f] == "pre" then return fault_answer(ctx, f) end
    if f == "failed_key" then all_fail = true else ctx.post_fault = f end
  end
  local fk_rate = cfg.failed_key
  local age = d:get("age") or 0
  local window = state.RECALL_WINDOW
  local seen = new_tab(0, n)
  local mp = state.msg_prefix(d, m)
  local multi = state.multi_worker()
  local prefix = cid .. SEP .. robot .. SEP
  local plen = #prefix
  local succ, ns = new_tab(n, 0), 0
  local failed, nf = new_tab(n, 0), 0
  local recalled = 0
  for i = 1, n do
    local k = keys[i]
    if not seen[k] then
      seen[k] = true
      local reason
      -- one message = one dict entry: value "cid SEP robot SEP sent_at", flags 0 while
      -- sent, else the recall time in whole seconds (one lookup per key on the hot path;
      -- rewriting a value of the same size does not reallocate the entry)
      local mk = mp .. k
      local rec, flags = m:get(mk)
      if not rec then
        reason = "PROCESS_QUERY_KEY_NOT_EXIST"
      elseif str_sub(rec, 1, plen) ~= prefix then
        reason = "CONVERSATION_OR_ROBOT_MISMATCH"
      elseif flags then
        reason = "ALREADY_RECALLED"
      elseif now - (tonumber(str_sub(rec, plen + 1)) - age) > window then
        reason = "RECALL_TIME_EXPIRED"
      elseif all_fail or (fk_rate > 0 and state.rand(d, "kseq", cfg.seed) < fk_rate) then
        reason = "SYSTEM_ERROR"
      elseif multi and not m:add("r:" .. mk, true) then
        -- several workers: the add makes the state change atomic between them
        reason = "ALREADY_RECALLED"
      else
        -- a single worker does not yield between the get and this set
        local ok = m:set(mk, rec, 0, floor(now))
        if ok then
          recalled = recalled + 1
        else
          reason = "SYSTEM_ERROR"
        end
      end
      if reason then
        nf = nf + 1
        failed[nf] = '"' .. k .. '":"' .. reason .. '"'
      else
        ns = ns + 1
        succ[ns] = '"' .. k .. '"'
      end
    end
  end
  if recalled > 0 then d:incr("s:recalled", recalled, 0) end
  return answer(ctx, 200, '{"successResult":[' .. concat(succ, ",") .. '],"failedResult":{' ..
    concat(failed, ",") .. '}}', "ok")
end

local ROUTES = {
  ["/v1.0/oauth2/accessToken"] = { name = "accessToken", fn = function(ctx) return api_token(ctx, false) end },
  ["/v1.0/oauth2/corpAccessToken"] = { name = "corpAccessToken", fn = function(ctx) return api_token(ctx, true) end },
  ["/v1.0/robot/groupMessages/send"] = { name = "send", fn = api_send },
  ["/v1.0/robot/groupMessages/recall"] = { name = "recall", fn = api_recall },
}
M.ENDPOINTS = { "accessToken", "corpAccessToken", "send", "recall", "other" }

---------------------------------------------------------------------------
-- entry point (content_by_lua)
---------------------------------------------------------------------------
function M.handle()
  local d, m = state.dicts()
  local cfg = state.config(d)
  local rid = state.request_id()
  ngx.header["x-acs-request-id"] = rid
  local uri = ngx.var.uri
  if str_sub(uri, 1, 5) == "/_sim" then
    return admin.handle(d, m, cfg, rid, uri)
  end
  local ctx = { d = d, m = m, cfg = cfg, rid = rid }
  local route = ROUTES[uri]
  d:incr("s:req:" .. (route and route.name or "other"), 1, 0)
  if not route then
    return fail(ctx, 404, "InvalidAction.NotFound",
      "Specified api '" .. uri .. "' is not found, please check your url and method.")
  end
  if ngx.req.get_method() ~= "POST" then
    return answer(ctx, 405, error_body("MethodNotAllowed", "Use POST for " .. uri .. ".", rid),
      "MethodNotAllowed", nil, { Allow = "POST" })
  end
  local inflight = d:incr("s:in_flight", 1, 0)
  ctx.inflight = true
  local peak = d:get("s:max_in_flight") or 0
  if inflight > peak then d:set("s:max_in_flight", inflight) end
  local ok, err = pcall(route.fn, ctx)
  if not ok then
    done(ctx)
    ngx.log(ngx.ERR, "dingtalk-sim: ", err)
    if not ngx.headers_sent then
      ctx.cfg = nil
      return fail(ctx, 500, "system.error", "Simulator internal error: " .. tostring(err))
    end
  end
  done(ctx)
end

return M
