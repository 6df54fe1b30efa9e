-- luacheck: std lua54, max line length 170
-- Writes the seed corpora fuzz/corpus/<target>/ (committed; run again
-- after changing the input layout of a target):  lua5.4 fuzz/seeds.lua
-- An input is two flag bytes (little-endian) and fields joined by 0xFF;
-- see fuzz/fuzz_common.h and the header of each fuzz/<target>.lua.
local dir = (arg and arg[0] or "fuzz/seeds.lua"):match("^(.*)/[^/]*$") or "."
local root = dir .. "/corpus"

local function put(target, name, b0, b1, fields)
  os.execute("mkdir -p '" .. root .. "/" .. target .. "'")
  local data = type(fields) == "string" and fields or table.concat(fields, "\255")
  local f = assert(io.open(root .. "/" .. target .. "/" .. name, "wb"))
  f:write(string.char(b0, b1), data)
  f:close()
end

local function raw(s) return s end

-- `base` followed by n keys k0 .. k(n-1)
local function keys(base, n)
  for i = 0, n - 1 do base[#base + 1] = "k" .. i end
  return base
end

local cid, robot, tok, ep = "cidAbC123==", "dingbot01", "abcdef0123456789", "https://api.dingtalk.com"

-- request: byte 0 % 5 = mode (validate, build, build_send, build_token,
-- json_string); byte 1 = flag bits 0..7; byte 0 // 5 = bits 8..
put('request','build_ok',1,0, {cid,robot,tok,ep,'','key1','key2' })
put('request','validate_ok',0,0, {cid,robot,tok,ep,'','key1' })
put('request','build_loopback',1,0, {cid,robot,tok,'http://127.0.0.1:8080/','','k' })
put('request','build_default_ep',1,0x10, {cid,robot,tok,'','','k1','k2','k3' })
put('request','build_ipv6',1,0, {cid,robot,tok,'http://[::1]:9/x/','','k' })
put('request','build_badhost',1,0, {cid,robot,tok,'http://0127.0.0.1','','k' })
put('request','build_user',1,0, {cid,robot,tok,'https://u@h','','k' })
put('request','build_utf8',1,0, {"群聊",robot,tok,ep,'','\xf0\x9f\x98\x80','\xc2\x85' })
put('request','build_ctrl',1,0, {cid,robot,tok,ep,'','a\nb','\xed\xa0\x80' })
put("request", "build_21keys", 1, 0, keys({ cid, robot, tok, ep, "" }, 21))
put("request", "build_20keys", 1, 0, keys({ cid, robot, tok, ep, "" }, 20))
put('request','build_hole',1,0x40, {cid,robot,tok,ep,'','k' })
-- GC proxies (flag bit 11: byte 0 = mode + 5 * 8) with strings over 40 bytes (never interned)
local long = ("L"):rep(48)
put('request','build_proxy',41,0, {cid .. long,robot .. long,tok .. long,ep .. "/" .. long,'','k1' .. long,'k2' .. long })
put('request','validate_proxy',40,0, {cid .. long,robot .. long,tok .. long,ep .. "/" .. long,'','k1' .. long })
put('request','send_proxy',42,0, {cid .. long,robot .. long,tok .. long,ep .. "/" .. long,'','sampleText' .. long,'{"content":"' .. long .. '"}' })
put('request','token_proxy',43,0, {'ak' .. long,'as' .. long,'','','','',ep .. "/" .. long })
put('request','build_timeout',1+5*2,0, {cid,robot,tok,ep,'2.5','k' })
put('request','build_timeout_bad',1+5*2,0, {cid,robot,tok,ep,'-1','k' })
put('request','build_rawtoken',1,0x04, {cid,robot,'bad token',ep,'','k' })
put('request','build_notoken',1,0x08, {cid,robot,tok,ep,'','k' })
put('request','build_noopts',1,0x20, {cid,robot,tok,ep,'','k' })
put('request','send_ok',2,0, {cid,robot,tok,ep,'','sampleText','{"content":"hi"}' })
put('request','send_table',2,0x40, {cid,robot,tok,ep,'','sampleText','hello "world"\n' })
put('request','send_badutf',2,0, {cid,robot,tok,ep,'','sampleText','\n\xfe' })
put('request','token_app',3,0, {'dingappkey','appsecret123' })
put('request','token_corp',3,0x01, {'','','suitekey','suitesecret','corpid','ticket',ep })
put('request','json_plain',4,0,raw('hello'))
put('request','json_escapes',4,0,raw('"\\/\b\f\n\r\t\x00\x01\x1f\x7f\xc3\xa9\xfe'))

-- response: byte 0 % 4 = kind (parse, parse_send, parse_token, core.error);
-- bits 0..3 of byte 1 = status index
put('response','recall_ok',0,0, {'{"successResult":["k1","k2"],"failedResult":{"k3":"invalid"},"requestid":"r1"}','hdr-rid','secret','' })
put('response','recall_nulls',0,0, {'{"successResult":null,"failedResult":null}','','secret' })
put('response','recall_map',0,0, {'{"successResult":{"a":"b"}}','','secret' })
put('response','error_400',0,6, {'{"code":"invalidParameter.robotCode","message":"bad $S here","requestid":"$S"}','$T','secret','','other' })
put('response','error_429',0,10, {'{"Code":"Forbidden.AccessDenied.QpsLimitForApi","Message":"slow $S"}','rid','token1234' })
put('response','error_html',0,11, {'<html>bad gateway</html>','rid','secret' })
put('response','redirect',0,5, {'','rid','secret' })
put('response','status_raw',0,15, {'{}','rid','secret','700' })
put('response','error_nul',0,6, {'{"code":"x","message":"a\\u0000$S"}','','secret' })
put('response','error_nl_code',0,6, {'{"code":"a\\nb","message":"m"}','','secret' })
put('response','send_ok',1,0, {'{"processQueryKey":"pqk"}','','secret' })
put('response','token_ok',2,0, {'{"accessToken":"tok","expireIn":7200}','','secret' })
put('response','token_bad',2,0, {'{"accessToken":"","expireIn":-1}','','secret' })
put('response','array_secrets',0,0x46, {'{"code":"c","message":"$S and $T"}','','one1','','two2' })
put('response','error_obj',3,0x0f, {'Forbidden.AccessDenied.QpsLimitForApi','msg\nline','429','rid','hint' })
put('response','error_obj_big',3,0x01, {'code','msg','1e300','rid' })
put('response','recall_nonstring',0,0, {'{"successResult":["a",1,null],"failedResult":{"k":5}}','','secret' })
put('response','recall_badfailed',0,0, {'{"successResult":[],"failedResult":"x","RequestId":7}','','secret' })
put('response','recall_echo_reason',0,0, {'{"successResult":[],"failedResult":{"k1":"denied for $S","k2":"$T"},"requestid":"r-$S"}','$S','secret','','other' })

-- callback: byte 0 = flag bits 0..7 (0 ts number, 1 ts nil, 2 raw secret,
-- 3 no secret, 4 now from the field, 5 now near ts, 6 far, 7 no sign),
-- byte 1 = bits 8.. (8 the right sign with a byte changed, 9 unchanged)
put('callback','verify_right',0x20,0, {'1700000000000','','secret','' })
put('callback','verify_right2',0x20,0x03, {'1700000000000','','secret','' })
put('callback','verify_altered',0x20,0x01, {'1700000000000','x','secret','' })
put('callback','verify_now',0x10,0, {'1700000000000','0123456789012345678901234567890123456789012=','secret','1700000001000' })
put('callback','verify_number',0x31,0, {'1700000000000','','secret','' })
put('callback','verify_expired',0x60,0, {'1700000000000','','secret','long offset field' })
put('callback','verify_bad_ts',0x10,0, {'17e5','abc','secret','5' })
put('callback','verify_max_ts',0x10,0, {'9223372036854775807','','secret','9223372036854775807' })
put('callback','verify_over_ts',0x10,0, {'9223372036854775808','','secret','0' })
put('callback','verify_zeros',0x20,0, {'0000000000001','','secret','' })
put('callback','verify_raw_empty',0x04,0, {'1','','','' })
put('callback','verify_now_bad',0x10,0, {'1','','secret','-5' })
put('callback','verify_long_secret',0x20,0, {'1700000000000','',string.rep('S', 200),'' })

-- http: byte 0 = the size of the pieces - 1, byte 1 bit 0 = an interim
-- answer before, bit 1 = a body cap of 64 bytes, bit 2 = a chunked body
-- alone; the answer's bytes follow as they are (not split)
put("http",'ok_length',0,0, raw('HTTP/1.1 200 OK\r\nX-Acs-Request-Id: r1\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}'))
put("http",'ok_chunked',6,1, raw('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n2\r\n{}\r\n0\r\n\r\n'))
put("http",'interim',2,0, raw('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 403 Forbidden\r\nconnection: Keep-Alive\r\ncontent-length: 3\r\n\r\nabc'))
put("http",'bare_lf',0,0, raw('HTTP/1.1 101 Up\nConnection: upgrade, close\nx-acs-request-id:\t a b \t\n\nrest'))
put("http",'bad_length',3,0, raw('HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 01\r\ncontent-length: 2\r\n\r\n'))
put("http",'not_http',0,0, raw('SSH-2.0-OpenSSH\r\n\r\n'))
put("http",'partial',1,0, raw('HTTP/1.1 200 OK\r\nContent-Le'))
put("http",'chunks_ext',2,4, raw('5\r\nabcde\r\n1;ext=1\r\nf\r\n10\r\n0123456789abcdef\n 0\r\nT: v\r\n\r\nNEXT'))
put("http",'chunks_cap',0,6, raw('20\r\n' .. ('x'):rep(32) .. '\r\n40\r\n' .. ('y'):rep(64) .. '\r\n0\r\n\r\n'))
put("http",'chunks_bad',0,4, raw('2\r\nabXY\r\n0\r\n\r\n'))
put("http",'chunks_size',0,4, raw('  zz\r\n'))
put("http",'chunks_head',4,0, raw('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{}\n\r\n0\r\nX: 1\r\n\r\n'))
