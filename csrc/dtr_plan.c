/*
 * dingtalk-recall: plans and targets (sans I/O).
 *
 *   core.plan(conversation, robot, keys) -> plan | nil, err
 *       Validates the conversation and robot once and each key once,
 *       drops duplicates, and cuts batches of at most 20 keys in input
 *       order.  A key refused on its content (empty, too long, control
 *       characters, invalid UTF-8) does not fail the plan: it goes to
 *       plan.invalid[key] = err.  A sparse array or a non-string entry
 *       fails the whole plan (nil, err naming the index): nothing is sent
 *       for input that cannot be honoured.
 *   core.target(options) -> target | nil, err
 *       The transport settings, checked once: a read-only userdata.
 *   core.build_batch(plan, i, target, token) -> built | nil, err
 *       Batch i of the plan, built for the target; the keys are not
 *       checked again (the plan did), the token is.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "dtr.h"
#include "dtr_error.h"
#include "dtr_text.h"
#include "dtr_encode.h"
#include "dtr_plan.h"

#define DTR_PLAN_MT "dingtalk.recall.plan"

/* ---------------------------------------------------------------------
 * Targets
 * ------------------------------------------------------------------- */

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

/* ---------------------------------------------------------------------
 * Plans
 * ------------------------------------------------------------------- */

/* conversation or robot at idx: nil/"" -> e (missing), not a string ->
 * raise, bad content -> e.  The string stays at idx (an argument). */
static int dtr_plan_id(lua_State *L, int idx, const char *what, const char *missing, dtr_str *out, dtr_err *e)
{
    int t = lua_type(L, idx);
    if (t == LUA_TNIL || (t == LUA_TSTRING && dtr_rawlen(L, idx) == 0)) {
        dtr_seterr(e, missing, "%s is missing or empty", what);
        return 0;
    }
    if (t != LUA_TSTRING)
        return luaL_argerror(L, idx, lua_pushfstring(L, "string expected (the %s), got %s", what,
                                                     luaL_typename(L, idx)));
    out->s = lua_tolstring(L, idx, &out->n);
    return dtr_text_ok(out, what, e);
}

/* Checks that the table at idx is an array 1..n without holes; sets *n.
 * Fills e naming the offending index otherwise. */
static int dtr_plan_shape(lua_State *L, int idx, size_t *n, dtr_err *e)
{
    size_t count = 0, i;
    lua_Number max = 0;
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        lua_Number k;
        lua_pop(L, 1);
        count++;
        if (lua_type(L, -1) != LUA_TNUMBER) {
            dtr_seterr(e, "invalidParameter.param.invalid",
                       "keys must be an array: it has a %s index (entry %lu)", luaL_typename(L, -1),
                       (unsigned long)count);
            lua_pop(L, 1);
            return 0;
        }
        k = lua_tonumber(L, -1);
        /* 2^53: past it, doubles skip integers and counts mean nothing. */
        if (!(k >= 1 && k <= 9007199254740992.0) || k != floor(k)) {
            dtr_seterr(e, "invalidParameter.param.invalid", "keys must be an array: it has the index %.17g", k);
            lua_pop(L, 1);
            return 0;
        }
        if (k > max)
            max = k;
    }
    if ((lua_Number)count != max) {
        for (i = 1; i <= count; i++) {
            int hole;
            lua_rawgeti(L, idx, (int)i);
            hole = lua_isnil(L, -1);
            lua_pop(L, 1);
            if (hole)
                break;
        }
        dtr_seterr(e, "invalidParameter.param.invalid",
                   "keys is sparse: keys[%lu] is nil but the array has %lu entries up to index %.0f",
                   (unsigned long)i, (unsigned long)count, max);
        return 0;
    }
    if (count > (size_t)0x7fffffff) {
        dtr_seterr(e, "invalidParameter.param.invalid", "keys has too many entries");
        return 0;
    }
    *n = count;
    return 1;
}

/* Pushes an error object for a refused key (content check). */
static void dtr_plan_key_error(lua_State *L, const dtr_str *k, size_t i)
{
    dtr_err e;
    if (k->n == 0) {
        dtr_seterr(&e, "invalidParameter.param.invalid", "keys[%lu] is empty", (unsigned long)i);
    } else {
        char what[48];
        snprintf(what, sizeof what, "keys[%lu]", (unsigned long)i);
        dtr_text_ok(k, what, &e);
    }
    dtr_new_error(L, e.code, e.message, strlen(e.message), 0, NULL);
}

