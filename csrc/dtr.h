/*
 * dingtalk-recall: what every compilation unit of the three modules
 * shares: limits, the upvalue layout of module functions, and the
 * helpers that register them.  Every symbol is hidden
 * (-fvisibility=hidden) but the luaopen_* entries; nothing here is
 * mutable global state: per-state data lives in upvalues, the registry
 * and userdata.
 *
 * The modules and their units (each with its own header and *_open):
 *   dingtalk.recall.core     dtr_module.c (entry), dtr_lua.c, dtr_error.c,
 *                            dtr_codes.c, dtr_text.c, dtr_options.c,
 *                            dtr_encode.c, dtr_decode.c, dtr_answer.c,
 *                            dtr_plan.c, dtr_dedupe.c, dtr_target.c, dtr_sign.c,
 *                            dtr_payload.c, dtr_http.c
 *   dingtalk.recall.curl     dtr_curl.c (entry), dtr_xfer.c, dtr_spec.c,
 *                            dtr_multi.c, dtr_batch.c, dtr_clock.c, the plan
 *                            units (m:start_batch reads plans with them),
 *                            and the sans-I/O units above but sign
 *   dingtalk.recall.journal  dtr_journal.c (entry), dtr_jline.c, dtr_jsync.c,
 *                            dtr_files.c, dtr_text.c (the JSON string
 *                            writer), dtr_lua.c, dtr_error.c, dtr_codes.c
 */
#ifndef DTR_H
#define DTR_H

#include <stddef.h>
#include <string.h>

#include "lua.h"
#include "lauxlib.h"

#include "dtr_compat.h"

/* Every declaration of the internal headers sits between these, so it is
 * hidden also when the build does not pass -fvisibility=hidden (luarocks'
 * builtin type); only the luaopen_* entries say otherwise (DTR_EXPORT). */
#if defined(__GNUC__) || defined(__clang__)
#define DTR_HIDDEN_BEGIN _Pragma("GCC visibility push(hidden)")
#define DTR_HIDDEN_END _Pragma("GCC visibility pop")
#else
#define DTR_HIDDEN_BEGIN
#define DTR_HIDDEN_END
#endif

DTR_HIDDEN_BEGIN

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

#if defined(__GNUC__) || defined(__clang__)
#define DTR_EXPORT __attribute__((visibility("default")))
#define DTR_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define DTR_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define DTR_EXPORT
#define DTR_PRINTF(f, a)
#define DTR_ALWAYS_INLINE inline
#endif

/* Upvalues of every module function (all three modules, same layout;
 * unused slots are nil). */
#define DTR_UV_DECODE 1   /* private cjson instance's decode */
#define DTR_UV_ENCODE 2   /* private cjson instance's encode */
#define DTR_UV_ERRMT 3    /* metatable of error objects */
#define DTR_UV_REQMT 4    /* metatable of built requests */
#define DTR_UV_NAMES 5    /* the values of the hot paths (below), made once */
#define DTR_UV_SESSION 6  /* easy-handle session of the blocking calls (last) */
#define DTR_NUPVALUES 6

/* The entries of the DTR_UV_NAMES array: the plan and target metatables,
 * the plan's field names (interned once: a lookup by them hashes
 * nothing) and a plan's shared empty, read-only map of refused keys. */
#define DTR_N_PLANMT 1
#define DTR_N_TARGETMT 2
#define DTR_N_CONVERSATION 3
#define DTR_N_ROBOT 4
#define DTR_N_TOTAL 5
#define DTR_N_NBATCHES 6
#define DTR_N_DUPLICATES 7
#define DTR_N_NINVALID 8
#define DTR_N_INVALID 9
#define DTR_N_NOINVALID 10
#define DTR_N_COUNT 10
/* Pushes entry i of the names (in a function registered by dtr_register). */
#define dtr_push_name(L, i) lua_rawgeti((L), lua_upvalueindex(DTR_UV_NAMES), (i))

/* A string of the caller's, anchored on the Lua stack while in use. */
typedef struct dtr_str {
    const char *s;
    size_t n;
} dtr_str;

/* dtr_lua.c: module tables.  A luaopen_* pushes the module table and the
 * DTR_NUPVALUES upvalues above it (dtr_push_upvalues); each *_open(L)
 * then adds its functions with dtr_register. */
void dtr_push_upvalues(lua_State *L, int with_cjson);
void dtr_register(lua_State *L, const luaL_Reg *l);
/* Sets the functions of l, with the same upvalues, into the table at t. */
void dtr_register_into(lua_State *L, int t, const luaL_Reg *l);

DTR_HIDDEN_END

/* The entries (the only exported symbols). */
DTR_EXPORT int luaopen_dingtalk_recall_core(lua_State *L);
DTR_EXPORT int luaopen_dingtalk_recall_curl(lua_State *L);
DTR_EXPORT int luaopen_dingtalk_recall_journal(lua_State *L);

#endif
