--- dingtalk.recall.report.render: the one place where text from the
-- network or a caller becomes output.  Every front-end (the CLI, the chat
-- replies of the rules, the Neovim results buffer, bot logs) renders
-- through it, so escaping and redaction are written once.
--
--   local render = require "dingtalk.recall.report.render"
--   render.escape(s)                     -- one safe line: controls, C1, bidi, bad UTF-8 -> visible escapes
--   render.redact(s, secrets)            -- every secret (any length) -> "***"; URL passwords and tokens too
--   render.redact_error(err, secrets)    -- the same over every text field of an error object, in place
--   render.render(report, "text"|"json"|"chat"|"lines", opts)
--   render.error(err, "text"|"json"|"chat", opts)
--   render.json(value, opts)             -- always valid UTF-8 JSON, sorted keys, every string redacted
--
-- secrets: a string, or an array of strings (nil and "" entries are
-- skipped).  opts.secrets is passed to every redaction.
local M = {}

local byte, char, format, concat = string.byte, string.char, string.format, table.concat
local floor, huge = math.floor, math.huge

---------------------------------------------------------------------------
-- UTF-8
---------------------------------------------------------------------------

-- Code points that reorder or hide text on a terminal (bidi controls).
local function invisible(cp)
  return (cp >= 0x80 and cp <= 0x9f)                       -- C1 (U+009B is CSI)
    or cp == 0x200e or cp == 0x200f or (cp >= 0x202a and cp <= 0x202e)
    or (cp >= 0x2066 and cp <= 0x2069) or cp == 0x061c
end

-- Walks s; calls ascii(i, b) for a byte < 0x80, cp(i, j, code) for a valid
-- sequence s[i..j], bad(i, b) for a byte that starts no valid sequence.
local function walk(s, on_ascii, on_cp, on_bad)
  local i, n = 1, #s
  while i <= n do
    local c = byte(s, i)
    if c < 0x80 then
      on_ascii(i, c)
      i = i + 1
    else
      local len, min, cp
      if c >= 0xc2 and c <= 0xdf then len, min, cp = 2, 0x80, c - 0xc0
      elseif c >= 0xe0 and c <= 0xef then len, min, cp = 3, 0x800, c - 0xe0
      elseif c >= 0xf0 and c <= 0xf4 then len, min, cp = 4, 0x10000, c - 0xf0
      end
      local ok = len ~= nil and i + len - 1 <= n
      if ok then
        for k = 1, len - 1 do
          local d = byte(s, i + k)
          if d < 0x80 or d > 0xbf then ok = false break end
          cp = cp * 64 + (d - 0x80)
        end
        ok = ok and cp >= min and cp <= 0x10ffff and not (cp >= 0xd800 and cp <= 0xdfff)
      end
      if ok then
        on_cp(i, i + len - 1, cp)
        i = i + len
      else
        on_bad(i, c)
        i = i + 1
      end
    end
  end
end

--- valid_utf8(s) -> boolean
function M.valid_utf8(s)
  if not s:find("[\128-\255]") then return true end
  local ok = true
  walk(s, function() end, function() end, function() ok = false end)
  return ok
end

---------------------------------------------------------------------------
-- escape
---------------------------------------------------------------------------

