/*
 * dingtalk-recall: response decoding and the error object.
 *
 * One error shape for every failure: {code, message, status, request_id,
 * retryable, hint [, retry_after]} with a one-line __tostring.  The
 * decoder turns (status, headers, body) into the documented result or
 * into such an error; JSON is decoded by a private lua-cjson instance.
 */
#include <stdio.h>
#include <string.h>

#include "dtr.h"

/*
 * The one catalogue of codes: the spec's error table, the gateway codes
 * from the facts file, and every code this library makes, in C or in Lua.
 * core.codes is generated from it.  status: the HTTP status the server
 * answers with (for callback.* codes: the status to answer a refused
 * callback with), 0 for codes that no server sends.  Flags:
 *   RETRY    worth retrying after a wait
 *   AMBIG    the server may have done the work (the answer was lost)
 *   THROTTLE a QPS limit: wait about 1 s (retry_after)
 *   FATAL    no later batch of the run can succeed
 *   AUTH     the access token is bad: fetch a new one once
 */
#define R DTR_CODE_RETRY
#define A DTR_CODE_AMBIG
#define T DTR_CODE_THROTTLE
#define F DTR_CODE_FATAL
#define U DTR_CODE_AUTH
static const dtr_code_info dtr_codes[] = {
    /* The spec's table. */
    {"invalid.openConversationId", 400, 0,
     "Invalid openConversationId. Verify that the openConversationId is correct."},
    {"invalidParameter.robotCode", 400, 0, "Invalid robotCode. Verify that the bot is in the group."},
    {"invalidParameter.processQueryKeys.overMax", 400, 0,
     "processQueryKeys exceeds the maximum limit of 20. Split processQueryKeys into multiple arrays of "
     "no more than 20 entries each and call this API in batches."},
    {"not.allowed.robotCode", 400, 0, "Unauthorized robotCode."},
    {"invalidParameter.param.invalid", 400, 0, "Invalid parameter. Verify that no parameter is empty."},
    {"invalidParameter.robotCode.notExsit", 400, 0,
     "The bot does not exist. Verify that the bot corresponding to the robotCode is installed in the chat."},
    {"miss.chatbotId", 400, 0, "Missing robotCode."},
    {"invalidParameter.processQueryKey.missing", 400, 0, "Missing processQueryKey."},
    {"invalid.processQueryKey", 400, 0, "Invalid processQueryKey. Verify that the processQueryKey is correct."},
    {"miss.openConversationId", 400, 0, "Missing openConversationId."},
    {"bot.stopped", 400, 0, "The group bot has been disabled."},
    {"template.not.existed", 400, 0, "The bot template does not exist."},
    {"template.stopped", 400, 0, "The bot template has been disabled."},
    {"system.error", 500, R, "Unknown system error."},
    /* Gateway answers (facts file). */
    {"Forbidden.AccessDenied.QpsLimitForAppkeyAndApi", 403, R | T,
     "The app exceeded its QPS limit for this API (20/s on standard plans). Wait about 1 s and retry; "
     "lower the client's qps."},
    {"Forbidden.AccessDenied.QpsLimitForApi", 403, R | T,
     "The API's global QPS limit was hit. Wait about 1 s and retry."},
    {"Forbidden.AccessDenied.ApiCountLimitForOrg", 403, F,
     "The organisation's monthly call quota is used up; retrying will not help."},
    {"Forbidden.AccessDenied.AccessTokenPermissionDenied", 403, F,
     "The token's app lacks permission qyapi_robot_sendmsg or does not own this robot."},
    {"AuthenticationFailed.MissingParameter", 400, F,
     "No access token was sent. Set access_token, or app_key and app_secret."},
    {"InvalidAuthentication", 400, U,
     "The access token is invalid or expired. Fetch a new one (tokens live 7200 s)."},
    {"invalidClientIdOrSecret", 400, F, "The app key or app secret is wrong."},
    /* Client-side codes (C). */
    {"invalid.endpoint", 0, F, "Use https://host[:port]; plain http only reaches loopback addresses."},
    {"transport.timeout", 0, R | A, "The request timed out. Check the network or raise timeout."},
    {"transport.connect", 0, R, "Could not connect. Check the endpoint, DNS and firewall."},
    {"transport.tls", 0, F,
     "TLS verification failed. Check the server certificate, or pass ca_file for a private CA."},
    {"transport.io", 0, R | A,
     "The connection failed mid-request (reset or truncated answer). Safe to retry."},
    {"response.invalid", 0, A,
     "The answer was not the documented JSON; a proxy or gateway may be in the way."},
    {"response.too_large", 0, A, "The answer exceeded max_response_bytes and was dropped."},
    {"response.redirect", 0, F,
     "The server answered with a redirect; redirects are never followed so the token stays put. "
     "Check the endpoint."},
    {"response.missing_key", 0, 0, "The server answered neither success nor failure for this key."},
    {"callback.no_secret", 500, 0, "No app secret was given: pass the bot's AppSecret to check callbacks."},
    {"callback.bad_timestamp", 401, 0,
     "The timestamp header is not a decimal count of milliseconds. Refuse the request."},
    {"callback.expired", 401, 0, "The timestamp is over 1 hour from now: a replay, or a clock off (check NTP)."},
    {"callback.bad_signature", 401, 0, "The sign does not match: refuse the request, or check the AppSecret."},
    {"ledger.io", 0, 0,
     "Check that the ledger's directory exists, is writable by this user and that the disk is not full."},
    /* Codes made in Lua. */
    {"callback.replayed", 401, 0, "This signed callback was already accepted once: a replay. Refuse it."},
    {"callback.too_large", 413, 0, "The callback body exceeds max_body. Refuse it."},
    {"callback.bad_body", 400, 0, "The callback body is not a JSON object. Refuse it."},
    {"callback.store", 500, 0, "The replay store failed; the callback cannot be checked for replays."},
    {"config.invalid", 0, F, "Fix the option named in the message (see the configuration docs)."},
    {"config.credentials", 0, F,
     "Set DINGTALK_ACCESS_TOKEN, or DINGTALK_APP_KEY and DINGTALK_APP_SECRET (or the config file's keys)."},
    {"config.insecure", 0, F,
     "The config file holds secrets and is readable by others: chmod 600 it, or move the secrets to the "
     "environment."},
    {"config.unreadable", 0, F, "The config file cannot be read: check its path and permissions."},
    {"config.ledger", 0, F, "The ledger module cannot be loaded or opened: check the ledger settings."},
    {"ledger.invalid", 0, 0, "Check the ledger's arguments (path or URL, keys, selection)."},
    {"ledger.not_found", 0, 0, "No ledger entry has this key."},
    {"ledger.redis", 0, R, "The Redis server failed or is unreachable; check its URL and that it runs."},
    {"token.provider", 0, R, "The access-token provider failed; check its credentials and endpoint."},
    {"async.cancelled", 0, 0, "The task was cancelled before it finished."},
    {"async.failed", 0, 0, "The task raised an error; this is a bug in the task or a callback."},
    {NULL, 0, 0, NULL}};
