/*
 * dingtalk-recall: transport options, targets and the access token, read
 * and checked once (sans I/O).
 *
 * Every string read from a caller's table stays on the Lua stack until
 * its last use: the table may answer through __index (a proxy), and then
 * nothing else keeps the string alive.
 */
#include <stdio.h>
#include <string.h>

#include "dtr.h"
#include "dtr_error.h"
#include "dtr_text.h"
#include "dtr_options.h"

/* ---------------------------------------------------------------------
 * Options
 * ------------------------------------------------------------------- */

/* Ranges of the number options (finite, checked once). */
#define DTR_MAX_TIMEOUT 86400.0         /* a day */
#define DTR_MAX_RESPONSE_CAP 1e9

/*
 * A number option in (0, max].  A wrong type raises (the programmer's
 * error).  A bad value (NaN, inf, <= 0, too large) raises too when
 * `strict` is 0 (core.build, as before); with strict it fills e and
 * returns -1 (core.target: nil, err).
 */
static double dtr_opt_number(lua_State *L, int idx, const char *name, double dflt, double max, int strict,
                             dtr_err *e)
{
    double v;
    lua_getfield(L, idx, name);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return dflt;
    }
    if (lua_type(L, -1) != LUA_TNUMBER)
        luaL_error(L, "option '%s' must be a number", name);
    v = lua_tonumber(L, -1);
    lua_pop(L, 1);
    if (!(v > 0) || !(v <= max)) { /* NaN fails both */
        if (!strict)
            luaL_error(L, "option '%s' must be a positive number", name);
        dtr_seterr(e, "invalidParameter.param.invalid", "option %s must be a number above 0 and at most %.0f",
                   name, max);
        return -1;
    }
    return v;
}

/*
 * Reads the transport settings (endpoint, ca_file, timeouts, cap) of the
 * options table at idx, or defaults when absent.  Always leaves exactly
 * two values on the stack (ca_file and endpoint, or nils) so their
 * strings stay alive while o points at them.  Returns 0 with e filled
 * for a bad value (see dtr_opt_number for `strict`).
 */
int dtr_read_transport(lua_State *L, int idx, int strict, dtr_opts *o, dtr_err *e)
{
    const char *ep = DTR_DEFAULT_ENDPOINT;
    size_t epn = sizeof(DTR_DEFAULT_ENDPOINT) - 1;
    memset(o, 0, sizeof *o);
    o->timeout = DTR_DEFAULT_TIMEOUT;
    o->connect_timeout = DTR_DEFAULT_CONNECT_TIMEOUT;
    o->max_response = DTR_DEFAULT_MAX_RESPONSE;
    if (lua_isnoneornil(L, idx)) {
        lua_pushnil(L);
        lua_pushnil(L);
        return dtr_parse_endpoint(ep, epn, o, e);
    }
    luaL_checktype(L, idx, LUA_TTABLE);
    lua_getfield(L, idx, "ca_file");
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "option 'ca_file' must be a string");
        o->ca_file.s = lua_tolstring(L, -1, &o->ca_file.n);
        if (memchr(o->ca_file.s, '\0', o->ca_file.n) != NULL) {
            if (!strict)
                luaL_error(L, "option 'ca_file' contains a NUL byte");
            lua_pushnil(L);
            dtr_seterr(e, "invalidParameter.param.invalid", "option ca_file contains a NUL byte");
            return 0;
        }
    }
    lua_getfield(L, idx, "endpoint");
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "option 'endpoint' must be a string");
        ep = lua_tolstring(L, -1, &epn);
    }
    if ((o->timeout = dtr_opt_number(L, idx, "timeout", DTR_DEFAULT_TIMEOUT, DTR_MAX_TIMEOUT, strict, e)) < 0 ||
        (o->connect_timeout = dtr_opt_number(L, idx, "connect_timeout", DTR_DEFAULT_CONNECT_TIMEOUT,
                                             DTR_MAX_TIMEOUT, strict, e)) < 0 ||
        (o->max_response = dtr_opt_number(L, idx, "max_response_bytes", DTR_DEFAULT_MAX_RESPONSE,
                                          DTR_MAX_RESPONSE_CAP, strict, e)) < 0)
        return 0;
    return dtr_parse_endpoint(ep, epn, o, e);
}

