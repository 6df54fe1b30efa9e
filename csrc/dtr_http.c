/*
 * dingtalk-recall: the head of an HTTP/1.x answer, read from the bytes a
 * cosocket has received so far (the OpenResty transport's reader,
 * transport/http1.lua, feeds them; no I/O here).
 *
 *   core.http_head(buf, pos [, scanned]) ->
 *       stop, status, reusable, length | nil, chunked, request_id | nil,
 *       content_type | nil
 *     | false, scanned, pos, phase
 *                                no whole head yet: call again, with more
 *                                bytes, the first two; phase: what a
 *                                failure to read on would have failed at
 *     | nil, message [, phase]   the answer is not one to read on
 *
 * pos: where the answer starts in buf (1-based); scanned: how many of the
 * bytes from pos on are whole lines already looked at (0 at first), so
 * that bytes that come one by one are not read again.  stop: the first
 * byte after the head.  Interim answers (1xx but 101) are skipped, as
 * their heads come; a false answer's pos is then past them.  A line is
 * cut at LF, one CR before it dropped.  The status line must start as
 * "^HTTP/(%d%.%d) (%d%d%d)"; the header lines kept are named (in any
 * case) x-acs-request-id and content-type (their values without the
 * blanks at either end, as %s), content-length (digits only; two that
 * differ are refused), transfer-encoding (chunked when its value ends in
 * "chunked") and connection, which with the version says whether the
 * connection may be kept (1.1 without "close", 1.0 with "keep-alive").
 * A line of more than DTR_HTTP_MAX_HEAD bytes still without its LF is
 * refused with the phase ("reading the status line" or "reading the
 * headers"), as header lines of more than DTR_HTTP_MAX_HEAD bytes in all.
 *
 *   core.http_chunks(buf, pos, max, a, b) ->
 *       stop, data             the last chunk and the trailers are read:
 *                              stop is the first byte after them
 *     | false, pos, data, a, b no end yet: call again, with more bytes,
 *                              with pos, a and b (0, 0 at first)
 *     | nil, message [, true] a body not to read on (true: larger than max)
 *
 * A chunked body, read on from pos; data: the body's bytes taken in this
 * call (the caller joins them).  A chunk's size line is hex digits after
 * blanks (as tonumber(line:match("^%s*(%x+)"), 16): what follows them,
 * an extension, is skipped), at most DTR_HTTP_CHUNK_LINE bytes; its data
 * ends in CRLF or LF; the trailers, DTR_HTTP_MAX_HEAD bytes at most in
 * all, end at a blank line.  A body of more than max bytes is refused as
 * soon as a size line says so.  The state (a, b), opaque to the caller:
 * a > 0, data bytes of the chunk still owed; a == 0, at a size line;
 * a == -1, the CRLF after a chunk's data owed (b: the body's bytes so far,
 * counted at the size lines); a == -2, in the trailers (b: their bytes).
 */
#include <string.h>

#include "dtr.h"
#include "dtr_http.h"
#include "dtr_text.h"

/* whitespace as Lua's %s (the C locale's isspace) */
static int dtr_http_space(unsigned char c)
{
    return c == ' ' || (c >= 9 && c <= 13);
}

