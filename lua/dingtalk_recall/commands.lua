--- dingtalk_recall.commands: :DingtalkRecall and :DingtalkUndo, their
-- arguments and their completion.  The selector words and durations are
-- dingtalk.recall.selector's, as /recall and the CLI read them.
local state = require "dingtalk_recall.state"
local results = require "dingtalk_recall.results"

local M = {}

local function plugin() return require "dingtalk_recall" end

local function split_args(fargs)
  local named, rest = {}, {}
  for _, a in ipairs(fargs) do
    local k, v = a:match("^(%a+)=(.+)$")
    if k == "conversation" or k == "cid" then
      named.conversation = v
    elseif k == "robot" then
      named.robot = v
    else
      rest[#rest + 1] = a
    end
  end
  return named, rest
end

--- :DingtalkRecall [conversation=CID] [robot=CODE] key...  With no key
-- and a range, the keys are the words of those lines.
function M.command_recall(o)
  local named, keys = split_args(o.fargs or {})
  if #keys == 0 and (o.range or 0) > 0 then
    for _, line in ipairs(vim.api.nvim_buf_get_lines(0, o.line1 - 1, o.line2, false)) do
      for w in line:gmatch("%S+") do keys[#keys + 1] = w end
    end
  end
  local title = "DingTalk recall"
  if #keys == 0 then
    return results.present(title, nil, "give the keys (processQueryKey) to recall, or a range of lines holding them",
      true)
  end
  local cid = named.conversation or state.options.conversation
  if not cid then
    return results.present(title, nil, "no conversation: give conversation=CID or setup{ conversation = ... }", true)
  end
  local job, err = plugin().recall(cid, keys, { robot_code = named.robot }, function(report, rerr)
    results.present(title, report, rerr)
  end)
  if job and state.running ~= job then
    vim.notify(title .. ": queued behind the running recall", vim.log.levels.INFO)
  end
  return job, err
end

--- "90", "90s", "10m", "1h30m", "2d" -> seconds | nil, message (the
-- selector module's durations, as /recall and the CLI read them).
function M.parse_duration(s)
  return require("dingtalk.recall.selector").duration(s)
end

--- Parses the arguments of :DingtalkUndo -> filter | nil, message.
-- The selector words (last N | since D | tag T | all) are the selector
-- module's; no words: the last message.
function M.parse_undo(fargs)
  local selector = require "dingtalk.recall.selector"
  local named, rest = split_args(fargs or {})
  local filter = { last = 1 }
  if #rest > 0 then
    local sel, why = selector.parse(rest)
    if not sel then return nil, why end
    filter = selector.filter(sel)
  end
  filter.conversation = named.conversation
  return filter
end

--- :DingtalkUndo [last N | since 1h30m | tag T | all] [conversation=CID]
function M.command_undo(o)
  local filter, msg = M.parse_undo(o.fargs)
  local title = "DingTalk undo"
  if not filter then return results.present(title, nil, msg, true) end
  if not filter.conversation then filter.conversation = state.options.conversation end
  if not (filter.last or filter.since or filter.tag) and not filter.conversation then
    return results.present(title, nil, "all needs a conversation: conversation=CID or setup{ conversation = ... }",
      true)
  end
  return plugin().undo(filter, function(report, err) results.present(title, report, err) end)
end

local function complete_from(list, lead)
  local out = {}
  for _, v in ipairs(list) do
    if v:sub(1, #lead) == lead then out[#out + 1] = v end
  end
  return out
end

local function conversation_items()
  local options = state.options
  local items = {}
  local seen = {}
  local function add(c)
    if type(c) == "string" and not seen[c] then
      seen[c] = true
      items[#items + 1] = "conversation=" .. c
    end
  end
  add(options.conversation)
  for _, c in ipairs(options.conversations or {}) do add(c) end
  if #items == 0 then items[1] = "conversation=" end
  return items
end

--- Completion of :DingtalkRecall (argument names, known conversations).
function M.complete_recall(lead)
  local robot = state.options.robot_code
  if lead:match("^robot=") then
    return robot and complete_from({ "robot=" .. robot }, lead) or {}
  end
  local items = conversation_items()
  items[#items + 1] = "robot="
  return complete_from(items, lead)
end

--- Completion of :DingtalkUndo.
function M.complete_undo(lead, line)
  local words = {}
  for w in line:gmatch("%S+") do words[#words + 1] = w end
  -- The word before the one being completed.
  local prev = words[#words]
  if lead ~= "" then prev = words[#words - 1] end
  if prev == "last" then return complete_from({ "1", "5", "10", "20" }, lead) end
  if prev == "since" then return complete_from({ "5m", "10m", "30m", "1h", "2h", "1d" }, lead) end
  if prev == "tag" then
    local tags = {}
    for _, t in ipairs(state.options.tags or {}) do tags[#tags + 1] = t end
    return complete_from(tags, lead)
  end
  local items = { "last", "since", "tag", "all" }
  for _, c in ipairs(conversation_items()) do items[#items + 1] = c end
  return complete_from(items, lead)
end

return M
