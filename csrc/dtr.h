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
#define lua_absindex(L, i) ((i) > 0 || (i) <= LUA_REGISTRYINDEX ? (i) : lua_gettop(L) + (i) + 1)
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
/* luaL_testudata arrived in 5.2. */
static void *luaL_testudata(lua_State *L, int ud, const char *tname)
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
    /* Parts of endpoint, filled by the endpoint parser. */
    int https;
    int port;                 /* explicit, or 443 / 80 */
    size_t host_off, host_len; /* the host as written ([::1] with brackets) */
    size_t path_off;          /* where the base path starts (== length when none) */
} dtr_opts;

#if defined(__GNUC__) || defined(__clang__)
#define DTR_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define DTR_PRINTF(f, a)
#endif

/* The one error setter: a code and a printf-style message. */
static void dtr_seterr(dtr_err *e, const char *code, const char *fmt, ...) DTR_PRINTF(3, 4);

/* The catalogue of codes (dtr_decode.c) and its flags. */
#define DTR_CODE_RETRY 1u
#define DTR_CODE_AMBIG 2u
#define DTR_CODE_THROTTLE 4u
#define DTR_CODE_FATAL 8u
#define DTR_CODE_AUTH 16u

typedef struct dtr_code_info {
    const char *code;
    int status;               /* HTTP status, 0 when no server sends it */
    unsigned flags;           /* DTR_CODE_* */
    const char *hint;
} dtr_code_info;

typedef struct dtr_reason_info {
    const char *reason;
    int already_recalled;
    const char *hint;
} dtr_reason_info;

/* Response kinds the decoder knows. */
enum dtr_kind { DTR_KIND_RECALL, DTR_KIND_SEND, DTR_KIND_TOKEN };

#endif
