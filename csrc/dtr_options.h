/*
 * dingtalk-recall: transport options, targets and the access token
 * (dtr_options.c).
 */
#ifndef DTR_OPTIONS_H
#define DTR_OPTIONS_H

#include "dtr.h"
#include "dtr_error.h"
#include "dtr_text.h"

DTR_HIDDEN_BEGIN

#define DTR_TARGET_MT "dingtalk.recall.target"

/* Transport settings of an options table at idx; leaves two anchors. */
int dtr_read_transport(lua_State *L, int idx, int strict, dtr_opts *o, dtr_err *e);
/* Transport settings and token of an options table or target at idx;
 * leaves three anchors. */
int dtr_read_opts(lua_State *L, int idx, int need_token, dtr_opts *o, dtr_err *e);
/* The access token: non-empty, header-safe. */
int dtr_token_ok(const dtr_str *t, dtr_err *e);
/* The settings of the target at idx, or NULL when it is not one (in a
 * function with the module's upvalues: the metatable is DTR_UV_NAMES's). */
const dtr_opts *dtr_test_target(lua_State *L, int idx);
/* Pushes a new target for checked settings. */
void dtr_push_target(lua_State *L, const dtr_opts *o);

DTR_HIDDEN_END

#endif
