/*
 * dingtalk-recall: one libcurl transfer (an easy handle and what its
 * answer fills in), shared by the blocking session (dtr_curl.c) and the
 * multi handle (dtr_multi.c): the built request read and checked, the
 * handle set up (TLS always verified, no redirects, http and https only,
 * no proxy for loopback, the answer capped while it is read), and the
 * outcome mapped to (status, headers, body) or a transport error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>

#include <curl/curl.h>

#include "dtr.h"
#include "dtr_error.h"
#include "dtr_text.h"
#include "dtr_encode.h"
#include "dtr_xfer.h"


static pthread_once_t dtr_curl_once = PTHREAD_ONCE_INIT;
static CURLcode dtr_curl_init_rc = CURLE_OK;

static void dtr_curl_global_init(void)
{
    dtr_curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* curl_global_init exactly once per process, whatever the number of Lua
 * states or threads that load the module. */
int dtr_curl_ready(void)
{
    pthread_once(&dtr_curl_once, dtr_curl_global_init);
    return dtr_curl_init_rc == CURLE_OK;
}

/* One transfer: an easy handle plus what its answer fills in. */

static size_t dtr_on_body(char *data, size_t size, size_t nmemb, void *ud)
{
    dtr_xfer *x = (dtr_xfer *)ud;
    size_t n = size * nmemb;
    if (n > x->max - x->len || x->len + n > x->max) {
        x->too_large = 1;
        return 0; /* aborts the transfer: CURLE_WRITE_ERROR */
    }
    if (x->len + n > x->cap) {
        size_t cap = x->cap ? x->cap : 4096;
        char *p;
        while (cap < x->len + n)
            cap *= 2;
        if (cap > x->max)
            cap = x->max;
        p = (char *)realloc(x->buf, cap);
        if (p == NULL)
            return 0;
        x->buf = p;
        x->cap = cap;
    }
    memcpy(x->buf + x->len, data, n);
    x->len += n;
    return n;
}

/* Copies a header's value, trimmed, if its name matches. */
static void dtr_header_value(const char *line, size_t n, const char *name, char *out, size_t outsz)
{
    size_t nl = strlen(name), i, end;
    if (n <= nl || line[nl] != ':')
        return;
    for (i = 0; i < nl; i++) {
        char c = line[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (c != name[i])
            return;
    }
    i = nl + 1;
    while (i < n && (line[i] == ' ' || line[i] == '\t'))
        i++;
    end = n;
    while (end > i && (line[end - 1] == '\r' || line[end - 1] == '\n' || line[end - 1] == ' '))
        end--;
    if (end - i >= outsz)
        end = i + outsz - 1;
    memcpy(out, line + i, end - i);
    out[end - i] = '\0';
}

static size_t dtr_on_header(char *data, size_t size, size_t nmemb, void *ud)
{
    dtr_xfer *x = (dtr_xfer *)ud;
    size_t n = size * nmemb;
    if (n >= 5 && memcmp(data, "HTTP/", 5) == 0) {
        /* A new response (after a 1xx): forget the previous headers. */
        x->request_id[0] = '\0';
        x->content_type[0] = '\0';
        return n;
    }
    dtr_header_value(data, n, "x-acs-request-id", x->request_id, sizeof x->request_id);
    dtr_header_value(data, n, "content-type", x->content_type, sizeof x->content_type);
    return n;
}

/* Header names: RFC 7230 token characters.  Values: no controls but tab. */
static int dtr_header_ok(const char *name, size_t nn, const char *val, size_t vn)
{
    size_t i;
    if (nn == 0)
        return 0;
    for (i = 0; i < nn; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c <= 0x20 || c >= 0x7f || strchr("()<>@,;:\\\"/[]?={}", c) != NULL)
            return 0;
    }
    for (i = 0; i < vn; i++) {
        unsigned char c = (unsigned char)val[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return 0;
    }
    return 1;
}

/* A positive number field of a built request, at most 1e9 like the
 * builder's options (a hand-made table can hold anything; 1e300 or inf
 * would overflow the conversions to long and size_t below). */
static double dtr_field_number(lua_State *L, int idx, const char *name, double dflt)
{
    double v = dflt;
    lua_getfield(L, idx, name);
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TNUMBER || !(lua_tonumber(L, -1) > 0 && lua_tonumber(L, -1) <= 1e9))
            luaL_error(L, "request field '%s' must be a positive number (at most 1e9)", name);
        v = lua_tonumber(L, -1);
    }
    lua_pop(L, 1);
    return v;
}

