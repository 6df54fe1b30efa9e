/*
 * dingtalk-recall: request building (sans I/O).
 *
 * Everything a request carries is checked here before a byte is sent:
 * field presence with the API's own error codes, types and the 20-key
 * limit; the access token and the transport options are read by
 * dtr_options.c.
 * Every string read from a caller's table stays on the Lua stack until
 * its last use: the table may answer through __index (a proxy), and then
 * nothing else keeps the string alive.
 */
#include <stdio.h>
#include <string.h>

#include "dtr.h"
#include "dtr_error.h"
#include "dtr_text.h"
#include "dtr_encode.h"

/* ---------------------------------------------------------------------
 * Requests
 * ------------------------------------------------------------------- */

typedef struct dtr_recall_req {
    dtr_str cid, robot;
    dtr_str keys[DTR_MAX_KEYS];
    int nkeys;
} dtr_recall_req;

/* Checks the recall request table at idx.  Leaves its values on the
 * stack (anchors, see dtr_text_field): the caller returns the top. */
static int dtr_check_recall(lua_State *L, int idx, dtr_recall_req *r, dtr_err *e)
{
    size_t n, i;
    int t, keys;
    luaL_checktype(L, idx, LUA_TTABLE);
    luaL_checkstack(L, DTR_MAX_KEYS + 16, "dingtalk.recall.core");
    if (!dtr_text_field(L, idx, "openConversationId", "miss.openConversationId", &r->cid, e))
        return 0;
    if (!dtr_text_field(L, idx, "robotCode", "miss.chatbotId", &r->robot, e))
        return 0;
    lua_getfield(L, idx, "processQueryKeys");
    keys = lua_gettop(L);
    t = lua_type(L, keys);
    if (t == LUA_TNIL) {
        dtr_seterr(e, "invalidParameter.processQueryKey.missing", "%s is missing", "processQueryKeys");
        return 0;
    }
    if (t != LUA_TTABLE) {
        dtr_seterr(e, "invalidParameter.param.invalid", "%s must be an array of strings", "processQueryKeys");
        return 0;
    }
    /* A sequence: keys 1..n and nothing else. */
    n = dtr_rawlen(L, keys);
    {
        size_t count = 0;
        lua_pushnil(L);
        while (lua_next(L, keys) != 0) {
            lua_Number k;
            lua_pop(L, 1);
            count++;
            if (lua_type(L, -1) != LUA_TNUMBER || (k = lua_tonumber(L, -1)) < 1 || k > (lua_Number)n ||
                k != (lua_Number)(size_t)k) {
                lua_pop(L, 1);
                dtr_seterr(e, "invalidParameter.param.invalid", "%s must be an array (a sequence), not a map",
                           "processQueryKeys");
                return 0;
            }
        }
        if (count != n) {
            dtr_seterr(e, "invalidParameter.param.invalid", "%s must be an array without holes",
                       "processQueryKeys");
            return 0;
        }
    }
    if (n == 0) {
        dtr_seterr(e, "invalidParameter.processQueryKey.missing", "%s is empty", "processQueryKeys");
        return 0;
    }
    if (n > DTR_MAX_KEYS) {
        dtr_seterr(e, "invalidParameter.processQueryKeys.overMax",
                   "processQueryKeys has %lu keys; at most %d are allowed per call", (unsigned long)n,
                   DTR_MAX_KEYS);
        return 0;
    }
    for (i = 0; i < n; i++) {
        int bad;
        dtr_str *k = &r->keys[i];
        lua_rawgeti(L, keys, (int)i + 1); /* stays on the stack: an anchor */
        if (lua_type(L, -1) != LUA_TSTRING) {
            dtr_seterr(e, "invalidParameter.param.invalid", "%s[%d] must be a string", "processQueryKeys",
                       (int)i + 1);
            return 0;
        }
        k->s = lua_tolstring(L, -1, &k->n);
        if (k->n == 0) {
            dtr_seterr(e, "invalidParameter.param.invalid", "%s[%d] is empty", "processQueryKeys", (int)i + 1);
            return 0;
        }
        bad = k->n > DTR_MAX_FIELD ? 3 : dtr_text_check((const unsigned char *)k->s, k->n);
        if (bad) {
            dtr_seterr(e, "invalidParameter.param.invalid",
                       bad == 1   ? "%s[%d] contains a control character"
                       : bad == 2 ? "%s[%d] is not valid UTF-8"
                                  : "%s[%d] is longer than 1024 bytes",
                       "processQueryKeys", (int)i + 1);
            return 0;
        }
    }
    r->nkeys = (int)n;
    return 1;
}

/* Pushes the built request {method, url, path, headers, body, ...}; the
 * body is the string at the top, which it replaces. */
