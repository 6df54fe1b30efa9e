--- The simulator specs' shared HTTP exchange (in-process, or the curl CLI)
-- and checks: sim_spec, sim_faults_spec and sim_launcher_spec.
local sim = require "spec.helpers.sim"
local http_client = require "spec.helpers.http_client"
local json = sim.json
local sh, q = sim.sh, sim.sh_quote

local M = {}

M.RECALL = "/v1.0/robot/groupMessages/recall"
M.SEND = "/v1.0/robot/groupMessages/send"
M.TOKEN = "/v1.0/oauth2/accessToken"
M.CORP_TOKEN = "/v1.0/oauth2/corpAccessToken"

--- Before each simulator test: everything the server holds forgotten (keys,
-- tokens, counters: reset(true)) and no scripted answer left.
function M.clean(s)
  s:reset(true)
  s:script({ clear = true })
end

-- The whole file, or "" when it cannot be read.
M.read_all = require("spec.helpers.shell").read_file

-- One HTTP exchange with the curl CLI, an independent client (and the one
-- that speaks TLS here). Returns a table {rc, status, headers, body, json, time}.
function M.curl(s, method, path, body, opts)
  opts = opts or {}
  local hfile, bfile = os.tmpname(), os.tmpname()
  local cmd = "curl -sS -m " .. (opts.timeout or 20) .. " -X " .. method ..
    " -D " .. q(hfile) .. " -o " .. q(bfile) .. " -w '%{http_code} %{time_total}'"
  if s.ca_file and not opts.no_ca then cmd = cmd .. " --cacert " .. q(s.ca_file) end
  local headers = opts.headers
  if headers == nil then headers = { ["x-acs-dingtalk-access-token"] = s.token } end
  for k, v in pairs(headers) do cmd = cmd .. " -H " .. q(k .. ": " .. v) end
  if body ~= nil then
    if type(body) ~= "string" then body = json.encode(body) end
    cmd = cmd .. " -H 'Content-Type: application/json' --data-binary " .. q(body)
  end
  for _, a in ipairs(opts.curl_args or {}) do cmd = cmd .. " " .. a end
  cmd = cmd .. " " .. q((opts.url or s.url) .. path)
  local out, rc = sh(cmd)
  local r = { rc = rc, out = out, body = M.read_all(bfile), headers = {} }
  local status, t = out:match("(%d%d%d) ([%d%.]+)%s*$")
  r.status, r.time = tonumber(status), tonumber(t)
  for line in M.read_all(hfile):gmatch("[^\r\n]+") do
    local k, v = line:match("^([^:]+):%s*(.*)$")
    if k then r.headers[k:lower()] = v end
  end
  os.remove(hfile)
  os.remove(bfile)
  local ok, v = pcall(json.decode, r.body)
  if ok then r.json = v end
  return r
end

-- One HTTP exchange on a connection of its own (as one run of the curl CLI
-- would), in-process over the simulator's TCP port (spec/helpers/http_client.lua);
-- https, opts.no_ca and opts.curl_args go through M.curl.  Returns a table
-- {status, headers, body, json, time, err, why}: err is nil for a complete
-- answer, else "connect", "send", "empty" (closed without an answer),
-- "partial" (closed before the whole body), "timeout" (opts.timeout, s, for
-- the whole exchange; default 20) or "bad answer".
function M.http(s, method, path, body, opts)
  opts = opts or {}
  local url = opts.url or s.url
  local host, port = http_client.parse_url(url)
  if not host or opts.no_ca or opts.curl_args or opts.curl then return M.curl(s, method, path, body, opts) end
  local headers = {}
  for k, v in pairs(opts.headers or { ["x-acs-dingtalk-access-token"] = s.token }) do headers[k] = v end
  if body ~= nil then
    if type(body) ~= "string" then body = json.encode(body) end
    headers["Content-Type"] = "application/json"
  end
  local c = http_client.new { host = host, port = port, keep_alive = false, timeout = opts.timeout or 20 }
  local r = c:request(method, path, body, headers)
  c:close()
  local ok, v = pcall(json.decode, r.body)
  if ok then r.json = v end
  return r
end

function M.recall(s, keys, over, opts)
  local b = { openConversationId = "cidSpec", robotCode = s.robot, processQueryKeys = keys }
  for k, v in pairs(over or {}) do b[k] = v end
  return M.http(s, "POST", M.RECALL, b, opts)
end

--- assert_error(assert, r, status, code): the spec's error shape (busted's
-- assert is passed in: this module runs outside the spec's environment).
function M.assert_error(assert, r, status, code)
  assert.are.equal(status, r.status, r.body)
  assert.is_table(r.json, r.body)
  assert.are.equal(code, r.json.code, r.body)
  assert.is_string(r.json.message)
  assert.are.equal(r.headers["x-acs-request-id"], r.json.requestid)
  assert.matches("^application/json", r.headers["content-type"])
end

return M
