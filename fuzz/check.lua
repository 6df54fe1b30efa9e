-- luacheck: std lua54
-- Invariants shared by the fuzz targets (fuzz/request.lua, response.lua,
-- callback.lua).  Loaded by each target with dofile; every check raises
-- with a description when it fails, which the harness turns into a crash.
local core = require "dingtalk.recall.core"
local cjson = require("cjson").new()

local M = { core = core, cjson = cjson }

local function fail(fmt, ...)
  error(string.format(fmt, ...), 2)
end
M.fail = fail

-- C0 controls and DEL: what a one-line tostring must never hold.
local function has_control(s)
  return s:find("[%z\1-\31\127]") ~= nil
end
M.has_control = has_control

-- The core's text rule for ids, keys and names, written independently:
-- strict UTF-8 (utf8.len rejects overlongs, surrogates and > U+10FFFF),
-- no C0, DEL or C1 control characters, 1..1024 bytes.
function M.valid_text(s)
  return type(s) == "string" and #s > 0 and #s <= 1024 and utf8.len(s) ~= nil and not has_control(s) and
    not s:find("\194[\128-\159]")
end

-- A value that may become an HTTP header: printable ASCII, no space.
function M.header_safe(s)
  return type(s) == "string" and #s > 0 and #s <= 1024 and not s:find("[^\33-\126]")
end

-- Fills a template: every "$S" by s and every "$T" by t, in one pass
-- (s and t are taken as they are, never as patterns or as templates).
function M.fill(template, s, t)
  return (template:gsub("%$([ST])", function(c) return c == "S" and s or t end))
end

-- err must be a core error: code (non-empty) and message strings, hint
-- string, retryable boolean, integer status and string request_id when
-- present, a one-line tostring; and no secret (each at least 4 bytes)
-- in any of its strings or (see below) in its tostring.
function M.check_err(err, secrets)
  if not core.is_error(err) then fail("not an error object: %s (%s)", tostring(err), type(err)) end
  if type(err.code) ~= "string" or err.code == "" then fail("error without a code") end
  if type(err.message) ~= "string" then fail("error %s without a message", err.code) end
  if type(err.hint) ~= "string" then fail("error %s without a hint", err.code) end
  if type(err.retryable) ~= "boolean" then fail("error %s: retryable is %s", err.code, type(err.retryable)) end
  if err.status ~= nil and math.type(err.status) ~= "integer" then
    fail("error %s: status is %s", err.code, tostring(err.status))
  end
  if err.request_id ~= nil and type(err.request_id) ~= "string" then
    fail("error %s: request_id is %s", err.code, type(err.request_id))
  end
  local s = tostring(err)
  if type(s) ~= "string" then fail("tostring(err) is not a string") end
  if has_control(s) then fail("tostring(err) is not one line: %q", s) end
  for _, secret in ipairs(secrets or {}) do
    if #secret >= 4 then
      -- tostring glues the fields with ": ", " (", ", " and ")" and turns
      -- controls into spaces: a secret holding one of those can appear
      -- across a field's end without being in any field (a request id
      -- "sq~~" then ")" shows "sq~~)").  The fields are checked below.
      if not secret:find("[%s:(),]") and s:find(secret, 1, true) then
        fail("a secret (%q) is in tostring(err): %q", secret, s)
      end
      for k, v in pairs(err) do
        if type(v) == "string" and v:find(secret, 1, true) then
          fail("a secret (%q) is in err.%s: %q", secret, tostring(k), v)
        end
      end
    end
  end
  return err
end

-- Exactly one of (value) and (nil, err), never both, never neither.
function M.one_of(v, err, secrets)
  if v ~= nil and v ~= false then
    if err ~= nil then fail("both a result and an error (%s)", tostring(err)) end
    return true
  end
  if v ~= nil then fail("false instead of nil") end
  if err == nil then fail("neither a result nor an error") end
  M.check_err(err, secrets)
  return false
end

-- Deep equality of decoded JSON and Lua values (strings, arrays, maps).
local function same(a, b)
  if type(a) ~= type(b) then return false end
  if type(a) ~= "table" then return a == b end
  for k, v in pairs(a) do
    if not same(v, b[k]) then return false end
  end
  for k in pairs(b) do
    if a[k] == nil then return false end
  end
  return true
end
M.same = same

-- Decodes a built body and checks it equals `want`.
function M.check_body(body, want)
  if type(body) ~= "string" then fail("built body is a %s", type(body)) end
  local ok, t = pcall(cjson.decode, body)
  if not ok then fail("built body is not JSON: %s: %q", tostring(t), body) end
  if not same(t, want) then fail("built body does not decode to the input fields: %q", body) end
  return t
end

-- A table that answers through __index with a fresh copy of each string
-- field (a long string is then held by nothing but the core's stack),
-- after a full collection: what an options table backed by the
-- environment or a proxy does.  The core must keep every value anchored
-- until its last use; ASan reports a use after free otherwise.
function M.gc_proxy(t)
  if type(t) ~= "table" then return t end
  return setmetatable({}, { __index = function(_, k)
    collectgarbage()
    local v = t[k]
    if type(v) == "string" then return (v .. "\0"):sub(1, -2) end
    return v
  end })
end

return M
