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
 * keys, handed over as the plans' batch arrays) with one call, no Lua
 * string per key nor one for the line.  Two passes: the first checks (it
 * may raise), the second writes and never raises.  An append checks the
 * types only (dtr_jline_check: no key's bytes are read, only the arrays
 * holding them) and then, under the journal's lock, streams the lines to
 * the file through a buffer of 32 KB (dtr_jline_write): each key is read
 * once, escaped as it is copied, and no buffer of the whole append is
 * allocated (the C heap's large blocks cost a pass over its free lists,
 * and a fresh megabyte misses the cache all the way).  A compaction and
 * keys_line measure first (dtr_jline_size, which also learns whether any
 * key needs escaping) and fill memory of exactly that size
 * (dtr_jline_fill): without escapes each key is copied as it is.
 */

#include <errno.h>
#include <string.h>

#include "dtr_jline.h"
#include "dtr_files.h"
#include "dtr_text.h"

#define DTR_JLINE_MAX ((size_t)1 << 30) /* bytes in one append (measured) */
#define DTR_JLINE_BUF 32768             /* dtr_jline_write's buffer */

/* What a walk over the lines does. */
enum { DTR_JL_MEASURE, DTR_JL_CHECK, DTR_JL_EMIT };

/* Where emitted bytes go: memory of the caller's (fd < 0: exactly the
 * measured size) or a buffer of cap bytes written to fd when full. */
typedef struct dtr_jl_out {
    char *buf;
    size_t len, cap, total;
    int fd, esc, failed, errnum;
} dtr_jl_out;

/* Writes n bytes to the stream's file unless a write failed already; the
 * first failure and its errno are kept. */
static void dtr_jl_write(dtr_jl_out *o, const char *s, size_t n)
{
    if (!o->failed && dtr_j_write_all(o->fd, s, n) != 0) {
        o->failed = 1;
        o->errnum = errno;
    }
}

static void dtr_jl_flush(dtr_jl_out *o)
{
    if (o->fd >= 0 && o->len > 0)
        dtr_jl_write(o, o->buf, o->len);
    if (o->fd >= 0)
        o->len = 0;
}

/* Room for n more bytes in the buffer (a stream flushes it first). */
static char *dtr_jl_room(dtr_jl_out *o, size_t n)
{
    if (o->fd >= 0 && o->len + n > o->cap)
        dtr_jl_flush(o);
    return o->buf + o->len;
}

static void dtr_jl_put(dtr_jl_out *o, const char *s, size_t n)
{
    o->total += n;
    if (o->fd >= 0 && n > o->cap) { /* longer than the buffer: as it is */
        dtr_jl_flush(o);
        dtr_jl_write(o, s, n);
        return;
    }
    memcpy(dtr_jl_room(o, n), s, n);
    o->len += n;
}

/* A key as a JSON string.  In memory: escaped only when the measure found
 * a key that needs it.  Streamed: escaped in the buffer (at most 6 bytes a
 * byte), a key too long for that in slices of its bytes. */
static void dtr_jl_key(dtr_jl_out *o, const char *s, size_t n)
{
    size_t i, w;
    if (o->fd < 0 && !o->esc) {
        char *d = o->buf + o->len;
        *d = '"';
        memcpy(d + 1, s, n);
        d[n + 1] = '"';
        o->len += n + 2;
        o->total += n + 2;
        return;
    }
    if (o->fd < 0 || 6 * n + 2 <= o->cap) {
        w = dtr_json_string(dtr_jl_room(o, 6 * n + 2), s, n);
        o->len += w;
        o->total += w;
        return;
    }
    dtr_jl_put(o, "\"", 1);
    for (i = 0; i < n; i += w) {
        char *d;
        size_t e;
        w = n - i < o->cap / 6 - 1 ? n - i : o->cap / 6 - 1;
        d = dtr_jl_room(o, 6 * w + 2);
        e = dtr_json_string(d, s + i, w); /* "..." : its quotes dropped */
        memmove(d, d + 1, e - 2);
        o->len += e - 2;
        o->total += e - 2;
    }
    dtr_jl_put(o, "\"", 1);
}

