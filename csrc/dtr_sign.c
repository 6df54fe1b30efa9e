/*
 * dingtalk-recall: signature of incoming bot callbacks (libcrypto).
 *
 * DingTalk posts a bot's messages to its HTTP callback with the headers
 * `timestamp` (milliseconds) and `sign`, where
 *   sign = base64(HMAC-SHA256(key = appSecret, msg = timestamp "\n" appSecret))
 * and the request must be refused when the sign does not match or the
 * timestamp is more than one hour away from now.
 *
 *   core.verify_callback(timestamp, sign, app_secret [, now_ms]) -> true | nil, err
 *   core.sign_callback(timestamp, app_secret) -> sign | nil, err
 *
 * Headers come from the network, so a missing (nil) timestamp or sign is
 * an answer (callback.bad_timestamp, callback.bad_signature), not a raise;
 * a value of the wrong type (a table, a boolean) raises.  The sign is
 * compared in constant time over its base64 form, which is strict: 44
 * characters of the standard alphabet ending in one '=', canonical.  The
 * app secret never appears in any message, and the one C copy of it (the
 * HMAC message) is cleansed before it is freed.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "dtr.h"
#include "dtr_error.h"
#include "dtr_sign.h"

#define DTR_SIGN_WINDOW_MS 3600000LL  /* |now - timestamp| allowed */
#define DTR_SIGN_HMAC_LEN 32          /* SHA-256 */
#define DTR_SIGN_B64_LEN 44           /* base64 of 32 bytes, with one '=' */
#define DTR_SIGN_TS_MAX 19            /* digits of LLONG_MAX */

/* A parsed timestamp: its text (what is signed) and its value. */
typedef struct dtr_sign_ts {
    char text[DTR_SIGN_TS_MAX + 2];
    size_t n;
    long long ms;
} dtr_sign_ts;

/* A Lua number that is an integer in [0, LLONG_MAX]: 1 and *out, else 0. */
static int dtr_sign_number(lua_State *L, int idx, long long *out)
{
    lua_Number n;
    if (dtr_isinteger(L, idx)) {
        lua_Integer i = lua_tointeger(L, idx);
        if (i < 0)
            return 0;
        *out = (long long)i;
        return 1;
    }
    n = lua_tonumber(L, idx);
    /* NaN fails both comparisons; 2^63 is the first double past the range. */
    if (!(n >= 0) || !(n < 9223372036854775808.0))
        return 0;
    if ((lua_Number)(long long)n != n)
        return 0;
    *out = (long long)n;
    return 1;
}

/*
 * Reads the timestamp argument: a string of 1..19 ASCII digits (no sign,
 * no space, at most LLONG_MAX), or an integral non-negative number.
 * Returns 1 and fills *ts; returns 0 with e filled for nil or a bad value.
 * Other types raise.
 */
static int dtr_sign_timestamp(lua_State *L, int idx, dtr_sign_ts *ts, dtr_err *e)
{
    int t = lua_type(L, idx);
    static const char bad[] = "the timestamp is not a decimal integer of milliseconds";
    if (t == LUA_TNIL || t == LUA_TNONE) {
        dtr_seterr(e, "callback.bad_timestamp", "the timestamp is missing");
        return 0;
    }
    if (t == LUA_TNUMBER) {
        if (!dtr_sign_number(L, idx, &ts->ms)) {
            dtr_seterr(e, "callback.bad_timestamp", "%s", bad);
            return 0;
        }
        snprintf(ts->text, sizeof ts->text, "%lld", ts->ms);
        ts->n = strlen(ts->text);
        return 1;
    }
    if (t == LUA_TSTRING) {
        size_t n, i;
        const char *s = lua_tolstring(L, idx, &n);
        long long v = 0;
        if (n == 0 || n > DTR_SIGN_TS_MAX) {
            dtr_seterr(e, "callback.bad_timestamp",
                            n == 0 ? "the timestamp is empty" : "the timestamp is out of range");
            return 0;
        }
        for (i = 0; i < n; i++) {
            int d = s[i] - '0';
            if (s[i] < '0' || s[i] > '9') {
                dtr_seterr(e, "callback.bad_timestamp", "%s", bad);
                return 0;
            }
            if (v > (LLONG_MAX - d) / 10) {
                dtr_seterr(e, "callback.bad_timestamp", "the timestamp is out of range");
                return 0;
            }
            v = v * 10 + d;
        }
        memcpy(ts->text, s, n);
        ts->text[n] = '\0';
        ts->n = n;
        ts->ms = v;
        return 1;
    }
    return luaL_argerror(L, idx, "string or number expected (the timestamp)");
}

