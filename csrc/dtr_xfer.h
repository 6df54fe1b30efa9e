/*
 * dingtalk-recall: one libcurl transfer (dtr_xfer.c), shared by the
 * session (dtr_curl.c) and the multi handle (dtr_multi.c).
 */
#ifndef DTR_XFER_H
#define DTR_XFER_H

#include <curl/curl.h>

#include "dtr.h"
#include "dtr_error.h"
#include "dtr_spec.h"

DTR_HIDDEN_BEGIN

#define DTR_REQID_MAX 128

/* One transfer: an easy handle, the options it was last given (set again
 * only when they change), plus what its answer fills in. */
typedef struct dtr_xfer {
    CURL *easy;
    int configured;        /* the fixed options are set (dtr_xfer_setup) */
    int loopback;
    char *url, *ca_file;   /* malloc'd copies of the last ones set */
    double timeout, connect_timeout, max_response;
    struct curl_slist *headers;
    char *hdr;             /* its lines, "name: value\0" each, hdrlen bytes */
    size_t hdrlen, hdrcap;
    char *scratch;         /* the next request's lines, to compare */
    size_t scratchcap;
    char *body;            /* the request body (CURLOPT_POSTFIELDS) */
    size_t bodycap;
    char *buf;             /* the answer */
    size_t len, cap;
    size_t max;
    int too_large;
    char request_id[DTR_REQID_MAX];
    char content_type[DTR_REQID_MAX];
    char errbuf[CURL_ERROR_SIZE];
    int batch_ok;          /* set up for recall batches of (batch_target, batch_token) */
    int batch_target;      /* registry ref of that target, or LUA_NOREF (dtr_batch.c) */
    char *batch_token;
    int tag_ref;           /* registry ref of the caller's tag, or LUA_NOREF */
    lua_Integer id;
    struct dtr_xfer *next; /* in the multi's active or idle list */
} dtr_xfer;

/* curl_global_init exactly once per process (pthread_once). */
int dtr_curl_ready(void);
/* Prepares x for sp (the anchors must still be on the stack). */
int dtr_xfer_setup(lua_State *L, dtr_xfer *x, const dtr_spec *sp);
/* The request body buffer, room for n bytes (NULL when out of memory). */
char *dtr_xfer_body(dtr_xfer *x, size_t n);
/* Sends the n bytes of the body buffer with the next transfer, and
 * forgets the last answer. */
void dtr_xfer_post(dtr_xfer *x, size_t n);
/* Pushes status, headers, body (returns 3) or nil, err (returns 2). */
int dtr_xfer_push_outcome(lua_State *L, dtr_xfer *x, CURLcode rc);
dtr_xfer *dtr_xfer_new(void);
void dtr_xfer_free(dtr_xfer *x);
/* Adds version. */
void dtr_xfer_open(lua_State *L);

DTR_HIDDEN_END

#endif
