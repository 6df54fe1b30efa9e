/*
 * dingtalk-recall: the journal's lines gathered in C.
 *
 *   journal.keys_line(head, parts, tail) -> string
 *       head .. '"k1","k2",...' .. tail, the keys of parts (an array of
 *       arrays of strings) in order, each a JSON string: '"' and '\\'
 *       escaped, control characters (and DEL) as \b \f \n \r \t or \u00XX,
 *       every other byte as it is (dtr_text.c's dtr_json_string, the one
 *       JSON string writer; cjson.decode
 *       reads the same keys back).  A part or key of another type raises.
 *
 * journal.append takes such key lines too ({head, parts, tail} among its
 * lines): the ledger writes each state change of a recall (thousands of
 * keys, handed over as the plans' batch arrays) with one call, into one
 * buffer of the C heap: no Lua string per key, nor one for the line.
 * Two passes: the first checks and counts (it may raise), the second
 * writes exactly that many bytes and never raises, so a caller may fill
 * memory of its own (malloc) between the two without leaking it.  When the
 * first found no byte to escape (recall keys are base64), the second
 * copies each key as it is, without looking at its bytes again.
 */

#include "dtr_jline.h"
#include "dtr_text.h"

#define DTR_JLINE_MAX ((size_t)1 << 30) /* bytes in one append */

static int dtr_jl_bad(lua_State *L, int idx, const char *what, const char *msg)
{
    if (what != NULL)
        return luaL_error(L, "%s: %s", what, msg);
    return luaL_argerror(L, idx, msg);
}

/* The keys of the parts at index p (absolute): counts their bytes (out ==
 * NULL: checking, may raise; *esc set when a key needs escaping) or writes
 * them (escaping them only when *esc); returns the bytes. */
