/*
 * dingtalk-recall: text checks, endpoints and the JSON writer (sans I/O).
 *
 * The checks every value passes before it goes on the wire: strict UTF-8
 * without control characters for ids and keys, printable ASCII for
 * header values, and the endpoint rules (https, or plain http to
 * loopback only).  The JSON body is written into a buffer on the C stack
 * when its bound fits there, else measured, then filled into a userdata
 * (freed by the collector), so a Lua error can never leak a C buffer; the
 * caller keeps every string it passes anchored on the Lua stack.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "dtr.h"
#include "dtr_error.h"
#include "dtr_text.h"

#ifdef __SSE2__
#include <emmintrin.h>
#endif

/* ---------------------------------------------------------------------
 * Text checks
 * ------------------------------------------------------------------- */

/* Strict UTF-8 with no C0, DEL or C1 control characters.  Returns 0 when
 * clean, 1 for a control character, 2 for invalid UTF-8 anywhere (the
 * whole string is scanned, so 2 wins over an earlier control character:
 * msgParam, where controls are allowed, relies on that). */
int dtr_text_check(const unsigned char *s, size_t n)
{
    size_t i = 0;
    int ctrl = 0;
    /* Eight bytes at a time while all are printable ASCII (keys are, as a
     * rule): a byte under 0x20 borrows, 0x7f carries into bit 7, and a
     * byte from 0x80 has it set.  The first word that fails, and the
     * rest, go byte by byte. */
    while (n - i >= 8) {
        uint64_t x;
        memcpy(&x, s + i, 8);
        if (((x - 0x2020202020202020ULL) | (x + 0x0101010101010101ULL) | x) & 0x8080808080808080ULL)
            break;
        i += 8;
    }
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) {
            if (c < 0x20 || c == 0x7f)
                ctrl = 1;
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) {
            if (i + 1 >= n || (s[i + 1] & 0xc0) != 0x80)
                return 2;
            if (c == 0xc2 && s[i + 1] < 0xa0)
                ctrl = 1; /* U+0080..U+009F, the C1 controls */
            i += 2;
        } else if (c >= 0xe0 && c <= 0xef) {
            unsigned c1;
            if (i + 2 >= n || (s[i + 1] & 0xc0) != 0x80 || (s[i + 2] & 0xc0) != 0x80)
                return 2;
            c1 = s[i + 1];
            if ((c == 0xe0 && c1 < 0xa0) || (c == 0xed && c1 > 0x9f))
                return 2; /* overlong, or a UTF-16 surrogate */
            i += 3;
        } else if (c >= 0xf0 && c <= 0xf4) {
            unsigned c1;
            if (i + 3 >= n || (s[i + 1] & 0xc0) != 0x80 || (s[i + 2] & 0xc0) != 0x80 ||
                (s[i + 3] & 0xc0) != 0x80)
                return 2;
            c1 = s[i + 1];
            if ((c == 0xf0 && c1 < 0x90) || (c == 0xf4 && c1 > 0x8f))
                return 2; /* overlong, or above U+10FFFF */
            i += 4;
        } else {
            return 2;
        }
    }
    return ctrl;
}

/* A value that goes into an HTTP header: printable ASCII, no space. */
int dtr_header_safe(const char *s, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c >= 0x7f)
            return 0;
    }
    return 1;
}

/* Checks a required text value (an id, a key, a secret): at most 1024
 * bytes, UTF-8, no control characters.  `what` names it in messages. */
int dtr_text_ok(const dtr_str *v, const char *what, dtr_err *e)
{
    int bad;
    if (v->n > DTR_MAX_FIELD) {
        dtr_seterr(e, "invalidParameter.param.invalid", "%s is longer than %d bytes", what, DTR_MAX_FIELD);
        return 0;
    }
    bad = dtr_text_check((const unsigned char *)v->s, v->n);
    if (bad) {
        dtr_seterr(e, "invalidParameter.param.invalid",
                   bad == 1 ? "%s contains a control character" : "%s is not valid UTF-8", what);
        return 0;
    }
    return 1;
}

