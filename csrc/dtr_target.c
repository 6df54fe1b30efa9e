/*
 * dingtalk-recall: targets (sans I/O).
 *
 *   core.target(options) -> target | nil, err
 *       The transport settings, checked once: a read-only userdata
 *       (endpoint, https, host, port, authority, path, loopback, timeout,
 *       connect_timeout, max_response_bytes, ca_file).
 */
#include <string.h>

#include "dtr.h"
#include "dtr_error.h"
#include "dtr_encode.h"
#include "dtr_target.h"

/* core.target([options]) -> target | nil, err */
static int dtr_l_target(lua_State *L)
{
    dtr_opts o;
    dtr_err e;
    lua_settop(L, 1);
    if (!dtr_read_transport(L, 1, 1, &o, &e))
        return dtr_push_err(L, &e);
    /* ca_file's string is anchored at 2 until it is copied. */
    dtr_push_target(L, &o);
    return 1;
}

/* target.<field>: read-only fields. */
static int dtr_target_index(lua_State *L)
{
    const dtr_opts *o = dtr_test_target(L, 1);
    const char *k = luaL_checkstring(L, 2);
    size_t eplen;
    if (o == NULL)
        return luaL_argerror(L, 1, "a dingtalk.recall.target expected");
    eplen = strlen(o->endpoint);
    if (strcmp(k, "endpoint") == 0) {
        lua_pushlstring(L, o->endpoint, eplen);
    } else if (strcmp(k, "https") == 0) {
        lua_pushboolean(L, o->https);
    } else if (strcmp(k, "host") == 0) {
        /* Without the brackets of an IPv6 literal: what connect() takes. */
        const char *h = o->endpoint + o->host_off;
        size_t n = o->host_len;
        if (n >= 2 && h[0] == '[')
            lua_pushlstring(L, h + 1, n - 2);
        else
            lua_pushlstring(L, h, n);
    } else if (strcmp(k, "port") == 0) {
        lua_pushinteger(L, o->port);
    } else if (strcmp(k, "authority") == 0) {
        /* host[:port] as written: the Host header. */
        lua_pushlstring(L, o->endpoint + o->host_off, o->path_off - o->host_off);
    } else if (strcmp(k, "path") == 0) {
        lua_pushlstring(L, o->endpoint + o->path_off, eplen - o->path_off);
    } else if (strcmp(k, "loopback") == 0) {
        lua_pushboolean(L, o->loopback);
    } else if (strcmp(k, "timeout") == 0) {
        lua_pushnumber(L, o->timeout);
    } else if (strcmp(k, "connect_timeout") == 0) {
        lua_pushnumber(L, o->connect_timeout);
    } else if (strcmp(k, "max_response_bytes") == 0) {
        lua_pushnumber(L, o->max_response);
    } else if (strcmp(k, "ca_file") == 0 && o->ca_file.n > 0) {
        lua_pushlstring(L, o->ca_file.s, o->ca_file.n);
    } else {
        lua_pushnil(L);
    }
    return 1;
}

static int dtr_target_newindex(lua_State *L)
{
    return luaL_error(L, "a dingtalk.recall.target is read-only");
}

static int dtr_target_tostring(lua_State *L)
{
    const dtr_opts *o = dtr_test_target(L, 1);
    lua_pushfstring(L, "dingtalk.recall.target (%s)", o != NULL ? o->endpoint : "?");
    return 1;
}

static const luaL_Reg dtr_target_functions[] = {
    {"target", dtr_l_target},
    {NULL, NULL}};

/* The metamethods that test a target: with the module's upvalues, as
 * dtr_test_target needs. */
static const luaL_Reg dtr_target_methods[] = {
    {"__index", dtr_target_index},
    {"__tostring", dtr_target_tostring},
    {NULL, NULL}};

/* The target metatable and core.target. */
void dtr_target_open(lua_State *L)
{
    /* the metatable below the upvalues, which dtr_register_into wants on top */
    int mt = lua_gettop(L) - DTR_NUPVALUES + 1;
    luaL_newmetatable(L, DTR_TARGET_MT);
    lua_insert(L, mt);
    dtr_register_into(L, mt, dtr_target_methods);
    lua_pushliteral(L, DTR_TARGET_MT);
    lua_setfield(L, mt, "__name");
    lua_pushcfunction(L, dtr_target_newindex);
    lua_setfield(L, mt, "__newindex");
    lua_pushboolean(L, 0);
    lua_setfield(L, mt, "__metatable");
    lua_remove(L, mt);
    dtr_register(L, dtr_target_functions);
}
