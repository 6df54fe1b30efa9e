-- luacheck: globals vim
-- Runs :DingtalkRecall once per step against the hostile server of
-- spec/helpers/hostile_http.lua: before step i, the server's answer becomes
-- $DTR_STEPS/answer_<i>.lua and the token $DTR_STEPS/token_<i>; after it,
-- the results buffer's lines, the summary and M.last.err's tostring are
-- recorded.  $DTR_OUT gets {steps = {...}}.
local root = os.getenv("DTR_ROOT")
local H = dofile(root .. "/spec/nvim/harness.lua")

local read = dofile(root .. "/spec/helpers/shell.lua").read -- nil when it cannot be read

H.guard(function()
  H.watchdog(tonumber(H.env("DTR_WATCHDOG", "60")))
  vim.cmd("runtime plugin/dingtalk_recall.lua")
  require("dingtalk_recall").setup { endpoint = H.env("DTR_URL"), robot_code = H.env("DTR_ROBOT"),
    conversation = H.env("DTR_CID"), config_file = false, max_retries = 0 }
  local dir, server_dir = H.env("DTR_STEPS"), H.env("DTR_SERVER_DIR")
  local n = tonumber(H.env("DTR_N"))
  local out, i = { steps = {} }, 0
  local function next_step()
    i = i + 1
    if i > n then return H.finish(out) end
    local f = assert(io.open(server_dir .. "/answer.lua", "wb"))
    f:write(assert(read(dir .. "/answer_" .. i .. ".lua")))
    f:close()
    vim.env.DINGTALK_ACCESS_TOKEN = read(dir .. "/token_" .. i)
    vim.cmd("DingtalkRecall k" .. i)
  end
  H.on_done(function(last)
    local lines = H.results_lines()
    out.steps[i] = { lines = lines, summary = last.summary, err = last.err and tostring(last.err) or nil,
      report_errors = {} }
    if last.report then
      for k, e in pairs(last.report.errors or {}) do
        out.steps[i].report_errors[#out.steps[i].report_errors + 1] = k .. "=" .. tostring(e)
      end
    end
    vim.schedule(function() H.guard(next_step) end)
  end)
  vim.schedule(function() H.guard(next_step) end)
end)