/*
 * Reads field `name` of the table at `idx` as a required text field.
 * Returns 1 and fills *out when valid; else fills e and returns 0.
 * `missing` is the code for an absent or empty field.  The value is LEFT
 * ON THE STACK (one slot, in every case): the table may answer through
 * __index, so only the stack keeps out->s alive.
 */
int dtr_text_field(lua_State *L, int idx, const char *name, const char *missing,
                          dtr_str *out, dtr_err *e)
{
    int t;
    lua_getfield(L, idx, name);
    t = lua_type(L, -1);
    if (t == LUA_TNIL || (t == LUA_TSTRING && dtr_rawlen(L, -1) == 0)) {
        dtr_seterr(e, missing, "%s is missing or empty", name);
        return 0;
    }
    if (t != LUA_TSTRING) {
        dtr_seterr(e, "invalidParameter.param.invalid", "%s must be a string", name);
        return 0;
    }
    out->s = lua_tolstring(L, -1, &out->n);
    return dtr_text_ok(out, name, e);
}

/* ---------------------------------------------------------------------
 * Endpoint
 * ------------------------------------------------------------------- */

static int dtr_is_ipv4_loopback(const char *h, size_t n)
{
    int octets = 0, val = -1, first = -1;
    size_t i;
    for (i = 0; i <= n; i++) {
        if (i == n || h[i] == '.') {
            if (val < 0 || val > 255)
                return 0;
            if (octets == 0)
                first = val;
            octets++;
            val = -1;
        } else if (h[i] >= '0' && h[i] <= '9') {
            if (val == 0)
                return 0; /* a leading zero: libcurl reads 0127 as octal */
            val = (val < 0 ? 0 : val * 10) + (h[i] - '0');
            if (val > 255)
                return 0;
        } else {
            return 0;
        }
    }
    return octets == 4 && first == 127;
}

int dtr_text_ieq(const char *a, size_t n, const char *lower)
{
    size_t i;
    if (strlen(lower) != n)
        return 0;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)a[i];
        if (c >= 'A' && c <= 'Z')
            c = (unsigned char)(c + ('a' - 'A'));
        if (c != (unsigned char)lower[i])
            return 0;
    }
    return 1;
}

/*
 * Normalises an endpoint into o->endpoint ("scheme://authority[/path]"
 * with no trailing slash) and decides whether it is loopback.  Refuses
 * user info, queries, fragments, spaces and controls, and plain http to
 * anything but 127.0.0.0/8, ::1 and localhost.
 */