#undef R
#undef A
#undef T
#undef F
#undef U

/* Per-key failure reasons in failedResult (the API does not document
 * their text; these are the simulator's). */
static const dtr_reason_info dtr_reasons[] = {
    {"ALREADY_RECALLED", 1, "The message was recalled before; it counts as recalled."},
    {"PROCESS_QUERY_KEY_NOT_EXIST", 0, "No message has this processQueryKey: check the key."},
    {"CONVERSATION_OR_ROBOT_MISMATCH", 0,
     "The key belongs to another conversation or robot: check openConversationId and robotCode."},
    {"RECALL_TIME_EXPIRED", 0, "The message is too old to be recalled (about 24 hours)."},
    {"SYSTEM_ERROR", 0, "The server failed for this key; a later retry may work."},
    {NULL, 0, NULL}};

/* The number at idx as an int status: 0 unless it is a number within
 * int's range (a float out of range must not be converted: that is
 * undefined behaviour, and core.error takes any fields from Lua). */
static int dtr_status_at(lua_State *L, int idx)
{
    lua_Number v;
    if (lua_type(L, idx) != LUA_TNUMBER)
        return 0;
    v = lua_tonumber(L, idx);
    if (!(v > -2147483648.0 && v < 2147483648.0))
        return 0;
    return (int)v;
}

static const dtr_code_info *dtr_code_lookup(const char *code)
{
    const dtr_code_info *c;
    for (c = dtr_codes; c->code != NULL; c++)
        if (strcmp(c->code, code) == 0)
            return c;
    return NULL;
}

static int dtr_retryable(const char *code, int status)
{
    const dtr_code_info *c = dtr_code_lookup(code);
    if (strcmp(code, "response.too_large") == 0)
        return 0;
    if (c != NULL && (c->flags & DTR_CODE_RETRY))
        return 1;
    return status >= 500 || status == 429;
}

/*
 * Fills the error object at the top of the stack (a table with code,
 * message, status) with request_id, and the retryable, hint and
 * retry_after defaults, then sets its metatable.
 */
