--- dingtalk.recall.selector: durations and "which recorded messages",
-- parsed in one place for every front-end (rules' /recall, the CLI's
-- --last/--since/--tag/--all and --ttl, Neovim's :DingtalkUndo).
--
--   local selector = require "dingtalk.recall.selector"
--   selector.duration("1h30m")        --> 5400        (90s, 10m, 1h30m, 2d, 1.5m, a bare 45 = seconds)
--   selector.parse("since 1h30m")     --> {kind = "since", seconds = 5400}
--   selector.parse { "last", "3" }    --> {kind = "last", n = 3}   (words, as a command line splits them)
--   selector.filter(sel [, now])      --> {since = 5400} | {last = 3} | {tag = "deploy"} | {}
--
-- A duration is finite, positive and at most MAX_DURATION (366 days); a
-- count is a whole number from 1 to MAX_LAST; a tag is one word without
-- control characters, at most MAX_TAG bytes.  Every refusal is nil and a
-- message for a human (no error object: the caller knows its context).
local M = {}

M.MAX_DURATION = 366 * 86400
M.MAX_LAST = 500
M.MAX_TAG = 128
M.KINDS = { last = true, since = true, tag = true, all = true }

local UNITS = { s = 1, m = 60, h = 3600, d = 86400 }
local ORDER = { d = 1, h = 2, m = 3, s = 4 }
local HOW = "use s, m, h or d, e.g. 90s, 10m or 1h30m"

-- For messages: the input, cut and without control characters.
local function shown(s)
  s = tostring(s)
  if #s > 40 then s = s:sub(1, 40) .. "..." end
  return (s:gsub("[%c\127-\255]", "?"))
end

local function bounded(x, text)
  if x ~= x or x == math.huge or x == -math.huge then
    return nil, "'" .. text .. "' is not a finite duration"
  end
  if x <= 0 then return nil, "a duration must be positive ('" .. text .. "')" end
  if x > M.MAX_DURATION then
    return nil, "'" .. text .. "' is longer than " .. (M.MAX_DURATION / 86400) .. " days"
  end
  return x
end

--- duration(s) -> seconds | nil, message.  s: "90s", "10m", "1h30m", "2d",
-- "1.5m", "45" (seconds), or a number of seconds.  Units in the order
-- d, h, m, s, each at most once; case and surrounding blanks ignored.
function M.duration(s)
  if type(s) == "number" then return bounded(s, tostring(s)) end
  if type(s) ~= "string" then return nil, "a duration must be a string such as 10m" end
  local text = s:lower():match("^%s*(.-)%s*$")
  if #text > 32 then return nil, "'" .. shown(text) .. "' is not a duration (" .. HOW .. ")" end
  if text:match("^%d+$") then return bounded(tonumber(text), text) end
  if text == "" or not text:match("^[%d%.smhd]+$") then
    return nil, "'" .. shown(text) .. "' is not a duration (" .. HOW .. ")"
  end
  local total, rest, last = 0, text, 0
  while rest ~= "" do
    local num, unit, tail = rest:match("^(%d+%.?%d*)([smhd])(.*)$")
    if not num or ORDER[unit] <= last then
      return nil, "'" .. shown(text) .. "' is not a duration (" .. HOW .. ")"
    end
    last = ORDER[unit]
    total = total + tonumber(num) * UNITS[unit]
    rest = tail
  end
  return bounded(total, text)
end

--- count(s) -> n | nil, message: a whole number from 1 to MAX_LAST.
function M.count(s)
  local text = type(s) == "number" and tostring(s) or s
  if type(text) ~= "string" or not text:match("^%s*%d+%s*$") then
    return nil, "'" .. shown(s) .. "' is not a count (a whole number from 1 to " .. M.MAX_LAST .. ")"
  end
  local n = tonumber(text)
  if n < 1 or n > M.MAX_LAST then
    return nil, "a count must be a whole number from 1 to " .. M.MAX_LAST .. " (not " .. shown(text) .. ")"
  end
  return n
end

--- tag(s) -> tag | nil, message.
function M.tag(s)
  if type(s) ~= "string" or s == "" then return nil, "a tag must be a non-empty word" end
  if #s > M.MAX_TAG then return nil, "a tag must be at most " .. M.MAX_TAG .. " bytes" end
  if s:find("[%c%s\127]") or require("dingtalk.recall.report.render").escape(s) ~= s then
    return nil, "a tag must be one word of valid UTF-8 without control characters"
  end
  return s
end

--- parse(input) -> sel | nil, message.  input: a string ("last 3",
-- "since 1h30m", "tag deploy", "all", "last" = last 1) or an array of its
-- words.  sel = {kind = "last", n} | {kind = "since", seconds} |
-- {kind = "tag", tag} | {kind = "all"}.
function M.parse(input)
  local w = {}
  if type(input) == "string" then
    for x in input:gmatch("%S+") do w[#w + 1] = x end
  elseif type(input) == "table" then
    for i = 1, #input do
      if type(input[i]) ~= "string" then return nil, "a selector is made of words (strings)" end
      w[i] = input[i]
    end
  else
    return nil, "a selector is a string such as 'last 3', 'since 10m', 'tag T' or 'all'"
  end
  local kind = w[1] and w[1]:lower()
  if kind == "last" then
    if #w > 2 then return nil, "usage: last [N]" end
    if w[2] == nil then return { kind = "last", n = 1 } end
    local n, why = M.count(w[2])
    if not n then return nil, "last: " .. why end
    return { kind = "last", n = n }
  elseif kind == "since" then
    if #w ~= 2 then return nil, "usage: since DURATION (" .. HOW .. ")" end
    local secs, why = M.duration(w[2])
    if not secs then return nil, "since: " .. why end
    return { kind = "since", seconds = secs }
  elseif kind == "tag" then
    if #w ~= 2 then return nil, "usage: tag T (one word)" end
    local t, why = M.tag(w[2])
    if not t then return nil, "tag: " .. why end
    return { kind = "tag", tag = t }
  elseif kind == "all" then
    if #w ~= 1 then return nil, "usage: all" end
    return { kind = "all" }
  elseif kind == nil then
    return nil, "no selector: last N, since DURATION, tag T or all"
  end
  return nil, "unknown selector '" .. shown(w[1]) .. "' (last N | since DURATION | tag T | all)"
end

--- filter(sel [, now]) -> the ledger's filter for it ({last = n},
-- {since = seconds}, {tag = t} or {} for all).  now is accepted for
-- callers that keep an absolute cut; the ledger takes seconds ago.
function M.filter(sel, now) -- luacheck: ignore now
  if type(sel) ~= "table" or not M.KINDS[sel.kind] then error("selector.filter expects a parsed selector", 2) end
  if sel.kind == "last" then return { last = sel.n } end
  if sel.kind == "since" then return { since = sel.seconds } end
  if sel.kind == "tag" then return { tag = sel.tag } end
  return {}
end

return M
