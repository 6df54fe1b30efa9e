--- dingtalk.recall.report.redact: redaction, written once.  Every secret
-- a text may carry (a token, an app or suite secret: any length, each
-- occurrence), a URL's password and a named credential's value become
-- "***" before anything is shown, logged or returned.  report/render.lua
-- re-exports these; the engine redacts every error a job ends with here.
--
--   local redact = require "dingtalk.recall.report.redact"
--   redact.redact(s, secrets)            -- s without the secrets (non-strings are tostring'd)
--   redact.redact_error(err, secrets)    -- the same over every text field of an error object, in place
--   redact.secrets_of(client)            -- the secrets a client holds
--
-- secrets: a string, or an array of strings (nil and "" entries are
-- skipped).
local M = {}

local concat = table.concat

local function plain_gsub(s, pat, repl)
  local out, from = {}, 1
  while true do
    local a, b = s:find(pat, from, true)
    if not a then break end
    out[#out + 1] = s:sub(from, a - 1)
    out[#out + 1] = repl
    from = b + 1
  end
  if from == 1 then return s, false end
  out[#out + 1] = s:sub(from)
  return concat(out), true
end

local function secret_list(secrets)
  local list = {}
  if type(secrets) == "string" then
    list[1] = secrets
  elseif type(secrets) == "table" then
    for _, v in pairs(secrets) do
      if type(v) == "string" and v ~= "" then list[#list + 1] = v end
    end
  end
  -- Longest first: a short secret inside a long one never leaves a piece.
  table.sort(list, function(a, b) return #a > #b end)
  return list
end

-- Credentials a URL or a message may carry by name.
local NAMED = { "access_token", "accessToken", "access%-token", "appSecret", "app_secret", "suiteSecret",
  "suite_secret", "password", "x%-acs%-dingtalk%-access%-token" }
local NAMED_EQ, NAMED_JSON = {}, {} -- their patterns, made once: name=value and "name": "value"
for i, name in ipairs(NAMED) do
  NAMED_EQ[i] = "(" .. name .. "=)[^%s&\"',;]+"
  NAMED_JSON[i] = "(\"" .. name .. "\"%s*:%s*\")[^\"]*"
end

-- Whether any secret occurs in s (most texts hold none: no list, no sort).
local function any_secret(s, secrets)
  if type(secrets) ~= "table" then secrets = { secrets } end
  for _, v in pairs(secrets) do
    if type(v) == "string" and v ~= "" and s:find(v, 1, true) then return true end
  end
  return false
end

--- redact(s, secrets) -> s without any of the secrets (each occurrence,
-- of any length, becomes "***"), without a URL's password
-- (scheme://user:***@host) and without a named credential's value
-- (access_token=***, "appSecret":"***").  Non-strings are tostring'd.
function M.redact(s, secrets)
  if type(s) ~= "string" then s = tostring(s) end
  -- Named credentials first (a short secret may be a piece of a name);
  -- each form needs a '=' or a '"' (a plain id has neither).
  if s:find('[="]') then
    for i = 1, #NAMED do
      s = s:gsub(NAMED_EQ[i], "%1***")
      s = s:gsub(NAMED_JSON[i], "%1***")
    end
  end
  -- A URL's password: everything between the first ':' of the userinfo
  -- and the last '@' of the word (a password may hold '/', '@' or '?').
  if s:find("@", 1, true) then s = s:gsub("(%a[%w+.-]*://)(%S*)", function(scheme, rest)
    local at = rest:match("^.*()@")
    if not at then return nil end
    local colon = rest:find(":", 1, true)
    if colon and colon < at then return scheme .. rest:sub(1, colon) .. "***" .. rest:sub(at) end
    return nil
  end) end
  if not any_secret(s, secrets) then return s end
  local list = secret_list(secrets)
  -- A replacement can join its neighbours into a new occurrence: repeat
  -- until nothing changes (bounded: "***" holds no secret but "*"s).
  for _ = 1, 64 do
    local changed = false
    for _, sec in ipairs(list) do
      if sec:find("^%**$") == nil then
        local c
        s, c = plain_gsub(s, sec, "***")
        changed = changed or c
      end
    end
    if not changed then break end
  end
  return s
end

--- secrets_of(client) -> the secrets a client holds, for redaction: its
-- static token, its app or suite secret, and the token it fetched (read on
-- the transport's clock; none when no transport was made yet).
function M.secrets_of(client)
  local tm = type(client) == "table" and rawget(client, "tokens")
  if type(tm) ~= "table" then return {} end
  local list = {}
  if type(tm.fixed) == "string" then list[1] = tm.fixed end
  for _, v in pairs(tm.secrets or {}) do list[#list + 1] = v end
  local T = rawget(client, "_transport")
  if type(T) == "table" and T.now and tm.current then
    local ok, tok = pcall(function() return tm:current(T.now()) end)
    if ok and type(tok) == "string" then list[#list + 1] = tok end
  end
  return list
end

local ERROR_TEXTS = { "code", "message", "request_id", "hint", "context", "url", "endpoint" }

--- redact_error(err, secrets) -> err, with every text field redacted in
-- place (code, message, request_id, hint and any other string).  A
-- non-table is returned as a redacted string.
function M.redact_error(err, secrets)
  if type(err) ~= "table" then return err ~= nil and M.redact(err, secrets) or err end
  for _, k in ipairs(ERROR_TEXTS) do
    if type(err[k]) == "string" then err[k] = M.redact(err[k], secrets) end
  end
  for k, v in pairs(err) do
    if type(v) == "string" then err[k] = M.redact(v, secrets) end
  end
  return err
end

return M
