/*
 * dingtalk-recall: response decoding (sans I/O).
 *
 * Turns (status, headers, body) into the documented result or into an
 * error object; JSON is decoded by a private lua-cjson instance.  No
 * secret the caller passes survives in any text of the result or error.
 */
#include <stdio.h>
#include <string.h>

#include "dtr.h"
#include "dtr_error.h"
#include "dtr_decode.h"
#include "dtr_answer.h"

/* ---------------------------------------------------------------------
 * Decoding
 * ------------------------------------------------------------------- */

/* Index of the first p[0..m) in s[0..n), or n when there is none. */
static size_t dtr_find(const char *s, size_t n, const char *p, size_t m)
{
    size_t i = 0;
    while (m > 0 && n >= m && i <= n - m) {
        const char *c = (const char *)memchr(s + i, p[0], n - m - i + 1);
        if (c == NULL)
            break;
        i = (size_t)(c - s);
        if (memcmp(c, p, m) == 0)
            return i;
        i++;
    }
    return n;
}

/*
 * Replaces every occurrence of secret (at least 4 bytes) in the string at
 * idx by "***", over its whole length (embedded NULs included).  Returns
 * 1 when it changed the string.  A replacement can join its neighbours
 * into a new occurrence (secret "ab**" in "abab**": one pass leaves
 * "ab***"), so the caller repeats until nothing changes; every change
 * makes the string shorter, so that ends.
 */
static int dtr_redact_one(lua_State *L, int idx, const char *secret, size_t slen)
{
    size_t n, at, from = 0;
    const char *s = lua_tolstring(L, idx, &n);
    luaL_Buffer b;
    if (s == NULL || (at = dtr_find(s, n, secret, slen)) == n)
        return 0;
    luaL_buffinit(L, &b);
    do {
        luaL_addlstring(&b, s + from, at - from);
        luaL_addlstring(&b, "***", 3);
        from = at + slen;
        at = from + dtr_find(s + from, n - from, secret, slen);
    } while (at < n);
    luaL_addlstring(&b, s + from, n - from);
    luaL_pushresult(&b);
    lua_replace(L, idx);
    return 1;
}

/* Redacts each secret from the string at idx.  secrets_idx: a string, an
 * array of strings, or none (0).  Secrets under 4 bytes are left alone. */
static void dtr_redact_string(lua_State *L, int idx, int secrets_idx)
{
    int changed, i, n;
    if (secrets_idx == 0 || lua_isnoneornil(L, secrets_idx) || lua_type(L, idx) != LUA_TSTRING)
        return;
    n = lua_type(L, secrets_idx) == LUA_TTABLE ? (int)dtr_rawlen(L, secrets_idx) : 1;
    do {
        changed = 0;
        for (i = 1; i <= n; i++) {
            const char *secret;
            size_t slen;
            if (lua_type(L, secrets_idx) == LUA_TTABLE)
                lua_rawgeti(L, secrets_idx, i);
            else
                lua_pushvalue(L, secrets_idx);
            if (lua_type(L, -1) == LUA_TSTRING) {
                secret = lua_tolstring(L, -1, &slen);
                if (slen >= 4)
                    changed |= dtr_redact_one(L, idx, secret, slen);
            }
            lua_pop(L, 1);
        }
    } while (changed);
}

/* Redacts the secrets from every text field of the error at the top. */
static void dtr_redact_error(lua_State *L, int secrets_idx)
{
    static const char *const fields[] = {"code", "message", "request_id", "hint", NULL};
    int i, err = lua_gettop(L);
    for (i = 0; fields[i] != NULL; i++) {
        lua_getfield(L, err, fields[i]);
        if (lua_type(L, -1) == LUA_TSTRING) {
            dtr_redact_string(L, lua_gettop(L), secrets_idx);
            lua_setfield(L, err, fields[i]);
        } else {
            lua_pop(L, 1);
        }
    }
}

/* Request id from the body's requestid/RequestId/requestId, else the
 * x-acs-request-id header.  Pushes it or nil. */
static void dtr_push_request_id(lua_State *L, int obj, int headers)
{
    static const char *const names[] = {"requestid", "RequestId", "requestId", NULL};
    int i;
    if (obj != 0) {
        for (i = 0; names[i] != NULL; i++) {
            lua_getfield(L, obj, names[i]);
            if (lua_type(L, -1) == LUA_TSTRING)
                return;
            lua_pop(L, 1);
        }
    }
    if (headers != 0 && lua_type(L, headers) == LUA_TTABLE) {
        lua_getfield(L, headers, "x-acs-request-id");
        if (lua_type(L, -1) == LUA_TSTRING)
            return;
        lua_pop(L, 1);
    }
    lua_pushnil(L);
}

