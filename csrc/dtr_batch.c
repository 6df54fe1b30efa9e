/*
 * dingtalk-recall: a recall batch started on the multi handle without a
 * built request table.
 *
 *   m:start_batch(plan, keys, target, token [, tag]) -> id
 *                                                    | nil, err [, true]
 *
 * The same request core.build_batch(plan, i, target, token) builds, for
 * keys = core.batch(plan, i), sent like m:start(built, tag).  A handle's
 * first batch for a (target, token), or the first after any other
 * request, is built as a table by the builder (dtr_push_recall) and read
 * and set up like every request; the handle then keeps that URL, those
 * headers and settings, and the batches after it only write their body
 * (the builder's fields and JSON writer) into the handle's buffer: no
 * Lua table and no Lua string per batch.  The target is held (a registry
 * reference) while a handle remembers it, so another target cannot take
 * its place in memory.  A token the builder refuses answers nil, err,
 * true (nothing was sent; the batch fails without a retry).
 */
#include <stdlib.h>
#include <string.h>

#include "dtr.h"
#include "dtr_error.h"
#include "dtr_text.h"
#include "dtr_encode.h"
#include "dtr_xfer.h"
#include "dtr_multi.h"
#include "dtr_batch.h"

/* A string field of the plan, raw (a plan changed into nonsense raises). */
static void dtr_batch_field(lua_State *L, int plan, const char *name, dtr_str *out)
{
    lua_pushstring(L, name);
    lua_rawget(L, plan);
    if (lua_type(L, -1) != LUA_TSTRING)
        luaL_error(L, "plan.%s is not a string: the plan was modified", name);
    out->s = lua_tolstring(L, -1, &out->n); /* stays on the stack */
}

/* Whether x was set up for batches of the target at idx and this token. */
static int dtr_batch_same(lua_State *L, dtr_xfer *x, int target, const dtr_str *token)
{
    int same;
    if (!x->batch_ok || x->batch_token == NULL || strlen(x->batch_token) != token->n ||
        memcmp(x->batch_token, token->s, token->n) != 0)
        return 0;
    lua_rawgeti(L, LUA_REGISTRYINDEX, x->batch_target);
    same = lua_rawequal(L, -1, target);
    lua_pop(L, 1);
    return same;
}

/* Remembers the target at idx and the token for x's next batches.
 * Returns 0 when out of memory. */
static int dtr_batch_remember(lua_State *L, dtr_xfer *x, int target, const dtr_str *token)
{
    char *t = (char *)malloc(token->n + 1);
    if (t == NULL)
        return 0;
    memcpy(t, token->s, token->n);
    t[token->n] = '\0';
    free(x->batch_token);
    x->batch_token = t;
    lua_pushvalue(L, target);
    if (x->batch_target == LUA_NOREF)
        x->batch_target = luaL_ref(L, LUA_REGISTRYINDEX);
    else
        lua_rawseti(L, LUA_REGISTRYINDEX, x->batch_target);
    x->batch_ok = 1;
    return 1;
}

int dtr_multi_start_batch(lua_State *L)
{
    dtr_multi *m = dtr_check_multi(L);
    const dtr_opts *t;
    dtr_opts o;
    dtr_str cid, robot, keys[DTR_MAX_KEYS];
    dtr_field f[3];
    dtr_err e;
    dtr_xfer *x;
    int nkeys, j;
    luaL_checktype(L, 2, LUA_TTABLE);
    luaL_checktype(L, 3, LUA_TTABLE);
    t = dtr_test_target(L, 4);
    if (t == NULL)
        return luaL_argerror(L, 4, "a target from core.target expected");
    if (!lua_isnil(L, 5) && lua_type(L, 5) != LUA_TSTRING)
        return luaL_argerror(L, 5, "string expected (the access token)");
    lua_settop(L, 6);
    luaL_checkstack(L, DTR_MAX_KEYS + 16, "dingtalk.recall.curl");
    o = *t;
    o.token.s = lua_isnil(L, 5) ? "" : lua_tolstring(L, 5, &o.token.n);
    if (lua_isnil(L, 5))
        o.token.n = 0;
    if (!dtr_token_ok(&o.token, &e)) {
        dtr_push_err(L, &e);
        lua_pushboolean(L, 1); /* refused: nothing sent */
        return 3;
    }
    dtr_batch_field(L, 2, "conversation", &cid);
    dtr_batch_field(L, 2, "robot", &robot);
    nkeys = (int)dtr_rawlen(L, 3);
    if (nkeys < 1 || nkeys > DTR_MAX_KEYS)
        return luaL_argerror(L, 3, "1 to 20 keys of the plan expected");
    for (j = 0; j < nkeys; j++) {
        lua_rawgeti(L, 3, j + 1); /* stays on the stack: an anchor */
        if (lua_type(L, -1) != LUA_TSTRING)
            return luaL_argerror(L, 3, "the keys must be strings");
        keys[j].s = lua_tolstring(L, -1, &keys[j].n);
    }
    x = dtr_multi_take(L, m);
    if (dtr_batch_same(L, x, 4, &o.token)) {
        size_t n;
        char *body;
        dtr_recall_fields(f, &cid, &robot, keys, nkeys);
        n = dtr_json_object(NULL, f, 3);
        if ((body = dtr_xfer_body(x, n)) == NULL)
            return dtr_multi_drop(L, m, x, "out of memory");
        dtr_json_object(body, f, 3);
        dtr_xfer_post(x, n);
    } else {
        dtr_spec sp;
        dtr_push_recall(L, &cid, &robot, keys, nkeys, &o);
        if (!dtr_read_spec(L, lua_gettop(L), &sp, &e))
            return dtr_multi_drop(L, m, x, "the built batch was refused");
        if (!dtr_xfer_setup(L, x, &sp) || !dtr_batch_remember(L, x, 4, &o.token))
            return dtr_multi_drop(L, m, x, "cannot start a transfer");
    }
    lua_pushinteger(L, dtr_multi_launch(L, m, x, 6));
    dtr_multi_kick(m);
    return 1;
}
