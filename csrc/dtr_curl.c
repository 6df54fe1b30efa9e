/*
 * dingtalk-recall: the libcurl transport, dingtalk.recall.curl.
 *
 * Takes a built request (see dtr_encode.c) and returns the raw
 * (status, headers, body) or a transport error object.  One easy handle
 * per session for blocking calls (this file), one multi handle for
 * concurrent calls (dtr_multi.c); both keep connections alive and set
 * their transfers up the same way (dtr_xfer.c).  TLS is
 * always verified, redirects are never followed, only http and https are
 * spoken, plain http only to loopback, and the answer is capped while it
 * is read.  recall() is build + perform + parse with the core's own
 * compiled units (linked in, hidden), so no Lua round trip and no second
 * copy of the rules.
 */
#include <curl/curl.h>

#include "dtr.h"
#include "dtr_error.h"
#include "dtr_encode.h"
#include "dtr_decode.h"
#include "dtr_xfer.h"
#include "dtr_multi.h"
#include "dtr_clock.h"
#include "dtr_curl.h"

#define DTR_SESSION_MT "dingtalk.recall.session"

/* ---------------------------------------------------------------------
 * Session: one easy handle for blocking calls (core.recall, core.perform)
 * ------------------------------------------------------------------- */

typedef struct dtr_session {
    dtr_xfer *x;
} dtr_session;

static int dtr_session_close(lua_State *L)
{
    dtr_session *s = (dtr_session *)luaL_checkudata(L, 1, DTR_SESSION_MT);
    dtr_xfer_free(s->x);
    s->x = NULL;
    return 0;
}

static dtr_xfer *dtr_session_xfer(lua_State *L, dtr_session *s)
{
    if (s->x == NULL) {
        if (!dtr_curl_ready())
            luaL_error(L, "curl_global_init failed");
        s->x = dtr_xfer_new();
        if (s->x == NULL)
            luaL_error(L, "cannot create a curl handle");
    }
    return s->x;
}

/* Performs the built request at idx on the session's easy handle. */
static int dtr_session_perform(lua_State *L, dtr_session *s, int idx)
{
    dtr_spec sp;
    dtr_err e;
    dtr_xfer *x;
    CURLcode rc;
    if (!dtr_read_spec(L, idx, &sp, &e))
        return dtr_push_err(L, &e);
    x = dtr_session_xfer(L, s);
    if (!dtr_xfer_setup(L, x, &sp))
        return luaL_error(L, "out of memory");
    rc = curl_easy_perform(x->easy);
    return dtr_xfer_push_outcome(L, x, rc);
}

/* core.perform(built) -> status, headers, body | nil, err
 * One blocking exchange of any built request. */
static int dtr_l_perform(lua_State *L)
{
    dtr_session *s = (dtr_session *)luaL_checkudata(L, lua_upvalueindex(DTR_UV_SESSION), DTR_SESSION_MT);
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    return dtr_session_perform(L, s, 1);
}

/* core.recall(request, options) -> result | nil, err
 * Exactly build + perform + parse. */
static int dtr_l_recall(lua_State *L)
{
    dtr_session *s = (dtr_session *)luaL_checkudata(L, lua_upvalueindex(DTR_UV_SESSION), DTR_SESSION_MT);
    int built, top;
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 2);
    if (dtr_build_recall_at(L, 1, 2) == 2)
        return 2;
    built = lua_gettop(L);
    if (dtr_session_perform(L, s, built) == 2)
        return 2;
    /* status, headers, body at the top; the token is a secret. */
    top = lua_gettop(L);
    lua_getfield(L, 2, "access_token");
    return dtr_decode(L, DTR_KIND_RECALL, (int)lua_tointeger(L, top - 2), top - 1, top, top + 1);
}



static const luaL_Reg dtr_curl_functions[] = {
    {"perform", dtr_l_perform},
    {"recall", dtr_l_recall},
    {NULL, NULL}};

int luaopen_dingtalk_recall_curl(lua_State *L)
{
    dtr_session *s;
    lua_newtable(L); /* the module */
    dtr_push_upvalues(L, 1);
    dtr_encode_metatables(L);
    /* The session (upvalue DTR_UV_SESSION) of the blocking calls. */
    luaL_newmetatable(L, DTR_SESSION_MT);
    lua_pushcfunction(L, dtr_session_close);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 2); /* the metatable, and the nil in the session's slot */
    s = (dtr_session *)dtr_newuserdata(L, sizeof *s);
    s->x = NULL;
    luaL_getmetatable(L, DTR_SESSION_MT);
    lua_setmetatable(L, -2);

    dtr_register(L, dtr_curl_functions);
    dtr_xfer_open(L);
    dtr_multi_open(L);
    dtr_clock_open(L);
    lua_pop(L, DTR_NUPVALUES);
    lua_pushliteral(L, DTR_VERSION);
    lua_setfield(L, -2, "_VERSION");
    return 1;
}
