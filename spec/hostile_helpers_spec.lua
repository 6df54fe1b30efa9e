-- The test helpers that run children fail the test when a child dies of a
-- signal: a crash anywhere in the suite cannot hide behind a test that
-- only looked at the child's output (issue 10, end of class 8).
local shell = require "spec.helpers.shell"
local nvim = require "spec.helpers.nvim"

local q = shell.quote

describe("test helpers: a child's crash fails the test", function()
  local dir
  setup(function() dir = shell.trim(shell.sh("mktemp -d ${TMPDIR:-/tmp}/dtr-helpers.XXXXXX")) end)
  teardown(function() if dir and dir:match("dtr%-helpers") then shell.sh("rm -rf " .. q(dir)) end end)

  it("shell.sh raises for a child killed by SIGSEGV", function()
    local ok, err = pcall(shell.sh, "sh -c 'kill -SEGV $$'")
    assert.is_false(ok)
    assert.matches("crashed", err)
    assert.matches("signal 11", err)
  end)

  it("shell.sh raises for SIGABRT and SIGBUS too", function()
    for _, sig in ipairs { "ABRT", "BUS" } do
      local ok, err = pcall(shell.sh, "sh -c 'kill -" .. sig .. " $$'")
      assert.is_false(ok, sig)
      assert.matches("crashed", err)
    end
  end)

  it("shell.sh raises when the crash is followed by a command that succeeds", function()
    -- The exit status is 0; the shell's "Segmentation fault" line is what tells.
    local ok, err = pcall(shell.sh, "sh -c 'kill -SEGV $$'; echo still here")
    assert.is_false(ok)
    assert.matches("Segmentation fault", err)
  end)

  it("shell.sh raises when the crash is in a subshell whose stderr is thrown away", function()
    -- The outer shell reports the subshell's death on the helper's stderr.
    -- (A command that sends its own child's report to /dev/null and then
    -- succeeds cannot be caught by anyone: dash prints it there.)
    local ok = pcall(shell.sh, "(sh -c 'kill -SEGV $$') 2>/dev/null; true")
    assert.is_false(ok)
  end)

  it("shell.sh raises on a sanitizer report", function()
    local ok = pcall(shell.sh, "echo '==1==ERROR: AddressSanitizer: heap-use-after-free'")
    assert.is_false(ok)
  end)

  it("shell.sh still returns ordinary failures and words that only look like signals", function()
    local out, rc = shell.sh("echo 'Aborted by user: not a crash'; exit 3")
    assert.are.equal(3, rc)
    assert.matches("Aborted by user", out)
    local _, rc2 = shell.sh("timeout 0.2 sleep 5")
    assert.are.equal(124, rc2)
  end)

  it("shell.sh lets a test that kills on purpose see the status", function()
    local _, rc = shell.sh("sh -c 'kill -SEGV $$'", { signal_ok = true })
    assert.are.equal(139, rc)
  end)

  it("the Neovim runner fails when Neovim crashes after writing its result", function()
    -- A stand-in for nvim: writes a good result, then dies of SIGSEGV.
    local fake = dir .. "/fake-nvim"
    shell.write_file(fake, "#!/bin/sh\nprintf '{\"ok\":true}' > \"$DTR_OUT\"\nkill -SEGV $$\n", "755")
    local ok, err = pcall(nvim.run, "recall", {}, { nvim = fake })
    assert.is_false(ok)
    assert.matches("crashed", tostring(err))
  end)

  it("the Neovim runner fails on a non-zero exit after a good result", function()
    local fake = dir .. "/fake-nvim-exit"
    shell.write_file(fake, "#!/bin/sh\nprintf '{\"ok\":true}' > \"$DTR_OUT\"\nexit 1\n", "755")
    local ok, err = pcall(nvim.run, "recall", {}, { nvim = fake })
    assert.is_false(ok)
    assert.matches("status 1", tostring(err))
    -- and passes when the same stand-in exits 0
    local good = dir .. "/fake-nvim-ok"
    shell.write_file(good, "#!/bin/sh\nprintf '{\"ok\":true}' > \"$DTR_OUT\"\n", "755")
    local res = nvim.run("recall", {}, { nvim = good })
    assert.is_true(res.ok)
  end)
end)
