/*
 * dingtalk-recall: the error object.
 *
 * One error shape for every failure: {code, message, status, request_id,
 * retryable, hint [, retry_after]} with a one-line __tostring.  The hint
 * and the flags come from the one catalogue (dtr_codes.c).  The metatable
 * lives in the registry as "dingtalk.recall.error", so an error made by
 * any of the three modules is the same kind of object.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "dtr.h"
#include "dtr_codes.h"
#include "dtr_error.h"

void dtr_seterr(dtr_err *e, const char *code, const char *fmt, ...)
{
    va_list ap;
    e->code = code;
    e->status = 0;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
}

/* The number at idx as an int status: 0 unless it is a number within
 * int's range (a float out of range must not be converted: that is
 * undefined behaviour, and core.error takes any fields from Lua). */
int dtr_status_at(lua_State *L, int idx)
{
    lua_Number v;
    if (lua_type(L, idx) != LUA_TNUMBER)
        return 0;
    v = lua_tonumber(L, idx);
    if (!(v > -2147483648.0 && v < 2147483648.0))
        return 0;
    return (int)v;
}

/*
 * Fills the error object at the top of the stack (a table with code,
 * message, status) with request_id, and the retryable, hint and
 * retry_after defaults, then sets its metatable.
 */
void dtr_finish_error(lua_State *L, int errmt)
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
void dtr_new_error(lua_State *L, const char *code, const char *message, size_t mlen, int status,
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
int dtr_push_err(lua_State *L, const dtr_err *e)
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

void dtr_error_metatable(lua_State *L)
{
    if (luaL_newmetatable(L, DTR_ERROR_MT)) {
        lua_pushcfunction(L, dtr_l_error_tostring);
        lua_setfield(L, -2, "__tostring");
        lua_pushliteral(L, DTR_ERROR_MT);
        lua_setfield(L, -2, "__name");
    }
}

static const luaL_Reg dtr_error_functions[] = {
    {"error", dtr_l_error},
    {"is_error", dtr_l_is_error},
    {NULL, NULL}};

void dtr_error_open(lua_State *L)
{
    dtr_register(L, dtr_error_functions);
}
