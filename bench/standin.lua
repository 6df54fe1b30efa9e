-- bench/run's nginx-lua stand-in for the recall API: the cheapest server
-- that still answers like DingTalk, so that the bulk scenario measures the
-- clients and not the simulator's bookkeeping.  It checks the token header,
-- finds the processQueryKeys array in the body without decoding the JSON,
-- answers every key as recalled (the array echoed verbatim as successResult)
-- and counts requests and keys in a shared dict for /_standin/stats.
-- Loaded by the nginx.conf that bench/run writes (content_by_lua_file).
-- luacheck: globals ngx
local ngx = ngx
local d = ngx.shared.standin
local uri = ngx.var.uri

if uri == "/_standin/stats" then
  ngx.header["Content-Type"] = "application/json"
  ngx.print('{"requests":', d:get("requests") or 0, ',"recalled":', d:get("recalled") or 0, '}')
  return
elseif uri == "/_standin/reset" then
  d:flush_all()
  ngx.header["Content-Type"] = "application/json"
  ngx.print('{"ok":true}')
  return
end

local function fail(status, code, message)
  ngx.status = status
  ngx.header["Content-Type"] = "application/json"
  ngx.print('{"code":"', code, '","message":"', message, '","requestid":"standin"}')
end

if uri ~= "/v1.0/robot/groupMessages/recall" or ngx.req.get_method() ~= "POST" then
  return fail(404, "InvalidAction.NotFound", "only the recall API is served")
end
local token = ngx.var.http_x_acs_dingtalk_access_token
if token ~= "sim-static-token" and token ~= '"sim-static-token"' then
  return fail(400, "InvalidAuthentication", "bad token")
end
ngx.req.read_body()
local body = ngx.req.get_body_data() or ""
local _, e = body:find('"processQueryKeys"%s*:%s*%[')
local close = e and body:find("]", e + 1, true)
if not close then
  return fail(400, "invalidParameter.processQueryKey.missing", "processQueryKeys is missing")
end
local arr = body:sub(e, close)
local n = 1
for _ in arr:gmatch(",") do n = n + 1 end
d:incr("requests", 1, 0)
d:incr("recalled", n, 0)
ngx.header["Content-Type"] = "application/json"
ngx.header["x-acs-request-id"] = "standin"
ngx.print('{"successResult":', arr, ',"failedResult":{}}')