static int dtr_jl_bad(lua_State *L, int idx, const char *what, const char *msg)
{
    if (what != NULL)
        return luaL_error(L, "%s: %s", what, msg);
    return luaL_argerror(L, idx, msg);
}

/* The keys of the parts at index p (absolute): measures them (raising on
 * a part or key of another type; o->esc set when a key needs escaping),
 * checks their types only (touching no key's bytes), or emits them;
 * returns the bytes measured. */
static size_t dtr_jl_keys(lua_State *L, int p, int idx, const char *what, int mode, dtr_jl_out *o)
{
    size_t i, np = dtr_rawlen(L, p), total = 0, nkeys = 0;
    for (i = 1; i <= np; i++) {
        size_t j, nk;
        lua_rawgeti(L, p, (int)i);
        if (mode != DTR_JL_EMIT && lua_type(L, -1) != LUA_TTABLE)
            dtr_jl_bad(L, idx, what, "every part of a key line must be an array of keys");
        nk = dtr_rawlen(L, -1);
        for (j = 1; j <= nk; j++, nkeys++) {
            size_t n;
            const char *s;
            lua_rawgeti(L, -1, (int)j);
            if (mode != DTR_JL_EMIT && lua_type(L, -1) != LUA_TSTRING)
                dtr_jl_bad(L, idx, what, "every key of a key line must be a string");
            if (mode == DTR_JL_CHECK) {
                lua_pop(L, 1);
                continue;
            }
            s = lua_tolstring(L, -1, &n);
            if (mode == DTR_JL_MEASURE) {
                size_t size = dtr_json_string(NULL, s, n);
                if (size != n + 2)
                    o->esc = 1;
                total += size + (nkeys > 0);
                if (total > DTR_JLINE_MAX)
                    dtr_jl_bad(L, idx, what, "the lines would be over 1 GiB");
            } else {
                if (nkeys > 0)
                    dtr_jl_put(o, ",", 1);
                dtr_jl_key(o, s, n);
            }
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    return total;
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

/* The line on top of the stack (a string or a key line): measured or
 * checked (its bytes without the "\n") or emitted, "\n" included. */
static size_t dtr_jl_line(lua_State *L, int idx, const char *what, int mode, dtr_jl_out *o)
{
    size_t n, total = 0;
    int t = lua_gettop(L), k;
    if (lua_type(L, t) == LUA_TSTRING) {
        const char *s;
        if (mode != DTR_JL_EMIT)
            return dtr_jl_plain(L, idx, what);
        s = lua_tolstring(L, t, &n);
        dtr_jl_put(o, s, n);
        dtr_jl_put(o, "\n", 1);
        return 0;
    }
    if (lua_type(L, t) != LUA_TTABLE)
        dtr_jl_bad(L, idx, what, "journal lines must be strings or key lines {head, parts, tail}");
    for (k = 1; k <= 3; k++) {
        lua_rawgeti(L, t, k);
        n = 0;
        if (k == 2) {
            if (mode != DTR_JL_EMIT && lua_type(L, -1) != LUA_TTABLE)
                dtr_jl_bad(L, idx, what, "a key line is {head, parts, tail}");
            n = dtr_jl_keys(L, lua_gettop(L), idx, what, mode, o);
        } else if (mode != DTR_JL_EMIT) {
            if (lua_type(L, -1) != LUA_TSTRING)
                dtr_jl_bad(L, idx, what, "a key line is {head, parts, tail}");
            n = dtr_jl_plain(L, idx, what);
        } else {
            const char *s = lua_tolstring(L, -1, &n);
            dtr_jl_put(o, s, n);
        }
        total += n;
        lua_pop(L, 1);
        if (mode == DTR_JL_MEASURE && total > DTR_JLINE_MAX)
            dtr_jl_bad(L, idx, what, "the lines would be over 1 GiB");
    }
    if (mode == DTR_JL_EMIT)
        dtr_jl_put(o, "\n", 1);
    return total;
}

/* A walk over the lines at idx (absolute): their bytes (measured, or
 * checked: plain lines and heads and tails only) or the lines emitted. */
static size_t dtr_jl_walk(lua_State *L, int idx, const char *what, int mode, dtr_jl_out *o)
{
    size_t i, len, total = 0;
    if (lua_type(L, idx) == LUA_TSTRING) {
        lua_pushvalue(L, idx);
        total = dtr_jl_line(L, idx, what, mode, o) + 1;
        lua_pop(L, 1);
        return total;
    }
    if (lua_type(L, idx) != LUA_TTABLE)
        dtr_jl_bad(L, idx, what, "a string or an array of strings expected");
    len = dtr_rawlen(L, idx);
    for (i = 1; i <= len; i++) {
        lua_rawgeti(L, idx, (int)i);
        total += dtr_jl_line(L, idx, what, mode, o) + 1;
        lua_pop(L, 1);
        if (mode == DTR_JL_MEASURE && total > DTR_JLINE_MAX)
            dtr_jl_bad(L, idx, what, "the lines would be over 1 GiB");
    }
    return total;
}

size_t dtr_jline_size(lua_State *L, int idx, const char *what, int *esc)
{
    dtr_jl_out o;
    size_t n;
    memset(&o, 0, sizeof o);
    luaL_checkstack(L, 4, "journal lines");
    n = dtr_jl_walk(L, dtr_absindex(L, idx), what, DTR_JL_MEASURE, &o);
    *esc = o.esc;
    return n;
}

void dtr_jline_fill(lua_State *L, int idx, char *out, int esc)
{
    dtr_jl_out o;
    memset(&o, 0, sizeof o);
    o.buf = out;
    o.fd = -1;
    o.esc = esc;
    dtr_jl_walk(L, dtr_absindex(L, idx), NULL, DTR_JL_EMIT, &o);
}

int dtr_jline_check(lua_State *L, int idx, const char *what)
{
    /* the walk's 4 slots, and dtr_jline_write's after a handle pushed */
    luaL_checkstack(L, 8, "journal lines");
    idx = dtr_absindex(L, idx);
    if (lua_type(L, idx) == LUA_TTABLE && dtr_rawlen(L, idx) == 0)
        return 0;
    dtr_jl_walk(L, idx, what, DTR_JL_CHECK, NULL);
    return 1;
}

int dtr_jline_write(lua_State *L, int idx, int fd, size_t *n)
{
    char buf[DTR_JLINE_BUF];
    dtr_jl_out o;
    memset(&o, 0, sizeof o);
    o.buf = buf;
    o.cap = sizeof buf;
    o.fd = fd;
    dtr_jl_walk(L, dtr_absindex(L, idx), NULL, DTR_JL_EMIT, &o);
    dtr_jl_flush(&o);
    *n = o.total;
    if (o.failed) {
        errno = o.errnum;
        return -1;
    }
    return 0;
}

/* journal.keys_line(head, parts, tail) -> string */
static int dtr_l_journal_keys_line(lua_State *L)
{
    size_t n;
    char *buf;
    int esc;
    luaL_checkstring(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    luaL_checkstring(L, 3);
    lua_settop(L, 3);
    lua_createtable(L, 1, 0); /* the lines: {{head, parts, tail}} */
    lua_createtable(L, 3, 0);
    lua_pushvalue(L, 1);
    lua_rawseti(L, 5, 1);
    lua_pushvalue(L, 2);
    lua_rawseti(L, 5, 2);
    lua_pushvalue(L, 3);
    lua_rawseti(L, 5, 3);
    lua_rawseti(L, 4, 1);
    n = dtr_jline_size(L, 4, "journal.keys_line", &esc);
    buf = (char *)dtr_newuserdata(L, n);
    dtr_jline_fill(L, 4, buf, esc);
    lua_pushlstring(L, buf, n - 1); /* without the "\n" */
    return 1;
}

static const luaL_Reg dtr_jline_functions[] = {
    {"keys_line", dtr_l_journal_keys_line},
    {NULL, NULL}};

void dtr_jline_open(lua_State *L)
{
    dtr_register(L, dtr_jline_functions);
}
