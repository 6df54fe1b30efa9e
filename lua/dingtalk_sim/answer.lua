-- dingtalk_sim.answer: every answer the simulator's API gives, in one
-- place: JSON errors in DingTalk's shape, the counters of the stats, the
-- "pre" faults (HTML gateways, bans, redirects, resets, truncated and
-- trickled answers written on the raw socket) and the next fault to play.
-- No side effects at require time.
local state = require "dingtalk_sim.state"

local ngx = ngx
local pairs, tostring, floor = pairs, tostring, math.floor
local str_rep, str_sub = string.rep, string.sub

local json_string = state.json_string

local M = {}

local HTML_502 = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n" ..
  "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>Tengine</center>\r\n</body>\r\n</html>\r\n"
local HTML_BAN = "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Access Denied</title></head>\n" ..
  "<body><h1>Access Denied</h1><p>Sorry, your requests are too frequent: this IP has been blocked " ..
  "for 5 minutes (more than 10000 calls in 20 seconds).</p></body></html>\n"
local HTML_302 = "<html>\r\n<head><title>302 Found</title></head>\r\n<body>\r\n" ..
  "<center><h1>302 Found</h1></center>\r\n<hr><center>Tengine</center>\r\n</body>\r\n</html>\r\n"

local huge_pad -- built on first use (2 MiB)

local STATUS_LINE = {
  [200] = "200 OK", [302] = "302 Found", [400] = "400 Bad Request", [403] = "403 Forbidden",
  [404] = "404 Not Found", [405] = "405 Not Allowed", [500] = "500 Internal Server Error",
  [502] = "502 Bad Gateway",
}

local function error_body(code, message, rid)
  return '{"code":' .. json_string(code) .. ',"message":' .. json_string(message) ..
    ',"requestid":"' .. rid .. '"}'
end
M.error_body = error_body

local function done(ctx)
  if ctx.inflight then
    ctx.inflight = false
    ctx.d:incr("s:in_flight", -1, 0)
  end
end

local function count_answer(ctx, status, code)
  local d = ctx.d
  d:incr("s:status:" .. status, 1, 0)
  if code then d:incr("s:code:" .. code, 1, 0) end
end

-- Write a hand-made response on the raw request socket (truncated, trickle).
local function raw_answer(ctx, status, body, mode)
  local sock, err = ngx.req.socket(true)
  if not sock then
    ngx.log(ngx.ERR, "dingtalk-sim: raw socket: ", err)
    done(ctx)
    return ngx.exit(444)
  end
  local head = "HTTP/1.1 " .. STATUS_LINE[status] .. "\r\nServer: dingtalk-sim\r\n" ..
    "Content-Type: application/json\r\nContent-Length: " .. #body .. "\r\n" ..
    "x-acs-request-id: " .. ctx.rid .. "\r\n\r\n"
  if mode == "truncated" then
    sock:send(head .. str_sub(body, 1, floor(#body / 2)))
  else -- trickle: headers, then one byte a second (at most 60 s, then close)
    local ok = sock:send(head)
    local i = 1
    while ok and i <= #body and i <= 60 do
      ngx.sleep(1)
      ok = sock:send(str_sub(body, i, i))
      i = i + 1
    end
  end
  done(ctx)
  return ngx.exit(444)
end

-- The one exit for every API answer. `code` is the error code (or "ok") for
-- the stats; `ctype` defaults to application/json.
local function answer(ctx, status, body, code, ctype, extra_headers)
  local cfg = ctx.cfg
  if cfg and cfg.latency > 0 then ngx.sleep(cfg.latency) end
  local pf = ctx.post_fault
  count_answer(ctx, status, code)
  if pf then
    if pf == "slow" then
      ngx.sleep(5)
    elseif pf == "reset_after" then
      done(ctx)
      return ngx.exit(444)
    elseif pf == "malformed" then
      body = str_sub(body, 1, floor(#body / 2))
    elseif pf == "huge" then
      if not huge_pad then huge_pad = str_rep("x", 2 * 1024 * 1024) end
      body = str_sub(body, 1, -2) .. ',"padding":"' .. huge_pad .. '"}'
    elseif pf == "truncated" or pf == "trickle" then
      return raw_answer(ctx, status, body, pf)
    end
  end
  ngx.status = status
  local h = ngx.header
  h["Content-Type"] = ctype or "application/json"
  h["Content-Length"] = #body
  if extra_headers then
    for k, v in pairs(extra_headers) do h[k] = v end
  end
  ngx.print(body)
  done(ctx)
end

local function fail(ctx, status, code, message)
  return answer(ctx, status, error_body(code, message, ctx.rid), code)
end

-- Answer for a "pre" fault. Returns nothing; the caller returns after it.
local function fault_answer(ctx, name)
  local rid = ctx.rid
  if name == "system_error" then
    return fail(ctx, 500, "system.error", "Unknown system error (simulated fault).")
  elseif name == "throttle" then
    ctx.d:incr("s:throttled", 1, 0)
    return fail(ctx, 403, "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi",
      "The QPS limit of this app for this API has been reached (simulated fault); wait about 1 s and retry.")
  elseif name == "throttle_api" then
    ctx.d:incr("s:throttled", 1, 0)
    return fail(ctx, 403, "Forbidden.AccessDenied.QpsLimitForApi",
      "The global QPS limit of this API has been reached (simulated fault); wait about 1 s and retry.")
  elseif name == "quota" then
    return fail(ctx, 403, "Forbidden.AccessDenied.ApiCountLimitForOrg",
      "The monthly API call quota of the organisation is used up (simulated fault).")
  elseif name == "invalid_token" then
    return fail(ctx, 400, "InvalidAuthentication", "The access token is invalid or expired (simulated fault).")
  elseif name == "capitalised" then
    local body = '{"Code":"InvalidAuthentication","Message":' ..
      json_string("The access token is invalid or expired (simulated fault, capitalised keys).") ..
      ',"RequestId":"' .. rid .. '"}'
    return answer(ctx, 400, body, "InvalidAuthentication")
  elseif name == "reset" then
    local cfg = ctx.cfg
    if cfg and cfg.latency > 0 then ngx.sleep(cfg.latency) end
    count_answer(ctx, 444, nil)
    done(ctx)
    return ngx.exit(444)
  elseif name == "html" then
    return answer(ctx, 502, HTML_502, nil, "text/html")
  elseif name == "ban" then
    return answer(ctx, 403, HTML_BAN, nil, "text/html")
  elseif name == "redirect" then
    return answer(ctx, 302, HTML_302, nil, "text/html", { Location = "/_sim/redirected" })
  end
  return fail(ctx, 500, "system.error", "unknown simulated fault " .. tostring(name))
end

-- Next fault for an endpoint kind: the deterministic script first, then the
-- random faults (only for send and recall). Returns nil for a normal answer.
local function next_fault(ctx, kind, random_ok)
  local d = ctx.d
  local f = d:lpop("q:" .. kind)
  if f == nil and random_ok then
    local list = ctx.cfg.fault_list
    if list then
      local r = state.rand(d, "fseq", ctx.cfg.seed)
      local acc = 0
      for i = 1, #list do
        acc = acc + list[i].rate
        if r < acc then
          f = list[i].name
          break
        end
      end
    end
  end
  if f == nil or f == "ok" then return nil end
  d:incr("s:fault:" .. f, 1, 0)
  return f
end


M.done, M.answer, M.fail, M.fault_answer, M.next_fault = done, answer, fail, fault_answer, next_fault

return M
