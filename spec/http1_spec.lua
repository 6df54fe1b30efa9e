-- The OpenResty transport's HTTP/1.x reader (transport/http1.lua) over a
-- fake socket that hands out given bytes in given pieces: the status line,
-- the header values it keeps, Content-Length and chunk framing, checked
-- against the Lua patterns the byte scans stand for.
local http1 = require "dingtalk.recall.transport.http1"

-- A socket that answers receiveany with the next piece, then "closed".
local function socket(pieces)
  local i = 0
  return {
    settimeouts = function() end,
    receiveany = function()
      i = i + 1
      if pieces[i] == nil then return nil, "closed" end
      return pieces[i]
    end,
  }
end

local REQ = { max = 1e6, timeout = 5 }

-- Reads text as one answer, cut into pieces of `step` bytes (all at once without).
local function read(text, step)
  local pieces = {}
  if step then
    for i = 1, #text, step do pieces[#pieces + 1] = text:sub(i, i + step - 1) end
  else
    pieces[1] = text
  end
  local r = http1.new_reader(socket(pieces), math.huge, function() return 0 end, 5000)
  return http1.read_response(REQ, r)
end

local function answer(status_line, headers, body)
  return status_line .. "\r\n" .. table.concat(headers, "\r\n") .. (#headers > 0 and "\r\n" or "") .. "\r\n" ..
    (body or "")
end

describe("http1.read_response", function()
  it("reads the status line as ^HTTP/(%d%.%d) (%d%d%d)", function()
    for _, line in ipairs { "HTTP/1.1 200 OK", "HTTP/1.0 200 OK", "HTTP/1.1 200", "HTTP/1.1 404 Not Found",
      "HTTP/2 200", "HTTP/1.1 20x OK", "HTTPS/1.1 200", "http/1.1 200", "HTTP/1.1  200", "HTTP/11 200", "",
      "HTTP/1.1 2000", "HTTP/9.9 599 x" } do
      local version, code = line:match("^HTTP/(%d%.%d) (%d%d%d)")
      for _, step in ipairs { 1, 3 } do
        local res, reusable = read(answer(line, { "Content-Length: 2" }, "{}"), step)
        if code then
          assert.are.equal(tonumber(code), res.status, line)
          assert.are.equal("{}", res.body)
          assert.are.equal(version == "1.1", reusable == true, line)
        else
          assert.are.equal("transport.io", res.error and res.error.code, line)
        end
      end
    end
  end)

  it("keeps the request id and content type, trimmed as %s, from names in any case", function()
    local res = read(answer("HTTP/1.1 200 OK", { "X-Acs-Request-Id: \t rid-1 \t", "Content-Type:application/json  ",
      "Server: x", "Date: today", "Content-Length: 0" }))
    assert.are.same({ ["x-acs-request-id"] = "rid-1", ["content-type"] = "application/json" }, res.headers)
    res = read(answer("HTTP/1.1 200 OK", { "x-acs-request-id:", "content-type : text/html",
      "Content-Length: 0" }))
    assert.are.same({ ["x-acs-request-id"] = "" }, res.headers)
    for _, v in ipairs { "a", " a b ", "\ta\t\t", "   ", "\v\fa\r\r",
      " a", " ab", " a ", "  a", " ", " a\t", " \ta" } do
      res = read(answer("HTTP/1.1 200 OK", { "content-type:" .. v, "Content-Length: 0" }))
      assert.are.equal(v:match("^%s*(.-)%s*$"), res.headers["content-type"], v)
    end
  end)

  it("frames by Content-Length and refuses a bad or conflicting one", function()
    assert.are.equal("abc", read(answer("HTTP/1.1 200 OK", { "Content-Length:  3 " }, "abc")).body)
    local bad = { { "Content-Length: 3a" }, { "Content-Length: -3" }, { "Content-Length: 3", "content-length: 4" } }
    for _, h in ipairs(bad) do
      local res = read(answer("HTTP/1.1 200 OK", h, "abc"))
      assert.are.equal("transport.io", res.error.code)
      assert.matches("Content%-Length", res.error.message)
    end
  end)

  it("reads chunk sizes as tonumber(line:match('^%s*(%x+)'), 16)", function()
    for _, size in ipairs { "1a", "1A", "  1a", "1a;ext=1", "001a", "\t1a ", "1a\t;x" } do
      local body = ("x"):rep(26)
      for _, step in ipairs { 1, 7 } do
        local res = read(answer("HTTP/1.1 200 OK", { "Transfer-Encoding: chunked" },
          size .. "\r\n" .. body .. "\r\n0\r\n\r\n"), step)
        assert.are.equal(tonumber(size:match("^%s*(%x+)"), 16), #res.body, size)
      end
    end
    for _, size in ipairs { "zz", "", " ", ";1a", "-1a", "g" } do
      local res = read(answer("HTTP/1.1 200 OK", { "Transfer-Encoding: chunked" }, size .. "\r\nxx\r\n0\r\n\r\n"))
      assert.is_nil(size:match("^%s*(%x+)"))
      assert.are.equal("the answer has a bad chunk size", res.error and res.error.message, size)
    end
    local res = read(answer("HTTP/1.1 200 OK", { "Transfer-Encoding: chunked" }, "ffffffffffff\r\nxx"))
    assert.are.equal("response.too_large", res.error.code)
  end)

  it("reads the same answer whatever pieces it comes in (the buffered and the waiting paths)", function()
    local chunks = "5\r\nabcde\r\n1\r\nf\r\n10\r\n" .. ("g"):rep(16) .. "\r\n0\r\nTrailer: x\r\n\r\n"
    local texts = {
      answer("HTTP/1.1 200 OK", { "Server: s", "X-Acs-Request-Id: rid-2", "Content-Length: 22" }, ("b"):rep(22)),
      answer("HTTP/1.1 200 OK", { "Content-Type: application/json", "Transfer-Encoding: chunked" }, chunks),
      answer("HTTP/1.1 200 OK", { "Content-Length: 0" }),
      answer("HTTP/1.0 200 OK", { "Content-Type: x" }, "until the end"),
    }
    local want = {
      { body = ("b"):rep(22), headers = { ["x-acs-request-id"] = "rid-2" }, reusable = true },
      { body = "abcdef" .. ("g"):rep(16), headers = { ["content-type"] = "application/json" }, reusable = true },
      { body = "", headers = {}, reusable = true },
      { body = "until the end", headers = { ["content-type"] = "x" }, reusable = false },
    }
    for round = 1, 60 do -- (often enough for LuaJIT to compile the loops)
      for t, text in ipairs(texts) do
        local step = ({ false, 1, 2, 5, 64 })[round % 5 + 1]
        local res, reusable = read(text, step or nil)
        assert.are.equal(200, res.status, t)
        assert.are.equal(want[t].body, res.body, t)
        assert.are.same(want[t].headers, res.headers, t)
        assert.are.equal(want[t].reusable, reusable == true, t)
      end
    end
  end)

  -- The OpenResty transport runs an exchange in the caller's coroutine
  -- without pcall (transport/openresty.lua, INLINE_WAIT): what a server
  -- sends must come back as a result, whatever it is.
  it("answers any bytes, in any cut, with a result: never a raise", function()
    local seeds = {
      answer("HTTP/1.1 200 OK", { "X-Acs-Request-Id: r", "Content-Type: application/json", "Content-Length: 2" }, "{}"),
      answer("HTTP/1.1 200 OK", { "Transfer-Encoding: chunked" }, "2\r\n{}\r\n1;x=y\r\n \r\n0\r\nT: v\r\n\r\n"),
      answer("HTTP/1.0 200 OK", { "Connection: keep-alive" }, "{}"),
      "HTTP/1.1 100 Continue\r\n\r\n" .. answer("HTTP/1.1 403 Forbidden", { "content-length: 3" }, "abc"),
    }
    local words = { "\r\n", "\n", "\r", ":", " ", "\t", "\0", "\255", "0", "9", "f", "-", ";",
      "Content-Length: ", "Transfer-Encoding: chunked", "ffffffffffffffffffff", "99999999999999999999",
      "1e400", "0x10", "HTTP/1.1 ", "Connection: close", "nan", "\r\n\r\n" }
    local x = 12345
    local function rnd(n) -- (the same draws under every Lua)
      x = (x * 1103515245 + 12345) % 2147483648
      return x % n + 1
    end
    for _ = 1, 2500 do
      local t = seeds[rnd(#seeds)]
      for _ = 1, rnd(4) do
        local at, kind = rnd(#t + 1), rnd(5)
        if kind == 1 then
          t = t:sub(1, at - 1) .. string.char(rnd(256) - 1) .. t:sub(at + 1)
        elseif kind == 2 then
          t = t:sub(1, at - 1) .. words[rnd(#words)] .. t:sub(at)
        elseif kind == 3 then
          t = t:sub(1, at - 1) .. t:sub(at + rnd(8))
        elseif kind == 4 then
          t = t:sub(1, at - 1) .. t:sub(at, at + rnd(16)):rep(rnd(3) + 1) .. t:sub(at + 1)
        else
          t = t:sub(1, at)
        end
      end
      local step = ({ false, 1, 3, 17 })[rnd(4)]
      local ok, res = pcall(read, t, step or nil)
      assert.is_true(ok, ("%q raised: %s"):format(t, tostring(res)))
      assert.are.equal("table", type(res), t)
      if res.error then
        assert.is_string(res.error.code, t)
        assert.is_nil(res.status, t)
      else
        assert.is_number(res.status, t)
        assert.is_string(res.body, t)
      end
    end
  end)

  it("skips a 100 Continue and reads the answer after it", function()
    local res = read("HTTP/1.1 100 Continue\r\n\r\n" .. answer("HTTP/1.1 201 Created", { "Content-Length: 1" }, "x"))
    assert.are.equal(201, res.status)
    assert.are.equal("x", res.body)
  end)
end)

-- The head itself: core.http_head, called as bytes come (what the reader
-- above does), never reads a whole line twice and answers the same
-- whatever the cut.
describe("core.http_head", function()
  local core = require "dingtalk.recall.core"

  -- Feeds text in pieces of `step` bytes as the reader does; -> the first
  -- answer that is not "more", and the calls made.
  local function feed(text, step, lead)
    local buf, pos, scanned, calls = lead or "", #(lead or "") + 1, 0, 0
    local at = 1
    while true do
      calls = calls + 1
      local a, b, c, d, e, f, g = core.http_head(buf, pos, scanned)
      if a ~= false then
        if a then a = a - #(lead or "") end -- (stop, counted from the answer's start)
        return { a, b, c, d, e, f, g }, calls
      end
      assert.is_true(c >= pos and c + b >= pos + scanned, "pos and pos + scanned only move on")
      scanned, pos = b, c
      if at > #text then return { "more", scanned, pos }, calls end
      buf = buf .. text:sub(at, at + step - 1)
      at = at + step
    end
  end

  it("answers the same in any cut as at once, skipping interim answers", function()
    local texts = {
      "HTTP/1.1 200 OK\r\nX-Acs-Request-Id: r1\r\nContent-Length: 2\r\n\r\n{}",
      "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 x\r\nA: b\r\n\r\nHTTP/1.0 404 No\r\nConnection: Keep-Alive\r\n" ..
        "content-type:  text/html \r\nTransfer-Encoding: gzip, Chunked\n\nbody",
      "HTTP/1.1 101 Switching\r\nConnection: upgrade, close\r\n\r\n",
      "HTTP/1.1 200 OK\nContent-Length: 5\nContent-Length: 5\n\r\n",
    }
    for _, text in ipairs(texts) do
      local whole = feed(text, #text)
      for _, step in ipairs { 1, 2, 3, 7 } do
        assert.are.same(whole, (feed(text, step)), text)
        assert.are.same(whole, (feed(text, step, "junk before")), text) -- an answer that starts past 1
      end
    end
    local r = feed(texts[2], #texts[2])
    local stop = r[1]
    assert.are.equal("body", texts[2]:sub(stop))
    assert.are.same({ 404, true, nil, true, nil, "text/html" }, { r[2], r[3], r[4], r[5], r[6], r[7] })
    assert.are.same({ 101, false, nil, false }, { select(2, core.http_head(texts[3], 1)) })
    assert.are.same({ 200, true, 5, false }, { select(2, core.http_head(texts[4], 1)) })
  end)

  it("reads a whole line once: bytes that come one by one are not read again", function()
    local head = "HTTP/1.1 200 OK\r\n" .. ("X-Pad: " .. ("p"):rep(50) .. "\r\n"):rep(40)
    local buf, pos, scanned = "", 1, 0
    for i = 1, #head do
      buf = buf .. head:sub(i, i)
      local a, b, c = core.http_head(buf, pos, scanned)
      assert.is_false(a)
      scanned, pos = b, c
      -- scanned: the whole lines so far, never a byte of the last one
      local last = buf:sub(1, i):match(".*\n()") or 1
      assert.are.equal(last - 1, scanned)
    end
  end)

  it("refuses what is not an answer as soon as it is plain, and bounds a head that never ends", function()
    assert.are.same({ nil, "the server's reply is not HTTP/1.x" }, { core.http_head("SSH-2.0\r\n", 1) })
    assert.are.same({ nil, "the server's reply is not HTTP/1.x" }, { core.http_head("\r\nHTTP/1.1 200 OK\r\n", 1) })
    -- (no LF yet: more)
    assert.is_false((core.http_head("SSH-2.0", 1)))
    local long = ("x"):rep(102401)
    assert.are.same({ nil, "header line too long", "reading the status line" }, { core.http_head(long, 1) })
    assert.are.same({ nil, "header line too long", "reading the headers" },
      { core.http_head("HTTP/1.1 200 OK\r\n" .. long, 1) })
    local many = "HTTP/1.1 200 OK\r\n" .. ("A: " .. ("v"):rep(1000) .. "\r\n"):rep(103) .. "\r\n"
    assert.are.same({ nil, "the answer's headers are too large" }, { core.http_head(many, 1) })
    local endless = "HTTP/1.1 200 OK\r\n" .. ("A: " .. ("v"):rep(1000) .. "\r\n"):rep(210)
    assert.are.same({ nil, "the answer's headers are too large" }, { core.http_head(endless, 1) })
    assert.are.same({ nil, "the answer has a bad Content-Length" },
      { core.http_head("HTTP/1.1 200 OK\r\nContent-Length: 1\r\ncontent-length: 2\r\n\r\n", 1) })
  end)

  it("raises on arguments out of the buffer", function()
    for _, args in ipairs { { "abc", 0 }, { "abc", 5 }, { "abc", 1, -1 }, { "abc", 2, 3 } } do
      assert.has_error(function() core.http_head(args[1], args[2], args[3]) end)
    end
    assert.is_false((core.http_head("abc", 4, 0))) -- (an empty rest: more)
  end)
end)

describe("core.http_chunks", function()
  local core = require "dingtalk.recall.core"
  local MAX = 1048576

  -- Feeds text in pieces of `step` bytes as the reader does (the bytes not
  -- taken kept, more appended); returns the body and where it ended, or
  -- nil, the refusal.
  local function feed(text, step, max, lead)
    lead = lead or ""
    local buf, pos, a, b, fed, parts = lead, #lead + 1, 0, 0, 0, {}
    while true do
      local take = step or #text
      buf = buf .. text:sub(fed + 1, fed + take)
      fed = fed + take
      local done, p, data, na, nb = core.http_chunks(buf, pos, max or MAX, a, b)
      if done then
        parts[#parts + 1] = p
        return table.concat(parts), done - #lead, #buf - #lead
      end
      if done == nil then return nil, p, data end
      assert.is_true(p >= pos and p <= #buf + 1)
      parts[#parts + 1] = data
      pos, a, b = p, na, nb
      if fed >= #text then return nil, "more" end
      buf, pos = buf:sub(pos), 1 -- (as the reader: the bytes taken dropped)
      lead = ""
    end
  end

  it("joins the chunks, whatever pieces they come in, and stops after the trailers", function()
    local text = "5\r\nabcde\r\n1;ext=1\r\nf\r\n10\r\n" .. ("g"):rep(16) .. "\n 0\r\nT: v\r\nU: w\r\n\r\n"
    for _, step in ipairs { false, 1, 2, 3, 7, 64 } do
      for _, lead in ipairs { "", "xyz" } do
        local body, stop, have = feed(text .. "NEXT", step or nil, nil, lead)
        assert.are.equal("abcdef" .. ("g"):rep(16), body, tostring(step))
        if not step then assert.are.equal(#text + 1, stop) end -- (the next answer's first byte)
        if step then assert.is_true(stop <= have + 1) end
      end
    end
    assert.are.same({ 6, "" }, { core.http_chunks("0\r\n\r\n", 1, 10, 0, 0) })
    assert.are.same({ 7, "" }, { core.http_chunks("000\n\r\n", 1, 10, 0, 0) })
  end)

  it("takes a chunk's data as it comes, so a large chunk is not kept whole in the buffer", function()
    local r = { core.http_chunks("100\r\nabc", 1, MAX, 0, 0) }
    assert.are.same({ false, 9, "abc", 253, 256 }, r)
    r = { core.http_chunks("abc", 4, MAX, 253, 256) } -- (nothing new: more, the same state)
    assert.are.same({ false, 4, "", 253, 256 }, r)
  end)

  it("reads a size line as tonumber(line:match('^%s*(%x+)'), 16) and refuses the others", function()
    for _, size in ipairs { "1a", "1A", "  1a", "1a;ext=1", "001a", "\t1a ", "1a\t;x" } do
      local body = feed(size .. "\r\n" .. ("x"):rep(26) .. "\r\n0\r\n\r\n")
      assert.are.equal(26, #body, size)
    end
    for _, size in ipairs { "zz", "", " ", ";1a", "-1a", "g", "\0" } do
      assert.are.same({ nil, "the answer has a bad chunk size" },
        { core.http_chunks(size .. "\r\nxx\r\n0\r\n\r\n", 1, MAX, 0, 0) }, size)
    end
  end)

  it("refuses a body over max as soon as a size line says so, without overflow", function()
    for _, size in ipairs { "b", "ffffffffffff", ("f"):rep(40) } do
      assert.are.same({ nil, "the answer is larger than its cap", true },
        { core.http_chunks(size .. "\r\n", 1, 10, 0, 0) }, size)
    end
    assert.are.same({ nil, "the answer is larger than its cap", true },
      { core.http_chunks("6\r\nabcdef\r\n6\r\n", 1, 10, 0, 0) })
    assert.are.equal("abcdefghij", (feed("a\r\nabcdefghij\r\n0\r\n\r\n", nil, 10)))
  end)

  it("refuses a chunk not ended by CRLF and bounds its lines and trailers", function()
    for _, tail in ipairs { "xy", "\r\r\n", "\rx" } do
      assert.are.same({ nil, "reading the body failed: a chunk does not end in CRLF" },
        { core.http_chunks("2\r\nab" .. tail, 1, MAX, 0, 0) }, tail)
    end
    assert.is_false((core.http_chunks("2\r\nab\r", 1, MAX, 0, 0))) -- (the LF may come)
    local long = "1" .. (" "):rep(4097)
    assert.are.same({ nil, "reading the body failed: header line too long" }, { core.http_chunks(long, 1, MAX, 0, 0) })
    assert.are.same({ nil, "reading the body failed: header line too long" },
      { core.http_chunks(long .. "\n", 1, MAX, 0, 0) })
    assert.are.same({ nil, "reading the body failed: header line too long" },
      { core.http_chunks("0\r\n" .. ("t"):rep(102401), 1, MAX, 0, 0) })
    local trailers = "0\r\n" .. ("T: " .. ("v"):rep(1000) .. "\r\n"):rep(103) .. "\r\n"
    assert.are.same({ nil, "the answer's trailers are too large" }, { core.http_chunks(trailers, 1, MAX, 0, 0) })
    -- the trailers' bytes are counted across calls, not read again
    local r = { core.http_chunks("0\r\nT: 1\r\nU", 1, MAX, 0, 0) }
    assert.are.same({ false, 10, "", -2, 4 }, r)
  end)

  it("raises on arguments out of the buffer and states it never answered", function()
    for _, args in ipairs { { "abc", 0, 1, 0, 0 }, { "abc", 5, 1, 0, 0 }, { "abc", 1, -1, 0, 0 },
      { "abc", 1, 10, -3, 0 }, { "abc", 1, 10, 0, -1 }, { "abc", 1, 10, 5, 4 }, { "abc", 1, 10, 0, 11 },
      { "abc", 1, 10, -2, 102401 }, { "abc", 1, 2 ^ 51, 0, 0 } } do
      assert.has_error(function() core.http_chunks(args[1], args[2], args[3], args[4], args[5]) end)
    end
  end)
end)
