/*
 * dingtalk-recall: internal declarations shared by the C files of the core.
 *
 * The core is compiled as one translation unit: dtr_module.c includes the
 * file of each concern (encode, decode, curl, sign), so every symbol is
 * static and only luaopen_dingtalk_recall_core is exported.  Nothing here
 * is mutable global state: per-state data lives in upvalues and userdata.
 */
#ifndef DTR_H
#define DTR_H

#include <stddef.h>
#include <string.h>

#include "lua.h"
#include "lauxlib.h"

#define DTR_VERSION "0.1.0"
#define DTR_USER_AGENT "dingtalk-recall/" DTR_VERSION

#define DTR_DEFAULT_ENDPOINT "https://api.dingtalk.io"
#define DTR_MAX_KEYS 20                 /* the API's own limit per call */
#define DTR_MAX_FIELD 1024              /* bytes in one id, key or secret */
#define DTR_MAX_ENDPOINT 1024
#define DTR_DEFAULT_TIMEOUT 10.0
#define DTR_DEFAULT_CONNECT_TIMEOUT 3.0
#define DTR_DEFAULT_MAX_RESPONSE 1048576.0
#define DTR_MSG_SIZE 256

/* Upvalues shared by every function of the module and of its objects. */
#define DTR_UV_DECODE 1   /* cjson instance's decode */
#define DTR_UV_ENCODE 2   /* cjson instance's encode */
#define DTR_UV_ERRMT 3    /* metatable of error objects */
#define DTR_UV_REQMT 4    /* metatable of built requests */
#define DTR_UV_SESSION 5  /* easy-handle session of the blocking calls */
#define DTR_NUPVALUES 5

/* ---------------------------------------------------------------------
 * Lua 5.1 / LuaJIT / 5.2 / 5.3 / 5.4 compatibility shims
 * ------------------------------------------------------------------- */
#if LUA_VERSION_NUM < 502
#define dtr_rawlen(L, i) lua_objlen((L), (i))
static void dtr_setfuncs(lua_State *L, const luaL_Reg *l, int nup)
{
    luaL_checkstack(L, nup, "too many upvalues");
    for (; l->name != NULL; l++) {
        int i;
        for (i = 0; i < nup; i++)
            lua_pushvalue(L, -nup);
        lua_pushcclosure(L, l->func, nup);
        lua_setfield(L, -(nup + 2), l->name);
    }
    lua_pop(L, nup);
}
#else
#define dtr_rawlen(L, i) lua_rawlen((L), (i))
#define dtr_setfuncs(L, l, n) luaL_setfuncs((L), (l), (n))
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

/* The one exported symbol. */
LUALIB_API int luaopen_dingtalk_recall_core(lua_State *L);

/* ---------------------------------------------------------------------
 * Shared types
 * ------------------------------------------------------------------- */
typedef struct dtr_str {
    const char *s;
    size_t n;
} dtr_str;

/* One failure, described before it becomes a Lua error object. */
typedef struct dtr_err {
    const char *code;
    char message[DTR_MSG_SIZE];
    int status;               /* HTTP status, 0 when none arrived */
} dtr_err;

/* Transport settings carried by every built request. */
typedef struct dtr_opts {
    dtr_str token;            /* may be empty for token calls */
    char endpoint[DTR_MAX_ENDPOINT + 1]; /* normalised, no trailing '/' */
    int loopback;             /* endpoint host is a loopback address */
    double timeout;
    double connect_timeout;
    double max_response;
    dtr_str ca_file;
} dtr_opts;

/* Response kinds the decoder knows. */
enum dtr_kind { DTR_KIND_RECALL, DTR_KIND_SEND, DTR_KIND_TOKEN };

#endif
