/*
 * dingtalk-recall: the journal's lines gathered in C.
 *
 *   journal.keys_line(head, parts, tail) -> string
 *       head .. '"k1","k2",...' .. tail, the keys of parts (an array of
 *       arrays of strings) in order, each a JSON string: '"' and '\\'
 *       escaped, control characters (and DEL) as \b \f \n \r \t or \u00XX,
 *       every other byte as it is (cjson's own rules, so cjson.decode
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
#include <stdint.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "dtr_jline.h"

#define DTR_JLINE_MAX ((size_t)1 << 30) /* bytes in one append */

static const char dtr_jl_hex[] = "0123456789abcdef";

/* Extra bytes a byte takes in a JSON string: 1 for \" \\ \b \f \n \r \t,
 * 5 for the other control characters and DEL (\u00XX), else 0. */
#define DTR_JL_U5 5, 5, 5, 5, 5, 5, 5, 5
static const unsigned char dtr_jl_extra[256] = {
    5, 5, 5, 5, 5, 5, 5, 5, 1, 1, 1, 5, 1, 1, 5, 5, /* \b \t \n, \f \r */
    DTR_JL_U5, DTR_JL_U5,
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* '"' */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, /* '\\' */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5, /* DEL */
};

/* The length of the run of bytes from s[i] on that need no escaping (recall
 * keys are base64: usually all of them), eight bytes at a time: a word
 * holds none of '"', '\\', DEL or a byte below 0x20 when the usual
 * "has a zero byte" and "has a byte less than n" tests all fail. */
static size_t dtr_jl_plain_run(const unsigned char *s, size_t i, size_t n)
{
    const uint64_t ones = 0x0101010101010101u, high = 0x8080808080808080u;
#ifdef __SSE2__
    /* sixteen bytes at a time where the CPU has SSE2 (every x86-64): a
     * byte is bad when it is '"', '\\', DEL, or at most 0x1f (unsigned) */
    const __m128i quote = _mm_set1_epi8('"'), bslash = _mm_set1_epi8('\\');
    const __m128i del = _mm_set1_epi8(0x7f), ctl = _mm_set1_epi8(0x1f);
    while (i + 16 <= n) {
        __m128i x = _mm_loadu_si128((const __m128i *)(const void *)(s + i));
        __m128i bad = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(x, quote), _mm_cmpeq_epi8(x, bslash)),
                                   _mm_or_si128(_mm_cmpeq_epi8(x, del), _mm_cmpeq_epi8(_mm_max_epu8(x, ctl), ctl)));
        if (_mm_movemask_epi8(bad) != 0)
            break;
        i += 16;
    }
#endif
    while (i + 8 <= n) {
        uint64_t x, q, b, d;
        memcpy(&x, s + i, 8);
        q = x ^ (ones * '"');
        b = x ^ (ones * '\\');
        d = x ^ (ones * 0x7f);
        if ((((x - ones * 0x20) & ~x) | ((q - ones) & ~q) | ((b - ones) & ~b) | ((d - ones) & ~d)) & high)
            break;
        i += 8;
    }
    while (i < n && dtr_jl_extra[s[i]] == 0)
        i++;
    return i;
}

/* Bytes the key takes in JSON, quotes included. */
static size_t dtr_jl_key_size(const unsigned char *s, size_t n)
{
    size_t i = dtr_jl_plain_run(s, 0, n), out = n + 2;
    for (; i < n; i++)
        out += dtr_jl_extra[s[i]];
    return out;
}

static char *dtr_jl_put_key(char *o, const unsigned char *s, size_t n)
{
    size_t i = 0, run;
    *o++ = '"';
    while (i < n) {
        unsigned char c;
        run = dtr_jl_plain_run(s, i, n);
        memcpy(o, s + i, run - i); /* the plain bytes, as they are */
        o += run - i;
        if (run == n)
            break;
        c = s[run];
        *o++ = '\\';
        switch (c) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '\b': *o++ = 'b'; break;
        case '\f': *o++ = 'f'; break;
        case '\n': *o++ = 'n'; break;
        case '\r': *o++ = 'r'; break;
        case '\t': *o++ = 't'; break;
        default:
            memcpy(o, "u00", 3);
            o += 3;
            *o++ = dtr_jl_hex[c >> 4];
            *o++ = dtr_jl_hex[c & 15];
        }
        i = run + 1;
    }
    *o++ = '"';
    return o;
}

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
                size_t size = dtr_jl_key_size((const unsigned char *)s, n);
                if (size != n + 2)
                    *esc = 1;
                total += size + (nkeys > 0);
                if (total > DTR_JLINE_MAX)
                    dtr_jl_bad(L, idx, what, "the lines would be over 1 GiB");
            } else {
                if (nkeys > 0)
                    *o++ = ',';
                if (*esc) {
                    o = dtr_jl_put_key(o, (const unsigned char *)s, n);
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