static size_t dtr_jl_keys(lua_State *L, int p, int idx, const char *what, char *out, int *esc)
{
    size_t i, np = dtr_rawlen(L, p), total = 0, nkeys = 0;
    char *o = out;
    for (i = 1; i <= np; i++) {
        size_t j, nk;
        lua_rawgeti(L, p, (int)i);
        if (out == NULL && lua_type(L, -1) != LUA_TTABLE)
            dtr_jl_bad(L, idx, what, "every part of a key line must be an array of keys");
        nk = dtr_rawlen(L, -1);
        for (j = 1; j <= nk; j++) {
            size_t n;
            const char *s;
            lua_rawgeti(L, -1, (int)j);
            if (out == NULL && lua_type(L, -1) != LUA_TSTRING)
                dtr_jl_bad(L, idx, what, "every key of a key line must be a string");
            s = lua_tolstring(L, -1, &n);
            if (out == NULL) {
                size_t size = dtr_json_string(NULL, s, n);
                if (size != n + 2)
                    *esc = 1;
                total += size + (nkeys > 0);
                if (total > DTR_JLINE_MAX)
                    dtr_jl_bad(L, idx, what, "the lines would be over 1 GiB");
            } else {
                if (nkeys > 0)
                    *o++ = ',';
                if (*esc) {
                    o += dtr_json_string(o, s, n);
                } else {
                    *o++ = '"';
                    memcpy(o, s, n);
                    o += n;
                    *o++ = '"';
                }
            }
            nkeys++;
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    return out == NULL ? total : (size_t)(o - out);
}

/* A plain line (the string on top): checks it, returns its bytes. */
static size_t dtr_jl_plain(lua_State *L, int idx, const char *what)
{
    size_t n;
    const char *s = lua_tolstring(L, -1, &n);
    if (memchr(s, '\n', n) != NULL)
        dtr_jl_bad(L, idx, what, "a journal line must not hold a newline");
    return n;
}

/* The line on top of the stack (a string or a key line): its bytes
 * without the "\n" (out == NULL: checking) or writes it, "\n" included. */
static size_t dtr_jl_line(lua_State *L, int idx, const char *what, char *out, int *esc)
{
    size_t n, total = 0;
    int t = lua_gettop(L), k;
    if (lua_type(L, t) == LUA_TSTRING) {
        const char *s;
        if (out == NULL)
            return dtr_jl_plain(L, idx, what);
        s = lua_tolstring(L, t, &n);
        memcpy(out, s, n);
        out[n] = '\n';
        return n + 1;
    }
    if (lua_type(L, t) != LUA_TTABLE)
        dtr_jl_bad(L, idx, what, "journal lines must be strings or key lines {head, parts, tail}");
    for (k = 1; k <= 3; k++) {
        lua_rawgeti(L, t, k);
        if (k == 2) {
            if (out == NULL && lua_type(L, -1) != LUA_TTABLE)
                dtr_jl_bad(L, idx, what, "a key line is {head, parts, tail}");
            n = dtr_jl_keys(L, lua_gettop(L), idx, what, out == NULL ? NULL : out + total, esc);
        } else if (out == NULL) {
            if (lua_type(L, -1) != LUA_TSTRING)
                dtr_jl_bad(L, idx, what, "a key line is {head, parts, tail}");
            n = dtr_jl_plain(L, idx, what);
        } else {
            const char *s = lua_tolstring(L, -1, &n);
            memcpy(out + total, s, n);
        }
        total += n;
        lua_pop(L, 1);
        if (out == NULL && total > DTR_JLINE_MAX)
            dtr_jl_bad(L, idx, what, "the lines would be over 1 GiB");
    }
    if (out != NULL)
        out[total++] = '\n';
    return total;
}

/* Both passes over the lines at idx (absolute). */
static size_t dtr_jl_walk(lua_State *L, int idx, const char *what, char *out, int *esc)
{
    size_t i, len, total = 0;
    if (lua_type(L, idx) == LUA_TSTRING) {
        lua_pushvalue(L, idx);
        total = dtr_jl_line(L, idx, what, out, esc) + (out == NULL);
        lua_pop(L, 1);
        return total;
    }
    if (lua_type(L, idx) != LUA_TTABLE)
        dtr_jl_bad(L, idx, what, "a string or an array of strings expected");
    len = dtr_rawlen(L, idx);
    for (i = 1; i <= len; i++) {
        lua_rawgeti(L, idx, (int)i);
        total += dtr_jl_line(L, idx, what, out == NULL ? NULL : out + total, esc) + (out == NULL);
        lua_pop(L, 1);
        if (out == NULL && total > DTR_JLINE_MAX)
            dtr_jl_bad(L, idx, what, "the lines would be over 1 GiB");
    }
    return total;
}

size_t dtr_jline_size(lua_State *L, int idx, const char *what, int *esc)
{
    luaL_checkstack(L, 4, "journal lines");
    *esc = 0;
    return dtr_jl_walk(L, dtr_absindex(L, idx), what, NULL, esc);
}

void dtr_jline_fill(lua_State *L, int idx, char *out, int esc)
{
    dtr_jl_walk(L, dtr_absindex(L, idx), NULL, out, &esc);
}

/* journal.keys_line(head, parts, tail) -> string */
static int dtr_l_journal_keys_line(lua_State *L)
{
    size_t n;
    char *buf;
    int esc = 0;
    luaL_checkstring(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    luaL_checkstring(L, 3);
    lua_settop(L, 3);
    lua_createtable(L, 3, 0); /* the key line {head, parts, tail} */
    lua_pushvalue(L, 1);
    lua_rawseti(L, 4, 1);
    lua_pushvalue(L, 2);
    lua_rawseti(L, 4, 2);
    lua_pushvalue(L, 3);
    lua_rawseti(L, 4, 3);
    luaL_checkstack(L, 4, "journal lines");
    lua_pushvalue(L, 4);
    n = dtr_jl_line(L, 2, NULL, NULL, &esc);
    buf = (char *)dtr_newuserdata(L, n + 1);
    lua_pushvalue(L, 4);
    dtr_jl_line(L, 2, NULL, buf, &esc);
    lua_pop(L, 1);
    lua_pushlstring(L, buf, n); /* without the "\n" */
    return 1;
}

static const luaL_Reg dtr_jline_functions[] = {
    {"keys_line", dtr_l_journal_keys_line},
    {NULL, NULL}};

void dtr_jline_open(lua_State *L)
{
    dtr_register(L, dtr_jline_functions);
}
