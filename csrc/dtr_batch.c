/*
 * dingtalk-recall: a recall batch started on the multi handle without a
 * built request table.
 *
 *   m:start_batch(plan, keys, target, token [, tag]) -> id | nil, err [, true]
 *
 * The request core.build_batch(plan, i, target, token) builds for keys =
 * core.batch(plan, i) (the same argument and token checks, fields and
 * JSON writer), sent like m:start(built, tag).  A handle's first batch
 * for a (target, token), or the first after any other request, is built
 * as a table by the builder (dtr_push_recall) and read and set up like
 * every request; the handle then keeps that URL, those headers and
 * settings, and the batches after it only write their body into the
 * handle's buffer: no Lua table and no Lua string per batch.  The target is held (a registry
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
#include "dtr_plan.h"
#include "dtr_multi.h"
#include "dtr_batch.h"

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
    dtr_opts o;
    dtr_str cid, robot, keys[DTR_MAX_KEYS];
    dtr_field f[3];
    dtr_err e;
    dtr_xfer *x;
    int nkeys;
    lua_settop(L, 6);
    nkeys = dtr_plan_batch_args(L, 2, 1, &cid, &robot, keys, &o, &e);
    if (nkeys == 0) {
        dtr_push_err(L, &e);
        lua_pushboolean(L, 1); /* refused: nothing sent */
        return 3;
    }
    x = dtr_multi_take(L, m);
    if (dtr_batch_same(L, x, 4, &o.token)) {
        size_t n;
        char *body;
        /* One pass: room for every byte escaped, then the body written
         * once (not measured first). */
        dtr_recall_fields(f, &cid, &robot, keys, nkeys);
        n = dtr_json_object_bound(f, 3, (size_t)-1);
        if ((body = dtr_xfer_body(x, n)) == NULL)
            return dtr_multi_drop(L, m, x, "out of memory");
        n = dtr_json_object(body, f, 3);
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