static void dtr_push_built(lua_State *L, const dtr_opts *o, const char *path)
{
    size_t eplen = strlen(o->endpoint);
    lua_createtable(L, 0, 11);
    lua_insert(L, -2);
    lua_setfield(L, -2, "body");
    lua_pushliteral(L, "POST");
    lua_setfield(L, -2, "method");
    lua_pushlstring(L, o->endpoint, eplen);
    lua_pushstring(L, path);
    lua_concat(L, 2);
    lua_setfield(L, -2, "url");
    /* The request target: the endpoint's base path and the API path. */
    lua_pushlstring(L, o->endpoint + o->path_off, eplen - o->path_off);
    lua_pushstring(L, path);
    lua_concat(L, 2);
    lua_setfield(L, -2, "path");

    lua_createtable(L, 0, 5);
    lua_pushliteral(L, "application/json; charset=utf-8");
    lua_setfield(L, -2, "content-type");
    lua_pushliteral(L, "application/json");
    lua_setfield(L, -2, "accept");
    lua_pushliteral(L, DTR_USER_AGENT);
    lua_setfield(L, -2, "user-agent");
    if (o->token.n > 0) {
        lua_pushlstring(L, o->token.s, o->token.n);
        lua_setfield(L, -2, "x-acs-dingtalk-access-token");
    }
    lua_setfield(L, -2, "headers");

    lua_pushnumber(L, o->timeout);
    lua_setfield(L, -2, "timeout");
    lua_pushnumber(L, o->connect_timeout);
    lua_setfield(L, -2, "connect_timeout");
    lua_pushnumber(L, o->max_response);
    lua_setfield(L, -2, "max_response_bytes");
    if (o->ca_file.n > 0) {
        lua_pushlstring(L, o->ca_file.s, o->ca_file.n);
        lua_setfield(L, -2, "ca_file");
    }
    lua_pushboolean(L, o->loopback);
    lua_setfield(L, -2, "loopback");
    /* tostring() of a built request never shows the token. */
    lua_pushvalue(L, lua_upvalueindex(DTR_UV_REQMT));
    lua_setmetatable(L, -2);
}

/* Pushes the recall body and the built request for checked values. */
void dtr_recall_fields(dtr_field f[3], const dtr_str *cid, const dtr_str *robot, const dtr_str *keys, int nkeys)
{
    /* The official SDK's field order. */
    f[0].name = "openConversationId"; f[0].vals = cid; f[0].count = -1;
    f[1].name = "processQueryKeys"; f[1].vals = keys; f[1].count = nkeys;
    f[2].name = "robotCode"; f[2].vals = robot; f[2].count = -1;
}

void dtr_push_recall(lua_State *L, const dtr_str *cid, const dtr_str *robot, const dtr_str *keys,
                            int nkeys, const dtr_opts *o)
{
    dtr_field f[3];
    dtr_recall_fields(f, cid, robot, keys, nkeys);
    dtr_push_json_object(L, f, 3);
    dtr_push_built(L, o, DTR_PATH_RECALL);
}

/*
 * Builds the recall request.  On success pushes the built table and
 * returns 1; on failure pushes nil, err and returns 2 (ready to return).
 * Either way the results are at the top, above the anchors.
 */
int dtr_build_recall_at(lua_State *L, int req, int opt)
{
    dtr_recall_req r;
    dtr_opts o;
    dtr_err e;
    if (!dtr_check_recall(L, req, &r, &e) || !dtr_read_opts(L, opt, 1, &o, &e))
        return dtr_push_err(L, &e);
    dtr_push_recall(L, &r.cid, &r.robot, r.keys, r.nkeys, &o);
    return 1;
}

/* core.validate(request [, options]) -> true | nil, err */
static int dtr_l_validate(lua_State *L)
{
    dtr_recall_req r;
    dtr_opts o;
    dtr_err e;
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 2);
    if (!dtr_check_recall(L, 1, &r, &e))
        return dtr_push_err(L, &e);
    if (!lua_isnil(L, 2) && !dtr_read_opts(L, 2, 1, &o, &e))
        return dtr_push_err(L, &e);
    lua_pushboolean(L, 1);
    return 1;
}

/* core.build(request, options) -> built | nil, err */
static int dtr_l_build(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 2);
    return dtr_build_recall_at(L, 1, 2);
}

/* core.build_send(request, options): the send call, where recall keys
 * come from.  msgParam may be a table (encoded with cjson) or a JSON
 * string. */