static void dtr_plan_setint(lua_State *L, int t, const char *name, size_t v)
{
    lua_pushinteger(L, (lua_Integer)v);
    lua_setfield(L, t, name);
}

/* core.plan(conversation, robot, keys) -> plan | nil, err */
static int dtr_l_plan(lua_State *L)
{
    dtr_str cid, robot;
    dtr_err e;
    size_t n, i, total = 0, dups = 0, ninvalid = 0, nbatches = 0, inbatch = 0;
    int plan, seen, invalid, batch = 0;
    lua_settop(L, 3);
    /* Types first: a wrong type raises whatever the values. */
    if (!lua_isnil(L, 1) && lua_type(L, 1) != LUA_TSTRING)
        luaL_argerror(L, 1, "string expected (the conversation)");
    if (!lua_isnil(L, 2) && lua_type(L, 2) != LUA_TSTRING)
        luaL_argerror(L, 2, "string expected (the robot)");
    if (!lua_isnil(L, 3) && lua_type(L, 3) != LUA_TTABLE)
        luaL_argerror(L, 3, "table expected (the keys)");
    if (!dtr_plan_id(L, 1, "conversation", "miss.openConversationId", &cid, &e) ||
        !dtr_plan_id(L, 2, "robot", "miss.chatbotId", &robot, &e))
        return dtr_push_err(L, &e);
    if (lua_isnil(L, 3)) {
        dtr_seterr(&e, "invalidParameter.processQueryKey.missing", "keys is missing");
        return dtr_push_err(L, &e);
    }
    if (!dtr_plan_shape(L, 3, &n, &e))
        return dtr_push_err(L, &e);
    if (n == 0) {
        dtr_seterr(&e, "invalidParameter.processQueryKey.missing", "keys is empty");
        return dtr_push_err(L, &e);
    }
    /* Every entry a string, before anything else is made. */
    for (i = 1; i <= n; i++) {
        int t;
        lua_rawgeti(L, 3, (int)i);
        t = lua_type(L, -1);
        lua_pop(L, 1);
        if (t != LUA_TSTRING) {
            dtr_seterr(&e, "invalidParameter.param.invalid", "keys[%lu] is not a string (a %s)", (unsigned long)i,
                       lua_typename(L, t));
            return dtr_push_err(L, &e);
        }
    }
    lua_createtable(L, (int)(n / DTR_MAX_KEYS + 1), 8);
    plan = lua_gettop(L);
    lua_createtable(L, 0, (int)n);
    seen = lua_gettop(L);
    lua_newtable(L);
    invalid = lua_gettop(L);
    for (i = 1; i <= n; i++) {
        dtr_str k;
        lua_rawgeti(L, 3, (int)i);
        k.s = lua_tolstring(L, -1, &k.n); /* anchored by the keys table and the stack */
        lua_pushvalue(L, -1);
        lua_rawget(L, seen);
        if (!lua_isnil(L, -1)) {
            lua_pop(L, 2);
            dups++;
            continue;
        }
        lua_pop(L, 1);
        lua_pushvalue(L, -1);
        lua_pushboolean(L, 1);
        lua_rawset(L, seen);
        if (k.n == 0 || k.n > DTR_MAX_FIELD || dtr_text_check((const unsigned char *)k.s, k.n) != 0) {
            dtr_plan_key_error(L, &k, i);
            lua_rawset(L, invalid);
            ninvalid++;
            continue;
        }
        if (inbatch == 0) {
            lua_createtable(L, DTR_MAX_KEYS, 0);
            lua_pushvalue(L, -1);
            lua_rawseti(L, plan, (int)++nbatches);
            lua_insert(L, -2); /* batch below the key */
            batch = lua_gettop(L) - 1;
        }
        lua_rawseti(L, batch, (int)++inbatch);
        total++;
        if (inbatch == DTR_MAX_KEYS) {
            lua_pop(L, 1);
            inbatch = 0;
        }
    }
    lua_settop(L, invalid);
    lua_setfield(L, plan, "invalid");
    lua_pop(L, 1); /* seen */
    lua_pushvalue(L, 1);
    lua_setfield(L, plan, "conversation");
    lua_pushvalue(L, 2);
    lua_setfield(L, plan, "robot");
    dtr_plan_setint(L, plan, "total", total);
    dtr_plan_setint(L, plan, "nbatches", nbatches);
    dtr_plan_setint(L, plan, "duplicates", dups);
    dtr_plan_setint(L, plan, "ninvalid", ninvalid);
    luaL_getmetatable(L, DTR_PLAN_MT);
    lua_setmetatable(L, plan);
    return 1;
}

