-- The three C modules: what each exports and links, and what they share.
local core = require "dingtalk.recall.core"
local curl = require "dingtalk.recall.curl"
local journal = require "dingtalk.recall.journal"

local function search(name)
  local rel = name:gsub("%.", "/")
  for pat in package.cpath:gmatch("[^;]+") do
    local f = pat:gsub("%?", rel)
    local h = io.open(f, "rb")
    if h then
      h:close()
      return f
    end
  end
end

local function lines(cmd)
  local out, h = {}, assert(io.popen(cmd))
  for l in h:lines() do out[#out + 1] = l end
  h:close()
  return out
end

local function have(cmd)
  return #lines("command -v " .. cmd .. " 2>/dev/null") > 0
end

describe("the C modules", function()
  local paths = {}
  for _, m in ipairs { "core", "curl", "journal" } do
    paths[m] = search("dingtalk.recall." .. m)
  end

  it("are found on the C path", function()
    for m, p in pairs(paths) do assert.is_string(p, m) end
  end)

  it("export only luaopen_*", function()
    if not have("nm") then pending("no nm") return end
    for m, p in pairs(paths) do
      local exported = {}
      for _, l in ipairs(lines("nm -D --defined-only " .. p)) do
        local kind, sym = l:match("^%x*%s+(%a)%s+(%S+)$")
        if kind and kind:match("[TDBR]") then exported[#exported + 1] = sym end
      end
      assert.are.same({ "luaopen_dingtalk_recall_" .. m }, exported)
    end
  end)

  it("core.so does not link libcurl; curl.so does", function()
    if not have("ldd") then pending("no ldd") return end
    local function links(p, lib)
      for _, l in ipairs(lines("ldd " .. p)) do
        if l:find(lib, 1, true) then return true end
      end
      return false
    end
    assert.is_false(links(paths.core, "libcurl"))
    assert.is_true(links(paths.core, "libcrypto"))
    assert.is_true(links(paths.curl, "libcurl"))
    assert.is_false(links(paths.journal, "libcurl"))
  end)

  it("split the functions as documented", function()
    for _, f in ipairs { "plan", "target", "build_batch", "build", "parse", "error", "is_error",
      "verify_callback", "sign_callback", "validate", "build_send", "build_token", "parse_send", "parse_token" } do
      assert.is_function(core[f], "core." .. f)
    end
    for _, f in ipairs { "now", "sleep", "perform", "multi", "recall", "curl_version", "journal_append",
      "journal_read", "journal_compact" } do
      assert.is_nil(core[f], "core." .. f .. " moved out")
    end
    for _, f in ipairs { "perform", "multi", "recall", "now", "sleep", "version" } do
      assert.is_function(curl[f], "curl." .. f)
    end
    for _, f in ipairs { "append", "read", "compact" } do
      assert.is_function(journal[f], "journal." .. f)
    end
  end)

  it("share one error metatable", function()
    local e1 = core.error("x.y", "m")
    local _, e2 = curl.perform { method = "POST", url = "http://example.com/", headers = {}, body = "" }
    assert.are.equal("invalid.endpoint", e2.code)
    assert.are.equal(getmetatable(e1), getmetatable(e2))
    assert.is_true(core.is_error(e2))
    local _, e3 = journal.append("/proc/definitely/not/here/journal", "x")
    assert.is_true(core.is_error(e3))
    assert.are.equal("ledger.io", e3.code)
    assert.are.equal(core.codes["ledger.io"].hint, e3.hint)
  end)

  it("the OpenResty transport never loads the curl module", function()
    local h = assert(io.open("lua/dingtalk/recall/transport/openresty.lua"))
    local src = h:read("*a")
    h:close()
    assert.is_nil(src:find("dingtalk.recall.curl", 1, true))
    assert.is_nil(src:find("dingtalk.recall.transport.curl", 1, true))
  end)

  it("the rockspec builds the C modules through the Makefile, whose core links no libcurl", function()
    local mk = assert(io.open("Makefile")):read("*a")
    local spec = {}
    local chunk = assert((loadfile or load)("dingtalk-recall-scm-1.rockspec", "t", spec))
    local setfenv = rawget(_G, "setfenv")
    if setfenv then setfenv(chunk, spec) end
    chunk()
    assert.are.equal("make", spec.build.type)
    assert.are.equal("rock", spec.build.build_target)
    assert.are.equal("rock-install", spec.build.install_target)
    local core_units = assert(mk:match("\nCORE_UNITS%s*=%s*([^\n]+)"))
    assert.is_nil(core_units:find("dtr_curl", 1, true))
    assert.is_nil(core_units:find("dtr_multi", 1, true))
    local link = assert(mk:match("\n%$%(CORE_SO%):[^\n]*\n[^\n]*\n([^\n]+)"))
    assert.is_nil(link:find("CURL_LIBS", 1, true), link)
    assert.truthy(link:find("SSL_LIBS", 1, true), link)
  end)
end)
