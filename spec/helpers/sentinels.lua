-- spec/helpers/sentinels.lua: the recognisable secrets of the security
-- specs (spec/security_spec.lua, spec/security_frontends_spec.lua), the
-- search for them, and the hostile servers that echo them back.
--
-- TOKEN is the simulator's valid static token and SECRET its app's valid
-- secret; the *_BAD ones are refused.  Every one holds "SENTINEL" (WORD),
-- and the search is for that word, so that a part of one is found too.
local faulty = require "spec.helpers.faulty_server"
local shell = require "spec.helpers.shell"

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
-- when first asked for and kept until stop_faulties() (stop(w)); tests
-- count their own requests.
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

--- start(tag) -> {sim =, dir =}: the simulator of these specs (TLS, the
-- app APP_KEY with SECRET, the static TOKEN) and a scratch folder
-- holding xdg/ and home/; stop(w) ends both and the faulty servers,
-- fresh(w) comes before each test (the simulator reset, no token cached).
function M.start(tag)
  local sim = require "spec.helpers.sim"
  local w = { sim = sim.start { tls = true, apps = { M.APP_KEY .. ":" .. M.SECRET }, token = M.TOKEN } }
  w.dir = shell.trim(shell.sh("mktemp -d ${TMPDIR:-/tmp}/dtr-" .. tag .. ".XXXXXX"))
  shell.sh("mkdir -p " .. shell.quote(w.dir .. "/xdg") .. " " .. shell.quote(w.dir .. "/home"))
  return w
end

function M.stop(w)
  M.stop_faulties()
  if not w then return end
  if w.sim then w.sim:stop() end
  if w.dir and w.dir:match("/dtr%-[%w-]+%.%w+$") then shell.sh("rm -rf " .. shell.quote(w.dir)) end
end

function M.fresh(w)
  w.sim:reset()
  require("dingtalk.recall.token").clear_cache()
end

return M