/* Raises unless the value at idx is nil, none or one of the two types. */
static void dtr_sign_argtype(lua_State *L, int idx, int also_number, const char *what)
{
    int t = lua_type(L, idx);
    if (t != LUA_TNIL && t != LUA_TNONE && t != LUA_TSTRING && !(also_number && t == LUA_TNUMBER))
        luaL_argerror(L, idx, what);
}

/* Reads the app secret: a string, or nil.  Returns 0 for nil or "".
 * Other types raise; the secret itself is never put in a message. */
static int dtr_sign_secret(lua_State *L, int idx, dtr_str *out, dtr_err *e)
{
    int t = lua_type(L, idx);
    dtr_sign_argtype(L, idx, 0, "string expected (the app secret)");
    if (t == LUA_TSTRING)
        out->s = lua_tolstring(L, idx, &out->n);
    if (t != LUA_TSTRING || out->n == 0) {
        dtr_seterr(e, "callback.no_secret", "no app secret was given");
        return 0;
    }
    if (out->n > (size_t)INT_MAX - DTR_SIGN_TS_MAX - 2)
        return luaL_argerror(L, idx, "the app secret is too long");
    return 1;
}

/* out <- base64(HMAC-SHA256(secret, ts "\n" secret)), NUL-terminated.
 * Raises only when libcrypto fails (out of memory). */
static void dtr_sign_compute(lua_State *L, const dtr_sign_ts *ts, const dtr_str *secret,
                             char out[DTR_SIGN_B64_LEN + 1])
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    size_t n = ts->n + 1 + secret->n;
    unsigned char *msg = (unsigned char *)malloc(n);
    int ok;
    if (msg == NULL) {
        luaL_error(L, "not enough memory");
        return;
    }
    /* No Lua call between malloc and free: nothing can leak. */
    memcpy(msg, ts->text, ts->n);
    msg[ts->n] = '\n';
    memcpy(msg + ts->n + 1, secret->s, secret->n);
    ok = HMAC(EVP_sha256(), secret->s, (int)secret->n, msg, n, mac, &maclen) != NULL &&
         maclen == DTR_SIGN_HMAC_LEN;
    OPENSSL_cleanse(msg, n);
    free(msg);
    if (ok)
        EVP_EncodeBlock((unsigned char *)out, mac, DTR_SIGN_HMAC_LEN);
    OPENSSL_cleanse(mac, sizeof mac);
    if (!ok)
        luaL_error(L, "HMAC-SHA256 failed in libcrypto");
}

static int dtr_sign_b64char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/';
}

/* Current wall clock in milliseconds since the epoch. */
static long long dtr_sign_now_ms(void)
{
    struct timespec tv;
    if (clock_gettime(CLOCK_REALTIME, &tv) != 0)
        return (long long)time(NULL) * 1000;
    return (long long)tv.tv_sec * 1000 + tv.tv_nsec / 1000000;
}

