-- spec/helpers/faulty_server.lua: the older name of a few answers of
-- spec/helpers/hostile_http.lua (the one hostile server), kept for
-- spec/security_spec.lua: a server that echoes the caller's access token,
-- app secret and request body back in its errors, or puts control
-- characters in its messages and reasons.
--
--   local f = require("spec.helpers.faulty_server").start { api = "echo", token = "echo_secret" }
--   -- f.url, f:requests() (token and API requests), f:stop()
--
-- api modes (recall and send):
--   ok           every key recalled; send gets a processQueryKey
--   echo         400 InvalidAuthentication; message, requestid and x-acs-request-id carry the token
--                and the request body
--   echo_code    400 whose code itself holds the token
--   echo_html    502 text/html page quoting the token and the request body
--   echo_failed  200 whose failedResult gives every key a reason quoting the token
--   echo_ok_rid  200 that answers for no key, its x-acs-request-id quoting the token
--   ctl_error    400 whose message holds "\n", "\r" and an ANSI escape (M.CTL)
--   ctl_failed   200 whose failedResult reasons hold them
-- token modes (/v1.0/oauth2/...):
--   ok           {"accessToken": token_value, "expireIn": 7200}
--   echo_secret  400 invalidClientIdOrSecret quoting the app secret (message, requestid, header)
local hh = require "spec.helpers.hostile_http"

local M = { CTL = hh.CTL }

local API = {
  ok = { kind = "ok" },
  echo = { kind = "error", code = "InvalidAuthentication", request_id = "rid-%TOKEN%",
    message = "the token %TOKEN% is not valid; you sent %BODY%" },
  echo_code = { kind = "error", code = "Auth.%TOKEN%", message = "bad token", request_id = "r1" },
  echo_html = { kind = "raw", status = 502, content_type = "text/html",
    headers = { ["x-acs-request-id"] = "rid-%TOKEN%" },
    body = "<html><body><h1>502</h1><p>upstream saw token %TOKEN% and body %BODY%</p></body></html>" },
  echo_failed = { kind = "failed", reason = "DENIED_FOR_%TOKEN%" },
  echo_ok_rid = { kind = "raw", body = '{"successResult":[],"failedResult":{}}',
    headers = { ["x-acs-request-id"] = "rid-%TOKEN%" } },
  ctl_error = { kind = "error", code = "system.weird", message = hh.CTL, request_id = "rid-ctl" },
  ctl_failed = { kind = "failed", reason = "NOPE " .. hh.CTL },
}

--- start{api = mode, token = mode, token_value = "..."} -> a hostile_http server
function M.start(opts)
  opts = opts or {}
  local api = API[opts.api or "ok"] or { kind = "error", status = 404, code = "InvalidAction.NotFound",
    message = "no such mode" }
  local token = opts.token == "echo_secret" and { kind = "error", code = "invalidClientIdOrSecret",
    request_id = "rid-%SECRET%", message = "appSecret %SECRET% is wrong for %APPKEY%" }
    or { kind = "token", value = opts.token_value or "faulty-token" }
  return hh.start { api = api, token = token }
end

return M