int dtr_parse_endpoint(const char *s, size_t n, dtr_opts *o, dtr_err *e)
{
    const char *auth, *host, *end;
    size_t hlen, schemelen;
    int https;
    const char *p;

    while (n > 0 && s[n - 1] == '/')
        n--;
    end = s + n;
    if (n == 0 || n > DTR_MAX_ENDPOINT || !dtr_header_safe(s, n))
        goto bad;
    if (n > 8 && dtr_text_ieq(s, 8, "https://")) {
        https = 1;
        schemelen = 8;
    } else if (n > 7 && dtr_text_ieq(s, 7, "http://")) {
        https = 0;
        schemelen = 7;
    } else {
        dtr_seterr(e, "invalid.endpoint", "endpoint must start with https:// (%s)", "or http:// to loopback");
        return 0;
    }
    auth = s + schemelen;
    for (p = auth; p < end; p++)
        if (*p == '?' || *p == '#' || *p == '@' || *p == '\\')
            goto bad;
    host = auth;
    if (*host == '[') {
        p = memchr(host, ']', (size_t)(end - host));
        if (p == NULL)
            goto bad;
        hlen = (size_t)(p - host) + 1;
    } else {
        for (p = host; p < end && *p != ':' && *p != '/'; p++)
            ;
        hlen = (size_t)(p - host);
    }
    if (hlen == 0)
        goto bad;
    p = host + hlen;
    o->port = https ? 443 : 80;
    if (p < end && *p == ':') {
        long port = 0;
        const char *d = ++p;
        for (; p < end && *p >= '0' && *p <= '9'; p++)
            if ((port = port * 10 + (*p - '0')) > 65535)
                goto bad;
        if (p == d || port == 0)
            goto bad;
        o->port = (int)port;
    }
    if (p < end && *p != '/')
        goto bad;
    o->https = https;
    o->host_off = (size_t)(host - s);
    o->host_len = hlen;
    o->path_off = (size_t)(p - s);
    o->loopback = dtr_text_ieq(host, hlen, "localhost") || dtr_text_ieq(host, hlen, "[::1]") ||
                  dtr_is_ipv4_loopback(host, hlen);
    if (!https && !o->loopback) {
        dtr_seterr(e, "invalid.endpoint",
                   "plain http is only allowed to loopback addresses; use https:// (%s)",
                   "TLS is always verified");
        return 0;
    }
    memcpy(o->endpoint, s, n);
    o->endpoint[n] = '\0';
    return 1;
bad:
    dtr_seterr(e, "invalid.endpoint", "endpoint is not a valid %s URL", "https://host[:port][/path]");
    return 0;
}

/* ---------------------------------------------------------------------
 * JSON writing
 * ------------------------------------------------------------------- */

/* 1 for the bytes that go into a JSON string as they are (no escape):
 * all but the controls, DEL, '"' and '\\'. */
static const unsigned char dtr_json_plain[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
};
#define DTR_JSON_PLAIN(c) (dtr_json_plain[(c)] != 0)

/* Whether none of the eight bytes in x is '"', '\\' or below 0x20, and,
 * with del, none is DEL either (the usual "has a zero byte" and "has a
 * byte less than n" tests, which all fail then). */
static inline int dtr_json_word_clean(uint64_t x, int del)
{
    const uint64_t ones = 0x0101010101010101u, high = 0x8080808080808080u;
    uint64_t q = x ^ (ones * '"'), b = x ^ (ones * '\\'), d = x ^ (ones * 0x7f);
    uint64_t bad = ((x - ones * 0x20) & ~x) | ((q - ones) & ~q) | ((b - ones) & ~b);
    if (del)
        bad |= (d - ones) & ~d;
    return (bad & high) == 0;
}

/* Whether none of the eight bytes in x needs escaping in a JSON string we
 * write (DEL included). */
static inline int dtr_json_word_plain(uint64_t x)
{
    return dtr_json_word_clean(x, 1);
}

#ifdef __SSE2__
static inline __m128i dtr_json_load16(const unsigned char *s)
{
    return _mm_loadu_si128((const __m128i *)(const void *)s);
}

/* dtr_json_word_plain for sixteen bytes: none is '"', '\\', DEL or below
 * 0x20 (x == max(x, 0x1f) unsigned: x <= 0x1f). */
static inline int dtr_json_block_plain(__m128i x)
{
    const __m128i quote = _mm_set1_epi8('"'), bslash = _mm_set1_epi8('\\');
    const __m128i del = _mm_set1_epi8(0x7f), ctl = _mm_set1_epi8(0x1f);
    __m128i bad = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(x, quote), _mm_cmpeq_epi8(x, bslash)),
                               _mm_or_si128(_mm_cmpeq_epi8(x, del), _mm_cmpeq_epi8(_mm_max_epu8(x, ctl), ctl)));
    return _mm_movemask_epi8(bad) == 0;
}
#endif

