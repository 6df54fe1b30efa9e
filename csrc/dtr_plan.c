/*
 * dingtalk-recall: plans and their batches (sans I/O).
 *
 *   core.plan(conversation, robot, keys) -> plan | nil, err
 *       Validates the conversation and robot once and each key once,
 *       drops duplicates, and cuts batches of at most 20 keys in input
 *       order.  A key refused on its content (empty, too long, control
 *       characters, invalid UTF-8) does not fail the plan: it goes to
 *       plan.invalid[key] = err.  A sparse array or a non-string entry
 *       fails the whole plan (nil, err naming the index): nothing is sent
 *       for input that cannot be honoured.
 *   core.build_batch(plan, i, target, token) -> built | nil, err
 *       Batch i of the plan, built for the target; the keys are not
 *       checked again (the plan did), the token is.
 *   core.batch(plan, i) -> keys | nil
 *       Batch i as a fresh array the plan does not keep (plan[i] makes it
 *       once and keeps it): an engine holds only the batches in flight.
 *       A plan of one batch keeps it from the start (plan[1] is its keys
 *       array: no copy), and core.batch gives that.
 *   core.new_array(n) -> table
 *       An empty table with room for n array entries.
 *
 * A plan holds its deduplicated keys once, in one array; batch i is the
 * range (i-1)*20+1 .. i*20 of it, computed, not stored.  Duplicates are
 * found with a hash set of entry numbers in the allocator's memory, freed
 * before core.plan returns (no Lua table of seen keys; dtr_dedupe.c).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "dtr.h"
#include "dtr_error.h"
#include "dtr_text.h"
#include "dtr_encode.h"
#include "dtr_plan.h"
#include "dtr_dedupe.h"
#include "dtr_target.h"

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

/* Checks that the table at idx is an array 1..n of strings without holes (in
 * one pass over it); sets *n, and cap[k-1] to entry k for k up to
 * DTR_DEDUPE_FEW (anchored by the table: nothing runs that could change it).
 * Fills e naming the offending index otherwise. */
