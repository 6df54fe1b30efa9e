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
#include "dtr_xfer.h"
#include "dtr_text.h"


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
    if (n <= nl || line[nl] != ':' || !dtr_text_ieq(line, nl, name))
        return;
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

/* Grows *buf to hold need bytes.  Returns 0 when out of memory. */
static int dtr_reserve(char **buf, size_t *cap, size_t need)
{
    char *p;
    size_t c = *cap ? *cap : 256;
    if (need <= *cap)
        return 1;
    while (c < need)
        c *= 2;
    if ((p = (char *)realloc(*buf, c)) == NULL)
        return 0;
    *buf = p;
    *cap = c;
    return 1;
}

/* The checked headers table at idx as "name: value\0" lines in x->scratch
 * (its length in *n).  Returns 0 when out of memory. */
static int dtr_header_lines(lua_State *L, dtr_xfer *x, int idx, size_t *n)
{
    size_t len = 0;
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        size_t nn, vn;
        const char *name = lua_tolstring(L, -2, &nn), *val = lua_tolstring(L, -1, &vn);
        lua_pop(L, 1);
        if (!dtr_reserve(&x->scratch, &x->scratchcap, len + nn + vn + 3)) {
            lua_pop(L, 1);
            return 0;
        }
        memcpy(x->scratch + len, name, nn);
        memcpy(x->scratch + len + nn, ": ", 2);
        memcpy(x->scratch + len + nn + 2, val, vn);
        len += nn + vn + 3;
        x->scratch[len - 1] = '\0';
    }
    *n = len;
    return 1;
}

/* The header list of the checked headers table at idx: the one the
 * handle has when the lines are the same (no allocation: the usual case,
 * every batch of a run sends the same headers), else a new one.
 * Returns 0 only when out of memory. */
static int dtr_set_headers(lua_State *L, dtr_xfer *x, int idx)
{
    struct curl_slist *list = NULL, *t;
    size_t n, off;
    char *swap;
    if (!dtr_header_lines(L, x, idx, &n))
        return 0;
    if (x->headers != NULL && n == x->hdrlen && memcmp(x->scratch, x->hdr, n) == 0)
        return 1;
    for (off = 0; off < n; off += strlen(x->scratch + off) + 1) {
        if ((t = curl_slist_append(list, x->scratch + off)) == NULL)
            goto oom;
        list = t;
    }
    /* No "Expect: 100-continue" round trip for larger bodies. */
    if ((t = curl_slist_append(list, "Expect:")) == NULL)
        goto oom;
    curl_easy_setopt(x->easy, CURLOPT_HTTPHEADER, t);
    curl_slist_free_all(x->headers);
    x->headers = t;
    /* The lines become the cached ones; the old buffer is the next scratch. */
    swap = x->hdr;
    x->hdr = x->scratch;
    x->scratch = swap;
    off = x->hdrcap;
    x->hdrcap = x->scratchcap;
    x->scratchcap = off;
    x->hdrlen = n;
    return 1;
oom:
    curl_slist_free_all(list);
    return 0;
}

static int dtr_same(const char *cached, const char *s)
{
    return cached == NULL ? s == NULL : (s != NULL && strcmp(cached, s) == 0);
}

/* Copies s into *cached (NULL stays NULL).  Returns 0 when out of memory. */
static int dtr_remember(char **cached, const char *s)
{
    char *p = NULL;
    if (s != NULL) {
        size_t n = strlen(s) + 1;
        if ((p = (char *)malloc(n)) == NULL)
            return 0;
        memcpy(p, s, n);
    }
    free(*cached);
    *cached = p;
    return 1;
}

/* What never changes between requests, and what needs a reset to undo
 * (a CA file, no proxy for loopback): set after curl_easy_reset, which
 * keeps the handle's connection cache. */
static int dtr_xfer_configure(dtr_xfer *x, const dtr_spec *sp)
{
    CURL *h = x->easy;
    curl_easy_reset(h);
    x->configured = 0;
    curl_slist_free_all(x->headers);
    x->headers = NULL;
    x->hdrlen = 0;
    free(x->url);
    x->url = NULL;
    x->timeout = x->connect_timeout = x->max_response = -1.0;
    if (!dtr_remember(&x->ca_file, sp->ca_file))
        return 0;
    x->loopback = sp->loopback;
    curl_easy_setopt(h, CURLOPT_POST, 1L);
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
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
    if (sp->loopback)
        curl_easy_setopt(h, CURLOPT_PROXY, ""); /* never proxy loopback */
    x->configured = 1;
    return 1;
}

/*
 * Prepares x->easy for the request.  A handle keeps its options between
 * requests: only what differs from its last request is set again (a run
 * sends every batch to the same URL with the same headers, so usually
 * only the body), and a different CA file or loopback-ness starts over
 * from curl_easy_reset.  The body is copied into the handle's own buffer.
 * Returns 0 only when out of memory.
 */
int dtr_xfer_setup(lua_State *L, dtr_xfer *x, const dtr_spec *sp)
{
    CURL *h = x->easy;
    char *body;
    x->batch_ok = 0; /* its options may no longer be a batch's (dtr_batch.c) */
    x->max = (size_t)sp->max_response;
    if (!x->configured || x->loopback != sp->loopback || !dtr_same(x->ca_file, sp->ca_file)) {
        if (!dtr_xfer_configure(x, sp))
            return 0;
    }
    if (!dtr_same(x->url, sp->url)) {
        if (!dtr_remember(&x->url, sp->url))
            return 0;
        curl_easy_setopt(h, CURLOPT_URL, sp->url);
    }
    if (x->timeout != sp->timeout) {
        x->timeout = sp->timeout;
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)(sp->timeout * 1000.0 + 0.5));
    }
    if (x->connect_timeout != sp->connect_timeout) {
        x->connect_timeout = sp->connect_timeout;
        curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)(sp->connect_timeout * 1000.0 + 0.5));
    }
    if (x->max_response != sp->max_response) {
        x->max_response = sp->max_response;
        curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)sp->max_response);
    }
    if (!dtr_set_headers(L, x, sp->headers) || (body = dtr_xfer_body(x, sp->body.n)) == NULL)
        return 0;
    memcpy(body, sp->body.s, sp->body.n);
    dtr_xfer_post(x, sp->body.n);
    return 1;
}

char *dtr_xfer_body(dtr_xfer *x, size_t n)
{
    return dtr_reserve(&x->body, &x->bodycap, n + 1) ? x->body : NULL;
}

void dtr_xfer_post(dtr_xfer *x, size_t n)
{
    x->len = 0;
    x->too_large = 0;
    x->request_id[0] = x->content_type[0] = x->errbuf[0] = '\0';
    curl_easy_setopt(x->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)n);
    curl_easy_setopt(x->easy, CURLOPT_POSTFIELDS, x->body);
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
    x->batch_target = LUA_NOREF;
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
    free(x->body);
    free(x->hdr);
    free(x->scratch);
    free(x->url);
    free(x->ca_file);
    free(x->batch_token);
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
