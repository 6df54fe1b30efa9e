/*
 * dingtalk-recall: the one catalogue of codes (dtr_codes.c), the source
 * of core.codes and core.reasons and of every error's hint and flags.
 */
#ifndef DTR_CODES_H
#define DTR_CODES_H

#include "dtr.h"

DTR_HIDDEN_BEGIN

#define DTR_CODE_RETRY 1u      /* worth retrying after a wait */
#define DTR_CODE_AMBIG 2u      /* the server may have done the work */
#define DTR_CODE_THROTTLE 4u   /* a QPS limit: wait about 1 s */
#define DTR_CODE_FATAL 8u      /* no later batch of the run can succeed */
#define DTR_CODE_AUTH 16u      /* fetch a new access token once */

typedef struct dtr_code_info {
    const char *code;
    int status;               /* HTTP status, 0 when no server sends it */
    unsigned flags;           /* DTR_CODE_* */
    const char *hint;
} dtr_code_info;

/* The entry of code, or NULL. */
const dtr_code_info *dtr_code_lookup(const char *code);
/* Whether an error with this code and HTTP status is worth a retry. */
int dtr_retryable(const char *code, int status);
/* Adds codes and reasons to the module. */
void dtr_codes_open(lua_State *L);

DTR_HIDDEN_END

#endif
