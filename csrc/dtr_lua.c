/*
 * dingtalk-recall: module tables and their shared upvalues.
 */
#include "dtr.h"
#include "dtr_error.h"
#include "dtr_options.h"
#include "dtr_plan.h"

/* Pushes a private lua-cjson instance's decode and encode (the user's
 * cjson settings do not reach us).  The instance is made once per state
 * and kept in the registry. */
static void dtr_push_cjson(lua_State *L)
{
    lua_getfield(L, LUA_REGISTRYINDEX, "dingtalk.recall.cjson");
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_getglobal(L, "require");
        lua_pushliteral(L, "cjson");
        if (lua_pcall(L, 1, 1, 0) != 0) {
            lua_pop(L, 1);
            luaL_error(L, "dingtalk.recall needs lua-cjson (module 'cjson')");
        }
        lua_getfield(L, -1, "new");
        if (lua_isfunction(L, -1)) {
            lua_call(L, 0, 1);
            lua_remove(L, -2);
        } else {
            lua_pop(L, 1);
        }
        lua_pushvalue(L, -1);
        lua_setfield(L, LUA_REGISTRYINDEX, "dingtalk.recall.cjson");
    }
    lua_getfield(L, -1, "decode");
    lua_getfield(L, -2, "encode");
    lua_remove(L, -3);
}

static int dtr_read_only(lua_State *L)
{
    return luaL_error(L, "a plan's map of refused keys is read-only");
}

/* The DTR_UV_NAMES array (dtr.h), made once per state and kept in the
 * registry (the plan and target metatables are the registry's own). */
static void dtr_push_names(lua_State *L)
{
    static const char *const names[] = {"conversation", "robot", "total", "nbatches", "duplicates", "ninvalid",
                                        "invalid"};
    int i;
    lua_getfield(L, LUA_REGISTRYINDEX, "dingtalk.recall.names");
    if (!lua_isnil(L, -1))
        return;
    lua_pop(L, 1);
    lua_createtable(L, DTR_N_COUNT, 0);
    luaL_newmetatable(L, DTR_PLAN_MT);
    lua_rawseti(L, -2, DTR_N_PLANMT);
    luaL_newmetatable(L, DTR_TARGET_MT);
    lua_rawseti(L, -2, DTR_N_TARGETMT);
    for (i = 0; i < (int)(sizeof names / sizeof names[0]); i++) {
        lua_pushstring(L, names[i]);
        lua_rawseti(L, -2, DTR_N_CONVERSATION + i);
    }
    /* plan.invalid of a plan that refused no key: one empty table, which
     * no one can fill (nor change its metatable) */
    lua_newtable(L);
    lua_createtable(L, 0, 2);
    lua_pushcfunction(L, dtr_read_only);
    lua_setfield(L, -2, "__newindex");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, -2);
    lua_rawseti(L, -2, DTR_N_NOINVALID);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, "dingtalk.recall.names");
}

void dtr_push_upvalues(lua_State *L, int with_cjson)
{
    luaL_checkstack(L, DTR_NUPVALUES + 4, "dingtalk.recall");
    if (with_cjson) {
        dtr_push_cjson(L);
    } else {
        lua_pushnil(L);
        lua_pushnil(L);
    }
    dtr_error_metatable(L);
    luaL_newmetatable(L, "dingtalk.recall.request");
    dtr_push_names(L);
    lua_pushnil(L); /* the session: dingtalk.recall.curl's own */
}

void dtr_register_into(lua_State *L, int t, const luaL_Reg *l)
{
    int i, first = lua_gettop(L) - DTR_NUPVALUES + 1;
    t = dtr_absindex(L, t);
    luaL_checkstack(L, DTR_NUPVALUES + 2, "dingtalk.recall");
    for (; l->name != NULL; l++) {
        for (i = 0; i < DTR_NUPVALUES; i++)
            lua_pushvalue(L, first + i);
        lua_pushcclosure(L, l->func, DTR_NUPVALUES);
        lua_setfield(L, t, l->name);
    }
}

void dtr_register(lua_State *L, const luaL_Reg *l)
{
    dtr_register_into(L, -(DTR_NUPVALUES + 1), l);
}
