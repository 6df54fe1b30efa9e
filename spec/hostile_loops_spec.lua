-- Issue 10, class 1: a server cannot make a run loop.  A hostile token
-- endpoint (expireIn of 1e-9, 0, -5, NaN, 1e300, a string; an answer that
-- trickles) and a hostile API (InvalidAuthentication forever, QpsLimit
-- forever with huge Retry-After headers) are served by
-- spec/helpers/hostile_http.lua on 127.0.0.1.  Each case bounds the run in
-- time, counts the requests the server saw, and checks that every key is
-- accounted for, through the client API and through the CLI.
local recall = require "dingtalk.recall"
local tokens = require "dingtalk.recall.token"
local hh = require "spec.helpers.hostile_http"
local invariant = require "spec.helpers.invariant"
local shell = require "spec.helpers.shell"

local q = shell.quote
local LUA = os.getenv("DINGTALK_RECALL_TEST_LUA") or "lua"
local CID, ROBOT = "cidHostileLoops", "robotHostile"

-- Wall-clock seconds (the core's clock when there is one).
local function clock()
  return require("dingtalk.recall.clock").now()
end

-- Runs fn with a hard time limit: a count hook raises once `seconds` have
-- passed, so a run that loops fails the test instead of hanging the suite
-- (LuaJIT: compiled code skips hooks, so the JIT is off meanwhile).
local function bounded(seconds, fn)
  local jit = rawget(_G, "jit")
  if jit then jit.off() end
  local deadline = clock() + seconds
  debug.sethook(function()
    if clock() > deadline then
      debug.sethook()
      error("the run did not end within " .. seconds .. " s", 2)
    end
  end, "", 1000)
  local ok, err = pcall(fn)
  debug.sethook()
  if jit then jit.on() end
  if not ok then error(err, 0) end
end

-- The hostile answers (spec/helpers/hostile_http.lua), by name.
local API = {
  ok = { kind = "ok" },
  -- InvalidAuthentication forever
  auth = { kind = "error", code = "InvalidAuthentication", message = "token is invalid", request_id = "h1" },
  -- QpsLimit forever, with absurd Retry-After and reset headers
  qps = { kind = "error", status = 403, code = "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi",
    message = "slow down", request_id = "h2",
    headers = { ["Retry-After"] = "99999999", ["x-ratelimit-reset"] = "1e300" } },
}

-- A server whose token answers carry expireIn = `expire` (raw JSON text;
-- each a new token "hostile-tok-N"), trickled at `trickle` s per byte when
-- given, and whose API answers are API[api]; stopped when the test ends
-- (busted's finally), whether it passed or not.
local function hostile(o)
  local h = hh.start { token = { kind = "token", expire = o.expire, trickle = o.trickle }, api = API[o.api or "ok"] }
  finally(function() h:stop() end)
  return h
end

local function keys_of(n, tag)
  local keys = {}
  for i = 1, n do keys[i] = ("hk%s%03d"):format(tag, i) end
  return keys
end

local function client(h, extra)
  local opts = { robot_code = ROBOT, endpoint = h.url, app_key = "hostileKey", app_secret = "hostileSecret",
    timeout = 2, connect_timeout = 2, max_retries = 2, backoff_base = 0.05, backoff_max = 0.2, qps = 0 }
  for k, v in pairs(extra or {}) do opts[k] = v or nil end
  return assert(recall.client(opts))
end

-- Every key in exactly one list; none recalled (the server never recalled).
local function accounted(rep, keys)
  invariant.assert(rep, keys)
  assert.are.equal(#keys, rep.total)
end

describe("hostile servers cannot make a run loop (class 1)", function()
  before_each(function() tokens.clear_cache() end)

  -- The C core's parse_token decides for every number from the network:
  -- expireIn must be finite and within [60 s, 1 day] (response.invalid).
  -- token.lifetime is the Lua check of a token_provider's lifetimes.
  local EXPIRES = {
    { "1e-9", "response.invalid" }, { "0", "response.invalid" }, { "-5", "response.invalid" },
    { "NaN", nil }, { "59.5", "response.invalid" }, { '"7200"', "response.invalid" },
    { "1e300", "response.invalid" },
  }
  for _, c in ipairs(EXPIRES) do
    local raw, code = c[1], c[2]
    it("client: expireIn " .. raw .. " ends the run with every key failed, after a few token requests", function()
      local h = hostile { expire = raw, api = "ok" }
      bounded(30, function()
        local cl = client(h)
        local keys = keys_of(45, "e")
        local t0 = clock()
        local rep = assert(cl:recall(CID, keys))
        local took = clock() - t0
        cl:close()
        local n = h:counts()
        accounted(rep, keys)
        assert.are.equal(0, #rep.recalled)
        assert.are.equal(0, n.api, "no batch may be sent without a usable token")
        assert.is_true(n.token >= 1 and n.token <= 3, "token requests: " .. n.token) -- 1 + max_retries
        assert.is_true(took < 10, "took " .. took .. " s")
        for _, e in pairs(rep.errors) do
          assert.is_false(e.code == "InvalidAuthentication")
          if code then assert.are.equal(code, e.code) end
        end
      end)
    end)
  end

  for _, life in ipairs { 1e-9, 0 / 0, -1, 59 } do
    it("client: a token_provider's lifetime " .. tostring(life) .. " ends the run (token.lifetime), bounded", function()
      local h = hostile { api = "ok" }
      local calls = 0
      bounded(30, function()
        local cl = client(h, { app_key = false, app_secret = false,
          token_provider = function() calls = calls + 1; return "prov-token", life end })
        local keys = keys_of(25, "p")
        local rep = assert(cl:recall(CID, keys))
        cl:close()
        accounted(rep, keys)
        assert.are.equal(0, #rep.recalled)
        assert.are.equal(0, h:counts().api, "no batch may be sent without a usable token")
        assert.is_true(calls >= 1 and calls <= 6, "provider calls: " .. calls)
        for _, e in pairs(rep.errors) do assert.are.equal("token.lifetime", e.code) end
      end)
    end)
  end

  it("client: token() with a 1e-9 lifetime fails after a bounded number of requests", function()
    local h = hostile { expire = "1e-9" }
    bounded(30, function()
      local cl = client(h)
      local tok, terr = cl:token()
      cl:close()
      assert.is_nil(tok)
      assert.are.equal("response.invalid", terr.code)
      assert.is_true(h:counts().token <= 3)
    end)
  end)

  describe("the CLI", function()
    local dir
    setup(function() dir = shell.trim(shell.sh("mktemp -d ${TMPDIR:-/tmp}/dtr-hloops.XXXXXX")) end)
    teardown(function() if dir and dir:match("dtr%-hloops") then shell.sh("rm -rf " .. q(dir)) end end)

    -- Runs bin/dingtalk-recall under `timeout 60` (per-request --timeout
    -- 2, or `timeout`); returns rc, stdout, seconds, stderr.
    local function cli(h, args, timeout)
      local qa = {}
      for i, a in ipairs(args) do qa[i] = q(a) end
      local cmd = "env -u DINGTALK_ACCESS_TOKEN -u DINGTALK_CA_FILE -u DINGTALK_RECALL_CONFIG" ..
        " DINGTALK_ENDPOINT=" .. q(h.url) .. " DINGTALK_APP_KEY=hostileKey DINGTALK_APP_SECRET=hostileSecret" ..
        " DINGTALK_RECALL_LEDGER=" .. q(dir .. "/ledger") .. " XDG_CONFIG_HOME=" .. q(dir .. "/xdg") ..
        " timeout 60 " .. LUA .. " bin/dingtalk-recall " .. table.concat(qa, " ") ..
        " --timeout " .. (timeout or 2) .. " --quiet" ..
        " >" .. q(dir .. "/out") .. " 2>" .. q(dir .. "/err") .. " </dev/null"
      local t0 = clock()
      local _, rc = shell.sh(cmd)
      return rc, shell.read_file(dir .. "/out"), clock() - t0, shell.read_file(dir .. "/err")
    end

    -- `recall --json` of these keys through cli() -> rc, stdout, seconds, stderr.
    local function cli_recall(h, keys)
      local args = { "recall", "--conversation", CID, "--robot", ROBOT, "--json" }
      for _, k in ipairs(keys) do args[#args + 1] = k end
      return cli(h, args)
    end

    -- How many keys the --json report `so` lists under these fields.
    local function listed(so, ...)
      local doc = require("cjson").decode(so)
      local n = 0
      for _, field in ipairs { ... } do
        for _ in pairs(doc[field] or {}) do n = n + 1 end
      end
      return n
    end

    for _, raw in ipairs { "1e-9", "0", "-5", "NaN", '"x"' } do
      it("`token` with expireIn " .. raw .. " exits 3 at once, a few token requests", function()
        local h = hostile { expire = raw }
        local rc, _, took, se = cli(h, { "token" })
        assert.are.equal(3, rc, se)
        assert.is_true(took < 15, "took " .. took)
        local n = h:counts().token
        assert.is_true(n >= 1 and n <= 4, "token requests: " .. n)
      end)
    end

    it("`recall` with expireIn 1e-9 ends, every key reported as an error", function()
      local h = hostile { expire = "1e-9" }
      local keys = keys_of(30, "k")
      local rc, so, took, se = cli_recall(h, keys)
      assert.is_true(rc == 1 or rc == 3, "rc " .. rc .. ": " .. se)
      assert.is_true(took < 15, "took " .. took)
      local n = h:counts()
      assert.is_true(n.token <= 4, "token requests: " .. n.token)
      assert.are.equal(0, n.api)
      assert.are.equal(#keys, listed(so, "errors"), so)
    end)

    it("`recall` against InvalidAuthentication forever ends with a bounded number of requests", function()
      local h = hostile { api = "auth" }
      local keys = keys_of(200, "i")
      local rc, so, took, se = cli_recall(h, keys)
      assert.is_true(rc == 1 or rc == 3, "rc " .. rc .. ": " .. se)
      assert.is_true(took < 30, "took " .. took)
      local n = h:counts()
      assert.is_true(n.token <= tokens.MAX_FETCHES, "token requests: " .. n.token)
      assert.is_true(n.api <= 2 * 10, "API requests: " .. n.api) -- 10 batches, each at most twice
      assert.are.equal(#keys, listed(so, "errors", "failed"))
    end)

    it("`recall` against QpsLimit forever with huge Retry-After ends in bounded time", function()
      local h = hostile { api = "qps" }
      local rc, so, took, se = cli_recall(h, { "qk1", "qk2" })
      assert.is_true(rc == 1 or rc == 3, "rc " .. rc .. ": " .. se)
      assert.is_true(took < 30, "took " .. took)
      local n = h:counts()
      assert.is_true(n.api >= 1 and n.api <= 4, "API requests: " .. n.api) -- 1 + default max_retries (3)
      assert.matches("QpsLimit", so)
    end)

    it("`token` against a trickling token endpoint ends after the timeout and bounded retries", function()
      -- 0.3 s a byte: the ~110-byte answer would take 30 s; each attempt
      -- gives up after --timeout 0.5
      local h = hostile { trickle = 0.3 }
      local rc, _, took, se = cli(h, { "token" }, 0.5)
      assert.are.equal(3, rc, se)
      assert.is_true(took < 25, "took " .. took)
      assert.is_true(h:counts().token <= 4)
    end)
  end)
end)
