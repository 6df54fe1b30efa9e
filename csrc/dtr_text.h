/*
 * dingtalk-recall: text checks, endpoints and the JSON writer (dtr_text.c).
 */
#ifndef DTR_TEXT_H
#define DTR_TEXT_H

#include "dtr.h"
#include "dtr_error.h"

DTR_HIDDEN_BEGIN

/* Transport settings carried by every built request. */
typedef struct dtr_opts {
    dtr_str token;            /* may be empty for token calls */
    char endpoint[DTR_MAX_ENDPOINT + 1]; /* normalised, no trailing '/' */
    int loopback;             /* endpoint host is a loopback address */
    double timeout;
    double connect_timeout;
    double max_response;
    dtr_str ca_file;
    /* Parts of endpoint, filled by the endpoint parser. */
    int https;
    int port;                 /* explicit, or 443 / 80 */
    size_t host_off, host_len; /* the host as written ([::1] with brackets) */
    size_t path_off;          /* where the base path starts (== length when none) */
} dtr_opts;

/* 0 when clean, 1 for a control character, 2 for invalid UTF-8. */
int dtr_text_check(const unsigned char *s, size_t n);
/* Whether a[0..n) is `lower` (NUL-terminated, lower case) in any case of
 * ASCII letters: header names, schemes, host names (whatever the locale). */
int dtr_text_ieq(const char *a, size_t n, const char *lower);
/* Printable ASCII, no space: a header value. */
int dtr_header_safe(const char *s, size_t n);
/* An id, key or secret: at most 1024 bytes, UTF-8, no controls. */
int dtr_text_ok(const dtr_str *v, const char *what, dtr_err *e);
/* Field name of the table at idx as a required text field; the value
 * stays on the stack (one slot, always). */
int dtr_text_field(lua_State *L, int idx, const char *name, const char *missing, dtr_str *out, dtr_err *e);
/* Normalises and checks an endpoint into o (endpoint and its parts). */
int dtr_parse_endpoint(const char *s, size_t n, dtr_opts *o, dtr_err *e);

/* A JSON object body: named fields, each a string or an array. */
typedef struct dtr_field {
    const char *name;
    const dtr_str *vals;
    int count;       /* -1: one string; >= 0: an array of that many */
} dtr_field;

/* Writes s as a JSON string at dst (or measures it when dst is NULL). */
size_t dtr_json_string(char *dst, const char *s, size_t n);
/* Whether the n bytes at a equal those at b, and a JSON string holds them
 * as they are (no '"', '\\' or control below 0x20). */
int dtr_json_plain_equal(const char *a, const char *b, size_t n);
/* The end of the run of bytes from s[i] on that a JSON string holds as they are. */
size_t dtr_json_plain_run(const unsigned char *s, size_t i, size_t n);
/* Writes the object at dst (or measures it when dst is NULL). */
size_t dtr_json_object(char *dst, const dtr_field *f, int nf);
/* An upper bound of dtr_json_object's bytes (every byte escaped as \u00XX);
 * the count stops once it is over cap. */
size_t dtr_json_object_bound(const dtr_field *f, int nf, size_t cap);
/* Pushes the object as one Lua string (the strings must be anchored). */
void dtr_push_json_object(lua_State *L, const dtr_field *f, int nf);
/* Pushes head .. #body .. tail .. body, body the object in f (written
 * once; head NULL: the body alone, as dtr_push_json_object). */
void dtr_push_json_framed(lua_State *L, const dtr_field *f, int nf, const char *head, size_t hn, const char *tail,
                          size_t tn);

DTR_HIDDEN_END

#endif