/* Checks the access token at idx (a string): it becomes a header.  The
 * value is never echoed. */
int dtr_token_ok(const dtr_str *t, dtr_err *e)
{
    if (t->n == 0) {
        dtr_seterr(e, "AuthenticationFailed.MissingParameter",
                   "%s is missing: fetch one with the app's credentials", "access_token");
        return 0;
    }
    if (t->n > DTR_MAX_FIELD || !dtr_header_safe(t->s, t->n)) {
        dtr_seterr(e, "invalidParameter.param.invalid",
                   "%s contains spaces, control characters or non-ASCII bytes", "access_token");
        return 0;
    }
    return 1;
}

/* A target (core.target): the settings, plus a copy of ca_file
 * (o.ca_file points at it). */
typedef struct dtr_target {
    dtr_opts o;
    char ca_file[1]; /* ca_file.n + 1 bytes, allocated with the userdata */
} dtr_target;

const dtr_opts *dtr_test_target(lua_State *L, int idx)
{
    const dtr_opts *o = NULL;
    if (lua_type(L, idx) == LUA_TUSERDATA && lua_getmetatable(L, idx)) {
        dtr_push_name(L, DTR_N_TARGETMT);
        if (lua_rawequal(L, -1, -2))
            o = &((const dtr_target *)lua_touserdata(L, idx))->o;
        lua_pop(L, 2);
    }
    return o;
}

void dtr_push_target(lua_State *L, const dtr_opts *o)
{
    dtr_target *t = (dtr_target *)dtr_newuserdata(L, sizeof *t + o->ca_file.n);
    t->o = *o;
    if (o->ca_file.n > 0)
        memcpy(t->ca_file, o->ca_file.s, o->ca_file.n);
    t->ca_file[o->ca_file.n] = '\0';
    t->o.ca_file.s = t->ca_file;
    t->o.token.s = NULL;
    t->o.token.n = 0;
    luaL_getmetatable(L, DTR_TARGET_MT);
    lua_setmetatable(L, -2);
}

/*
 * Reads the transport options at idx (a table, a target or none).
 * need_token: the call carries an access token header.  Always leaves
 * exactly three values on the stack (anchors of the strings o points
 * at).  Returns 0 with e filled for a bad value.
 */
int dtr_read_opts(lua_State *L, int idx, int need_token, dtr_opts *o, dtr_err *e)
{
    const dtr_opts *t = dtr_test_target(L, idx);
    idx = dtr_absindex(L, idx);
    if (t != NULL) {
        *o = *t; /* ca_file points into the target, which the caller holds */
        lua_pushnil(L);
        lua_pushnil(L);
    } else if (!dtr_read_transport(L, idx, 0, o, e)) {
        lua_pushnil(L);
        return 0;
    }
    if (!need_token) {
        lua_pushnil(L);
        return 1;
    }
    if (lua_isnoneornil(L, idx)) {
        lua_pushnil(L);
        dtr_seterr(e, "AuthenticationFailed.MissingParameter", "%s is missing", "access_token");
        return 0;
    }
    lua_getfield(L, idx, "access_token");
    if (lua_isnil(L, -1)) {
        dtr_seterr(e, "AuthenticationFailed.MissingParameter",
                   "%s is missing: fetch one with the app's credentials", "access_token");
        return 0;
    }
    if (lua_type(L, -1) != LUA_TSTRING)
        luaL_error(L, "option 'access_token' must be a string");
    o->token.s = lua_tolstring(L, -1, &o->token.n);
    return dtr_token_ok(&o->token, e);
}
