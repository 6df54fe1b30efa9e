-- spec/helpers/sentinels.lua: the recognisable secrets of the security
-- specs (spec/security_spec.lua, spec/security_frontends_spec.lua), the
-- search for them, and the hostile servers that echo them back.
--
-- TOKEN is the simulator's valid static token and SECRET its app's valid
-- secret; the *_BAD ones are refused.  Every one holds "SENTINEL" (WORD),
-- and the search is for that word, so that a part of one is found too.
local faulty = require "spec.helpers.faulty_server"

local M = {
  TOKEN = "tok-SENTINEL-7f3a9c1e",
  TOKEN_BAD = "tok-SENTINEL-bad-0d41",
  SECRET = "sec-SENTINEL-5e1b2d4f",
  SECRET_BAD = "sec-SENTINEL-bad-93e8",
  REDIS_PW = "pw-SENTINEL-0c9d",
  APP_KEY = "dingsecspecapp",
  CID = "cidSecuritySpec",
  WORD = "SENTINEL",
}

--- Every string in v (tables walked, keys too), plus tostring of tables
-- with a __tostring (error objects), appended to out.
function M.strings_of(v, out, seen)
  out, seen = out or {}, seen or {}
  local t = type(v)
  if t == "string" then
    out[#out + 1] = v
  elseif t == "number" or t == "boolean" then
    out[#out + 1] = tostring(v)
  elseif t == "table" and not seen[v] then
    seen[v] = true
    local mt = getmetatable(v)
    if mt and mt.__tostring then out[#out + 1] = tostring(v) end
    for k, x in pairs(v) do
      M.strings_of(k, out, seen)
      M.strings_of(x, out, seen)
    end
  end
  return out
end

--- Where WORD occurs in a list of texts: nil, or a description.
function M.find_leak(texts)
  for i, s in ipairs(texts) do
    local at = s:find(M.WORD, 1, true)
    if at then
      return ("text %d of %d: ...%s..."):format(i, #texts, s:sub(math.max(1, at - 60), at + 40))
    end
  end
  return nil
end

-- One faulty server (spec/helpers/faulty_server.lua) per mode, started
-- when first asked for and kept until stop_faulties() (a spec file's
-- teardown); tests count their own requests.
local faulties = {}

function M.faulty_for(api, token)
  local k = api .. "/" .. (token or "")
  if not faulties[k] then faulties[k] = faulty.start { api = api, token = token } end
  return faulties[k]
end

function M.stop_faulties()
  for k, f in pairs(faulties) do
    f:stop()
    faulties[k] = nil
  end
end

return M
