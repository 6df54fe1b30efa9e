/*
 * dingtalk-recall: a built request as the libcurl transport reads it
 * (dtr_spec.c).
 */
#ifndef DTR_SPEC_H
#define DTR_SPEC_H

#include "dtr.h"
#include "dtr_error.h"

DTR_HIDDEN_BEGIN

/* What a built request table asks for.  The strings are anchored on the
 * Lua stack by dtr_read_spec until the transfer is set up (libcurl copies
 * them then). */
typedef struct dtr_spec {
    const char *url;
    dtr_str body;
    double timeout, connect_timeout, max_response;
    const char *ca_file;
    int loopback;
    int headers;           /* stack index of the checked headers table */
} dtr_spec;

/* Reads and checks the built request at idx; leaves anchors above it.
 * Returns 0 and fills e for content the transport refuses; raises for a
 * table that is not a built request. */
int dtr_read_spec(lua_State *L, int idx, dtr_spec *sp, dtr_err *e);

DTR_HIDDEN_END

#endif