static int dtr_plan_shape(lua_State *L, int idx, size_t *n, dtr_str *cap, dtr_err *e)
{
    size_t count = 0, i;
    lua_Number max = 0, bad = 0; /* bad: the lowest index of an entry that is not a string */
    int badt = LUA_TNIL;
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        lua_Number k;
        int t = lua_type(L, -1);
        count++;
        if (lua_type(L, -2) != LUA_TNUMBER) {
            dtr_seterr(e, "invalidParameter.param.invalid",
                       "keys must be an array: it has a %s index (entry %lu)", luaL_typename(L, -2),
                       (unsigned long)count);
            lua_pop(L, 2);
            return 0;
        }
        k = lua_tonumber(L, -2);
        /* 2^53: past it, doubles skip integers and counts mean nothing. */
        if (!(k >= 1 && k <= 9007199254740992.0) || k != floor(k)) {
            dtr_seterr(e, "invalidParameter.param.invalid", "keys must be an array: it has the index %.17g", k);
            lua_pop(L, 2);
            return 0;
        }
        if (k > max)
            max = k;
        if (t != LUA_TSTRING) {
            if (bad == 0 || k < bad) {
                bad = k;
                badt = t;
            }
        } else if (k <= DTR_DEDUPE_FEW) {
            cap[(size_t)k - 1].s = lua_tolstring(L, -1, &cap[(size_t)k - 1].n);
        }
        lua_pop(L, 1);
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
    if (bad != 0) { /* an array, but not of strings */
        dtr_seterr(e, "invalidParameter.param.invalid", "keys[%lu] is not a string (a %s)", (unsigned long)bad,
                   lua_typename(L, badt));
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

/* plan[name] = v, the name from the upvalue (no string made or hashed). */
static void dtr_plan_setint(lua_State *L, int t, int name, size_t v)
{
    dtr_push_name(L, name);
    lua_pushinteger(L, (lua_Integer)v);
    lua_rawset(L, t);
}

/* The plan's keys (the deduplicated, valid ones, in input order) live in
 * one array under this light-userdata key of the plan table; batch i is
 * keys[(i-1)*20+1 .. min(i*20, #keys)], computed, never stored.  Only its
 * address matters (immutable). */
static const char dtr_plan_keys_slot = 'k';

static void dtr_plan_push_keys(lua_State *L, int plan)
{
    lua_pushlightuserdata(L, (void *)&dtr_plan_keys_slot);
    lua_rawget(L, plan);
}

/* core.plan(conversation, robot, keys) -> plan | nil, err */
static int dtr_l_plan(lua_State *L)
{
    dtr_str cid, robot, cap[DTR_DEDUPE_FEW];
    dtr_err e;
    size_t n, i, total = 0, ninvalid = 0, nkeep = 0, nbad = 0;
    unsigned char *state, few[DTR_DEDUPE_FEW];
    int plan, store, invalid;
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
    if (!dtr_plan_shape(L, 3, &n, cap, &e))
        return dtr_push_err(L, &e);
    if (n == 0) {
        dtr_seterr(&e, "invalidParameter.processQueryKey.missing", "keys is empty");
        return dtr_push_err(L, &e);
    }
    /* (Every entry is a string: dtr_plan_shape saw them all.) */
    /* One byte per entry (a few on the stack, else a userdata: freed by
     * the collector if anything below raises), then the set, freed at once. */
    if (n <= DTR_DEDUPE_FEW) {
        state = few;
        lua_pushnil(L); /* at 4, as the userdata */
    } else {
        state = (unsigned char *)dtr_newuserdata(L, n); /* at 4 */
    }
    if (!dtr_dedupe(L, 3, n, n <= DTR_DEDUPE_FEW ? cap : NULL, state, &nkeep, &nbad))
        return luaL_error(L, "dingtalk.recall.core: not enough memory to plan %lu keys", (unsigned long)n);
    lua_createtable(L, nkeep <= DTR_MAX_KEYS, 8); /* its eight fields, the keys slot among them */
    plan = lua_gettop(L);
    lua_createtable(L, (int)nkeep, 0);
    store = lua_gettop(L);
    if (nbad == 0)
        dtr_push_name(L, DTR_N_NOINVALID); /* shared, read-only: nothing is set in it */
    else
        lua_createtable(L, 0, (int)nbad);
    invalid = lua_gettop(L);
    for (i = 1; i <= n; i++) {
        if (state[i - 1] == DTR_KEY_KEEP) {
            lua_rawgeti(L, 3, (int)i);
            lua_rawseti(L, store, (int)++total);
        } else if (state[i - 1] == DTR_KEY_BAD) {
            dtr_str k;
            lua_rawgeti(L, 3, (int)i);
            k.s = lua_tolstring(L, -1, &k.n);
            dtr_plan_key_error(L, &k, i);
            lua_rawset(L, invalid);
            ninvalid++;
        }
    }
    dtr_push_name(L, DTR_N_INVALID);
    lua_insert(L, invalid);
    lua_rawset(L, plan);
    if (total >= 1 && total <= DTR_MAX_KEYS) { /* one batch: plan[1] is the keys array itself */
        lua_pushvalue(L, store);
        lua_rawseti(L, plan, 1);
    }
    lua_pushlightuserdata(L, (void *)&dtr_plan_keys_slot);
    lua_insert(L, store);
    lua_rawset(L, plan);
    dtr_push_name(L, DTR_N_CONVERSATION);
    lua_pushvalue(L, 1);
    lua_rawset(L, plan);
    dtr_push_name(L, DTR_N_ROBOT);
    lua_pushvalue(L, 2);
    lua_rawset(L, plan);
    dtr_plan_setint(L, plan, DTR_N_TOTAL, total);
    dtr_plan_setint(L, plan, DTR_N_NBATCHES, (total + DTR_MAX_KEYS - 1) / DTR_MAX_KEYS);
    dtr_plan_setint(L, plan, DTR_N_DUPLICATES, n - nkeep - nbad);
    dtr_plan_setint(L, plan, DTR_N_NINVALID, ninvalid);
    dtr_push_name(L, DTR_N_PLANMT);
    lua_setmetatable(L, plan);
    return 1;
}

/* Whether the value at idx is a plan of core.plan. */
static int dtr_is_plan(lua_State *L, int idx)
{
    int ismt;
    if (lua_type(L, idx) != LUA_TTABLE)
        return 0;
    ismt = lua_getmetatable(L, idx);
    if (ismt) {
        dtr_push_name(L, DTR_N_PLANMT);
        ismt = lua_rawequal(L, -1, -2);
        lua_pop(L, 2);
    }
    return ismt;
}

/* Pushes the keys array of plan and sets the range [*first, *last] of
 * batch bi in it; 0 (nothing pushed) when the plan has no such batch. */
static int dtr_plan_range(lua_State *L, int plan, lua_Integer bi, size_t *first, size_t *last)
{
    size_t total;
    dtr_plan_push_keys(L, plan);
    if (lua_type(L, -1) != LUA_TTABLE) {
        lua_pop(L, 1);
        return 0;
    }
    total = dtr_rawlen(L, -1);
    if (bi < 1 || (size_t)(bi - 1) >= (total + DTR_MAX_KEYS - 1) / DTR_MAX_KEYS) {
        lua_pop(L, 1);
        return 0;
    }
    *first = (size_t)(bi - 1) * DTR_MAX_KEYS + 1;
    *last = *first + DTR_MAX_KEYS - 1;
    if (*last > total)
        *last = total;
    return 1;
}

/* Pushes batch bi of the plan at idx as a fresh array, or nil. */
static void dtr_plan_push_batch(lua_State *L, int plan, lua_Integer bi)
{
    size_t first, last, j;
    int keys;
    if (!dtr_plan_range(L, plan, bi, &first, &last)) {
        lua_pushnil(L);
        return;
    }
    keys = lua_gettop(L);
    lua_createtable(L, (int)(last - first + 1), 0);
    for (j = first; j <= last; j++) {
        lua_rawgeti(L, keys, (int)j);
        lua_rawseti(L, -2, (int)(j - first + 1));
    }
    lua_remove(L, keys);
}

/* The index of a batch number at idx, or 0 when it is none. */
static lua_Integer dtr_plan_index(lua_State *L, int idx)
{
    lua_Number d;
    if (lua_type(L, idx) != LUA_TNUMBER)
        return 0;
    d = lua_tonumber(L, idx);
    if (!(d >= 1 && d <= 0x7fffffff) || d != floor(d))
        return 0;
    return (lua_Integer)d;
}

/* plan[i]: batch i, made at first use and kept in the plan (so that it
 * is the same table each time); other keys are nil. */
static int dtr_plan_index_mm(lua_State *L)
{
    lua_Integer bi = dtr_plan_index(L, 2);
    if (bi == 0) {
        lua_pushnil(L);
        return 1;
    }
    dtr_plan_push_batch(L, 1, bi);
    if (!lua_isnil(L, -1)) {
        lua_pushinteger(L, bi);
        lua_pushvalue(L, -2);
        lua_rawset(L, 1);
    }
    return 1;
}

/* core.batch(plan, i) -> keys | nil: batch i as an array (the plan's own
 * plan[i] when it was made already, else a fresh array the plan does not
 * keep: an engine holds only the batches in flight). */
static int dtr_l_batch(lua_State *L)
{
    lua_Integer bi;
    if (!dtr_is_plan(L, 1))
        return luaL_argerror(L, 1, "a plan from core.plan expected");
    bi = luaL_checkinteger(L, 2);
    lua_settop(L, 2);
    lua_rawget(L, 1);
    if (!lua_isnil(L, -1))
        return 1;
    if (bi < 1 || bi > 0x7fffffff)
        lua_pushnil(L);
    else
        dtr_plan_push_batch(L, 1, bi);
    return 1;
}

/* core.new_array(n) -> an empty table with room for n array entries (a
 * report's recalled keys, filled in order without growing). */
static int dtr_l_new_array(lua_State *L)
{
    lua_Number n;
    luaL_checktype(L, 1, LUA_TNUMBER);
    n = lua_tonumber(L, 1);
    if (!(n >= 0 && n <= 0x7fffffff) || n != floor(n))
        return luaL_argerror(L, 1, "a count in 0..2^31-1 expected");
    lua_createtable(L, (int)n, 0);
    return 1;
}

/* A string field of a plan, raw; a plan changed into nonsense raises. */
static void dtr_plan_field(lua_State *L, int plan, int name, dtr_str *out)
{
    dtr_push_name(L, name);
    lua_rawget(L, plan);
    if (lua_type(L, -1) != LUA_TSTRING)
        luaL_error(L, "plan.%s is not a string: the plan was modified",
                   name == DTR_N_CONVERSATION ? "conversation" : "robot");
    out->s = lua_tolstring(L, -1, &out->n); /* stays on the stack */
}

/* The keys of batch bi's array at idx (plan[bi], or core.batch's) onto the
 * stack (anchors) and into keys[]: their number; raises when it is not 1
 * to 20 strings (the plan or the batch was modified). */
static int dtr_batch_keys(lua_State *L, int batch, lua_Integer bi, dtr_str *keys)
{
    int nkeys = (int)dtr_rawlen(L, batch), j;
    if (nkeys < 1 || nkeys > DTR_MAX_KEYS)
        return luaL_error(L, "batch %d of the plan has %d keys: the plan was modified", (int)bi, nkeys);
    for (j = 0; j < nkeys; j++) {
        lua_rawgeti(L, batch, j + 1); /* stays on the stack: an anchor */
        if (lua_type(L, -1) != LUA_TSTRING)
            return luaL_error(L, "batch %d of the plan holds a non-string: the plan was modified", (int)bi);
        keys[j].s = lua_tolstring(L, -1, &keys[j].n);
    }
    return nkeys;
}

/* The keys of batch bi onto the stack (anchors) and into keys[]: from
 * plan[bi] when it was made (checked again: the caller may have changed
 * it), else straight from the plan's keys.  Returns their number; raises
 * when there is no such batch or the plan was modified. */
static int dtr_plan_keys(lua_State *L, int plan, lua_Integer bi, dtr_str *keys)
{
    int nkeys;
    size_t first, last, k;
    lua_rawgeti(L, plan, (int)bi);
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TTABLE)
            return luaL_argerror(L, 2, "no such batch in the plan");
        return dtr_batch_keys(L, lua_gettop(L), bi, keys);
    }
    lua_pop(L, 1);
    if (!dtr_plan_range(L, plan, bi, &first, &last))
        return luaL_argerror(L, 2, "no such batch in the plan");
    nkeys = (int)(last - first + 1);
    for (k = first; k <= last; k++) {
        /* the keys array anchors them; it is at the top - (k - first) - 1 */
        lua_rawgeti(L, -(int)(k - first) - 1, (int)k);
        if (lua_type(L, -1) != LUA_TSTRING)
            return luaL_error(L, "batch %d of the plan holds a non-string: the plan was modified", (int)bi);
        keys[k - first].s = lua_tolstring(L, -1, &keys[k - first].n);
    }
    return nkeys;
}

