/*
 * dingtalk-recall: the usual recall answer, read without decoding it
 * (sans I/O).
 *
 * Nearly every answer to a batch is {"successResult": [the keys sent, in
 * order], "failedResult": {}}.  Decoding it makes a table and interns a
 * string per key only for the engine to compare them with the keys it
 * sent.  This reader walks the bytes instead and compares each string with
 * the batch's key in place.  It accepts only a narrow form whose meaning
 * is certain (plain strings, the known fields each once, nothing nested);
 * anything else, however valid, goes to the full decoder (dtr_decode.c),
 * which stays the one judge of what an answer means.
 */
#include <string.h>

#include "dtr.h"
#include "dtr_answer.h"
#include "dtr_text.h"

typedef struct dtr_scan {
    const char *p, *end;
} dtr_scan;

static void dtr_scan_ws(dtr_scan *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

/* Skips whitespace, then takes the byte ch; 0 when it is not there. */
static int dtr_scan_take(dtr_scan *c, char ch)
{
    dtr_scan_ws(c);
    if (c->p >= c->end || *c->p != ch)
        return 0;
    c->p++;
    return 1;
}

/* A string without escapes or controls (after whitespace): its bytes in
 * *out; 0 for anything else. */
static int dtr_scan_string(dtr_scan *c, dtr_str *out)
{
    const char *s;
    if (!dtr_scan_take(c, '"'))
        return 0;
    s = c->p;
    /* the run a JSON string holds as it is (SSE2 / eight bytes at a time);
     * the rest byte by byte */
    c->p = s + dtr_json_plain_run((const unsigned char *)s, 0, (size_t)(c->end - s));
    while (c->p < c->end) {
        unsigned char b = (unsigned char)*c->p;
        if (b == '"') {
            out->s = s;
            out->n = (size_t)(c->p - s);
            c->p++;
            return 1;
        }
        if (b == '\\' || b < 0x20)
            return 0;
        c->p++;
    }
    return 0;
}

/* [k1, ..., kn]: exactly the n keys of the array at `keys`, in order.
 * Each is compared where it stands: a quote, the key's bytes, a quote,
 * when the key holds no byte a JSON string would escape (else the full
 * decoder says). */
static int dtr_scan_keys(lua_State *L, dtr_scan *c, int keys)
{
    size_t n = dtr_rawlen(L, keys), i;
    int top = lua_gettop(L), ok = 0;
    if (n == 0 || n > DTR_MAX_KEYS || !dtr_scan_take(c, '['))
        return 0; /* (a batch holds at most 20 keys: more is not the usual answer) */
    luaL_checkstack(L, DTR_MAX_KEYS, "dingtalk.recall.core");
    for (i = 1; i <= n; i++) {
        const char *want = NULL;
        size_t wn = 0;
        if (i > 1 && !dtr_scan_take(c, ','))
            goto done;
        dtr_scan_ws(c);
        lua_rawgeti(L, keys, (int)i); /* popped at the end, all at once */
        if (lua_type(L, -1) == LUA_TSTRING)
            want = lua_tolstring(L, -1, &wn);
        if (want == NULL || (size_t)(c->end - c->p) < wn + 2 || c->p[0] != '"' || c->p[wn + 1] != '"' ||
            !dtr_json_plain_equal(c->p + 1, want, wn))
            goto done;
        c->p += wn + 2;
    }
    ok = dtr_scan_take(c, ']');
done:
    lua_settop(L, top);
    return ok;
}

int dtr_answer_usual(lua_State *L, const char *body, size_t n, int keys, dtr_str *rid)
{
    /* The request id's spellings, in the full decoder's order of preference. */
    static const char *const ids[] = {"requestid", "RequestId", "requestId"};
    dtr_scan c;
    dtr_str ridv[3];
    int seen_ok = 0, seen_failed = 0, i;
    c.p = body;
    c.end = body + n;
    for (i = 0; i < 3; i++)
        ridv[i].s = NULL;
    if (lua_type(L, keys) != LUA_TTABLE || !dtr_scan_take(&c, '{'))
        return 0;
    do {
        dtr_str name;
        if (!dtr_scan_string(&c, &name) || !dtr_scan_take(&c, ':'))
            return 0;
        if (name.n == 13 && memcmp(name.s, "successResult", 13) == 0) {
            if (seen_ok++ || !dtr_scan_keys(L, &c, keys))
                return 0;
        } else if (name.n == 12 && memcmp(name.s, "failedResult", 12) == 0) {
            if (seen_failed++ || !dtr_scan_take(&c, '{') || !dtr_scan_take(&c, '}'))
                return 0;
        } else {
            for (i = 0; i < 3; i++)
                if (name.n == strlen(ids[i]) && memcmp(name.s, ids[i], name.n) == 0)
                    break;
            if (i == 3 || ridv[i].s != NULL || !dtr_scan_string(&c, &ridv[i]))
                return 0; /* another field, or one twice: the full decoder says */
        }
    } while (dtr_scan_take(&c, ','));
    if (!dtr_scan_take(&c, '}') || !seen_ok)
        return 0;
    dtr_scan_ws(&c);
    if (c.p != c.end)
        return 0;
    rid->s = NULL;
    rid->n = 0;
    for (i = 0; i < 3 && rid->s == NULL; i++)
        *rid = ridv[i];
    return 1;
}