static int dtr_l_build_send(lua_State *L)
{
    dtr_str cid, robot, key, param;
    dtr_opts o;
    dtr_err e;
    dtr_field f[4];
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 2);
    if (!dtr_text_field(L, 1, "openConversationId", "miss.openConversationId", &cid, &e) ||
        !dtr_text_field(L, 1, "robotCode", "miss.chatbotId", &robot, &e) ||
        !dtr_text_field(L, 1, "msgKey", "invalidParameter.param.invalid", &key, &e))
        return dtr_push_err(L, &e);
    lua_getfield(L, 1, "msgParam");
    if (lua_type(L, -1) == LUA_TTABLE) {
        lua_pushvalue(L, lua_upvalueindex(DTR_UV_ENCODE));
        lua_insert(L, -2);
        if (lua_pcall(L, 1, 1, 0) != 0) {
            dtr_seterr(&e, "invalidParameter.param.invalid", "%s cannot be encoded as JSON", "msgParam");
            return dtr_push_err(L, &e);
        }
    }
    if (lua_type(L, -1) != LUA_TSTRING) {
        dtr_seterr(&e, "invalidParameter.param.invalid", "%s must be a table or a JSON string", "msgParam");
        return dtr_push_err(L, &e);
    }
    param.s = lua_tolstring(L, -1, &param.n); /* stays on the stack */
    if (dtr_text_check((const unsigned char *)param.s, param.n) == 2) {
        dtr_seterr(&e, "invalidParameter.param.invalid", "%s is not valid UTF-8", "msgParam");
        return dtr_push_err(L, &e);
    }
    if (!dtr_read_opts(L, 2, 1, &o, &e))
        return dtr_push_err(L, &e);
    f[0].name = "msgKey"; f[0].vals = &key; f[0].count = -1;
    f[1].name = "msgParam"; f[1].vals = &param; f[1].count = -1;
    f[2].name = "openConversationId"; f[2].vals = &cid; f[2].count = -1;
    f[3].name = "robotCode"; f[3].vals = &robot; f[3].count = -1;
    dtr_push_json_object(L, f, 4);
    dtr_push_built(L, &o, "/v1.0/robot/groupMessages/send");
    return 1;
}

/* core.build_token(credentials, options): an internal app's
 * {appKey, appSecret} or a third-party app's {suiteKey, suiteSecret,
 * authCorpId, suiteTicket}. */
static int dtr_l_build_token(lua_State *L)
{
    static const char *const internal[] = {"appKey", "appSecret"};
    static const char *const corp[] = {"suiteKey", "suiteSecret", "authCorpId", "suiteTicket"};
    const char *const *names;
    dtr_str vals[4];
    dtr_field f[4];
    dtr_opts o;
    dtr_err e;
    int n, i;
    const char *path;
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 2);
    lua_getfield(L, 1, "suiteKey");
    if (lua_isnil(L, -1)) {
        names = internal; n = 2; path = "/v1.0/oauth2/accessToken";
    } else {
        names = corp; n = 4; path = "/v1.0/oauth2/corpAccessToken";
    }
    lua_pop(L, 1);
    for (i = 0; i < n; i++) {
        if (!dtr_text_field(L, 1, names[i], "invalidParameter.param.invalid", &vals[i], &e))
            return dtr_push_err(L, &e);
        f[i].name = names[i]; f[i].vals = &vals[i]; f[i].count = -1;
    }
    if (!dtr_read_opts(L, 2, 0, &o, &e))
        return dtr_push_err(L, &e);
    dtr_push_json_object(L, f, n);
    dtr_push_built(L, &o, path);
    return 1;
}

/* core.json_string(s): the encoder's escaping, for tests and tools. */
static int dtr_l_json_string(lua_State *L)
{
    size_t n, w;
    const char *s = luaL_checklstring(L, 1, &n);
    char *buf;
    w = dtr_json_string(NULL, s, n);
    buf = (char *)lua_newuserdata(L, w);
    dtr_json_string(buf, s, n);
    lua_pushlstring(L, buf, w);
    return 1;
}

/* __tostring of a built request: method, url and body size only. */
static int dtr_l_request_tostring(lua_State *L)
{
    size_t n = 0;
    lua_getfield(L, 1, "body");
    lua_tolstring(L, -1, &n);
    lua_getfield(L, 1, "method");
    lua_getfield(L, 1, "url");
    lua_pushfstring(L, "%s %s (%d-byte body, token redacted)", lua_tostring(L, -2), lua_tostring(L, -1),
                    (int)n);
    return 1;
}

static const luaL_Reg dtr_encode_functions[] = {
    {"validate", dtr_l_validate},
    {"build", dtr_l_build},
    {"build_send", dtr_l_build_send},
    {"build_token", dtr_l_build_token},
    {"json_string", dtr_l_json_string},
    {NULL, NULL}};

void dtr_encode_metatables(lua_State *L)
{
    luaL_newmetatable(L, DTR_REQUEST_MT);
    lua_pushcfunction(L, dtr_l_request_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);
}

void dtr_encode_open(lua_State *L)
{
    dtr_encode_metatables(L);
    dtr_register(L, dtr_encode_functions);
}