/* a hex digit's value, or -1 */
static int dtr_http_hex(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* [s, e) without the whitespace at either end */
static void dtr_http_trim(const char **s, const char **e)
{
    while (*s < *e && dtr_http_space((unsigned char)**s))
        (*s)++;
    while (*e > *s && dtr_http_space((unsigned char)(*e)[-1]))
        (*e)--;
}

/* Whether [s, e) holds `word` (lower case) in any case. */
static int dtr_http_contains(const char *s, const char *e, const char *word)
{
    size_t n = strlen(word);
    for (; (size_t)(e - s) >= n; s++)
        if (dtr_text_ieq(s, n, word))
            return 1;
    return 0;
}

/* The end of the line at p (before its LF, one CR dropped); eol: the LF. */
static const char *dtr_http_line_end(const char *p, const char *eol)
{
    return (eol > p && eol[-1] == '\r') ? eol - 1 : eol;
}

/* A status line: "HTTP/" digit "." digit " " three digits, then anything.
 * Sets *v11 / *v10 (the version) and *status. */
static int dtr_http_status_line(const char *s, const char *e, int *v11, int *v10, int *status)
{
    const unsigned char *u = (const unsigned char *)s;
#define DTR_DIGIT(c) ((c) >= '0' && (c) <= '9')
    if (e - s < 12 || memcmp(s, "HTTP/", 5) != 0 || !DTR_DIGIT(u[5]) || u[6] != '.' || !DTR_DIGIT(u[7]) ||
        u[8] != ' ' || !DTR_DIGIT(u[9]) || !DTR_DIGIT(u[10]) || !DTR_DIGIT(u[11]))
        return 0;
#undef DTR_DIGIT
    *v11 = u[5] == '1' && u[7] == '1';
    *v10 = u[5] == '1' && u[7] == '0';
    *status = (u[9] - '0') * 100 + (u[10] - '0') * 10 + (u[11] - '0');
    return 1;
}

/* What one head says. */
typedef struct dtr_head {
    int status, v11, v10, chunked, close, keep_alive, has_length;
    double length;
    const char *rid, *rid_end, *ctype, *ctype_end;
} dtr_head;

/* Reads the whole head [p, end) (its status line checked already);
 * returns NULL or the message it is refused with. */
static const char *dtr_http_read_head(const char *p, const char *end, dtr_head *h)
{
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    size_t bytes = 0;
    memset(h, 0, sizeof *h);
    dtr_http_status_line(p, dtr_http_line_end(p, eol), &h->v11, &h->v10, &h->status);
    for (p = eol + 1; p < end; p = eol + 1) {
        const char *le, *colon, *v, *ve;
        size_t nlen;
        unsigned char c;
        eol = memchr(p, '\n', (size_t)(end - p));
        le = dtr_http_line_end(p, eol);
        if (le == p)
            break; /* the blank line */
        bytes += (size_t)(le - p);
        if (bytes > DTR_HTTP_MAX_HEAD)
            return "the answer's headers are too large";
        /* Only five names matter: a line whose first letter starts none
         * of them, or whose name has not one of their lengths, is skipped. */
        c = (unsigned char)*p;
        if (!(c == 'x' || c == 'X' || c == 'c' || c == 'C' || c == 't' || c == 'T') || le - p < 2)
            continue;
        colon = memchr(p + 1, ':', (size_t)(le - p - 1));
        if (colon == NULL)
            continue;
        nlen = (size_t)(colon - p);
        v = colon + 1;
        ve = le;
        if (nlen == 16 && dtr_text_ieq(p, nlen, "x-acs-request-id")) {
            dtr_http_trim(&v, &ve);
            h->rid = v;
            h->rid_end = ve;
        } else if (nlen == 12 && dtr_text_ieq(p, nlen, "content-type")) {
            dtr_http_trim(&v, &ve);
            h->ctype = v;
            h->ctype_end = ve;
        } else if (nlen == 14 && dtr_text_ieq(p, nlen, "content-length")) {
            double n = 0;
            const char *d;
            dtr_http_trim(&v, &ve);
            if (v == ve)
                return "the answer has a bad Content-Length";
            for (d = v; d < ve; d++) {
                if (*d < '0' || *d > '9')
                    return "the answer has a bad Content-Length";
                n = n * 10 + (*d - '0');
            }
            if (h->has_length && h->length != n)
                return "the answer has a bad Content-Length";
            h->has_length = 1;
            h->length = n;
        } else if (nlen == 17 && dtr_text_ieq(p, nlen, "transfer-encoding")) {
            dtr_http_trim(&v, &ve);
            h->chunked = ve - v >= 7 && dtr_text_ieq(ve - 7, 7, "chunked");
        } else if (nlen == 10 && dtr_text_ieq(p, nlen, "connection")) {
            dtr_http_trim(&v, &ve);
            h->close = dtr_http_contains(v, ve, "close");
            h->keep_alive = dtr_http_contains(v, ve, "keep-alive");
        }
    }
    return NULL;
}

static void dtr_http_push_range(lua_State *L, const char *s, const char *e)
{
    if (s == NULL)
        lua_pushnil(L);
    else
        lua_pushlstring(L, s, (size_t)(e - s));
}

static int dtr_http_refuse(lua_State *L, const char *msg, const char *phase)
{
    lua_pushnil(L);
    lua_pushstring(L, msg);
    if (phase == NULL)
        return 2;
    lua_pushstring(L, phase);
    return 3;
}

static int dtr_l_http_head(lua_State *L)
{
    size_t n;
    const char *buf = luaL_checklstring(L, 1, &n);
    lua_Integer pos1 = luaL_checkinteger(L, 2), scanned = luaL_optinteger(L, 3, 0);
    const char *end = buf + n, *pos, *p;
    if (pos1 < 1 || (size_t)(pos1 - 1) > n)
        return luaL_argerror(L, 2, "out of the buffer");
    if (scanned < 0 || (size_t)scanned > n - (size_t)(pos1 - 1))
        return luaL_argerror(L, 3, "out of the buffer");
    pos = buf + (pos1 - 1);
    p = pos + scanned;
    for (;;) { /* one head a turn: interim ones are skipped */
        dtr_head h;
        const char *msg, *eol;
        for (;;) { /* the next line from p */
            const char *le;
            eol = memchr(p, '\n', (size_t)(end - p));
            if (eol == NULL) {
                const char *phase = p == pos ? "reading the status line" : "reading the headers";
                if ((size_t)(end - p) > DTR_HTTP_MAX_HEAD)
                    return dtr_http_refuse(L, "header line too long", phase);
                if ((size_t)(p - pos) > 2 * (size_t)DTR_HTTP_MAX_HEAD) /* (whole lines: bounded below too) */
                    return dtr_http_refuse(L, "the answer's headers are too large", NULL);
                lua_pushboolean(L, 0);
                lua_pushinteger(L, (lua_Integer)(p - pos));
                lua_pushinteger(L, (lua_Integer)(pos - buf) + 1);
                lua_pushstring(L, phase);
                return 4;
            }
            le = dtr_http_line_end(p, eol);
            if (p == pos) {
                int v11, v10, status;
                if (!dtr_http_status_line(p, le, &v11, &v10, &status))
                    return dtr_http_refuse(L, "the server's reply is not HTTP/1.x", NULL);
            } else if (le == p) {
                break; /* the blank line: the head is whole */
            }
            p = eol + 1;
        }
        if ((msg = dtr_http_read_head(pos, eol + 1, &h)) != NULL)
            return dtr_http_refuse(L, msg, NULL);
        if (h.status < 200 && h.status != 101) {
            pos = p = eol + 1; /* an interim answer: the next head */
            continue;
        }
        lua_pushinteger(L, (lua_Integer)(eol + 1 - buf) + 1);
        lua_pushinteger(L, h.status);
        lua_pushboolean(L, (h.v11 && !h.close) || (h.v10 && h.keep_alive));
        if (!h.has_length)
            lua_pushnil(L);
        else if (h.length <= 2147483647.0) /* (an integer on every Lua) */
            lua_pushinteger(L, (lua_Integer)h.length);
        else
            lua_pushnumber(L, (lua_Number)h.length);
        lua_pushboolean(L, h.chunked);
        dtr_http_push_range(L, h.rid, h.rid_end);
        dtr_http_push_range(L, h.ctype, h.ctype_end);
        return 7;
    }
}

/* The chunk reader's states (a): a > 0 is data owed. */
#define DTR_HTTP_MAX_BODY ((lua_Integer)1 << 50) /* (a size line's digits: no overflow below it) */
#define DTR_CHUNK_SIZE_LINE 0
#define DTR_CHUNK_CRLF (-1)
#define DTR_CHUNK_TRAILERS (-2)

/* What the chunk reader came to. */
enum { DTR_CHUNKS_DONE, DTR_CHUNKS_MORE, DTR_CHUNKS_REFUSED, DTR_CHUNKS_TOO_LARGE };

/* Reads a chunked body on from *pp (< end) in state (*a, *b), the data
 * into out (NULL: only read); leaves *pp, *a and *b where it stopped (at
 * DTR_CHUNKS_DONE, *pp is the first byte after the trailers) and sets
 * *msg when it refuses.  No Lua value is made here but out's. */
static int dtr_http_chunks_read(const char **pp, const char *end, lua_Integer max, lua_Integer *a, lua_Integer *b,
                                luaL_Buffer *out, const char **msg)
{
    const char *p = *pp;
    int result;
    for (;;) {
        const char *eol, *le, *d;
        lua_Integer size = 0;
        if (*a > 0) { /* a chunk's data */
            size_t have = (size_t)(end - p), take = (size_t)*a < have ? (size_t)*a : have;
            if (out != NULL)
                luaL_addlstring(out, p, take);
            p += take;
            *a -= (lua_Integer)take;
            if (*a > 0) {
                result = DTR_CHUNKS_MORE;
                break;
            }
            *a = DTR_CHUNK_CRLF;
        }
        if (*a == DTR_CHUNK_CRLF) {
            if (p < end && *p == '\r' && p + 1 < end && p[1] == '\n') {
                p += 2;
            } else if (p < end && *p == '\n') {
                p++;
            } else if (p == end || (*p == '\r' && p + 1 == end)) {
                result = DTR_CHUNKS_MORE;
                break;
            } else {
                *msg = "reading the body failed: a chunk does not end in CRLF";
                result = DTR_CHUNKS_REFUSED;
                break;
            }
            *a = DTR_CHUNK_SIZE_LINE;
        }
        eol = memchr(p, '\n', (size_t)(end - p));
        if (eol == NULL) {
            if ((size_t)(end - p) > (*a == DTR_CHUNK_TRAILERS ? (size_t)DTR_HTTP_MAX_HEAD : DTR_HTTP_CHUNK_LINE)) {
                *msg = "reading the body failed: header line too long";
                result = DTR_CHUNKS_REFUSED;
            } else {
                result = DTR_CHUNKS_MORE;
            }
            break;
        }
        le = dtr_http_line_end(p, eol);
        if (*a == DTR_CHUNK_TRAILERS) {
            if (le == p) { /* the blank line: the body is whole */
                p = eol + 1;
                result = DTR_CHUNKS_DONE;
                break;
            }
            *b += (lua_Integer)(le - p);
            if (*b > DTR_HTTP_MAX_HEAD) {
                *msg = "the answer's trailers are too large";
                result = DTR_CHUNKS_REFUSED;
                break;
            }
            p = eol + 1;
            continue;
        }
        if (eol - p > DTR_HTTP_CHUNK_LINE) { /* (as a line still without its LF) */
            *msg = "reading the body failed: header line too long";
            result = DTR_CHUNKS_REFUSED;
            break;
        }
        for (d = p; d < le && dtr_http_space((unsigned char)*d); d++)
            ;
        if (d == le || dtr_http_hex((unsigned char)*d) < 0) {
            *msg = "the answer has a bad chunk size";
            result = DTR_CHUNKS_REFUSED;
            break;
        }
        for (; d < le && dtr_http_hex((unsigned char)*d) >= 0; d++)
            if (size <= max) /* (beyond max, the size no longer matters) */
                size = size * 16 + dtr_http_hex((unsigned char)*d);
        p = eol + 1;
        if (size == 0) {
            *a = DTR_CHUNK_TRAILERS;
            *b = 0;
            continue;
        }
        if (size > max - *b) {
            *msg = "the answer is larger than its cap";
            result = DTR_CHUNKS_TOO_LARGE;
            break;
        }
        *b += size;
        *a = size;
    }
    *pp = p;
    return result;
}

static int dtr_l_http_chunks(lua_State *L)
{
    size_t n;
    const char *buf = luaL_checklstring(L, 1, &n);
    lua_Integer pos1 = luaL_checkinteger(L, 2), max = luaL_checkinteger(L, 3);
    lua_Integer a = luaL_checkinteger(L, 4), b = luaL_checkinteger(L, 5);
    const char *p, *msg = NULL;
    luaL_Buffer data;
    int result;
    if (pos1 < 1 || (size_t)(pos1 - 1) > n)
        return luaL_argerror(L, 2, "out of the buffer");
    if (max < 0 || max > DTR_HTTP_MAX_BODY)
        return luaL_argerror(L, 3, "not a size");
    if (a < DTR_CHUNK_TRAILERS || b < 0 || (a >= DTR_CHUNK_CRLF && (b > max || a > b)) ||
        (a == DTR_CHUNK_TRAILERS && b > DTR_HTTP_MAX_HEAD))
        return luaL_argerror(L, 4, "not a state this function answered");
    lua_settop(L, 5);
    p = buf + (pos1 - 1);
    luaL_buffinit(L, &data);
    result = dtr_http_chunks_read(&p, buf + n, max, &a, &b, &data, &msg);
    luaL_pushresult(&data); /* (the data taken) */
    if (result == DTR_CHUNKS_DONE) {
        lua_pushinteger(L, (lua_Integer)(p - buf) + 1);
        lua_insert(L, -2);
        return 2;
    }
    if (result == DTR_CHUNKS_MORE) {
        lua_pushboolean(L, 0);
        lua_insert(L, -2);
        lua_pushinteger(L, (lua_Integer)(p - buf) + 1);
        lua_insert(L, -2);
        lua_pushinteger(L, a);
        lua_pushinteger(L, b);
        return 5;
    }
    lua_pushnil(L);
    lua_pushstring(L, msg);
    if (result != DTR_CHUNKS_TOO_LARGE)
        return 2;
    lua_pushboolean(L, 1);
    return 3;
}

static const luaL_Reg dtr_http_functions[] = {
    {"http_head", dtr_l_http_head},
    {"http_chunks", dtr_l_http_chunks},
    {NULL, NULL}};

void dtr_http_open(lua_State *L)
{
    dtr_register(L, dtr_http_functions);
    /* (the module is below the upvalues dtr_register reads) */
    lua_pushinteger(L, DTR_HTTP_MAX_HEAD);
    lua_setfield(L, -(DTR_NUPVALUES + 2), "HTTP_MAX_HEAD");
}
