/*
 * dingtalk-recall: a built request as the libcurl transport reads it
 * (dtr_spec.h): every field checked (POST only, the builder's endpoint
 * rules, header names and values safe, numbers finite and in range)
 * before a transfer is set up from it (dtr_xfer.c).
 */
#include <string.h>

#include "dtr.h"
#include "dtr_error.h"
#include "dtr_text.h"
#include "dtr_spec.h"

/* Header names: RFC 7230 token characters.  Values: no controls but tab. */
static int dtr_header_ok(const char *name, size_t nn, const char *val, size_t vn)
{
    size_t i;
    if (nn == 0)
        return 0;
    for (i = 0; i < nn; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c <= 0x20 || c >= 0x7f || strchr("()<>@,;:\\\"/[]?={}", c) != NULL)
            return 0;
    }
    for (i = 0; i < vn; i++) {
        unsigned char c = (unsigned char)val[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return 0;
    }
    return 1;
}

/* A positive number field of a built request, at most 1e9 like the
 * builder's options (a hand-made table can hold anything; 1e300 or inf
 * would overflow the conversions to long and size_t below). */
static double dtr_field_number(lua_State *L, int idx, const char *name, double dflt)
{
    double v = dflt;
    lua_getfield(L, idx, name);
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TNUMBER || !(lua_tonumber(L, -1) > 0 && lua_tonumber(L, -1) <= 1e9))
            luaL_error(L, "request field '%s' must be a positive number (at most 1e9)", name);
        v = lua_tonumber(L, -1);
    }
    lua_pop(L, 1);
    return v;
}

/*
 * Reads and checks the built request at idx.  Every string read stays
 * on the stack (url, body, headers table, ca_file: four slots above the
 * call's values) until the caller returns, so a table answering through
 * __index cannot have them collected before libcurl copies them.
 * Returns 0 and fills e for content the transport refuses.
 */
int dtr_read_spec(lua_State *L, int idx, dtr_spec *sp, dtr_err *e)
{
    dtr_opts o;
    size_t n;
    luaL_checktype(L, idx, LUA_TTABLE);
    idx = dtr_absindex(L, idx);
    luaL_checkstack(L, 12, "dingtalk.recall.curl");
    lua_getfield(L, idx, "method");
    if (lua_type(L, -1) != LUA_TSTRING || strcmp(lua_tostring(L, -1), "POST") != 0)
        luaL_error(L, "request.method must be \"POST\"");
    lua_pop(L, 1);
    lua_getfield(L, idx, "url");
    if (lua_type(L, -1) != LUA_TSTRING)
        luaL_error(L, "request.url must be a string");
    sp->url = lua_tolstring(L, -1, &n); /* anchor 1 */
    /* The same endpoint rules as the builder: https, or http to loopback. */
    if (!dtr_parse_endpoint(sp->url, n, &o, e))
        return 0;
    sp->loopback = o.loopback;
    lua_getfield(L, idx, "body");
    if (lua_type(L, -1) != LUA_TSTRING)
        luaL_error(L, "request.body must be a string");
    sp->body.s = lua_tolstring(L, -1, &sp->body.n); /* anchor 2 */
    lua_getfield(L, idx, "headers");
    if (lua_type(L, -1) != LUA_TTABLE)
        luaL_error(L, "request.headers must be a table");
    sp->headers = lua_gettop(L); /* anchor 3: the one table checked and used */
    lua_pushnil(L);
    while (lua_next(L, sp->headers) != 0) {
        size_t nn, vn;
        const char *name, *val;
        if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "request.headers must map strings to strings");
        name = lua_tolstring(L, -2, &nn);
        val = lua_tolstring(L, -1, &vn);
        if (!dtr_header_ok(name, nn, val, vn) || nn + vn > 8192) {
            lua_pop(L, 2);
            dtr_seterr(e, "invalidParameter.param.invalid",
                       "a request header has a bad name or a control character in its value");
            return 0;
        }
        lua_pop(L, 1);
    }
    sp->timeout = dtr_field_number(L, idx, "timeout", DTR_DEFAULT_TIMEOUT);
    sp->connect_timeout = dtr_field_number(L, idx, "connect_timeout", DTR_DEFAULT_CONNECT_TIMEOUT);
    sp->max_response = dtr_field_number(L, idx, "max_response_bytes", DTR_DEFAULT_MAX_RESPONSE);
    lua_getfield(L, idx, "ca_file"); /* anchor 4 */
    sp->ca_file = NULL;
    if (lua_type(L, -1) == LUA_TSTRING) {
        sp->ca_file = lua_tolstring(L, -1, &n);
        if (memchr(sp->ca_file, '\0', n) != NULL)
            luaL_error(L, "request.ca_file contains a NUL byte");
    } else if (!lua_isnil(L, -1)) {
        luaL_error(L, "request.ca_file must be a string");
    }
    return 1;
}
