--- examples/openresty/bot.lua: a DingTalk bot callback served by OpenResty
-- (see nginx.conf and README.md beside this file).
--
--   location = /dingtalk/callback { content_by_lua_block { require("bot").callback() } }
--   init_worker_by_lua_block { require("bot").init_worker() }
--
-- Every callback: the signature is checked and replays are refused
-- (dingtalk.recall.callback, with a lua_shared_dict as the replay store),
-- the chat commands run (/recall last 3, /recall since 10m, /recall tag T,
-- /recall all: dingtalk.recall.rules), and the reply goes back in the HTTP
-- response, which DingTalk posts to the group.  "/say TEXT" makes the bot
-- send TEXT through the API; it is recorded in the ledger, so it can be
-- recalled, and with BOT_TTL the sweep recalls it by itself.  The sweep is
-- an ngx.timer.every in worker 0.
--
-- Recalls and sends go through cosockets (the client picks the OpenResty
-- transport in handlers and timers), so a slow DingTalk never blocks the
-- worker; the QPS limit and the access token are shared by all workers
-- through `lua_shared_dict dingtalk_recall`.
--
-- Settings: the environment (each variable needs an `env` line in
-- nginx.conf), as for examples/bot.lua and the dingtalk-recall CLI:
--   DINGTALK_APP_KEY, DINGTALK_APP_SECRET   the bot's app (the secret also signs callbacks)
--   DINGTALK_ACCESS_TOKEN                   instead (then DINGTALK_CALLBACK_SECRET = the app secret)
--   DINGTALK_ROBOT_CODE                     the robot's code (for /say)
--   DINGTALK_ENDPOINT                       the API (default https://api.dingtalk.com... see the client)
--   DINGTALK_RECALL_LEDGER                  the ledger: a file path (default: ledger in the nginx
--                                           prefix) or redis://host:port/db (shared by several hosts)
--   DINGTALK_RECALL_REDIS                   redis://[user:password@]host:port/db: the QPS budget, the
--                                           token (and the ledger, unless set above) shared by every
--                                           host of the app (docs/scale-out.md)
--   BOT_ADMINS        staff ids allowed to recall (comma separated); group admins are allowed too
--   BOT_GROUP_ADMINS  "no" to allow only BOT_ADMINS
--   BOT_TTL           a ttl for /say messages (e.g. 10m)
--   BOT_SWEEP_EVERY   seconds between sweeps (default 30; 0 = never)
-- luacheck: globals ngx
local cjson = require "cjson.safe"
local recall = require "dingtalk.recall"
local callback = require "dingtalk.recall.callback"
local rules = require "dingtalk.recall.rules"
local ledger_mod = require "dingtalk.recall.ledger"
local config = require "dingtalk.recall.config"

local M = {}

local BOT_DICT = "dingtalk_bot" -- replay store and pending confirmations, all workers

-- Per worker: settings, client, ledger and rule set (made at first use).
local state

-- Control characters from chat text are logged as \xNN: one line each.
local function log(level, ...)
  local parts = { ... }
  for i = 1, select("#", ...) do
    parts[i] = tostring(parts[i]):gsub("[%c\127]", function(c) return ("\\x%02x"):format(c:byte()) end)
  end
  ngx.log(level, "dingtalk bot: ", table.concat(parts))
end

local function setup()
  if state then return state end
  local cfg, err = config.load {}
  if not cfg then return nil, err end
  if not config.has_credentials(cfg) then
    return nil, "no credentials: set DINGTALK_APP_KEY and DINGTALK_APP_SECRET (and `env` them in nginx.conf)"
  end
  local secret = os.getenv("DINGTALK_CALLBACK_SECRET") or cfg.app_secret
  if not secret then return nil, "set DINGTALK_CALLBACK_SECRET (the app secret) to check callbacks" end
  local admins = {}
  for id in (os.getenv("BOT_ADMINS") or ""):gmatch("[^,%s]+") do admins[#admins + 1] = id end
  local ttl
  if os.getenv("BOT_TTL") then
    ttl = rules.parse_duration(os.getenv("BOT_TTL"))
    if not ttl then return nil, "BOT_TTL is not a duration" end
  end

  local client
  client, err = recall.client(config.client_options(cfg))
  if not client then return nil, err end
  local ledger
  ledger, err = ledger_mod.open(cfg.ledger or cfg.redis or (ngx.config.prefix() .. "ledger"))
  if not ledger then return nil, err end
  ledger:attach(client) -- every client:send is recorded, for /recall and the sweep

  -- "/recall all" asks for a confirmation that may come back to another
  -- worker: keep the pending confirmations in the shared dict.
  local dict = ngx.shared[BOT_DICT]
  local confirm_ttl = 120
  local pending = setmetatable({}, {
    __index = function(_, k)
      local v = dict:get("pending:" .. k)
      return v and cjson.decode(v) or nil
    end,
    __newindex = function(_, k, v)
      if v == nil then
        dict:delete("pending:" .. k)
      else
        dict:set("pending:" .. k, cjson.encode(v), confirm_ttl + 5)
      end
    end,
  })
  local r = rules.new {
    ledger = ledger, client = client, admins = admins, pending = pending, confirm_ttl = confirm_ttl,
    allow_group_admins = os.getenv("BOT_GROUP_ADMINS") ~= "no",
  }
  state = { cfg = cfg, secret = secret, client = client, ledger = ledger, rules = r, ttl = ttl }
  return state
end

-- The audit log: one line per recall, refusal and confirmation.
local function audit(ev)
  local line = rules.audit(ev) -- nil for a sweep that found nothing due
  if line then log(ngx.NOTICE, "audit ", cjson.encode(line)) end
end

--- The chat commands: dingtalk.recall.rules (/recall ...), then /say.
-- Returns the reply text, or nil for no reply.
function M.chatops(st, msg)
  local result = st.rules:handle(msg)
  if result then return result.reply end
  local text = type(msg.text) == "table" and type(msg.text.content) == "string" and msg.text.content or ""
  local what = text:match("^%s*/say%s+(.-)%s*$")
  if not what or what == "" then return nil end
  if not st.rules:authorized(msg) then return "Sorry, you are not allowed to do that here." end
  local key, err = st.client:send(msg.conversationId, "sampleText", { content = what },
    { robot_code = msg.robotCode or st.cfg.robot_code, ttl = st.ttl, tags = { "say" } })
  if not key then return "Could not send: " .. tostring(err.message or err) end
  log(ngx.INFO, "sent ", key)
  return nil
end

local function answer(status, body)
  ngx.status = status
  ngx.header["Content-Type"] = "application/json; charset=utf-8"
  ngx.print(body)
  return ngx.exit(status)
end

--- content_by_lua: one DingTalk callback.
function M.callback()
  if ngx.req.get_method() ~= "POST" then
    ngx.header["Allow"] = "POST"
    return answer(405, '{"error":"POST the callback here"}')
  end
  local st, err = setup()
  if not st then
    log(ngx.ERR, tostring(err))
    return answer(500, '{"error":"the bot is not configured"}')
  end
  ngx.req.read_body()
  local body = ngx.req.get_body_data()
  if not body and ngx.req.get_body_file() then
    return answer(413, '{"error":"callback.too_large"}')
  end
  local msg, verr = callback.verify(ngx.req.get_headers(), body or "",
    { app_secret = st.secret, replay_store = ngx.shared[BOT_DICT] })
  if not msg then
    log(ngx.WARN, "refused callback: ", tostring(verr.code))
    return answer(callback.http_status(verr), cjson.encode { error = verr.code })
  end
  local ok, reply = pcall(M.chatops, st, msg)
  if not ok then
    log(ngx.ERR, "error: ", tostring(reply))
    return answer(500, '{"error":"internal"}')
  end
  if not reply then return answer(200, "{}") end
  return answer(200, cjson.encode { msgtype = "text", text = { content = reply } })
end

-- The ttl sweep (worker 0): recalls the messages whose ttl ran out.
local sweeping = false
function M.sweep(premature)
  if premature or sweeping then return end
  local st, err = setup()
  if not st then
    log(ngx.ERR, tostring(err))
    return
  end
  sweeping = true
  local ok, rep, serr = pcall(rules.sweep, st.ledger, st.client)
  sweeping = false
  if not ok then
    log(ngx.ERR, "sweep: ", tostring(rep))
  elseif not rep then
    log(ngx.ERR, "sweep failed: ", tostring(serr))
  end
end

--- init_worker_by_lua: the audit hooks, and the sweep timer in worker 0.
function M.init_worker()
  for _, e in ipairs { "recalled", "refused", "failed", "confirm", "swept" } do rules.on(e, audit) end
  local every = tonumber(os.getenv("BOT_SWEEP_EVERY") or "30") or 30
  if every > 0 and ngx.worker.id() == 0 then
    local ok, err = ngx.timer.every(every, M.sweep)
    if not ok then log(ngx.ERR, "cannot start the sweep timer: ", err) end
  end
end

return M