/* The end of the run of bytes from s[i] on that go into a JSON string as
 * they are (recall keys are base64: usually all of them), copied to dst
 * (at the same offsets) unless dst is NULL: sixteen bytes at a time where
 * the CPU has SSE2 (every x86-64), the last ones as the sixteen that end s
 * (overlapping some tested already, never any before the first i: a key of
 * 44 bytes takes three tests), else eight at a time (dtr_json_word_plain),
 * then byte by byte.  Inlined with a constant dst, so that neither caller
 * pays for the other's case. */
static DTR_ALWAYS_INLINE size_t dtr_json_plain_prefix(char *dst, const unsigned char *s, size_t i, size_t n)
{
#ifdef __SSE2__
    if (i + 16 <= n) {
        for (; i + 16 <= n; i += 16) {
            __m128i x = dtr_json_load16(s + i);
            if (!dtr_json_block_plain(x))
                break;
            if (dst)
                _mm_storeu_si128((__m128i *)(void *)(dst + i), x);
        }
        if (i + 16 > n) { /* no block failed */
            __m128i x;
            if (i == n)
                return n;
            x = dtr_json_load16(s + n - 16);
            if (dtr_json_block_plain(x)) {
                if (dst)
                    _mm_storeu_si128((__m128i *)(void *)(dst + n - 16), x);
                return n;
            }
        }
    }
#endif
    while (i + 8 <= n) {
        uint64_t x;
        memcpy(&x, s + i, 8);
        if (!dtr_json_word_plain(x))
            break;
        if (dst)
            memcpy(dst + i, &x, 8);
        i += 8;
    }
    for (; i < n && DTR_JSON_PLAIN(s[i]); i++)
        if (dst)
            dst[i] = (char)s[i];
    return i;
}

size_t dtr_json_plain_run(const unsigned char *s, size_t i, size_t n)
{
    return dtr_json_plain_prefix(NULL, s, i, n);
}

/* Whether the n bytes at a are those at b and a JSON string holds all of
 * them as they are: none is '"', '\\' or below 0x20 (DEL may stand raw in
 * an answer, though the writer escapes it); eight at a time, then byte by
 * byte. */
int dtr_json_plain_equal(const char *a, const char *b, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t x, y;
        memcpy(&x, a + i, 8);
        memcpy(&y, b + i, 8);
        if (x != y || !dtr_json_word_clean(x, 0))
            return 0;
    }
    for (; i < n; i++) {
        unsigned char c = (unsigned char)a[i];
        if (c != (unsigned char)b[i] || c < 0x20 || c == '"' || c == '\\')
            return 0;
    }
    return 1;
}

/* Copies the run of plain bytes from s[0] on to dst and returns its
 * length, testing and copying in one pass. */
static size_t dtr_json_copy_plain(char *dst, const unsigned char *s, size_t n)
{
    return dtr_json_plain_prefix(dst, s, 0, n);
}

/* Writes s as a JSON string (with quotes) at dst, or only measures it
 * when dst is NULL.  Returns the number of bytes.  Runs of plain bytes
 * are copied whole (keys are almost always plain).  The one JSON string
 * writer: request bodies and the journal's key lines. */
size_t dtr_json_string(char *dst, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t i = 0, w = 0;
#define DTR_PUT(ch) do { if (dst) dst[w] = (ch); w++; } while (0)
    DTR_PUT('"');
    if (dst != NULL) { /* the usual key: all of it, copied as it is checked */
        i = dtr_json_copy_plain(dst + 1, (const unsigned char *)s, n);
        w += i;
    }
    while (i < n) {
        size_t j = dtr_json_plain_run((const unsigned char *)s, i, n);
        unsigned char c;
        if (j > i) {
            if (dst)
                memcpy(dst + w, s + i, j - i);
            w += j - i;
            i = j;
            if (i == n)
                break;
        }
        c = (unsigned char)s[i++];
        switch (c) {
        case '"': DTR_PUT('\\'); DTR_PUT('"'); break;
        case '\\': DTR_PUT('\\'); DTR_PUT('\\'); break;
        case '\n': DTR_PUT('\\'); DTR_PUT('n'); break;
        case '\r': DTR_PUT('\\'); DTR_PUT('r'); break;
        case '\t': DTR_PUT('\\'); DTR_PUT('t'); break;
        case '\b': DTR_PUT('\\'); DTR_PUT('b'); break;
        case '\f': DTR_PUT('\\'); DTR_PUT('f'); break;
        default: /* the other controls and DEL */
            DTR_PUT('\\'); DTR_PUT('u'); DTR_PUT('0'); DTR_PUT('0');
            DTR_PUT(hex[c >> 4]); DTR_PUT(hex[c & 15]);
        }
    }
    DTR_PUT('"');
#undef DTR_PUT
    return w;
}

