-- spec/helpers/nvim_steps.lua: runs spec/nvim/hostile_steps.lua in a
-- headless Neovim against a hostile_http server: one :DingtalkRecall per
-- step (an answer table, with an optional `token`).  Fails on a crash or a
-- signal; returns the decoded {steps = {{lines, summary, err}, ...}}.
local shell = require "spec.helpers.shell"
local hh = require "spec.helpers.hostile_http"
local q, trim = shell.quote, shell.trim

local M = {}

function M.run(root, srv, steps, o)
  local dir = trim(shell.sh("mktemp -d ${TMPDIR:-/tmp}/dtr-nvim-steps.XXXXXX"))
  for i, st in ipairs(steps) do
    local a = {}
    for k, v in pairs(st) do if k ~= "token" then a[k] = v end end
    shell.write_file(dir .. "/answer_" .. i .. ".lua", "return " .. hh.serialize(a) .. "\n")
    shell.write_file(dir .. "/token_" .. i, st.token or o.token)
  end
  local out = dir .. "/out.json"
  local vars = { "PATH=" .. q(os.getenv("PATH")), "HOME=" .. q(dir), "DTR_ROOT=" .. q(root), "DTR_OUT=" .. q(out),
    "DTR_URL=" .. q(srv.url), "DTR_ROBOT=" .. q(o.robot), "DTR_CID=" .. q(o.cid), "DTR_STEPS=" .. q(dir),
    "DTR_SERVER_DIR=" .. q(srv.dir), "DTR_N=" .. #steps, "XDG_DATA_HOME=" .. q(dir .. "/data") }
  local cmd = "env -i " .. table.concat(vars, " ") .. " timeout 120 nvim --headless -u NONE -i NONE -n" ..
    " --cmd " .. q("set rtp^=" .. root) .. " -c " .. q("luafile " .. root .. "/spec/nvim/hostile_steps.lua") ..
    " </dev/null"
  local log, rc = shell.sh(cmd)
  local text = shell.read_file(out)
  shell.sh("rm -rf " .. q(dir))
  assert(rc < 128 and rc ~= 124, "nvim died or hung (rc " .. rc .. "):\n" .. log)
  assert(text ~= "", "nvim wrote no result (rc " .. rc .. "):\n" .. log)
  local res = require("cjson").decode(text)
  assert(res.error == nil, "the nvim script failed: " .. tostring(res.error) .. "\n" .. log)
  return res
end

return M
