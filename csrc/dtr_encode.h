/*
 * dingtalk-recall: request building (dtr_encode.c).
 */
#ifndef DTR_ENCODE_H
#define DTR_ENCODE_H

#include "dtr.h"
#include "dtr_error.h"
#include "dtr_text.h"
#include "dtr_options.h" /* what building reads: options, targets, the token */

DTR_HIDDEN_BEGIN

#define DTR_REQUEST_MT "dingtalk.recall.request"
#define DTR_PATH_RECALL "/v1.0/robot/groupMessages/recall"

/* The fields of a recall body, in the official SDK's order. */
void dtr_recall_fields(dtr_field f[3], const dtr_str *cid, const dtr_str *robot, const dtr_str *keys, int nkeys);
/* Pushes the recall body and its built request. */
void dtr_push_recall(lua_State *L, const dtr_str *cid, const dtr_str *robot, const dtr_str *keys, int nkeys,
                     const dtr_opts *o);
/* Builds the recall request of the tables at req and opt: pushes built
 * (returns 1) or nil, err (returns 2), at the top. */
int dtr_build_recall_at(lua_State *L, int req, int opt);

/* Makes the request metatable (idempotent). */
void dtr_encode_metatables(lua_State *L);
/* Adds validate, build, build_send, build_token, json_string. */
void dtr_encode_open(lua_State *L);

DTR_HIDDEN_END

#endif