/* The object in f, written at dst or measured (dst NULL). */
size_t dtr_json_object(char *dst, const dtr_field *f, int nf)
{
    size_t w = 0;
    int i, j;
#define DTR_PUTS(str, len) do { if (dst) memcpy(dst + w, (str), (len)); w += (len); } while (0)
    DTR_PUTS("{", 1);
    for (i = 0; i < nf; i++) {
        if (i > 0)
            DTR_PUTS(",", 1);
        w += dtr_json_string(dst ? dst + w : NULL, f[i].name, strlen(f[i].name));
        DTR_PUTS(":", 1);
        if (f[i].count < 0) {
            w += dtr_json_string(dst ? dst + w : NULL, f[i].vals[0].s, f[i].vals[0].n);
            continue;
        }
        DTR_PUTS("[", 1);
        for (j = 0; j < f[i].count; j++) {
            if (j > 0)
                DTR_PUTS(",", 1);
            w += dtr_json_string(dst ? dst + w : NULL, f[i].vals[j].s, f[i].vals[j].n);
        }
        DTR_PUTS("]", 1);
    }
    DTR_PUTS("}", 1);
#undef DTR_PUTS
    return w;
}

size_t dtr_json_object_bound(const dtr_field *f, int nf, size_t cap)
{
    size_t n = 2; /* the braces */
    int i, j;
    for (i = 0; i < nf && n <= cap; i++) {
        n += 6 * strlen(f[i].name) + 6; /* quoted, ':', ',', '[' and ']' */
        for (j = 0; j < (f[i].count < 0 ? 1 : f[i].count) && n <= cap; j++)
            n += 6 * f[i].vals[j].n + 3; /* quoted and ',' */
    }
    return n;
}

void dtr_push_json_framed(lua_State *L, const dtr_field *f, int nf, const char *head, size_t hn, const char *tail,
                          size_t tn)
{
    char small[8192]; /* a batch of 20 usual keys: no allocation but the string */
    size_t room = head ? hn + 24 + tn : 0; /* before the body: its frame (a length is at most 20 digits) */
    size_t n = room + dtr_json_object_bound(f, nf, sizeof small), at, v;
    char *buf = small;
    if (n > sizeof small)
        buf = (char *)lua_newuserdata(L, room + dtr_json_object(NULL, f, nf)); /* collected with the stack */
    n = dtr_json_object(buf + room, f, nf);
    at = room;
    if (head) { /* the frame right before the body: head, the body's length in decimal, tail */
        at -= tn;
        memcpy(buf + at, tail, tn);
        v = n;
        do { /* (no snprintf: its format machinery cost more than the rest of the frame) */
            buf[--at] = (char)('0' + v % 10);
            v /= 10;
        } while (v);
        at -= hn;
        memcpy(buf + at, head, hn);
    }
    lua_pushlstring(L, buf + at, room - at + n);
    if (buf != small)
        lua_remove(L, -2);
}

void dtr_push_json_object(lua_State *L, const dtr_field *f, int nf)
{
    dtr_push_json_framed(L, f, nf, NULL, 0, NULL, 0);
}