static void dtr_finish_error(lua_State *L, int errmt)
{
    const char *code;
    int status;
    const dtr_code_info *c;
    lua_getfield(L, -1, "code");
    code = lua_tostring(L, -1);
    if (code == NULL)
        code = "unknown";
    lua_getfield(L, -2, "status");
    status = dtr_status_at(L, -1);
    lua_pop(L, 1);
    c = dtr_code_lookup(code);
    lua_getfield(L, -2, "retryable");
    if (lua_isnil(L, -1)) {
        lua_pushboolean(L, dtr_retryable(code, status));
        lua_setfield(L, -4, "retryable");
    }
    lua_pop(L, 1);
    lua_getfield(L, -2, "hint");
    if (lua_isnil(L, -1)) {
        if (c != NULL)
            lua_pushstring(L, c->hint);
        else if (status >= 500)
            lua_pushliteral(L, "The server failed; retry after a short wait.");
        else
            lua_pushliteral(L, "See DingTalk's global error codes for this code.");
        lua_setfield(L, -4, "hint");
    }
    lua_pop(L, 1);
    if ((c != NULL && (c->flags & DTR_CODE_THROTTLE)) || strncmp(code, "Forbidden.AccessDenied.QpsLimit", 31) == 0) {
        lua_getfield(L, -2, "retry_after");
        if (lua_isnil(L, -1)) {
            lua_pushnumber(L, 1);
            lua_setfield(L, -4, "retry_after");
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1); /* code */
    lua_pushvalue(L, errmt);
    lua_setmetatable(L, -2);
}

/* Pushes a new error object. */
static void dtr_new_error(lua_State *L, const char *code, const char *message, size_t mlen, int status,
                          const char *request_id)
{
    lua_createtable(L, 0, 7);
    lua_pushstring(L, code);
    lua_setfield(L, -2, "code");
    lua_pushlstring(L, message, mlen);
    lua_setfield(L, -2, "message");
    if (status > 0) {
        lua_pushinteger(L, status);
        lua_setfield(L, -2, "status");
    }
    if (request_id != NULL && request_id[0] != '\0') {
        lua_pushstring(L, request_id);
        lua_setfield(L, -2, "request_id");
    }
    dtr_finish_error(L, lua_upvalueindex(DTR_UV_ERRMT));
}

/* Pushes nil, err from a dtr_err; returns 2. */
static int dtr_push_err(lua_State *L, const dtr_err *e)
{
    lua_pushnil(L);
    dtr_new_error(L, e->code, e->message, strlen(e->message), e->status, NULL);
    return 2;
}

/* core.error(code, message [, fields]) -> an error object, for glue and
 * transports written in Lua, so every error has the same shape. */
static int dtr_l_error(lua_State *L)
{
    size_t clen, mlen;
    const char *code = luaL_checklstring(L, 1, &clen);
    const char *msg = luaL_optlstring(L, 2, "", &mlen);
    lua_createtable(L, 0, 7);
    if (lua_type(L, 3) == LUA_TTABLE) {
        lua_pushnil(L);
        while (lua_next(L, 3) != 0) {
            lua_pushvalue(L, -2);
            lua_insert(L, -2);
            lua_settable(L, -4);
        }
    } else if (!lua_isnoneornil(L, 3)) {
        luaL_argerror(L, 3, "table expected");
    }
    lua_pushlstring(L, code, clen); /* all of it, even past a NUL byte */
    lua_setfield(L, -2, "code");
    lua_pushlstring(L, msg, mlen);
    lua_setfield(L, -2, "message");
    dtr_finish_error(L, lua_upvalueindex(DTR_UV_ERRMT));
    return 1;
}

/* core.is_error(v) -> boolean */
static int dtr_l_is_error(lua_State *L)
{
    int yes = 0;
    if (lua_getmetatable(L, 1)) {
        yes = lua_rawequal(L, -1, lua_upvalueindex(DTR_UV_ERRMT));
        lua_pop(L, 1);
    }
    lua_pushboolean(L, yes);
    return 1;
}

/* Adds s with control characters as spaces, so tostring is one line. */
static void dtr_add_oneline(luaL_Buffer *b, const char *s)
{
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        luaL_addchar(b, (c < 0x20 || c == 0x7f) ? ' ' : (char)c);
    }
}

