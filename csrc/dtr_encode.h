/*
 * dingtalk-recall: options, targets and request building (dtr_encode.c).
 */
#ifndef DTR_ENCODE_H
#define DTR_ENCODE_H

#include "dtr.h"
#include "dtr_error.h"
#include "dtr_text.h"

DTR_HIDDEN_BEGIN

#define DTR_TARGET_MT "dingtalk.recall.target"
#define DTR_REQUEST_MT "dingtalk.recall.request"
#define DTR_PATH_RECALL "/v1.0/robot/groupMessages/recall"

/* Transport settings of an options table at idx; leaves two anchors. */
int dtr_read_transport(lua_State *L, int idx, int strict, dtr_opts *o, dtr_err *e);
/* Transport settings and token of an options table or target at idx;
 * leaves three anchors. */
int dtr_read_opts(lua_State *L, int idx, int need_token, dtr_opts *o, dtr_err *e);
/* The access token: non-empty, header-safe. */
int dtr_token_ok(const dtr_str *t, dtr_err *e);
/* The settings of the target at idx, or NULL when it is not one. */
const dtr_opts *dtr_test_target(lua_State *L, int idx);
/* Pushes a new target for checked settings. */
void dtr_push_target(lua_State *L, const dtr_opts *o);
/* The fields of a recall body, in the official SDK's order. */
void dtr_recall_fields(dtr_field f[3], const dtr_str *cid, const dtr_str *robot, const dtr_str *keys, int nkeys);
/* Pushes the recall body and its built request. */
void dtr_push_recall(lua_State *L, const dtr_str *cid, const dtr_str *robot, const dtr_str *keys, int nkeys,
                     const dtr_opts *o);
/* Builds the recall request of the tables at req and opt: pushes built
 * (returns 1) or nil, err (returns 2), at the top. */
int dtr_build_recall_at(lua_State *L, int req, int opt);

/* Makes the request and target metatables (idempotent). */
void dtr_encode_metatables(lua_State *L);
/* Adds validate, build, build_send, build_token, json_string. */
void dtr_encode_open(lua_State *L);

DTR_HIDDEN_END

#endif