/* Pushes nil, err for a body that is not what the API documents. */
static int dtr_push_invalid(lua_State *L, int status, int headers, const char *why)
{
    lua_pushnil(L);
    dtr_new_error(L, "response.invalid", why, strlen(why), status, NULL);
    dtr_push_request_id(L, 0, headers);
    lua_setfield(L, -2, "request_id");
    return 2;
}

/* Decodes body with the private cjson; pushes the value, returns 1, or
 * returns 0 with nothing pushed. */
static int dtr_decode_json(lua_State *L, int body)
{
    lua_pushvalue(L, lua_upvalueindex(DTR_UV_DECODE));
    lua_pushvalue(L, body);
    if (lua_pcall(L, 1, 1, 0) != 0) {
        lua_pop(L, 1);
        return 0;
    }
    return 1;
}

/* A string field, or a JSON null/absent field as the empty default. */
static int dtr_is_null(lua_State *L, int i)
{
    return lua_isnil(L, i) || (lua_type(L, i) == LUA_TLIGHTUSERDATA && lua_touserdata(L, i) == NULL);
}

/* Success bodies, by kind.  obj is the decoded object.  Pushes the result
 * and returns 1, or pushes nil, err and returns 2. */
static int dtr_decode_success(lua_State *L, enum dtr_kind kind, int status, int headers, int obj)
{
    int result;
    if (kind == DTR_KIND_SEND || kind == DTR_KIND_TOKEN) {
        const char *field = kind == DTR_KIND_SEND ? "processQueryKey" : "accessToken";
        lua_createtable(L, 0, 3);
        result = lua_gettop(L);
        lua_getfield(L, obj, field);
        if (lua_type(L, -1) != LUA_TSTRING || dtr_rawlen(L, -1) == 0)
            return dtr_push_invalid(L, status, headers, kind == DTR_KIND_SEND
                                                            ? "the send answer has no processQueryKey"
                                                            : "the token answer has no accessToken");
        lua_setfield(L, result, field);
        if (kind == DTR_KIND_TOKEN) {
            /* A number from the network: finite and in a sane range, or a
             * token would be refetched in a loop (1e-9, NaN) or never
             * (1e300).  DingTalk answers 7200. */
            lua_Number ttl;
            lua_getfield(L, obj, "expireIn");
            if (lua_type(L, -1) != LUA_TNUMBER)
                return dtr_push_invalid(L, status, headers, "the token answer has no expireIn number");
            ttl = lua_tonumber(L, -1);
            if (!(ttl >= DTR_TOKEN_MIN_TTL && ttl <= DTR_TOKEN_MAX_TTL)) { /* NaN fails too */
                char why[96];
                snprintf(why, sizeof why, "the token answer's expireIn (%.6g) is outside %d..%d seconds", ttl,
                         DTR_TOKEN_MIN_TTL, DTR_TOKEN_MAX_TTL);
                return dtr_push_invalid(L, status, headers, why);
            }
            lua_setfield(L, result, "expireIn");
        }
    } else {
        size_t n, i;
        lua_createtable(L, 0, 3);
        result = lua_gettop(L);
        lua_getfield(L, obj, "successResult");
        if (dtr_is_null(L, -1)) {
            lua_pop(L, 1);
            lua_newtable(L);
        }
        if (lua_type(L, -1) != LUA_TTABLE)
            return dtr_push_invalid(L, status, headers, "successResult is not an array");
        n = dtr_rawlen(L, -1);
        for (i = 1; i <= n; i++) {
            lua_rawgeti(L, -1, (int)i);
            if (lua_type(L, -1) != LUA_TSTRING)
                return dtr_push_invalid(L, status, headers, "successResult holds a non-string");
            lua_pop(L, 1);
        }
        {   /* keys 1..n only: cjson gives {"k":"v"} as a table too */
            size_t count = 0;
            lua_pushnil(L);
            while (lua_next(L, -2) != 0) {
                lua_pop(L, 1);
                count++;
            }
            if (count != n)
                return dtr_push_invalid(L, status, headers, "successResult is not an array");
        }
        lua_setfield(L, result, "successResult");
        lua_getfield(L, obj, "failedResult");
        if (dtr_is_null(L, -1)) {
            lua_pop(L, 1);
            lua_newtable(L);
        }
        if (lua_type(L, -1) != LUA_TTABLE)
            return dtr_push_invalid(L, status, headers, "failedResult is not an object");
        lua_pushnil(L);
        while (lua_next(L, -2) != 0) {
            if (lua_type(L, -2) != LUA_TSTRING)
                return dtr_push_invalid(L, status, headers, "failedResult has a non-string key");
            if (lua_type(L, -1) != LUA_TSTRING) {
                /* Keep the key; a reason that is not text becomes one. */
                lua_pushvalue(L, -2);
                lua_pushliteral(L, "UNKNOWN");
                lua_rawset(L, -5);
            }
            lua_pop(L, 1);
        }
        lua_setfield(L, result, "failedResult");
    }
    dtr_push_request_id(L, obj, headers);
    lua_setfield(L, result, "request_id");
    lua_settop(L, result);
    return 1;
}