/* The arguments of core.build_batch at base..base+3 (plan, i, target,
 * token), or with the batch's keys array (core.batch's) for i when
 * by_keys: raises for wrong ones; returns the number of keys (anchored on
 * the stack, in keys[]) with the plan's ids and the target's settings and
 * token in o, or 0 with e set when the token is refused. */
int dtr_plan_batch_args(lua_State *L, int base, int by_keys, dtr_str *cid, dtr_str *robot, dtr_str *keys,
                        dtr_opts *o, dtr_err *e)
{
    lua_Integer bi = 1;
    int nkeys;
    const dtr_opts *t;
    luaL_checktype(L, base, LUA_TTABLE);
    if (!dtr_is_plan(L, base))
        return luaL_argerror(L, base, "a plan from core.plan expected");
    if (by_keys)
        luaL_checktype(L, base + 1, LUA_TTABLE);
    else
        bi = luaL_checkinteger(L, base + 1);
    t = dtr_test_target(L, base + 2);
    if (t == NULL)
        return luaL_argerror(L, base + 2, "a target from core.target expected");
    if (!lua_isnil(L, base + 3) && lua_type(L, base + 3) != LUA_TSTRING)
        return luaL_argerror(L, base + 3, "string expected (the access token)");
    luaL_checkstack(L, DTR_MAX_KEYS + 16, "dingtalk.recall.core");
    if (bi < 1 || bi > 0x7fffffff)
        return luaL_argerror(L, base + 1, "no such batch in the plan");
    *o = *t;
    if (lua_isnil(L, base + 3)) {
        o->token.s = "";
        o->token.n = 0;
    } else {
        o->token.s = lua_tolstring(L, base + 3, &o->token.n);
    }
    dtr_plan_field(L, base, DTR_N_CONVERSATION, cid);
    dtr_plan_field(L, base, DTR_N_ROBOT, robot);
    nkeys = by_keys ? dtr_batch_keys(L, base + 1, 0, keys) : dtr_plan_keys(L, base, bi, keys);
    if (!dtr_token_ok(&o->token, e))
        return 0;
    return nkeys;
}

/* core.build_batch(plan, i, target, token) -> built | nil, err */
static int dtr_l_build_batch(lua_State *L)
{
    dtr_str cid, robot, keys[DTR_MAX_KEYS];
    dtr_opts o;
    dtr_err e;
    int nkeys = dtr_plan_batch_args(L, 1, 0, &cid, &robot, keys, &o, &e);
    if (nkeys == 0)
        return dtr_push_err(L, &e);
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
    {"build_batch", dtr_l_build_batch},
    {"batch", dtr_l_batch},
    {"new_array", dtr_l_new_array},
    {NULL, NULL}};

/* The plan and target metatables, and the functions. */
void dtr_plan_open(lua_State *L)
{
    luaL_newmetatable(L, DTR_PLAN_MT);
    lua_pushliteral(L, DTR_PLAN_MT);
    lua_setfield(L, -2, "__name");
    lua_pushcfunction(L, dtr_plan_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushcfunction(L, dtr_plan_index_mm);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);

    dtr_target_open(L);
    dtr_register(L, dtr_plan_functions);
}