/* __tostring: "code: message (HTTP 400, request_id abc)" */
static int dtr_l_error_tostring(lua_State *L)
{
    luaL_Buffer b;
    const char *code, *msg, *rid;
    int status;
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    lua_getfield(L, 1, "code");
    lua_getfield(L, 1, "message");
    lua_getfield(L, 1, "status");
    lua_getfield(L, 1, "request_id");
    /* Read everything before the buffer takes over the stack top. */
    code = lua_tostring(L, 2);
    msg = lua_tostring(L, 3);
    status = dtr_status_at(L, 4);
    rid = lua_tostring(L, 5);
    luaL_buffinit(L, &b);
    dtr_add_oneline(&b, code ? code : "unknown"); /* a server's code may hold a newline too */
    if (msg != NULL && *msg != '\0') {
        luaL_addstring(&b, ": ");
        dtr_add_oneline(&b, msg);
    }
    if (status > 0 || rid != NULL) {
        char tmp[48];
        luaL_addstring(&b, " (");
        if (status > 0) {
            snprintf(tmp, sizeof tmp, "HTTP %d", status);
            luaL_addstring(&b, tmp);
            if (rid != NULL)
                luaL_addstring(&b, ", ");
        }
        if (rid != NULL) {
            luaL_addstring(&b, "request_id ");
            dtr_add_oneline(&b, rid);
        }
        luaL_addstring(&b, ")");
    }
    luaL_pushresult(&b);
    return 1;
}

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
            lua_getfield(L, obj, "expireIn");
            if (lua_type(L, -1) != LUA_TNUMBER || lua_tonumber(L, -1) <= 0)
                return dtr_push_invalid(L, status, headers, "the token answer has no positive expireIn");
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

/* The decoder proper; dtr_decode below adds the redaction. */
static int dtr_decode_raw(lua_State *L, enum dtr_kind kind, int status, int headers, int body)
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
static int dtr_decode(lua_State *L, enum dtr_kind kind, int status, int headers, int body, int secrets)
{
    int n = dtr_decode_raw(L, kind, status, headers, body);
    if (n == 2)
        dtr_redact_error(L, secrets);
    else
        dtr_redact_result(L, secrets);
    return n;
}

/* Shared front of core.parse, parse_send and parse_token:
 * (status, headers, body [, secrets]). */
static int dtr_parse_kind(lua_State *L, enum dtr_kind kind)
{
    int status = (int)luaL_checkinteger(L, 1);
    if (!lua_isnoneornil(L, 2))
        luaL_checktype(L, 2, LUA_TTABLE);
    luaL_checkstring(L, 3);
    lua_settop(L, 4);
    return dtr_decode(L, kind, status, 2, 3, 4);
}

static int dtr_l_parse(lua_State *L) { return dtr_parse_kind(L, DTR_KIND_RECALL); }
static int dtr_l_parse_send(lua_State *L) { return dtr_parse_kind(L, DTR_KIND_SEND); }
static int dtr_l_parse_token(lua_State *L) { return dtr_parse_kind(L, DTR_KIND_TOKEN); }

/* Pushes core.codes: code -> {status, retryable, ambiguous, throttle,
 * fatal, auth, hint}, from the one table above. */
static void dtr_push_codes(lua_State *L)
{
    const dtr_code_info *c;
    lua_newtable(L);
    for (c = dtr_codes; c->code != NULL; c++) {
        lua_createtable(L, 0, 7);
        if (c->status > 0) {
            lua_pushinteger(L, c->status);
            lua_setfield(L, -2, "status");
        }
        lua_pushboolean(L, (c->flags & DTR_CODE_RETRY) != 0);
        lua_setfield(L, -2, "retryable");
        lua_pushboolean(L, (c->flags & DTR_CODE_AMBIG) != 0);
        lua_setfield(L, -2, "ambiguous");
        lua_pushboolean(L, (c->flags & DTR_CODE_THROTTLE) != 0);
        lua_setfield(L, -2, "throttle");
        lua_pushboolean(L, (c->flags & DTR_CODE_FATAL) != 0);
        lua_setfield(L, -2, "fatal");
        lua_pushboolean(L, (c->flags & DTR_CODE_AUTH) != 0);
        lua_setfield(L, -2, "auth");
        lua_pushstring(L, c->hint);
        lua_setfield(L, -2, "hint");
        lua_setfield(L, -2, c->code);
    }
}

/* Pushes core.reasons: reason -> {already_recalled, hint}. */
static void dtr_push_reasons(lua_State *L)
{
    const dtr_reason_info *r;
    lua_newtable(L);
    for (r = dtr_reasons; r->reason != NULL; r++) {
        lua_createtable(L, 0, 2);
        lua_pushboolean(L, r->already_recalled);
        lua_setfield(L, -2, "already_recalled");
        lua_pushstring(L, r->hint);
        lua_setfield(L, -2, "hint");
        lua_setfield(L, -2, r->reason);
    }
}
