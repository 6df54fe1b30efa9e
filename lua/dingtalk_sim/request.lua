-- dingtalk_sim.request: reading a request's body (in memory or spooled to
-- a file) and telling a JSON object from anything else; shared by the API
-- (dingtalk_sim.server) and the admin API (dingtalk_sim.admin).
-- No side effects at require time.
local cjson = require "cjson"

local ngx = ngx
local type, pcall, next = type, pcall, next
local str_byte = string.byte

local M = {}

local function read_body()
  ngx.req.read_body()
  local body = ngx.req.get_body_data()
  if not body then
    local file = ngx.req.get_body_file()
    if file then
      local fh = io.open(file, "rb")
      if fh then
        body = fh:read("*a")
        fh:close()
      end
    end
  end
  return body
end

-- Returns the decoded JSON object, or nil when the body is not a JSON object.
local function json_object(body)
  if not body then return nil end
  local i, c = 1, str_byte(body, 1)
  while c == 32 or c == 9 or c == 10 or c == 13 do
    i = i + 1
    c = str_byte(body, i)
  end
  if c ~= 123 then return nil end -- '{'
  local ok, v = pcall(cjson.decode, body)
  if ok and type(v) == "table" then return v end
  return nil
end

local null = cjson.null
local function absent(v) return v == nil or v == null end

-- cjson gives arrays integer keys 1..n and objects string keys only
local function is_array(t)
  return #t > 0 or next(t) == nil
end


M.read_body, M.json_object, M.absent, M.is_array, M.null = read_body, json_object, absent, is_array, null

return M