/* A string field of a plan, raw; a plan changed into nonsense raises. */
static void dtr_plan_field(lua_State *L, int plan, const char *name, dtr_str *out)
{
    lua_pushstring(L, name);
    lua_rawget(L, plan);
    if (lua_type(L, -1) != LUA_TSTRING)
        luaL_error(L, "plan.%s is not a string: the plan was modified", name);
    out->s = lua_tolstring(L, -1, &out->n); /* stays on the stack */
}

/* core.build_batch(plan, i, target, token) -> built | nil, err */
static int dtr_l_build_batch(lua_State *L)
{
    dtr_str cid, robot, keys[DTR_MAX_KEYS];
    dtr_opts o;
    dtr_err e;
    lua_Integer bi;
    int batch, nkeys, j, ismt;
    const dtr_opts *t;
    luaL_checktype(L, 1, LUA_TTABLE);
    ismt = lua_getmetatable(L, 1);
    if (ismt) {
        luaL_getmetatable(L, DTR_PLAN_MT);
        ismt = lua_rawequal(L, -1, -2);
        lua_pop(L, 2);
    }
    if (!ismt)
        return luaL_argerror(L, 1, "a plan from core.plan expected");
    bi = luaL_checkinteger(L, 2);
    t = dtr_test_target(L, 3);
    if (t == NULL)
        return luaL_argerror(L, 3, "a target from core.target expected");
    if (!lua_isnil(L, 4) && lua_type(L, 4) != LUA_TSTRING)
        return luaL_argerror(L, 4, "string expected (the access token)");
    lua_settop(L, 4);
    luaL_checkstack(L, DTR_MAX_KEYS + 16, "dingtalk.recall.core");
    if (bi < 1 || bi > 0x7fffffff)
        return luaL_argerror(L, 2, "no such batch in the plan");
    lua_rawgeti(L, 1, (int)bi);
    if (lua_type(L, -1) != LUA_TTABLE)
        return luaL_argerror(L, 2, "no such batch in the plan");
    batch = lua_gettop(L);
    o = *t;
    if (lua_isnil(L, 4)) {
        o.token.s = "";
        o.token.n = 0;
    } else {
        o.token.s = lua_tolstring(L, 4, &o.token.n);
    }
    if (!dtr_token_ok(&o.token, &e))
        return dtr_push_err(L, &e);
    dtr_plan_field(L, 1, "conversation", &cid);
    dtr_plan_field(L, 1, "robot", &robot);
    nkeys = (int)dtr_rawlen(L, batch);
    if (nkeys < 1 || nkeys > DTR_MAX_KEYS)
        return luaL_error(L, "batch %d of the plan has %d keys: the plan was modified", (int)bi, nkeys);
    for (j = 0; j < nkeys; j++) {
        lua_rawgeti(L, batch, j + 1); /* stays on the stack: an anchor */
        if (lua_type(L, -1) != LUA_TSTRING)
            return luaL_error(L, "batch %d of the plan holds a non-string: the plan was modified", (int)bi);
        keys[j].s = lua_tolstring(L, -1, &keys[j].n);
    }
    dtr_push_recall(L, &cid, &robot, keys, nkeys, &o);
    return 1;
}

static int dtr_plan_tostring(lua_State *L)
{
    lua_getfield(L, 1, "total");
    lua_getfield(L, 1, "nbatches");
    lua_pushfstring(L, "dingtalk.recall.plan (%d keys in %d batches)", (int)lua_tointeger(L, -2),
                    (int)lua_tointeger(L, -1));
    return 1;
}

static const luaL_Reg dtr_plan_functions[] = {
    {"plan", dtr_l_plan},
    {"target", dtr_l_target},
    {"build_batch", dtr_l_build_batch},
    {NULL, NULL}};

/* The plan and target metatables, and the functions. */
void dtr_plan_open(lua_State *L)
{
    luaL_newmetatable(L, DTR_PLAN_MT);
    lua_pushliteral(L, DTR_PLAN_MT);
    lua_setfield(L, -2, "__name");
    lua_pushcfunction(L, dtr_plan_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);

    luaL_newmetatable(L, DTR_TARGET_MT);
    lua_pushliteral(L, DTR_TARGET_MT);
    lua_setfield(L, -2, "__name");
    lua_pushcfunction(L, dtr_target_index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, dtr_target_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_pushcfunction(L, dtr_target_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 1);
    dtr_register(L, dtr_plan_functions);
}
