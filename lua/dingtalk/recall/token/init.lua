--- Access tokens: a fixed token, an internal app's (appKey/appSecret), a
-- third-party app's (suiteKey/suiteSecret/authCorpId/suiteTicket) or a
-- user's provider function.  Cached per credential until `margin` seconds
-- before expiry; one fetch at a time is shared by every batch waiting.
-- The secrets stay inside this object: never in errors or output.
--
-- Bounds (a hostile or broken token server cannot make a run loop):
--   * a lifetime (expireIn, or a provider's second value) must be a finite
--     number of at least MIN_LIFETIME seconds, else the fetch fails with
--     `token.lifetime`; one above MAX_LIFETIME is cut to it.  A cached
--     token is used for max(lifetime - margin, lifetime / 2) >= 30 s.
--   * at most MAX_FETCHES token requests (provider calls) per manager in any
--     FETCH_WINDOW seconds; the next one fails with `token.refresh_limit`
--     (not retryable), so the run ends with every waiting key failed.
local core = require "dingtalk.recall.core"

local M = {}
M.__index = M

local REFRESH_MARGIN = 200
local MIN_LIFETIME = 60      -- seconds; below: token.lifetime
local MAX_LIFETIME = 7200    -- seconds (DingTalk's tokens live 7200 s); above: cut to it
local MAX_FETCHES = 6        -- token requests ...
local FETCH_WINDOW = 60      -- ... per this many seconds, per manager
M.MIN_LIFETIME, M.MAX_LIFETIME, M.MAX_FETCHES, M.FETCH_WINDOW = MIN_LIFETIME, MAX_LIFETIME, MAX_FETCHES,
  FETCH_WINDOW

local function finite(x)
  return type(x) == "number" and x == x and x > -math.huge and x < math.huge
end

-- Tokens of managed credentials, shared by the clients of one Lua state
-- (keyed by endpoint and credential, so two clients of one app fetch once).
local shared_cache = {}

--- token.table_store(t) -> a token store over the Lua table t:
-- {get(key), set(key, entry), delete(key, token)}; delete drops the entry
-- only while it still holds that token (a newer one is kept).
function M.table_store(t)
  return {
    get = function(_, key) return t[key] end,
    set = function(_, key, entry) t[key] = entry end,
    delete = function(_, key, token)
      local e = t[key]
      if e and e.token == token then t[key] = nil end
    end,
  }
end

-- The default store: a table of this Lua state.
local table_store = M.table_store(shared_cache)

local function cache_key(endpoint, creds)
  return table.concat({ endpoint, creds.appKey or "", creds.suiteKey or "", creds.authCorpId or "",
    creds.appSecret or creds.suiteSecret or "" }, "\0")
end

--- new(config) -> manager | nil, err.  config holds the client's options.
function M.new(config)
  local margin = config.token_refresh_margin
  if margin == nil then margin = REFRESH_MARGIN end
  if not finite(margin) or margin < 0 or margin >= MAX_LIFETIME then
    return nil, core.error("invalidParameter.param.invalid",
      "token_refresh_margin must be a finite number of seconds in [0, " .. MAX_LIFETIME .. ")")
  end
  local self = setmetatable({ margin = margin, fetches = {} }, M)
  local ways = 0
  if config.access_token ~= nil then ways = ways + 1 end
  if config.app_key ~= nil or config.app_secret ~= nil then ways = ways + 1 end
  if config.suite_key ~= nil or config.suite_secret ~= nil then ways = ways + 1 end
  if config.token_provider ~= nil then ways = ways + 1 end
  if ways ~= 1 then
    return nil, core.error("invalidParameter.param.invalid",
      "give exactly one of access_token, app_key+app_secret, suite_key+suite_secret+auth_corp_id+suite_ticket"
      .. " or token_provider")
  end
  if config.access_token ~= nil then
    if type(config.access_token) ~= "string" then error("access_token must be a string", 3) end
    self.fixed = config.access_token
  elseif config.token_provider ~= nil then
    if type(config.token_provider) ~= "function" then error("token_provider must be a function", 3) end
    self.provider = config.token_provider
    self.key = self -- a provider's token belongs to this manager alone
  else
    local creds
    if config.app_key ~= nil or config.app_secret ~= nil then
      creds = { appKey = config.app_key, appSecret = config.app_secret }
    else
      creds = { suiteKey = config.suite_key, suiteSecret = config.suite_secret,
        authCorpId = config.auth_corp_id, suiteTicket = config.suite_ticket }
    end
    for k, v in pairs(creds) do
      if type(v) ~= "string" then error(k .. " must be a string", 3) end
    end
    local built, err = core.build_token(creds, config.transport_options)
    if not built then return nil, err end
    self.creds = creds
    self.secrets = { creds.appSecret or creds.suiteSecret }
    self.key = cache_key(config.transport_options.endpoint or core.DEFAULT_ENDPOINT, creds)
  end
  self.store = table_store
  return self
end

--- Whether tokens are fetched (and so can be refreshed) by this manager.
function M:managed()
  return self.creds ~= nil or self.provider ~= nil
end

--- The current token, or nil when one must be fetched.
function M:current(now)
  if self.fixed then return self.fixed end
  local entry = self.store:get(self.key)
  -- A shared store (another process, Redis) may hold anything: only a
  -- well-formed entry counts.
  if type(entry) == "table" and type(entry.token) == "string" and entry.token ~= ""
    and finite(entry.expires_at) and now < entry.expires_at then
    return entry.token
  end
  return nil
end

--- Forgets `token` (after InvalidAuthentication), unless already replaced.
function M:invalidate(token)
  self.store:delete(self.key, token)
end

--- Replaces the token store: an object with get(key) -> {token,
-- expires_at} | nil, set(key, entry, ttl) and delete(key, token).  The
-- OpenResty transport gives one on a lua_shared_dict, for all workers.
function M:use_store(store)
  if type(self.key) == "string" then self.store = store end
end

-- Checks a lifetime; returns the seconds to keep the token | nil, err.
local function lifetime(self, expires_in, who)
  if not finite(expires_in) or expires_in < MIN_LIFETIME then
    local shown = type(expires_in) == "number" and string.format("%.6g", expires_in) or type(expires_in)
    return nil, core.error("token.lifetime", who .. " gave a token that lives " .. shown ..
      " s; at least " .. MIN_LIFETIME .. " s is needed", { retryable = false,
      hint = "A token that expires at once would be fetched again and again; check the token " ..
        "endpoint (DingTalk's tokens live 7200 s) or the token provider." })
  end
  expires_in = math.min(expires_in, MAX_LIFETIME)
  return math.max(expires_in - self.margin, expires_in / 2)
end

local function store(self, token, ttl, now)
  self.store:set(self.key, { token = token, expires_at = now + ttl }, ttl)
end

-- Counts one token request at `now`; nil, err when over the budget.
local function take_fetch(self, now)
  if not finite(now) then now = os.time() end
  local kept = {}
  for _, t in ipairs(self.fetches) do
    if t > now - FETCH_WINDOW and t <= now then kept[#kept + 1] = t end
  end
  self.fetches = kept
  if #kept >= MAX_FETCHES then
    local wait = math.max(1, math.ceil(kept[1] + FETCH_WINDOW - now))
    return nil, core.error("token.refresh_limit", MAX_FETCHES .. " tokens were requested in the last " ..
      FETCH_WINDOW .. " s; not asking again for " .. wait .. " s", { retryable = false,
      hint = "The token endpoint keeps giving tokens that do not work (or do not last): check the " ..
        "credentials and the endpoint.", retry_after = wait })
  end
  kept[#kept + 1] = now
  return true
end

--- For a provider: calls it now.  Its token is kept in this manager only.  Returns token | nil, err.
function M:call_provider(now)
  local can, ferr = take_fetch(self, now)
  if not can then return nil, ferr end
  local ok, token, expires_in = pcall(self.provider)
  if not ok or type(token) ~= "string" or token == "" then
    return nil, core.error("token.provider", "the token provider failed" ..
      (ok and " to return a token" or ": " .. tostring(token)), { retryable = false })
  end
  if expires_in == nil then expires_in = MAX_LIFETIME end
  local ttl, err = lifetime(self, tonumber(expires_in) or expires_in, "the token provider")
  if not ttl then return nil, err end
  store(self, token, ttl, now)
  return token
end

--- The built request that fetches a token (managed credentials only).
-- Each call is one token request: over the budget it fails (see above).
-- `now`: the engine's clock (os.time() when not given).
function M:build(options, now)
  local can, err = take_fetch(self, now or os.time())
  if not can then return nil, err end
  return core.build_token(self.creds, options)
end

--- Parses a token answer and caches the token.  Returns token | nil, err.
function M:accept(status, headers, body, now)
  local res, err = core.parse_token(status, headers, body, self.secrets)
  if not res then return nil, err end
  local ttl, lerr = lifetime(self, res.expireIn, "the token endpoint")
  if not ttl then return nil, lerr end
  store(self, res.accessToken, ttl, now)
  return res.accessToken
end

--- Test hook: drops every cached token of this Lua state.
function M.clear_cache()
  for k in pairs(shared_cache) do shared_cache[k] = nil end
end

return M
