/*
 * dingtalk-recall: journal.keys_line(head, parts, tail) -> string
 *
 *   head .. '"k1","k2",...' .. tail, where the keys are those of parts, an
 *   array of arrays of strings, in order, each written as a JSON string:
 *   '"' and '\\' escaped, control characters (and DEL) as \b \f \n \r \t
 *   or \u00XX, every other byte as it is (cjson's own rules, so
 *   cjson.decode reads the same keys back).  The line never holds a raw
 *   newline unless head or tail does.  A part or key of another type, or
 *   a line over 1 GiB, raises.
 *
 * The ledger writes each state change of a recall (thousands of keys that
 * the engine hands over as batch arrays) with one call, rather than a Lua
 * string operation per key.  Two passes over the keys: the first checks
 * them and counts the bytes, the second writes into one userdata of that
 * size; the stack stays balanced, so nothing leaks when it raises.
 */
#include "dtr_jline.h"

#define DTR_JLINE_MAX ((size_t)1 << 30)

static const char dtr_jl_hex[] = "0123456789abcdef";

/* Bytes the key takes in JSON, quotes included. */
static size_t dtr_jl_size(const unsigned char *s, size_t n)
{
    size_t i, out = n + 2;
    for (i = 0; i < n; i++) {
        unsigned char c = s[i];
        if (c == '"' || c == '\\' || c == '\b' || c == '\f' || c == '\n' || c == '\r' || c == '\t')
            out += 1;
        else if (c < 0x20 || c == 0x7f)
            out += 5;
    }
    return out;
}

static char *dtr_jl_put(char *o, const unsigned char *s, size_t n)
{
    size_t i;
    *o++ = '"';
    for (i = 0; i < n; i++) {
        unsigned char c = s[i];
        char esc = 0;
        switch (c) {
        case '"': esc = '"'; break;
        case '\\': esc = '\\'; break;
        case '\b': esc = 'b'; break;
        case '\f': esc = 'f'; break;
        case '\n': esc = 'n'; break;
        case '\r': esc = 'r'; break;
        case '\t': esc = 't'; break;
        default: break;
        }
        if (esc != 0) {
            *o++ = '\\';
            *o++ = esc;
        } else if (c < 0x20 || c == 0x7f) {
            *o++ = '\\';
            *o++ = 'u';
            *o++ = '0';
            *o++ = '0';
            *o++ = dtr_jl_hex[c >> 4];
            *o++ = dtr_jl_hex[c & 15];
        } else {
            *o++ = (char)c;
        }
    }
    *o++ = '"';
    return o;
}

/* One pass over the keys of parts (at index 2): counts the bytes (out ==
 * NULL) or writes them from out; returns the bytes or the end. */
static size_t dtr_jl_walk(lua_State *L, char *out)
{
    size_t p, np = dtr_rawlen(L, 2), total = 0, nkeys = 0;
    char *o = out;
    for (p = 1; p <= np; p++) {
        size_t i, nk;
        lua_rawgeti(L, 2, (int)p);
        if (lua_type(L, -1) != LUA_TTABLE)
            luaL_argerror(L, 2, "every part must be an array of keys");
        nk = dtr_rawlen(L, -1);
        for (i = 1; i <= nk; i++) {
            size_t n;
            const char *s;
            lua_rawgeti(L, -1, (int)i);
            if (lua_type(L, -1) != LUA_TSTRING)
                luaL_argerror(L, 2, "every key must be a string");
            s = lua_tolstring(L, -1, &n);
            if (out == NULL) {
                total += dtr_jl_size((const unsigned char *)s, n) + (nkeys > 0);
                if (total > DTR_JLINE_MAX)
                    luaL_argerror(L, 2, "the line would be over 1 GiB");
            } else {
                if (nkeys > 0)
                    *o++ = ',';
                o = dtr_jl_put(o, (const unsigned char *)s, n);
            }
            nkeys++;
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    return out == NULL ? total : (size_t)(o - out);
}

static int dtr_l_journal_keys_line(lua_State *L)
{
    size_t nh, nt, nk;
    const char *head = luaL_checklstring(L, 1, &nh);
    const char *tail;
    char *buf;
    luaL_checktype(L, 2, LUA_TTABLE);
    tail = luaL_checklstring(L, 3, &nt);
    lua_settop(L, 3);
    nk = dtr_jl_walk(L, NULL);
    if (nh + nt > DTR_JLINE_MAX)
        luaL_argerror(L, 1, "the line would be over 1 GiB");
    buf = (char *)dtr_newuserdata(L, nh + nk + nt + 1);
    memcpy(buf, head, nh);
    dtr_jl_walk(L, buf + nh); /* the same keys: no Lua code ran since */
    memcpy(buf + nh + nk, tail, nt);
    lua_pushlstring(L, buf, nh + nk + nt);
    return 1;
}

static const luaL_Reg dtr_jline_functions[] = {
    {"keys_line", dtr_l_journal_keys_line},
    {NULL, NULL}};

void dtr_jline_open(lua_State *L)
{
    dtr_register(L, dtr_jline_functions);
}