/* Pushes the result of the usual answer to the batch at keys (see
 * dtr_answer.h): successResult is the batch's own array. */
static int dtr_push_usual(lua_State *L, int headers, int keys, const dtr_str *rid)
{
    lua_createtable(L, 0, 3);
    lua_pushvalue(L, keys);
    lua_setfield(L, -2, "successResult");
    lua_newtable(L);
    lua_setfield(L, -2, "failedResult");
    if (rid->s != NULL)
        lua_pushlstring(L, rid->s, rid->n);
    else
        dtr_push_request_id(L, 0, headers);
    lua_setfield(L, -2, "request_id");
    return 1;
}

/* The decoder proper; dtr_decode below adds the redaction. */
static int dtr_decode_raw(lua_State *L, enum dtr_kind kind, int status, int headers, int body, int keys)
{
    int obj;
    const char *code = NULL;
    if (status >= 300 && status < 400) {
        static const char msg[] = "the server answered with a redirect, which is never followed";
        lua_pushnil(L);
        dtr_new_error(L, "response.redirect", msg, sizeof msg - 1, status, NULL);
        dtr_push_request_id(L, 0, headers);
        lua_setfield(L, -2, "request_id");
        return 2;
    }
    if (status < 200 || status > 599)
        return dtr_push_invalid(L, status, headers, "not an HTTP status");
    if (keys != 0 && kind == DTR_KIND_RECALL && status >= 200 && status < 300) {
        size_t bn;
        const char *b = lua_tolstring(L, body, &bn);
        dtr_str rid;
        if (dtr_answer_usual(L, b, bn, keys, &rid))
            return dtr_push_usual(L, headers, keys, &rid);
    }
    if (!dtr_decode_json(L, body))
        return dtr_push_invalid(L, status, headers,
                                status >= 300 ? "the error answer is not JSON (an HTML page from a gateway?)"
                                              : "the answer is not JSON");
    obj = lua_gettop(L);
    if (lua_type(L, obj) != LUA_TTABLE || dtr_rawlen(L, obj) > 0)
        return dtr_push_invalid(L, status, headers, "the answer is not a JSON object");
    if (status >= 200 && status < 300)
        return dtr_decode_success(L, kind, status, headers, obj);

    /* An error answer: {code, message, requestid} in either spelling. */
    lua_getfield(L, obj, "code");
    if (lua_type(L, -1) != LUA_TSTRING) {
        lua_pop(L, 1);
        lua_getfield(L, obj, "Code");
    }
    code = lua_tostring(L, -1);
    if (code == NULL || *code == '\0')
        return dtr_push_invalid(L, status, headers, "the error answer has no code");
    lua_pushnil(L);
    lua_createtable(L, 0, 7);
    lua_pushvalue(L, -3);
    lua_setfield(L, -2, "code");
    lua_getfield(L, obj, "message");
    if (lua_type(L, -1) != LUA_TSTRING) {
        lua_pop(L, 1);
        lua_getfield(L, obj, "Message");
    }
    if (lua_type(L, -1) != LUA_TSTRING) {
        lua_pop(L, 1);
        lua_pushliteral(L, "");
    }
    lua_setfield(L, -2, "message");
    lua_pushinteger(L, status);
    lua_setfield(L, -2, "status");
    dtr_push_request_id(L, obj, headers);
    lua_setfield(L, -2, "request_id");
    dtr_finish_error(L, lua_upvalueindex(DTR_UV_ERRMT));
    return 2;
}

