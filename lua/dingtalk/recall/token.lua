--- Access tokens: a fixed token, an internal app's (appKey/appSecret), a
-- third-party app's (suiteKey/suiteSecret/authCorpId/suiteTicket) or a
-- user's provider function.  Cached per credential until `margin` seconds
-- before expiry; one fetch at a time is shared by every batch waiting.
-- The secrets stay inside this object: never in errors or output.
local core = require "dingtalk.recall.core"

local M = {}
M.__index = M

local REFRESH_MARGIN = 200

-- Tokens of managed credentials, shared by the clients of one Lua state
-- (keyed by endpoint and credential, so two clients of one app fetch once).
local shared_cache = {}

-- The default store: a table of this Lua state.
local table_store = {
  get = function(_, key) return shared_cache[key] end,
  set = function(_, key, entry) shared_cache[key] = entry end,
  delete = function(_, key, token)
    local e = shared_cache[key]
    if e and e.token == token then shared_cache[key] = nil end
  end,
}

local function cache_key(endpoint, creds)
  return table.concat({ endpoint, creds.appKey or "", creds.suiteKey or "", creds.authCorpId or "",
    creds.appSecret or creds.suiteSecret or "" }, "\0")
end

--- new(config) -> manager | nil, err.  config holds the client's options.
function M.new(config)
  local self = setmetatable({ margin = config.token_refresh_margin or REFRESH_MARGIN }, M)
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
  if entry and now < entry.expires_at then return entry.token end
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

local function store(self, token, expires_in, now)
  local ttl = math.max(expires_in - self.margin, expires_in / 2)
  self.store:set(self.key, { token = token, expires_at = now + ttl }, ttl)
end

--- For a provider: calls it now.  Its token is kept in this manager only.  Returns token | nil, err.
function M:call_provider(now)
  local ok, token, expires_in = pcall(self.provider)
  if not ok or type(token) ~= "string" or token == "" then
    return nil, core.error("token.provider", "the token provider failed" ..
      (ok and " to return a token" or ": " .. tostring(token)), { retryable = false })
  end
  store(self, token, tonumber(expires_in) or 7200, now)
  return token
end

--- The built request that fetches a token (managed credentials only).
function M:build(options)
  return core.build_token(self.creds, options)
end

--- Parses a token answer and caches the token.  Returns token | nil, err.
function M:accept(status, headers, body, now)
  local res, err = core.parse_token(status, headers, body, self.secrets)
  if not res then return nil, err end
  store(self, res.accessToken, res.expireIn, now)
  return res.accessToken
end

--- Test hook: drops every cached token of this Lua state.
function M.clear_cache()
  for k in pairs(shared_cache) do shared_cache[k] = nil end
end

return M
