-- luacheck: std lua54
-- Fuzz target "request": validation and encoding of requests.
--   core.validate / core.build   (flags % 5 == 0, 1)
--   core.build_send              (flags % 5 == 2)
--   core.build_token             (flags % 5 == 3)
--   core.json_string             (flags % 5 == 4), checked through cjson.decode
-- Fields (0xFF-separated) feed the request table and the options; the
-- other flag bits drop fields, change types or shapes.  Invariants:
--   * exactly one of built and (nil, err); no raise except for a bad
--     number option the input asked for;
--   * every error is well formed, with a one-line tostring, and never holds
--     the access token or an app/suite secret;
--   * a built body decodes (cjson) to exactly the input fields, in the
--     documented JSON, and the url is endpoint .. path;
--   * what the core accepts passes an independent text check, and valid
--     input with the default endpoint is always accepted;
--   * validate(req, opts) agrees with build(req, opts);
--   * tostring(built) never shows the token.
-- Flag bit 11 hands the request, the options and the credentials over as
-- GC proxies (check.lua's gc_proxy): fresh strings through __index after
-- a full collection, so a pointer the core keeps past a pop is a use
-- after free under ASan.
local dir = ...
local C = dofile(dir .. "/check.lua")
local core, fail = C.core, C.fail

local RECALL_PATH = "/v1.0/robot/groupMessages/recall"

local function bit(flags, n)
  return (flags >> n) & 1 == 1
end

-- The token as sent: marked ("tk~~" prefix, so it cannot collide with a
-- fixed message text and the leak check is exact) unless raw is asked.
local function token_of(flags, f, b_raw, b_nil)
  if bit(flags, b_nil) then return nil, {} end
  if bit(flags, b_raw) then return f, {} end
  local t = "tk~~" .. f
  return t, { t }
end

local function opts_of(flags, token, endpoint, extra)
  if bit(flags, 5) then return nil end
  local o = { access_token = token }
  if not bit(flags, 4) then o.endpoint = endpoint end
  if extra and bit(flags, 9) then
    o.timeout = tonumber(extra)
  end
  return o
end

-- pcall that only tolerates the raise a bad timeout option must cause.
local function call(flags, fn, ...)
  local ok, a, b = pcall(fn, ...)
  if not ok then
    if bit(flags, 9) and tostring(a):find("option 'timeout'", 1, true) then return "raised" end
    fail("raised: %s", tostring(a))
  end
  return a, b
end

local function check_built(built, token, secrets, path)
  if getmetatable(built) == nil then fail("built request without its metatable") end
  if built.method ~= "POST" then fail("method %s", tostring(built.method)) end
  if type(built.url) ~= "string" or built.url:sub(-#path) ~= path then fail("url %s", tostring(built.url)) end
  if not built.url:lower():match("^https?://") or built.url:find("[%z\1-\32\127]") then
    fail("url %q", built.url)
  end
  if built.url:lower():match("^http://") and built.loopback ~= true then fail("plain http to a non-loopback url") end
  local h = built.headers
  if h["content-type"] ~= "application/json; charset=utf-8" then fail("content-type") end
  if h["x-acs-dingtalk-access-token"] ~= token then fail("the token header is not the token") end
  local s = tostring(built)
  for _, secret in ipairs(secrets) do
    -- (a secret that is also part of the endpoint the caller chose is no leak)
    if s:find(secret, 1, true) and not built.url:find(secret, 1, true) then
      fail("tostring(built) shows a secret: %q", s)
    end
  end
end

-- validate and build: fields cid, robot, token, endpoint, timeout, keys...
local function recall(flags, f, mode, nf)
  local req = {}
  if not bit(flags, 0) then req.openConversationId = f[1] end
  if not bit(flags, 1) then req.robotCode = f[2] end
  local token, secrets = token_of(flags, f[3], 2, 3)
  local opts = opts_of(flags, token, f[4], f[5])
  local keys = {}
  for i = 6, nf do keys[#keys + 1] = f[i] end
  if bit(flags, 6) then keys[#keys + 2] = "hole" end
  if bit(flags, 8) and #keys > 0 then keys[1] = #keys[1] end
  if bit(flags, 10) then keys = nil end
  if bit(flags, 7) then req.processQueryKeys = f[6] else req.processQueryKeys = keys end
  if bit(flags, 11) then req, opts = C.gc_proxy(req), C.gc_proxy(opts) end

  if mode == 0 then
    local v, err = call(flags, core.validate, req, opts)
    if v == "raised" then return end
    if C.one_of(v, err, secrets) and v ~= true then fail("validate returned %s", tostring(v)) end
    return
  end
  local built, err = call(flags, core.build, req, opts)
  if built == "raised" then return end
  local v, verr = call(flags, core.validate, req, opts)
  if C.one_of(built, err, secrets) then
    if type(req.processQueryKeys) ~= "table" then fail("accepted processQueryKeys of type %s", type(keys)) end
    if opts and v ~= true then fail("build accepted what validate refused: %s", tostring(verr)) end
    for _, x in ipairs { req.openConversationId, req.robotCode, table.unpack(keys) } do
      if not C.valid_text(x) then fail("accepted an invalid text field %q", x) end
    end
    if #keys < 1 or #keys > 20 then fail("accepted %d keys", #keys) end
    if not C.header_safe(token) then fail("accepted a token that is not header-safe") end
    check_built(built, token, secrets, RECALL_PATH)
    local ep = (opts.endpoint or core.DEFAULT_ENDPOINT):gsub("/+$", "")
    if built.url ~= ep .. RECALL_PATH then fail("url %q for endpoint %q", built.url, ep) end
    C.check_body(built.body, { openConversationId = req.openConversationId, robotCode = req.robotCode,
      processQueryKeys = keys })
    -- The documented field order, each value in the core's escaping.
    local ks = {}
    for i, k in ipairs(keys) do ks[i] = core.json_string(k) end
    local want = '{"openConversationId":' .. core.json_string(req.openConversationId) ..
      ',"processQueryKeys":[' .. table.concat(ks, ",") .. '],"robotCode":' .. core.json_string(req.robotCode) .. "}"
    if built.body ~= want then fail("body %q is not %q", built.body, want) end
  else
    if opts and v == true then fail("validate accepted what build refused: %s", tostring(err)) end
    if opts and verr and verr.code ~= err.code then fail("validate says %s, build %s", verr.code, err.code) end
    -- Valid input with the default endpoint must be accepted.
    local all_valid = type(keys) == "table" and req.processQueryKeys == keys and #keys >= 1 and #keys <= 20 and
      C.valid_text(req.openConversationId) and C.valid_text(req.robotCode) and C.header_safe(token) and
      opts ~= nil and opts.endpoint == nil and opts.timeout == nil and not bit(flags, 6)
    if all_valid then
      for _, k in ipairs(keys) do all_valid = all_valid and C.valid_text(k) end
    end
    if all_valid then fail("refused valid input: %s", tostring(err)) end
  end
end

-- build_send: fields cid, robot, token, endpoint, timeout, msgKey, msgParam
local function send(flags, f)
  local req = {}
  if not bit(flags, 0) then req.openConversationId = f[1] end
  if not bit(flags, 1) then req.robotCode = f[2] end
  local token, secrets = token_of(flags, f[3], 2, 3)
  local opts = opts_of(flags, token, f[4], f[5])
  if not bit(flags, 8) then req.msgKey = f[6] end
  local param = f[7]
  if bit(flags, 6) then req.msgParam = { content = param } elseif not bit(flags, 7) then req.msgParam = param end
  if bit(flags, 11) then req, opts = C.gc_proxy(req), C.gc_proxy(opts) end
  local built, err = call(flags, core.build_send, req, opts)
  if built == "raised" then return end
  if not C.one_of(built, err, secrets) then return end
  for _, x in ipairs { req.openConversationId, req.robotCode, req.msgKey } do
    if not C.valid_text(x) then fail("accepted an invalid text field %q", x) end
  end
  check_built(built, token, secrets, "/v1.0/robot/groupMessages/send")
  local t = C.cjson.decode(built.body)
  if type(t.msgParam) ~= "string" then fail("msgParam is not a string in the body") end
  if utf8.len(t.msgParam) == nil then fail("accepted a msgParam that is not UTF-8") end
  if type(req.msgParam) == "table" then
    local p = C.cjson.decode(t.msgParam)
    if p.content ~= param then fail("msgParam.content does not survive: %q", t.msgParam) end
  elseif t.msgParam ~= param then
    fail("msgParam does not survive")
  end
  C.check_body(built.body, { openConversationId = req.openConversationId, robotCode = req.robotCode,
    msgKey = req.msgKey, msgParam = t.msgParam })
end

-- build_token: fields appKey, appSecret, suiteKey, suiteSecret, authCorpId,
-- suiteTicket, endpoint
local function token(flags, f)
  local cred
  local secrets = {}
  local corp = bit(flags, 0)
  local function secret(v)
    if bit(flags, 1) then return v end
    v = "sk~~" .. v
    secrets[#secrets + 1] = v
    return v
  end
  if corp then
    cred = { suiteKey = f[3], suiteSecret = secret(f[4]), authCorpId = f[5], suiteTicket = f[6] }
    if bit(flags, 2) then cred.authCorpId = nil end
    if bit(flags, 3) then cred.suiteTicket = nil end
  else
    cred = { appKey = f[1], appSecret = secret(f[2]) }
    if bit(flags, 2) then cred.appKey = nil end
    if bit(flags, 3) then cred.appSecret = nil end
  end
  local opts = nil
  if not bit(flags, 5) then opts = { endpoint = (not bit(flags, 4)) and f[7] or nil } end
  local built, err = call(flags, core.build_token, bit(flags, 11) and C.gc_proxy(cred) or cred,
    bit(flags, 11) and C.gc_proxy(opts) or opts)
  if not C.one_of(built, err, secrets) then return end
  check_built(built, nil, secrets, corp and "/v1.0/oauth2/corpAccessToken" or "/v1.0/oauth2/accessToken")
  for _, v in pairs(cred) do
    if not C.valid_text(v) then fail("accepted an invalid credential %q", v) end
  end
  C.check_body(built.body, cred)
end

-- json_string: the whole input after the flags.
local function json_string(raw)
  local j = core.json_string(raw)
  if type(j) ~= "string" or j:sub(1, 1) ~= '"' or j:sub(-1) ~= '"' or #j < 2 then fail("not a JSON string: %q", j) end
  if C.has_control(j) then fail("raw control character in %q", j) end
  local ok, back = pcall(C.cjson.decode, j)
  if not ok then fail("cjson cannot decode %q: %s", j, tostring(back)) end
  if back ~= raw then fail("round trip changed %q into %q", raw, back) end
  -- And inside an array, as the body writer uses it.
  local arr = C.cjson.decode("[" .. j .. "," .. j .. "]")
  if arr[1] ~= raw or arr[2] ~= raw then fail("round trip in an array") end
end

return function(flags, f, raw)
  local mode = (flags & 0xff) % 5
  local rest = flags >> 8 | (((flags & 0xff) // 5) << 8)
  local nf = #f
  for i = nf + 1, 8 do f[i] = "" end
  if mode == 4 then
    json_string(raw)
  elseif mode == 2 then
    send(rest, f)
  elseif mode == 3 then
    token(rest, f)
  else
    recall(rest, f, mode, nf)
  end
end
