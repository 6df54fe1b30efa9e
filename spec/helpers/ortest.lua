-- spec/helpers/ortest.lua: what the OpenResty specs share: the nginx
-- configuration that loads spec/fixtures/ortest.lua, and small helpers to
-- compare reports across transports.
local shell = require "spec.helpers.shell"

local M = {}

local ORTEST = assert(shell.read_file("spec/fixtures/ortest.lua"))

local SERVER = [[
    location = /recall { content_by_lua_block { require("ortest").recall() } }
    location = /ping {
      content_by_lua_block { ngx.say("pong ", ngx.worker.pid()) }
      header_filter_by_lua_block { require("ortest").record("header_filter") }
      log_by_lua_block { require("ortest").record("log") }
    }
    location = /detect { content_by_lua_block { require("ortest").detect() } }
    location = /verdicts { content_by_lua_block { require("ortest").verdicts() } }
    location = /starts { content_by_lua_block { require("ortest").starts() } }
    location = /limiter_sim { content_by_lua_block { require("ortest").limiter_sim() } }
    location = /fakestat { content_by_lua_block { require("ortest").fakestat() } }
    location = /qps/start { content_by_lua_block { require("ortest").qps_start() } }
    location = /qps/result { content_by_lua_block { require("ortest").qps_result() } }
    location ~ ^/fake/(\w+)/ { content_by_lua_block { require("ortest").fake(ngx.var[1]) } }
]]

local function conf(opts)
  local o = {
    workers = 1,
    shared_dicts = { dingtalk_recall = "1m", ortest = "1m" },
    modules = { ortest = ORTEST },
    http = "  client_body_buffer_size 1m;\n  client_max_body_size 8m;",
    init_worker = '    require("ortest").init_worker()',
    server = SERVER,
  }
  for k, v in pairs(opts) do o[k] = v end
  return o
end

local function copy(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end

local function ids(prefix, n)
  local t = {}
  for i = 1, n do t[i] = prefix .. i end
  return t
end

-- A report in terms of key positions, so that two runs over different
-- keys (a key can be recalled once) compare.
local function shape(rep, keys)
  local pos = {}
  for i, k in ipairs(keys) do
    if pos[k] == nil then pos[k] = i end
  end
  local out = { recalled = {}, failed = {}, errors = {} }
  for _, k in ipairs(rep.recalled) do out.recalled[#out.recalled + 1] = pos[k] end
  table.sort(out.recalled)
  for k, r in pairs(rep.failed) do out.failed[pos[k]] = r end
  for k, e in pairs(rep.errors) do out.errors[pos[k]] = e.code end
  for _, f in ipairs { "ok", "requests", "retries", "throttled", "token_fetches", "total" } do out[f] = rep[f] end
  return out
end

local function first_error(rep)
  local _, e = next(rep.errors)
  return e
end

-- Client options for the simulator s (extra: more or other options).
local function base(s, extra)
  local o = { endpoint = s.url, robot_code = s.robot, access_token = s.token, max_retries = 0, timeout = 5 }
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

-- Before each test: the simulator s without scripted answers, latency or
-- QPS limit.
local function fresh(s)
  s:script { clear = true }
  s:config { latency = 0, qps = 0 }
end

-- Asserts an nginx error log holds no error, alert or warning line.
local function clean_log(log)
  assert(not log:match("[^\n]*%[error%][^\n]*"), log:match("[^\n]*%[error%][^\n]*"))
  assert(not log:match("[^\n]*%[alert%][^\n]*"), log:match("[^\n]*%[alert%][^\n]*"))
  assert(not log:match("[^\n]*%[warn%][^\n]*"), log:match("[^\n]*%[warn%][^\n]*"))
end

M.SERVER, M.conf, M.copy, M.ids, M.shape, M.first_error = SERVER, conf, copy, ids, shape, first_error
M.base, M.clean_log, M.fresh = base, clean_log, fresh

return M