/*
 * Reads and checks the built request at idx.  Every string read stays
 * on the stack (url, body, headers table, ca_file: four slots above the
 * call's values) until the caller returns, so a table answering through
 * __index cannot have them collected before libcurl copies them.
 * Returns 0 and fills e for content the transport refuses.
 */
int dtr_read_spec(lua_State *L, int idx, dtr_spec *sp, dtr_err *e)
{
    dtr_opts o;
    size_t n;
    luaL_checktype(L, idx, LUA_TTABLE);
    idx = dtr_absindex(L, idx);
    luaL_checkstack(L, 12, "dingtalk.recall.curl");
    lua_getfield(L, idx, "method");
    if (lua_type(L, -1) != LUA_TSTRING || strcmp(lua_tostring(L, -1), "POST") != 0)
        luaL_error(L, "request.method must be \"POST\"");
    lua_pop(L, 1);
    lua_getfield(L, idx, "url");
    if (lua_type(L, -1) != LUA_TSTRING)
        luaL_error(L, "request.url must be a string");
    sp->url = lua_tolstring(L, -1, &n); /* anchor 1 */
    /* The same endpoint rules as the builder: https, or http to loopback. */
    if (!dtr_parse_endpoint(sp->url, n, &o, e))
        return 0;
    sp->loopback = o.loopback;
    lua_getfield(L, idx, "body");
    if (lua_type(L, -1) != LUA_TSTRING)
        luaL_error(L, "request.body must be a string");
    sp->body.s = lua_tolstring(L, -1, &sp->body.n); /* anchor 2 */
    lua_getfield(L, idx, "headers");
    if (lua_type(L, -1) != LUA_TTABLE)
        luaL_error(L, "request.headers must be a table");
    sp->headers = lua_gettop(L); /* anchor 3: the one table checked and used */
    lua_pushnil(L);
    while (lua_next(L, sp->headers) != 0) {
        size_t nn, vn;
        const char *name, *val;
        if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "request.headers must map strings to strings");
        name = lua_tolstring(L, -2, &nn);
        val = lua_tolstring(L, -1, &vn);
        if (!dtr_header_ok(name, nn, val, vn) || nn + vn > 8192) {
            lua_pop(L, 2);
            dtr_seterr(e, "invalidParameter.param.invalid",
                       "a request header has a bad name or a control character in its value");
            return 0;
        }
        lua_pop(L, 1);
    }
    sp->timeout = dtr_field_number(L, idx, "timeout", DTR_DEFAULT_TIMEOUT);
    sp->connect_timeout = dtr_field_number(L, idx, "connect_timeout", DTR_DEFAULT_CONNECT_TIMEOUT);
    sp->max_response = dtr_field_number(L, idx, "max_response_bytes", DTR_DEFAULT_MAX_RESPONSE);
    lua_getfield(L, idx, "ca_file"); /* anchor 4 */
    sp->ca_file = NULL;
    if (lua_type(L, -1) == LUA_TSTRING) {
        sp->ca_file = lua_tolstring(L, -1, &n);
        if (memchr(sp->ca_file, '\0', n) != NULL)
            luaL_error(L, "request.ca_file contains a NUL byte");
    } else if (!lua_isnil(L, -1)) {
        luaL_error(L, "request.ca_file must be a string");
    }
    return 1;
}

/* Builds the header list of the checked headers table at idx.
 * Returns NULL only when out of memory. */
static struct curl_slist *dtr_header_list(lua_State *L, int idx)
{
    struct curl_slist *list = NULL, *t;
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        lua_pushfstring(L, "%s: %s", lua_tostring(L, -2), lua_tostring(L, -1));
        t = curl_slist_append(list, lua_tostring(L, -1));
        lua_pop(L, 2);
        if (t == NULL) {
            lua_pop(L, 1);
            goto oom;
        }
        list = t;
    }
    /* No "Expect: 100-continue" round trip for larger bodies. */
    if ((t = curl_slist_append(list, "Expect:")) == NULL)
        goto oom;
    return t;
oom:
    curl_slist_free_all(list);
    return NULL;
}

/* Prepares x->easy for the request; the easy handle keeps its
 * connection cache across resets. */
