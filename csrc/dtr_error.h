/*
 * dingtalk-recall: the error object (dtr_error.c).
 *
 * One shape for every failure: {code, message, status, request_id,
 * retryable, hint [, retry_after]} with a one-line __tostring, and the
 * registry metatable "dingtalk.recall.error" shared by all three modules
 * (made by whichever loads first; per Lua state).
 */
#ifndef DTR_ERROR_H
#define DTR_ERROR_H

#include "dtr.h"

DTR_HIDDEN_BEGIN

#define DTR_ERROR_MT "dingtalk.recall.error"

/* One failure, described before it becomes a Lua error object. */
typedef struct dtr_err {
    const char *code;
    char message[DTR_MSG_SIZE];
    int status;               /* HTTP status, 0 when none arrived */
} dtr_err;

/* The one error setter: a code and a printf-style message (cut at
 * DTR_MSG_SIZE). */
void dtr_seterr(dtr_err *e, const char *code, const char *fmt, ...) DTR_PRINTF(3, 4);

/* Pushes nil, err from e; returns 2.  Needs the module upvalues. */
int dtr_push_err(lua_State *L, const dtr_err *e);
/* Pushes a new error object.  Needs the module upvalues. */
void dtr_new_error(lua_State *L, const char *code, const char *message, size_t mlen, int status,
                   const char *request_id);
/* Completes the table at the top (code, message, status set) into an
 * error object: request_id, retryable, hint, retry_after, metatable at
 * errmt. */
void dtr_finish_error(lua_State *L, int errmt);
/* The number at idx as an HTTP status, 0 unless a number in int range. */
int dtr_status_at(lua_State *L, int idx);

/* Pushes the error metatable (made on first use in this state). */
void dtr_error_metatable(lua_State *L);
/* Adds error, is_error to the module. */
void dtr_error_open(lua_State *L);

DTR_HIDDEN_END

#endif
