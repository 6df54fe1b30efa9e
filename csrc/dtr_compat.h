/*
 * dingtalk-recall: Lua 5.1 / LuaJIT / 5.2 / 5.3 / 5.4 compatibility shims.
 * Small and static inline, so each compilation unit takes what it uses.
 */
#ifndef DTR_COMPAT_H
#define DTR_COMPAT_H

#include "lua.h"
#include "lauxlib.h"

#if LUA_VERSION_NUM < 502
#define dtr_rawlen(L, i) lua_objlen((L), (i))
#define dtr_absindex(L, i) ((i) > 0 || (i) <= LUA_REGISTRYINDEX ? (i) : lua_gettop(L) + (i) + 1)
/* luaL_testudata arrived in 5.2. */
static inline void *dtr_testudata(lua_State *L, int ud, const char *tname)
{
    void *p = lua_touserdata(L, ud);
    if (p != NULL && lua_getmetatable(L, ud)) {
        lua_getfield(L, LUA_REGISTRYINDEX, tname);
        if (!lua_rawequal(L, -1, -2))
            p = NULL;
        lua_pop(L, 2);
        return p;
    }
    return NULL;
}
#else
#define dtr_rawlen(L, i) lua_rawlen((L), (i))
#define dtr_absindex(L, i) lua_absindex((L), (i))
#define dtr_testudata(L, i, t) luaL_testudata((L), (i), (t))
#endif

#if LUA_VERSION_NUM >= 503
#define dtr_isinteger(L, i) lua_isinteger((L), (i))
#else
#define dtr_isinteger(L, i) 0
#endif

#if LUA_VERSION_NUM >= 504
#define dtr_newuserdata(L, sz) lua_newuserdatauv((L), (sz), 1)
#else
#define dtr_newuserdata(L, sz) lua_newuserdata((L), (sz))
#endif

#endif
