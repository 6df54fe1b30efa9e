--- dingtalk.recall.shared: the client's state shared by every host of an
-- app through Redis (the QPS budget and the access token), from the
-- client's options:
--
--   recall.client { ..., redis = "redis://10.0.0.7:6379/0" }          -- the same URL as the ledger's
--   recall.client { ..., limiter = { redis = "redis://...", key = "myapp", fallback_share = 0.2,
--                                    probe_interval = 3, timeout = 1, tokens = true } }
--
-- key names the app in Redis (default: app_key, else suite_key:auth_corp_id,
-- else "default"); every host of one app must use the same.  tokens =
-- false keeps the token cache local.  log: the client's log(level, msg)
-- option, else stderr (ngx.log in OpenResty).
local resp = require "dingtalk.recall.redis"
local redis_limiter = require "dingtalk.recall.limiter.redis"
local redis_tokens = require "dingtalk.recall.token.redis"

local M = {}

local FIELDS = { redis = "string", key = "string", fallback_share = "number", probe_interval = "number",
  timeout = "number", tokens = "boolean", window = "number" }

--- shared.options(config) -> spec | nil: the Redis settings of a client's
-- options, checked (raises on a wrong type or an unknown field).
function M.options(config)
  local lim = config.limiter
  if lim ~= nil and type(lim) ~= "table" then error("client option 'limiter' must be a table", 4) end
  if config.redis ~= nil and type(config.redis) ~= "string" then
    error("client option 'redis' must be a redis:// URL (a string)", 4)
  end
  lim = lim or {}
  for k, v in pairs(lim) do
    if not FIELDS[k] then error(("client option 'limiter': unknown field '%s'"):format(tostring(k)), 4) end
    if type(v) ~= FIELDS[k] then error(("client option 'limiter.%s' must be a %s"):format(k, FIELDS[k]), 4) end
  end
  local url = lim.redis or config.redis
  if not url then return nil end
  local key = lim.key or config.app_key
    or (config.suite_key and (config.suite_key .. ":" .. (config.auth_corp_id or ""))) or "default"
  return { url = url, key = key, fallback_share = lim.fallback_share, probe_interval = lim.probe_interval,
    timeout = lim.timeout, window = lim.window, tokens = lim.tokens ~= false }
end

--- shared.apply(client, config, rate, window) -> true | nil, err: puts the
-- client's limiters (client.limiters.recall/send) and token store on Redis.
function M.apply(client, config, rate, window)
  local spec = M.options(config)
  if not spec then return true end
  local conn, err = resp.new(spec.url, { timeout = spec.timeout or 1 })
  if not conn then return nil, err end
  local log = config.log
  for _, api in ipairs { "recall", "send" } do
    local lim
    lim, err = redis_limiter.new { redis = conn, key = spec.key, api = api, rate = math.floor(rate),
      window = spec.window or window, fallback_share = spec.fallback_share, probe_interval = spec.probe_interval,
      log = log }
    if not lim then return nil, err end
    client.limiters[api] = lim
  end
  if spec.tokens then
    local store
    store, err = redis_tokens.new { redis = conn, key = spec.key, probe_interval = spec.probe_interval, log = log }
    if not store then return nil, err end
    client.tokens:use_store(store)
    client.token_store = store
  end
  client.redis = conn
  return true
end

return M
