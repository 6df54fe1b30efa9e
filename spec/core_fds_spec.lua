-- Issue 9: the multi handle is driven through libcurl's socket and timer
-- callbacks, so sockets numbered 1024 or above (which curl_multi_fdset
-- hides) are reported by fds() and waited on with poll().  A child with
-- `ulimit -n 4096` opens 1100 files first, so its sockets land above 1024.
local sim = require "spec.helpers.sim"
local shell = require "spec.helpers.shell"

describe("a process with more than 1024 open files", function()
  local s
  setup(function() s = sim.start { tls = true, latency = 0.2 } end)
  teardown(function() if s then s:stop() end end)

  it("still completes a recall through the step API, its sockets reported", function()
    local keys = s:seed_keys(3, "cidFds")
    local lua = os.getenv("DINGTALK_RECALL_TEST_LUA") or "lua5.1"
    local cmd = ("ulimit -n 4096 && %s spec/fixtures/many_fds_child.lua %s %s %s %s %s %s"):format(
      lua, shell.quote(s.url), shell.quote(s.token), shell.quote(s.ca_file or "-"), shell.quote(s.robot),
      "cidFds", shell.quote(table.concat(keys, ",")))
    local out, rc = shell.sh(cmd)
    assert.are.equal(0, rc, out)
    local maxfd, n, err = out:match("maxfd=(%-?%d+) recalled=(%-?%d+) err=(%S+)")
    assert.is_truthy(maxfd, out)
    assert.are.equal("-", err)
    assert.are.equal(3, tonumber(n))
    assert.is_true(tonumber(maxfd) >= 1024, "the highest socket reported was " .. maxfd)
    for _, k in ipairs(keys) do assert.are.equal("recalled", s:key(k).state) end
  end)
end)
