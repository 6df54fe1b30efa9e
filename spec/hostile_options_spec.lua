-- Issue 10 class 4: options and keys the API accepts but cannot honour.
-- Every client option is checked when the client is made: a bad value is
-- nil, err (the spec's error object), a wrong Lua type raises, an unknown
-- name is refused with the closest known name as a hint.  Key arrays are
-- checked before anything is sent.  No server: a fake transport counts
-- what would have been sent.
local recall = require "dingtalk.recall"
local client_mod = require "dingtalk.recall.client"
local core = require "dingtalk.recall.core"
local fake = require "spec.helpers.fake_transport"

local NAN, INF = 0 / 0, math.huge

local function base(extra)
  local cfg = { robot_code = "dingRobot", access_token = "tok", transport = fake.new() }
  for k, v in pairs(extra) do cfg[k] = v end
  return cfg
end

local function refused(extra)
  local c, err = recall.client(base(extra))
  assert.is_nil(c, "accepted " .. tostring(next(extra)))
  assert.is_true(core.is_error(err))
  assert.are.equal("invalidParameter.param.invalid", err.code)
  assert.is_string(err.message)
  return err
end

local function accepted(extra)
  local c, err = recall.client(base(extra))
  assert.is_table(c, tostring(err))
  return c
end

-- For each numeric option: values that must be refused, and values that
-- must be accepted.
local NUMERIC = {
  concurrency = { bad = { NAN, INF, -INF, -1, 0, 1e9, 2.5, 65, 0.999 }, good = { 1, 8, 64 } },
  qps = { bad = { NAN, INF, -INF, -1, 1e9, 2.5, 20.5, 0.5 }, good = { 0, 1, 20, 10000 } },
  timeout = { bad = { NAN, INF, -INF, -1, 0, 1e9, 601 }, good = { 0.5, 10, 600 } },
  connect_timeout = { bad = { NAN, INF, -INF, -1, 0, 1e9 }, good = { 0.25, 3 } },
  max_response_bytes = { bad = { NAN, INF, -1, 0, 1e9, 1024.5, 67108865 }, good = { 1000, 1048576 } },
  max_retries = { bad = { NAN, INF, -INF, -1, 1e9, 2.5, 11 }, good = { 0, 3, 10 } },
  backoff_base = { bad = { NAN, INF, -INF, -1, 1e9 }, good = { 0, 0.05, 1 } },
  backoff_max = { bad = { NAN, INF, -INF, -1, 1e9 }, good = { 5, 60 } },
  qps_window = { bad = { NAN, INF, -1, 0, 1e9 }, good = { 1, 1.05 } },
  retry_after_max = { bad = { NAN, INF, -1, 1e9 }, good = { 0, 30 } },
  token_refresh_margin = { bad = { NAN, INF, -1, 1e9 }, good = { 0, 200 } },
}

describe("hostile options (issue 10 class 4)", function()
  for name, cases in pairs(NUMERIC) do
    describe(name, function()
      for _, v in ipairs(cases.bad) do
        it("refuses " .. tostring(v) .. " with nil, err naming the option", function()
          local err = refused { [name] = v }
          assert.truthy(err.message:find(name, 1, true), err.message)
        end)
      end
      for _, v in ipairs(cases.good) do
        it("accepts " .. tostring(v), function()
          local extra = { [name] = v }
          if name == "backoff_max" then extra.backoff_base = 0 end
          accepted(extra)
        end)
      end
      it("raises on a string or a table (a programming error)", function()
        assert.has_error(function() recall.client(base { [name] = "5" }) end)
        assert.has_error(function() recall.client(base { [name] = { 5 } }) end)
        assert.has_error(function() recall.client(base { [name] = true }) end)
      end)
    end)
  end

  describe("unknown names", function()
    for typo, near in pairs { qsp = "qps", concurency = "concurrency", Timeout = "timeout",
      max_retry = "max_retries", robotcode = "robot_code", endpont = "endpoint", rediss = "redis" } do
      it("refuses '" .. typo .. "' with a hint naming '" .. near .. "'", function()
        local err = refused { [typo] = 5 }
        assert.truthy(err.message:find("'" .. typo .. "'", 1, true), err.message)
        assert.truthy(err.message:find("'" .. near .. "'", 1, true), err.message)
      end)
    end

    it("names the closest known option", function()
      assert.are.equal("qps", client_mod.closest_option("qsp"))
      assert.are.equal("concurrency", client_mod.closest_option("concurrenc"))
      assert.are.equal("ca_file", client_mod.closest_option("cafile"))
    end)

    it("raises on a non-string option name", function()
      local cfg = base {}
      cfg[1] = "x"
      assert.has_error(function() recall.client(cfg) end)
    end)
  end)

  describe("other options", function()
    it("refuses backoff_base above backoff_max", function()
      refused { backoff_base = 2, backoff_max = 1 }
    end)
    it("raises on wrong types of string, function and object options", function()
      for name, v in pairs { robot_code = 5, endpoint = true, on_sent = "f", random = 1, token_provider = "x",
        log = {}, transport = 5, limiter = "lim", token_store = 1 } do
        assert.has_error(function() recall.client(base { [name] = v }) end, nil, name)
      end
      assert.has_error(function() recall.client(base { limiter = {} }) end)
    end)
    it("accepts a limiter object with acquire and uses it", function()
      local asked = 0
      local T = fake.new()
      local c = accepted { transport = T, limiter = { acquire = function()
        asked = asked + 1
        return 0
      end } }
      assert(c:recall("cidLim", { "a", "b" }))
      assert.are.equal(1, asked)
    end)
  end)

  describe("the QPS limit is never exceeded", function()
    for _, q in ipairs { 1, 3, 20 } do
      it("at qps " .. q .. ": no window of one second holds more than qps starts", function()
        local T = fake.new { latency = 0.001 }
        local keys = {}
        for i = 1, 20 * (4 * q) do keys[i] = "q" .. i end
        local c = accepted { transport = T, qps = q, qps_window = 1, concurrency = 8 }
        assert(c:recall("cidQps", keys))
        local s = fake.recalls(T)
        assert.are.equal(4 * q, #s)
        for i = q + 1, #s do assert.is_true(s[i].at - s[i - q].at >= 1 - 1e-9) end
      end)
    end
  end)

  describe("keys", function()
    local bad_arrays = {
      sparse = { [1] = "a", [3] = "b" },
      ["a number"] = { "a", 42 },
      ["NaN"] = { "a", NAN },
      ["a table"] = { "a", {} },
      ["a boolean"] = { true },
      ["a hash part"] = { "a", x = "b" },
    }
    for what, keys in pairs(bad_arrays) do
      it("refuses an array holding " .. what .. " before anything is sent", function()
        local T = fake.new()
        local c = accepted { transport = T }
        local rep, err = c:recall("cidKeys", keys)
        assert.is_nil(rep)
        assert.are.equal("invalidParameter.param.invalid", err.code)
        rep, err = c:recall_groups { { conversation = "cidOk", keys = { "fine" } },
          { conversation = "cidKeys", keys = keys } }
        assert.is_nil(rep)
        assert.is_table(err)
        assert.are.equal(0, #T.sent)
      end)
    end

    it("refuses empty and missing key arrays", function()
      local c = accepted {}
      local rep, err = c:recall("cid", {})
      assert.is_nil(rep)
      assert.are.equal("invalidParameter.processQueryKey.missing", err.code)
      rep, err = c:recall("cid", nil)
      assert.is_nil(rep)
      assert.are.equal("invalidParameter.processQueryKey.missing", err.code)
    end)

    it("raises on a conversation of the wrong type only from core.plan's contract", function()
      local c = accepted {}
      local rep, err = c:recall(5, { "k" })
      assert.is_nil(rep)
      assert.are.equal("invalidParameter.param.invalid", err.code)
    end)
  end)
end)
