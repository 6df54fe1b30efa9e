-- luacheck: std lua54
-- Fuzz target "http": core.http_head, the head of an HTTP/1.x answer read
-- from the bytes received so far (the OpenResty transport's reader).
-- Input: the flags, then the answer's bytes (raw, unsplit).  Flag bits
-- 0..7: the size of the pieces the bytes come in (1 + the value); bit 8:
-- the answer starts after other bytes (pos > 1).  Invariants:
--   * never raises; one of a head (stop, status, reusable, length,
--     chunked, request id, content type in their types and ranges), more
--     (false, scanned, pos within the buffer) or a refusal (nil, one of
--     the known messages [, one of the two phases]);
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

-- The reference: the answer in buf from pos on, whole.
local function reference(buf, pos)
  while true do
    local lines, p, stop = {}, pos, nil
    while true do
      local lf = buf:find("\n", p, true)
      if not lf then break end
      local line = buf:sub(p, lf - 1)
      if #line > 0 and line:sub(-1) == "\r" then line = line:sub(1, -2) end
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

return function(flags, _, raw)
  local step = (flags & 0xff) + 1
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
end
