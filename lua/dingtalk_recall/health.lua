--- :checkhealth dingtalk_recall -- the native module, libcurl and its TLS
-- backend, the endpoint, where the credentials come from (never their
-- values), the ledger and the event loop.
local M = {}

-- Neovim 0.8+ has vim.health.start/ok/...; 0.7 has require("health").report_*.
local function reporter()
  local h = vim.health
  if not (h and h.start) then
    local ok, legacy = pcall(require, "health")
    h = ok and legacy or h
  end
  return {
    start = h.start or h.report_start,
    ok = h.ok or h.report_ok,
    info = h.info or h.report_info,
    warn = h.warn or h.report_warn,
    error = h.error or h.report_error,
  }
end

function M.check()
  local r = reporter()
  local plugin = require "dingtalk_recall"

  r.start("dingtalk-recall: native module")
  local ok, core = plugin.find_core()
  if not ok then
    r.error("dingtalk.recall.core (the C module) cannot be loaded", {
      "Neovim runs LuaJIT: it needs the core built for Lua 5.1.",
      "In the plugin's folder: make LUA_VERSION=5.1 (found in build/5.1 automatically),",
      "or: luarocks --lua-version 5.1 install dingtalk-recall, and set",
      "vim.g.dingtalk_recall_cpath = '~/.luarocks/lib/lua/5.1' (a folder or a ?-pattern).",
    })
    for line in tostring(core):gmatch("[^\n]+") do
      if line:match("core") and not line:match("no file") then r.info(line) end
    end
    return
  end
  local searchpath = package.searchpath -- luacheck: ignore 143 (LuaJIT has it)
  local where = searchpath and searchpath("dingtalk.recall.core", package.cpath)
  r.ok(("dingtalk.recall.core %s%s"):format(tostring(core._VERSION), where and (" (" .. where .. ")") or ""))
  local curl_ok, curl_mod = pcall(require, "dingtalk.recall.curl")
  local curl_version, tls = "(dingtalk.recall.curl: " .. tostring(curl_mod) .. ")", nil
  if curl_ok then curl_version, tls = curl_mod.version() end
  if tls == nil or tls == "none" then
    r.error(("libcurl %s without TLS: https endpoints cannot work"):format(tostring(curl_version)))
  else
    r.ok(("libcurl %s, TLS backend %s"):format(tostring(curl_version), tostring(tls)))
  end

  r.start("dingtalk-recall: event loop")
  local uv = vim.uv or vim.loop
  if uv and uv.new_poll and uv.new_timer then
    r.ok(("libuv %s (vim.%s): recalls run without blocking the editor"):format(
      uv.version_string and uv.version_string() or "?", vim.uv and "uv" or "loop"))
  else
    r.error("neither vim.uv nor vim.loop offers poll handles: commands cannot run")
  end
  local st = plugin.status()
  r.info(("running: %s, queued: %d"):format(st.running and "yes" or "no", st.queued))

  r.start("dingtalk-recall: configuration")
  local s, err = plugin.settings()
  if not s then
    r.error("settings: " .. require("dingtalk.recall.report.render").error(err, "chat"))
    return
  end
  if s.config_file then r.info("config file: " .. s.config_file) end
  r.info("endpoint: " .. s.endpoint_shown .. (s.endpoint and "" or " (the default)"))
  if s.endpoint_shown:match("^http://") then
    -- the core decides what is loopback (plain http reaches nothing else)
    local built = ok and core.build({ openConversationId = "cidHealth", robotCode = "health",
      processQueryKeys = { "health" } }, { endpoint = s.endpoint, access_token = "health" })
    if built then
      r.ok("plain http to a loopback address (a local server such as the simulator): the token stays on this host")
    else
      r.warn("the endpoint is plain http: the access token would cross the network in the clear")
    end
  end
  if s.ca_file then
    local f = io.open(s.ca_file, "rb")
    if f then
      f:close()
      r.ok("ca_file: " .. s.ca_file)
    else
      r.error("ca_file cannot be read: " .. s.ca_file)
    end
  end
  if s.credentials then
    r.ok("credentials: from " .. s.credentials)
  else
    r.warn("credentials: none found", {
      "export DINGTALK_ACCESS_TOKEN, or DINGTALK_APP_KEY and DINGTALK_APP_SECRET, before starting Neovim,",
      "or give setup{ token_provider = function() return token, expires_in end }",
    })
  end
  if s.robot_code then
    r.ok("robot_code: " .. s.robot_code)
  else
    r.warn("robot_code: not set (setup{ robot_code = } or $DINGTALK_ROBOT_CODE)")
  end
  if s.conversation then
    r.ok("conversation: " .. s.conversation)
  else
    r.info("conversation: not set; give conversation=CID to :DingtalkRecall")
  end
  local okl, ledger = pcall(require, "dingtalk.recall.ledger")
  local ledger_at = s.ledger or (okl and ledger.default_path and ledger.default_path()) or "?"
  local okr, resp = pcall(require, "dingtalk.recall.redis")
  ledger_at = okr and resp.redact(ledger_at) or ledger_at:gsub("://.*@", "://***@") -- a Redis password
  if not okl then
    r.warn("ledger: the module dingtalk.recall.ledger cannot be loaded: :DingtalkUndo will not work",
      { tostring(ledger):match("^[^\n]*") })
  else
    local okj = pcall(require, "cjson")
    if okj then
      r.ok("ledger: " .. ledger_at .. (s.ledger and "" or " (the default, as the CLI's)"))
    else
      r.warn("ledger: " .. ledger_at .. ", but lua-cjson (cjson) is not on package.cpath for Lua 5.1",
        { "luarocks --lua-version 5.1 install lua-cjson, or apt install lua-cjson" })
    end
  end
end

return M
