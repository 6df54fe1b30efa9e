-- luacheck: std lua54
-- Fuzz target "response": decoding of answers and the error object.
--   core.parse / parse_send / parse_token (flags % 4 == 0, 1, 2) with a
--   status, a headers table and a body from the input, and the secrets
--   the caller passes for redaction;
--   core.error(code, message, fields) and its tostring (flags % 4 == 3).
-- Fields: body, x-acs-request-id, secret, status, second secret, and for
-- core.error: code, message, status, request_id.  In the body and the
-- header, "$S" and "$T" stand for the two secrets, so the fuzzer reaches
-- every place a server could echo them.  Invariants:
--   * never raises; exactly one of result and (nil, err);
--   * a result only for a 2xx status, in the documented shape for its kind,
--     with no secret in its request id or per-key reasons;
--   * every error well formed with a one-line tostring, err.status the
--     HTTP status, 3xx a response.redirect;
--   * no secret (string or array of strings, each >= 4 bytes) in any
--     string of the error or in its tostring.
local dir = ...
local C = dofile(dir .. "/check.lua")
local core, fail = C.core, C.fail

local STATUS = { 200, 201, 204, 299, 300, 302, 400, 401, 403, 404, 429, 500, 503, 100, 600 }

local function bit(flags, n)
  return (flags >> n) & 1 == 1
end

local function is_array_of_strings(t)
  if type(t) ~= "table" then return false end
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  if n ~= #t then return false end
  for i = 1, n do
    if type(t[i]) ~= "string" then return false end
  end
  return true
end

-- No secret in the texts a result carries from the server: the request id
-- and the per-key reasons (the keys and the token answer's accessToken are
-- the caller's own data).
local function no_secret(v, what, secrets)
  for _, secret in ipairs(secrets) do
    if #secret >= 4 and v:find(secret, 1, true) then fail("a secret (%q) is in %s: %q", secret, what, v) end
  end
end

local function check_result(kind, r, secrets)
  if type(r) ~= "table" then fail("result is a %s", type(r)) end
  if r.request_id ~= nil and type(r.request_id) ~= "string" then fail("result.request_id is not a string") end
  if r.request_id then no_secret(r.request_id, "result.request_id", secrets) end
  if kind == 0 then
    if not is_array_of_strings(r.successResult) then fail("successResult is not an array of strings") end
    if type(r.failedResult) ~= "table" then fail("failedResult is not a table") end
    for k, v in pairs(r.failedResult) do
      if type(k) ~= "string" or type(v) ~= "string" then fail("failedResult is not a map of strings") end
      no_secret(v, "a failedResult reason", secrets)
    end
  elseif kind == 1 then
    if type(r.processQueryKey) ~= "string" or r.processQueryKey == "" then fail("no processQueryKey") end
  else
    if type(r.accessToken) ~= "string" or r.accessToken == "" then fail("no accessToken") end
    local e = r.expireIn
    if type(e) ~= "number" or e ~= e or e <= 0 then fail("expireIn %s", tostring(e)) end
  end
end

local function parse(kind, flags, f)
  local fn = ({ core.parse, core.parse_send, core.parse_token })[kind + 1]
  local s1, s2 = "sk~~" .. f[3], "sq~~" .. f[5]
  local status = STATUS[(flags & 15) + 1] or math.tointeger(tonumber(f[4]) or 0) or 0
  local body = C.fill(f[1], s1, s2)
  local headers = nil
  if not bit(flags, 4) then
    headers = { ["x-acs-request-id"] = C.fill(f[2], s1, s2),
      ["content-type"] = "application/json" }
  end
  local secrets, list
  if bit(flags, 5) then
    secrets, list = nil, {}
  elseif bit(flags, 6) then
    secrets, list = { s1, s2 }, { s1, s2 }
  else
    secrets, list = s1, { s1 }
  end
  local ok, r, err = pcall(fn, status, headers, body, secrets)
  if not ok then fail("raised: %s", tostring(r)) end
  if C.one_of(r, err, list) then
    if status < 200 or status > 299 then fail("a result for HTTP %d", status) end
    check_result(kind, r, list)
    return
  end
  if status >= 300 and status < 400 and err.code ~= "response.redirect" then
    fail("HTTP %d gave %s, not response.redirect", status, err.code)
  end
  if status > 0 and status < 0x7fffffff and err.status ~= status then
    fail("err.status %s for HTTP %d", tostring(err.status), status)
  end
end

local function error_object(flags, f)
  local fields = { request_id = f[4] }
  local st = tonumber(f[3])
  if bit(flags, 0) then fields.status = st end
  if bit(flags, 1) then fields.retryable = bit(flags, 2) end
  if bit(flags, 3) then fields.hint = f[5] end
  local ok, err = pcall(core.error, f[1], f[2], fields)
  if not ok then fail("core.error raised: %s", tostring(err)) end
  if not core.is_error(err) then fail("core.error did not make an error object") end
  if err.code ~= f[1] or err.message ~= f[2] then fail("core.error changed code or message") end
  local s = tostring(err)
  if C.has_control(s) then fail("tostring(err) is not one line: %q", s) end
  if f[1]:find("^Forbidden%.AccessDenied%.QpsLimit") and err.retry_after == nil then
    fail("no retry_after for %s", f[1])
  end
end

return function(flags, f)
  for i = #f + 1, 5 do f[i] = "" end
  local kind = (flags & 0xff) % 4
  local rest = flags >> 8 | (((flags & 0xff) // 4) << 8)
  if kind == 3 then
    error_object(rest, f)
  else
    parse(kind, rest, f)
  end
end
