-- luacheck: std lua54
-- Fuzz target "http": core.http_head and core.http_chunks, the head of an
-- HTTP/1.x answer and a chunked body, read from the bytes received so far
-- (the OpenResty transport's reader).  Input: the flags, then the answer's
-- bytes (raw, unsplit).  Flag bits 0..7: the size of the pieces the bytes
-- come in (1 + the value); bit 8: the answer starts after other bytes
-- (pos > 1); bit 9: the body's cap is 64 bytes (else 1 MB); bit 10: the
-- bytes are a chunked body alone (no head).  A head that says chunked is
-- followed by its body.  Invariants, for each of the two functions:
--   * never raises; one of its documented answers, in their types and
--     ranges (http_head: a head, more with scanned and pos, or a known
--     refusal [with one of the two phases]; http_chunks: the end and the
--     data, more with pos, data and a state, or a known refusal);
--   * the same answer with the bytes given at once and in pieces, each
--     call reading on from what the last one said;
--   * the same answer as a reference written here with Lua patterns.
local dir = ...
local C = dofile(dir .. "/check.lua")
local core, fail = C.core, C.fail

local MAX = 102400
local MESSAGES = {
  ["the server's reply is not HTTP/1.x"] = true, ["header line too long"] = true,
  ["the answer's headers are too large"] = true, ["the answer has a bad Content-Length"] = true,
}
local PHASES = { ["reading the status line"] = true, ["reading the headers"] = true }

-- A line of buf, [p, lf), one CR before its LF dropped.
local function cut(buf, p, lf)
  local line = buf:sub(p, lf - 1)
  if line:sub(-1) == "\r" then line = line:sub(1, -2) end
  return line
end

-- The reference: the answer in buf from pos on, whole.
local function reference(buf, pos)
  while true do
    local lines, p, stop = {}, pos, nil
    while true do
      local lf = buf:find("\n", p, true)
      if not lf then break end
      local line = cut(buf, p, lf)
      if #lines == 0 then
        if not line:match("^HTTP/%d%.%d %d%d%d") then return { nil, "the server's reply is not HTTP/1.x" } end
      elseif line == "" then
        stop = lf + 1
        break
      end
      lines[#lines + 1] = line
      p = lf + 1
    end
    if not stop then return { "more" } end
    local version, code = lines[1]:match("^HTTP/(%d%.%d) (%d%d%d)")
    local status = tonumber(code)
    local bytes, rid, ctype, length, chunked, conn = 0, nil, nil, nil, false, nil
    for i = 2, #lines do
      local h = lines[i]
      bytes = bytes + #h
      if bytes > MAX then return { nil, "the answer's headers are too large" } end
      local name, value = h:match("^(.-):(.*)$")
      if name then
        name, value = name:lower(), value:match("^%s*(.-)%s*$")
        if name == "x-acs-request-id" then
          rid = value
        elseif name == "content-type" then
          ctype = value
        elseif name == "content-length" then
          local n = value:match("^%d+$") and tonumber(value)
          if not n or (length and length ~= n) then return { nil, "the answer has a bad Content-Length" } end
          length = n
        elseif name == "transfer-encoding" then
          chunked = value:lower():find("chunked%s*$") ~= nil
        elseif name == "connection" then
          conn = value:lower()
        end
      end
    end
    if status >= 200 or status == 101 then
      local reusable = (version == "1.1" and not (conn and conn:find("close", 1, true)))
        or (version == "1.0" and conn ~= nil and conn:find("keep-alive", 1, true) ~= nil)
      return { stop, status, reusable, length, chunked, rid, ctype }
    end
    pos = stop
  end
end

local function check_shape(r, buf, pos)
  local a = r[1]
  if a == nil then
    if not MESSAGES[r[2]] then fail("refused with %q", tostring(r[2])) end
    if r[3] ~= nil and not PHASES[r[3]] then fail("phase %q", tostring(r[3])) end
  elseif a == false then
    if math.type(r[3]) ~= "integer" or r[3] < pos or r[3] > #buf + 1 then fail("pos %s", tostring(r[3])) end
    if math.type(r[2]) ~= "integer" or r[2] < 0 or r[3] + r[2] > #buf + 1 then fail("scanned %s", tostring(r[2])) end
    if not PHASES[r[4]] or (r[4] == "reading the status line") ~= (r[2] == 0) then
      fail("phase %q with %d scanned", tostring(r[4]), r[2])
    end
  else
    if math.type(a) ~= "integer" or a <= pos or a > #buf + 1 then fail("stop %s", tostring(a)) end
    local status = r[2]
    if math.type(status) ~= "integer" or status < 101 or status > 999 or (status < 200 and status ~= 101) then
      fail("status %s", tostring(status))
    end
    if type(r[3]) ~= "boolean" or type(r[5]) ~= "boolean" then fail("reusable or chunked not a boolean") end
    local n = r[4]
    if n ~= nil and (type(n) ~= "number" or n < 0 or n ~= math.floor(n)) then fail("length %s", tostring(n)) end
    for i = 6, 7 do
      local v = r[i]
      if v ~= nil and (type(v) ~= "string" or v:find("\n", 1, true) or v:find("^%s") or v:find("%s$")) then
        fail("a header value %q", tostring(v))
      end
    end
  end
end

-- Lengths past 2^31 come as floats, maybe not the nearest one: compare them as "large".
local function same(a, b)
  if type(a) == "number" and type(b) == "number" and a > 2147483647 and b > 2147483647 then return true end
  return a == b
end

-- The chunked body: a reference, whole, from pos on.
local CHUNK_LINE = 4096
local CHUNK_MESSAGES = {
  ["the answer has a bad chunk size"] = true, ["reading the body failed: header line too long"] = true,
  ["reading the body failed: a chunk does not end in CRLF"] = true, ["the answer's trailers are too large"] = true,
  ["the answer is larger than its cap"] = true,
}
local function chunks_reference(buf, pos, max)
  local parts, total, p = {}, 0, pos
  while true do
    local lf = buf:find("\n", p, true)
    if (lf or #buf + 1) - p > CHUNK_LINE then return { nil, "reading the body failed: header line too long" } end
    if not lf then return { "more" } end
    local hex = cut(buf, p, lf):match("^%s*(%x+)")
    if not hex then return { nil, "the answer has a bad chunk size" } end
    -- (tonumber(hex, 16) wraps around past 2^63: a long one is simply too large)
    hex = hex:match("^0*(.*)$")
    local size = #hex > 12 and math.huge or (tonumber(hex, 16) or 0)
    p = lf + 1
    if size == 0 then
      local bytes = 0
      while true do
        lf = buf:find("\n", p, true)
        if not lf then
          if #buf - p + 1 > MAX then return { nil, "reading the body failed: header line too long" } end
          return { "more" }
        end
        local t = cut(buf, p, lf)
        if t == "" then return { lf + 1, table.concat(parts) } end
        bytes = bytes + #t
        if bytes > MAX then return { nil, "the answer's trailers are too large" } end
        p = lf + 1
      end
    end
    if size > max - total then return { nil, "the answer is larger than its cap", true } end
    total = total + size
    if #buf - p + 1 < size then return { "more" } end
    parts[#parts + 1] = buf:sub(p, p + size - 1)
    p = p + size
    if buf:sub(p, p + 1) == "\r\n" then
      p = p + 2
    elseif buf:sub(p, p) == "\n" then
      p = p + 1
    elseif p > #buf or (p == #buf and buf:sub(p, p) == "\r") then
      return { "more" }
    else
      return { nil, "reading the body failed: a chunk does not end in CRLF" }
    end
  end
end

local function check_chunks_shape(r, buf, pos)
  local a = r[1]
  if a == nil then
    if not CHUNK_MESSAGES[r[2]] then fail("http_chunks refused with %q", tostring(r[2])) end
    if (r[3] == true) ~= (r[2] == "the answer is larger than its cap") then
      fail("the cap's flag %s", tostring(r[3]))
    end
  elseif a == false then
    if math.type(r[2]) ~= "integer" or r[2] < pos or r[2] > #buf + 1 then fail("http_chunks pos %s", tostring(r[2])) end
    if type(r[3]) ~= "string" or #r[3] > r[2] - pos then fail("http_chunks data") end
    if math.type(r[4]) ~= "integer" or r[4] < -2 or math.type(r[5]) ~= "integer" or r[5] < 0 then
      fail("http_chunks state %s, %s", tostring(r[4]), tostring(r[5]))
    end
  elseif math.type(a) ~= "integer" or a <= pos or a > #buf + 1 or type(r[2]) ~= "string" then
    fail("http_chunks end %s", tostring(a))
  end
end

-- http_chunks on buf from pos: at once, in pieces of `step` (the bytes
-- taken dropped, as the reader does), and the reference.
local function check_chunks(buf, pos, max, step)
  local ok, a, b, c, d, e = pcall(core.http_chunks, buf, pos, max, 0, 0)
  if not ok then fail("http_chunks raised: %s", tostring(a)) end
  local whole = { a, b, c, d, e }
  check_chunks_shape(whole, buf, pos)
  local rest = buf:sub(pos)
  local have, p, sa, sb, at, dropped, parts = "", 1, 0, 0, 1, pos - 1, {}
  local last
  while true do
    local r = { core.http_chunks(have, p, max, sa, sb) }
    check_chunks_shape(r, have, p)
    if r[1] ~= false or at > #rest then
      last = r
      break
    end
    parts[#parts + 1] = r[3]
    dropped = dropped + r[2] - 1
    have, p, sa, sb = have:sub(r[2]) .. rest:sub(at, at + step - 1), 1, r[4], r[5]
    at = at + step
  end
  if #rest < MAX then
    if last[1] then
      parts[#parts + 1] = last[2]
      if last[1] + dropped ~= whole[1] or table.concat(parts) ~= whole[2] then
        fail("http_chunks in pieces of %d: ends at %s, at once %s", step, last[1] + dropped, tostring(whole[1]))
      end
    elseif last[1] ~= whole[1] or (last[1] == nil and last[2] ~= whole[2]) then
      fail("http_chunks in pieces of %d: %s, at once %s", step, tostring(last[2]), tostring(whole[2]))
    end
  end
  local ref = chunks_reference(buf, pos, max)
  if ref[1] == "more" then
    if whole[1] ~= false then fail("the chunks' reference wants more, the core says %s", tostring(whole[1])) end
    return
  end
  for i = 1, 3 do
    if ref[i] ~= whole[i] then
      fail("http_chunks [%d] %s, the reference %s", i, tostring(whole[i]), tostring(ref[i]))
    end
  end
end

return function(flags, _, raw)
  local step = (flags & 0xff) + 1
  local max = (flags >> 9) & 1 == 1 and 64 or 1048576
  if (flags >> 10) & 1 == 1 then return check_chunks(raw, 1, max, step) end
  local lead = (flags >> 8) & 1 == 1 and "HTTP/1.1 100 x\r\n" or ""
  local buf = lead .. raw
  local pos = #lead + 1
  local ok, a, b, c, d, e, f, g = pcall(core.http_head, buf, pos, 0)
  if not ok then fail("raised: %s", tostring(a)) end
  local whole = { a, b, c, d, e, f, g }
  check_shape(whole, buf, pos)

  -- in pieces
  local have, p, scanned, at = lead, pos, 0, 1
  local last
  while true do
    local r = { core.http_head(have, p, scanned) }
    check_shape(r, have, p)
    if r[1] ~= false or at > #raw then
      last = r
      break
    end
    scanned, p = r[2], r[3]
    have = have .. raw:sub(at, at + step - 1)
    at = at + step
  end
  if #raw < MAX then -- (a line past MAX is refused in pieces while it has no LF yet)
    for i = 1, 7 do
      if not same(last[i], whole[i]) then
        fail("in pieces of %d: [%d] %s, at once %s", step, i, tostring(last[i]), tostring(whole[i]))
      end
    end
  end

  local ref = reference(buf, pos)
  if ref[1] == "more" then
    if whole[1] ~= false and not (whole[1] == nil and whole[2] ~= "the server's reply is not HTTP/1.x") then
      fail("the reference wants more, the core says %s", tostring(whole[1]))
    end
    return
  end
  for i = 1, 7 do
    if not same(ref[i], whole[i]) then fail("[%d] %s, the reference %s", i, tostring(whole[i]), tostring(ref[i])) end
  end
  if whole[1] and whole[5] then check_chunks(buf, whole[1], max, step) end
end