--- escape(s) -> one line safe for a terminal, a log line or a Neovim
-- buffer line: C0 controls (NUL, ESC, CR, LF, TAB...), DEL and bytes of
-- invalid UTF-8 become \xNN; C1 and bidi controls become \u{NNNN}.
-- Valid UTF-8 text (Chinese, emoji) is kept.  Non-strings are tostring'd.
function M.escape(s)
  if type(s) ~= "string" then s = tostring(s) end
  if not s:find("[%c\127-\255]") then return s end
  local out = {}
  walk(s, function(_, c)
    if c < 0x20 or c == 0x7f then out[#out + 1] = format("\\x%02x", c) else out[#out + 1] = char(c) end
  end, function(i, j, cp)
    if invisible(cp) then out[#out + 1] = format("\\u{%04x}", cp) else out[#out + 1] = s:sub(i, j) end
  end, function(_, c)
    out[#out + 1] = format("\\x%02x", c)
  end)
  return concat(out)
end

-- Redaction (report/redact.lua), re-exported: every rendering redacts.
local redaction = require "dingtalk.recall.report.redact"
M.redact, M.redact_error, M.secrets_of = redaction.redact, redaction.redact_error, redaction.secrets_of

--- safe(s, secrets): redacted, then escaped.  The one composition every
-- rendering uses.
local function safe(s, secrets)
  return M.escape(M.redact(s, secrets))
end
M.safe = safe

---------------------------------------------------------------------------
-- JSON
---------------------------------------------------------------------------
local ARRAY = {}
--- array(t): marks t as a JSON array (so an empty one prints []).
function M.array(t) return setmetatable(t or {}, ARRAY) end

local JSON_ESC = { ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f", ["\n"] = "\\n",
  ["\r"] = "\\r", ["\t"] = "\\t" }

-- A JSON string literal: valid UTF-8 always (a byte of invalid UTF-8
-- becomes the text \xNN), C0/DEL/C1/bidi as \uNNNN, so printing the
-- document on a terminal shows no raw control either.
local function json_string(s)
  if not s:find('[%c"\\\127-\255]') then return '"' .. s .. '"' end
  local out = { '"' }
  walk(s, function(_, c)
    local ch = char(c)
    local e = JSON_ESC[ch]
    if e then out[#out + 1] = e
    elseif c < 0x20 or c == 0x7f then out[#out + 1] = format("\\u%04x", c)
    else out[#out + 1] = ch end
  end, function(i, j, cp)
    if invisible(cp) then out[#out + 1] = format("\\u%04x", cp) else out[#out + 1] = s:sub(i, j) end
  end, function(_, c)
    out[#out + 1] = format("\\\\x%02x", c)
  end)
  out[#out + 1] = '"'
  return concat(out)
end
M.json_string = json_string

local function encode(v, out, secrets, depth)
  local t = type(v)
  if depth > 32 then
    out[#out + 1] = "null"
  elseif v == nil then
    out[#out + 1] = "null"
  elseif t == "boolean" then
    out[#out + 1] = tostring(v)
  elseif t == "number" then
    if v ~= v or v == huge or v == -huge then
      out[#out + 1] = "null"
    elseif v == floor(v) and math.abs(v) < 1e15 then
      out[#out + 1] = format("%d", v)
    else
      out[#out + 1] = format("%.6g", v)
    end
  elseif t == "string" then
    out[#out + 1] = json_string(M.redact(v, secrets))
  elseif t == "table" and getmetatable(v) == ARRAY then
    out[#out + 1] = "["
    for i = 1, #v do
      if i > 1 then out[#out + 1] = "," end
      encode(v[i], out, secrets, depth + 1)
    end
    out[#out + 1] = "]"
  elseif t == "table" then
    local keys, orig = {}, {}
    for k in pairs(v) do
      local sk = tostring(k)
      keys[#keys + 1] = sk
      orig[sk] = k
    end
    table.sort(keys)
    out[#out + 1] = "{"
    for i, k in ipairs(keys) do
      if i > 1 then out[#out + 1] = "," end
      out[#out + 1] = json_string(k) -- names are the caller's; data maps redact their keys first
      out[#out + 1] = ":"
      encode(v[orig[k]], out, secrets, depth + 1)
    end
    out[#out + 1] = "}"
  else
    out[#out + 1] = "null"
  end
  return out
end

--- json(value, opts) -> one line of valid UTF-8 JSON; object keys sorted,
-- arrays marked with array(); every string value redacted (object keys
-- are escaped, not redacted: a map keyed by data is redacted by its maker,
-- as render(report, "json") does for failed and errors).
function M.json(v, opts)
  return concat(encode(v, {}, opts and opts.secrets, 0))
end

---------------------------------------------------------------------------
-- errors
---------------------------------------------------------------------------

--- error_table(err, secrets) -> a plain table for JSON output.
function M.error_table(e, secrets)
  if type(e) ~= "table" then return { code = "error", message = M.redact(tostring(e), secrets) } end
  return {
    code = e.code, message = e.message, status = e.status ~= 0 and e.status or nil,
    request_id = e.request_id, retryable = e.retryable and true or false, hint = e.hint,
  }
end

--- error_text(err, secrets) -> "code: message (request id R)" in one safe line.
function M.error_text(e, secrets)
  if type(e) ~= "table" then return safe(tostring(e), secrets) end
  local s = safe(e.code or "error", secrets)
  if e.message and e.message ~= "" then s = s .. ": " .. safe(e.message, secrets) end
  if e.status and e.status ~= 0 then s = s .. " (HTTP " .. tostring(floor(tonumber(e.status) or 0)) .. ")" end
  if e.request_id and e.request_id ~= "" then s = s .. " (request id " .. safe(e.request_id, secrets) .. ")" end
  return s
end

--- error(err, fmt, opts) -> the rendering of an error.  "text": one line
-- (opts.context prefixed) plus "  hint: ..." when it has one; "json": a
-- document {error = {...}, exit_code = opts.exit_code}; "chat": one line.
function M.error(e, fmt, opts)
  opts = opts or {}
  local secrets = opts.secrets
  if fmt == "json" then
    local t = M.error_table(e, secrets)
    if opts.context and opts.context ~= t.message then t.context = opts.context end
    return M.json({ error = t, exit_code = opts.exit_code, command = opts.command }, opts)
  end
  local text = M.error_text(e, secrets)
  if opts.context then text = safe(opts.context, secrets) .. ": " .. text end
  if fmt == "text" and type(e) == "table" and e.hint and e.hint ~= "" then
    text = text .. "\n  hint: " .. safe(e.hint, secrets)
  end
  return text
end

---------------------------------------------------------------------------
-- reports
---------------------------------------------------------------------------

local function sorted_keys(t)
  local ks = {}
  for k in pairs(t or {}) do ks[#ks + 1] = k end
  table.sort(ks, function(a, b) return tostring(a) < tostring(b) end)
  return ks
end

local function count(t)
  local n = 0
  for _ in pairs(t or {}) do n = n + 1 end
  return n
end

local function plural(n, word)
  return n .. " " .. word .. (n == 1 and "" or "s")
end

-- "text": the CLI's listing.
local function render_text(r, opts)
  local secrets = opts.secrets
  local out = {}
  local nfail, nerr = count(r.failed), count(r.errors)
  local total = r.total or (#(r.recalled or {}) + nfail + nerr)
  local head = format("recalled %d of %d keys", #(r.recalled or {}), total)
  if r.requests then
    head = head .. format(" (%d request%s, %d retr%s, %.2f s)", r.requests,
      r.requests == 1 and "" or "s", r.retries or 0, r.retries == 1 and "y" or "ies", r.elapsed or 0)
  end
  out[1] = head
  local already = {}
  for _, k in ipairs(r.already_recalled or {}) do already[k] = true end
  for _, k in ipairs(r.recalled or {}) do
    out[#out + 1] = "recalled  " .. safe(k, secrets) .. (already[k] and "  (it already was)" or "")
  end
  for _, k in ipairs(sorted_keys(r.failed)) do
    out[#out + 1] = "failed    " .. safe(k, secrets) .. "  " .. safe(r.failed[k], secrets)
  end
  for _, k in ipairs(sorted_keys(r.errors)) do
    out[#out + 1] = "error     " .. safe(k, secrets) .. "  " .. M.error_text(r.errors[k], secrets)
  end
  for _, k in ipairs(r.expired or {}) do out[#out + 1] = "expired   " .. safe(k, secrets) .. "  too old to recall" end
  return out
end

-- "lines": the Neovim results buffer (lines hold no newline, ever).
local function render_lines(r, opts)
  local secrets = opts.secrets
  local title = opts.title or "DingTalk recall"
  local recalled, failed, errors = r.recalled or {}, r.failed or {}, r.errors or {}
  local expired = r.expired or {}
  local nf, ne, nx = count(failed), count(errors), #expired
  local total = r.total or (#recalled + nf + ne + nx)
  local summary = format("%s: %d recalled, %d failed, %d errors%s (of %d keys)", safe(title), #recalled, nf, ne,
    nx > 0 and (", " .. nx .. " expired") or "", total)
  if r.elapsed then summary = summary .. format(" in %.2f s", r.elapsed) end
  local lines = { summary }
  if r.requests then
    lines[#lines + 1] = format("requests %d, retries %d, throttled %d, token fetches %d", r.requests,
      r.retries or 0, r.throttled or 0, r.token_fetches or 0)
  end
  lines[#lines + 1] = ""
  lines[#lines + 1] = format("Recalled (%d)", #recalled)
  for _, k in ipairs(recalled) do lines[#lines + 1] = "  " .. safe(k, secrets) end
  lines[#lines + 1] = format("Failed (%d)", nf)
  for _, k in ipairs(sorted_keys(failed)) do
    lines[#lines + 1] = "  " .. safe(k, secrets) .. "  " .. safe(failed[k], secrets)
  end
  lines[#lines + 1] = format("Errors (%d)", ne)
  for _, k in ipairs(sorted_keys(errors)) do
    lines[#lines + 1] = "  " .. safe(k, secrets) .. "  " .. M.error_text(errors[k], secrets)
  end
  if nx > 0 then
    lines[#lines + 1] = format("Expired (%d): past the recall window, not sent", nx)
    for _, k in ipairs(expired) do lines[#lines + 1] = "  " .. safe(k, secrets) end
  end
  return lines, summary
end

-- "chat": one short reply for a group.
local function render_chat(r, opts)
  local secrets = opts.secrets
  local ok = #(r.recalled or {})
  local failed, errors = count(r.failed), count(r.errors)
  local expired = #(r.expired or {})
  local total = ok + failed + errors
  local parts = {}
  if failed + errors == 0 then
    parts[1] = "Recalled " .. plural(ok, "message") .. "."
  else
    parts[1] = "Recalled " .. ok .. " of " .. plural(total, "message") .. "; " .. (failed + errors) ..
      " could not be recalled"
    local reason
    local fk = sorted_keys(r.failed)[1]
    if fk ~= nil then
      reason = safe(r.failed[fk], secrets)
    else
      local ek = sorted_keys(r.errors)[1]
      local e = ek ~= nil and r.errors[ek]
      if e then reason = safe(type(e) == "table" and (e.code or "error") or e, secrets) end
    end
    parts[1] = parts[1] .. (reason and (" (" .. reason .. ")") or "") .. "."
  end
  if expired > 0 then
    parts[#parts + 1] = plural(expired, "message") .. " " .. (expired == 1 and "was" or "were") ..
      " too old to recall."
  end
  return concat(parts, " ")
end

-- "json": the CLI's document.
local function render_json(r, opts)
  local secrets = opts.secrets
  local errors, failed = {}, {}
  for k, e in pairs(r.errors or {}) do errors[M.redact(k, secrets)] = M.error_table(e, secrets) end
  for k, why in pairs(r.failed or {}) do failed[M.redact(k, secrets)] = tostring(why) end
  local doc = {
    recalled = M.array(r.recalled or {}), failed = failed, errors = errors,
    expired = M.array(r.expired or {}), already_recalled = M.array(r.already_recalled or {}),
    ok = opts.ok, total = r.total or 0, requests = r.requests, retries = r.retries,
    throttled = r.throttled, elapsed = r.elapsed, exit_code = opts.exit_code, command = opts.command,
    note = opts.note,
  }
  if doc.ok == nil then doc.ok = r.ok and true or false end
  return M.json(doc, opts)
end

--- render(report, fmt, opts) -> string (or lines, summary for "lines").
-- fmt: "text" (terminal listing), "json" (one document), "chat" (one
-- reply), "lines" (Neovim buffer: an array of lines and the summary).
-- opts.secrets: redacted everywhere; opts.command, opts.exit_code,
-- opts.ok, opts.note (json); opts.title (lines).
function M.render(r, fmt, opts)
  opts = opts or {}
  if type(r) ~= "table" then error("render expects a report table", 2) end
  if fmt == "text" then return concat(render_text(r, opts), "\n") .. "\n" end
  if fmt == "json" then return render_json(r, opts) end
  if fmt == "chat" then return render_chat(r, opts) end
  if fmt == "lines" then return render_lines(r, opts) end
  error("render: format must be \"text\", \"json\", \"chat\" or \"lines\"", 2)
end

return M