/* Redacts the secrets from the texts of the result at the top: the
 * request id and the per-key reasons (a server may quote the token). */
static void dtr_redact_result(lua_State *L, int secrets_idx)
{
    int result = lua_gettop(L), failed;
    if (secrets_idx == 0 || lua_isnoneornil(L, secrets_idx))
        return;
    lua_getfield(L, result, "request_id");
    if (lua_type(L, -1) == LUA_TSTRING) {
        dtr_redact_string(L, lua_gettop(L), secrets_idx);
        lua_setfield(L, result, "request_id");
    } else {
        lua_pop(L, 1);
    }
    lua_getfield(L, result, "failedResult");
    failed = lua_gettop(L);
    if (lua_type(L, failed) == LUA_TTABLE) {
        lua_pushnil(L);
        while (lua_next(L, failed) != 0) {
            if (lua_type(L, -1) == LUA_TSTRING) {
                dtr_redact_string(L, lua_gettop(L), secrets_idx);
                lua_pushvalue(L, -2);
                lua_insert(L, -2);
                lua_rawset(L, failed); /* an existing key: safe during lua_next */
            } else {
                lua_pop(L, 1);
            }
        }
    }
    lua_settop(L, result);
}

/*
 * The whole decoder: (status, headers, body) at 1..3, secrets at
 * `secrets` (0 for none).  Pushes result, or nil + err.  No secret the
 * caller passed survives in any text of the error: the server may echo
 * one in the code, the message or the request id (body or header).
 */
int dtr_decode_keys(lua_State *L, enum dtr_kind kind, int status, int headers, int body, int secrets, int keys)
{
    int n = dtr_decode_raw(L, kind, status, headers, body, keys);
    if (n == 2)
        dtr_redact_error(L, secrets);
    else
        dtr_redact_result(L, secrets);
    return n;
}

int dtr_decode(lua_State *L, enum dtr_kind kind, int status, int headers, int body, int secrets)
{
    return dtr_decode_keys(L, kind, status, headers, body, secrets, 0);
}

/* Shared front of core.parse, parse_send and parse_token:
 * (status, headers, body [, secrets [, keys]]); keys (core.parse only):
 * the batch sent, an array of strings. */
static int dtr_parse_kind(lua_State *L, enum dtr_kind kind)
{
    int status = (int)luaL_checkinteger(L, 1);
    if (!lua_isnoneornil(L, 2))
        luaL_checktype(L, 2, LUA_TTABLE);
    luaL_checkstring(L, 3);
    if (kind == DTR_KIND_RECALL && !lua_isnoneornil(L, 5))
        luaL_checktype(L, 5, LUA_TTABLE);
    lua_settop(L, 5);
    return dtr_decode_keys(L, kind, status, 2, 3, 4, kind == DTR_KIND_RECALL && !lua_isnil(L, 5) ? 5 : 0);
}

/* core.answered_all(status, body, keys) -> boolean: whether this is the
 * usual answer to the batch `keys` (a 2xx status, successResult its keys
 * in order, failedResult empty; dtr_answer.h), the one core.parse(status,
 * headers, body, secrets, keys) reads as every key recalled.  Nothing is
 * made: a caller that needs no request id asks this first; false means
 * only that core.parse must say what the answer is. */
static int dtr_l_answered_all(lua_State *L)
{
    int status = (int)luaL_checkinteger(L, 1);
    size_t bn;
    const char *b = luaL_checklstring(L, 2, &bn);
    dtr_str rid;
    luaL_checktype(L, 3, LUA_TTABLE);
    lua_pushboolean(L, status >= 200 && status < 300 && dtr_answer_usual(L, b, bn, 3, &rid));
    return 1;
}

static int dtr_l_parse(lua_State *L) { return dtr_parse_kind(L, DTR_KIND_RECALL); }
static int dtr_l_parse_send(lua_State *L) { return dtr_parse_kind(L, DTR_KIND_SEND); }
static int dtr_l_parse_token(lua_State *L) { return dtr_parse_kind(L, DTR_KIND_TOKEN); }

static const luaL_Reg dtr_decode_functions[] = {
    {"parse", dtr_l_parse},
    {"answered_all", dtr_l_answered_all},
    {"parse_send", dtr_l_parse_send},
    {"parse_token", dtr_l_parse_token},
    {NULL, NULL}};

void dtr_decode_open(lua_State *L)
{
    dtr_register(L, dtr_decode_functions);
}