/* core.verify_callback(timestamp, sign, app_secret [, now_ms]) -> true | nil, err */
static int dtr_l_verify_callback(lua_State *L)
{
    dtr_sign_ts ts;
    dtr_str secret = {NULL, 0};
    dtr_err e;
    const char *sign = NULL;
    size_t slen = 0, i;
    long long now, d;
    char want[DTR_SIGN_B64_LEN + 1];
    int match;

    /* Types first, so a wrong type raises whatever the values. */
    dtr_sign_argtype(L, 1, 1, "string or number expected (the timestamp header)");
    dtr_sign_argtype(L, 2, 0, "string expected (the sign header)");
    dtr_sign_argtype(L, 3, 0, "string expected (the app secret)");
    if (lua_type(L, 2) == LUA_TSTRING)
        sign = lua_tolstring(L, 2, &slen);
    if (lua_isnoneornil(L, 4)) {
        now = dtr_sign_now_ms();
    } else {
        luaL_checktype(L, 4, LUA_TNUMBER);
        if (!dtr_sign_number(L, 4, &now))
            return luaL_argerror(L, 4, "non-negative integer expected (milliseconds)");
    }
    if (!dtr_sign_secret(L, 3, &secret, &e) || !dtr_sign_timestamp(L, 1, &ts, &e))
        return dtr_push_err(L, &e);

    /* Both are in [0, LLONG_MAX], so the difference cannot overflow. */
    d = now >= ts.ms ? now - ts.ms : ts.ms - now;
    if (d > DTR_SIGN_WINDOW_MS) {
        dtr_seterr(&e, "callback.expired",
                 "the timestamp is %lld ms %s now; at most %lld ms are accepted", d,
                 now >= ts.ms ? "before" : "after", DTR_SIGN_WINDOW_MS);
        return dtr_push_err(L, &e);
    }

    if (sign == NULL || slen == 0) {
        dtr_seterr(&e, "callback.bad_signature", "the sign is missing");
        return dtr_push_err(L, &e);
    }
    if (slen != DTR_SIGN_B64_LEN) {
        dtr_seterr(&e, "callback.bad_signature",
                        "the sign is not the base64 of an HMAC-SHA256 (44 characters)");
        return dtr_push_err(L, &e);
    }
    for (i = 0; i + 1 < DTR_SIGN_B64_LEN; i++)
        if (!dtr_sign_b64char((unsigned char)sign[i]))
            break;
    if (i + 1 < DTR_SIGN_B64_LEN || sign[DTR_SIGN_B64_LEN - 1] != '=') {
        dtr_seterr(&e, "callback.bad_signature", "the sign is not valid base64");
        return dtr_push_err(L, &e);
    }

    dtr_sign_compute(L, &ts, &secret, want);
    match = CRYPTO_memcmp(want, sign, DTR_SIGN_B64_LEN) == 0;
    OPENSSL_cleanse(want, sizeof want);
    if (!match) {
        dtr_seterr(&e, "callback.bad_signature", "the sign does not match");
        return dtr_push_err(L, &e);
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* core.sign_callback(timestamp, app_secret) -> sign | nil, err */
static int dtr_l_sign_callback(lua_State *L)
{
    dtr_sign_ts ts;
    dtr_str secret = {NULL, 0};
    dtr_err e;
    char out[DTR_SIGN_B64_LEN + 1];
    dtr_sign_argtype(L, 1, 1, "string or number expected (the timestamp)");
    dtr_sign_argtype(L, 2, 0, "string expected (the app secret)");
    if (!dtr_sign_secret(L, 2, &secret, &e) || !dtr_sign_timestamp(L, 1, &ts, &e))
        return dtr_push_err(L, &e);
    dtr_sign_compute(L, &ts, &secret, out);
    lua_pushlstring(L, out, DTR_SIGN_B64_LEN);
    return 1;
}

static const luaL_Reg dtr_sign_functions[] = {
    {"verify_callback", dtr_l_verify_callback},
    {"sign_callback", dtr_l_sign_callback},
    {NULL, NULL}};

void dtr_sign_open(lua_State *L)
{
    dtr_register(L, dtr_sign_functions);
}