int dtr_xfer_setup(lua_State *L, dtr_xfer *x, const dtr_spec *sp)
{
    CURL *h = x->easy;
    curl_easy_reset(h);
    curl_slist_free_all(x->headers);
    x->headers = dtr_header_list(L, sp->headers);
    if (x->headers == NULL)
        return 0;
    x->len = 0;
    x->too_large = 0;
    x->max = (size_t)sp->max_response;
    x->request_id[0] = x->content_type[0] = x->errbuf[0] = '\0';
    curl_easy_setopt(h, CURLOPT_URL, sp->url);
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)sp->body.n);
    curl_easy_setopt(h, CURLOPT_COPYPOSTFIELDS, sp->body.s);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, x->headers);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, dtr_on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, dtr_on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, x->errbuf);
    curl_easy_setopt(h, CURLOPT_PRIVATE, x);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
#else
    curl_easy_setopt(h, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
    if (sp->ca_file != NULL)
        curl_easy_setopt(h, CURLOPT_CAINFO, sp->ca_file);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)(sp->timeout * 1000.0 + 0.5));
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)(sp->connect_timeout * 1000.0 + 0.5));
    curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)sp->max_response);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
    if (sp->loopback)
        curl_easy_setopt(h, CURLOPT_PROXY, ""); /* never proxy loopback */
    return 1;
}

/* Maps a finished transfer to the Lua side: on success pushes status,
 * headers, body and returns 3; on failure pushes nil, err and returns 2. */
int dtr_xfer_push_outcome(lua_State *L, dtr_xfer *x, CURLcode rc)
{
    long status = 0;
    const char *code = "transport.io";
    int retryable = -1;
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
    if (rc == CURLE_OK) {
        lua_pushinteger(L, (lua_Integer)status);
        lua_createtable(L, 0, 2);
        if (x->request_id[0] != '\0') {
            lua_pushstring(L, x->request_id);
            lua_setfield(L, -2, "x-acs-request-id");
        }
        if (x->content_type[0] != '\0') {
            lua_pushstring(L, x->content_type);
            lua_setfield(L, -2, "content-type");
        }
        lua_pushlstring(L, x->buf ? x->buf : "", x->len);
        return 3;
    }
    switch (rc) {
    case CURLE_WRITE_ERROR:
    case CURLE_FILESIZE_EXCEEDED:
        if (x->too_large || rc == CURLE_FILESIZE_EXCEEDED) {
            char msg[96];
            snprintf(msg, sizeof msg, "the answer is larger than max_response_bytes (%lu)", (unsigned long)x->max);
            lua_pushnil(L);
            dtr_new_error(L, "response.too_large", msg, strlen(msg), (int)status, x->request_id);
            return 2;
        }
        break;
    case CURLE_OPERATION_TIMEDOUT:
        code = "transport.timeout";
        break;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
        code = "transport.connect";
        break;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_USE_SSL_FAILED:
        code = "transport.tls";
        break;
    case CURLE_GOT_NOTHING:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_WEIRD_SERVER_REPLY:
        break;
    default:
        retryable = 0;
        break;
    }
    lua_pushnil(L);
    {
        const char *msg = x->errbuf[0] != '\0' ? x->errbuf : curl_easy_strerror(rc);
        dtr_new_error(L, code, msg, strlen(msg), 0, NULL);
    }
    if (retryable == 0) {
        lua_pushboolean(L, 0);
        lua_setfield(L, -2, "retryable");
    }
    return 2;
}

dtr_xfer *dtr_xfer_new(void)
{
    dtr_xfer *x = (dtr_xfer *)calloc(1, sizeof *x);
    if (x == NULL)
        return NULL;
    x->easy = curl_easy_init();
    if (x->easy == NULL) {
        free(x);
        return NULL;
    }
    x->tag_ref = LUA_NOREF;
    return x;
}

void dtr_xfer_free(dtr_xfer *x)
{
    if (x == NULL)
        return;
    if (x->easy != NULL)
        curl_easy_cleanup(x->easy);
    curl_slist_free_all(x->headers);
    free(x->buf);
    free(x);
}

/* curl.version() -> version string, TLS backend string */
static int dtr_l_curl_version(lua_State *L)
{
    curl_version_info_data *v = curl_version_info(CURLVERSION_NOW);
    lua_pushstring(L, v->version);
    lua_pushstring(L, v->ssl_version ? v->ssl_version : "none");
    return 2;
}

static const luaL_Reg dtr_xfer_functions[] = {
    {"version", dtr_l_curl_version},
    {NULL, NULL}};

void dtr_xfer_open(lua_State *L)
{
    dtr_register(L, dtr_xfer_functions);
}
