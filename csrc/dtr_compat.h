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
#else
#define dtr_rawlen(L, i) lua_rawlen((L), (i))
#define dtr_absindex(L, i) lua_absindex((L), (i))
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
