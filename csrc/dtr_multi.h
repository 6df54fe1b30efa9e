/*
 * dingtalk-recall: concurrent transfers over one curl multi handle
 * (dtr_multi.c).
 */
#ifndef DTR_MULTI_H
#define DTR_MULTI_H

#include "dtr.h"
#include "dtr_xfer.h"

DTR_HIDDEN_BEGIN

typedef struct dtr_multi dtr_multi;

/* The open multi handle at stack index 1 (raises when it is not one). */
dtr_multi *dtr_check_multi(lua_State *L);
/* An idle transfer or a new one, linked into the active list (raises
 * when out of memory). */
dtr_xfer *dtr_multi_take(lua_State *L, dtr_multi *m);
/* Frees x, taken and not started, and raises why. */
int dtr_multi_drop(lua_State *L, dtr_multi *m, dtr_xfer *x, const char *why);
/* Starts x, taken and set up, with the tag at stack index tag: its id. */
lua_Integer dtr_multi_launch(lua_State *L, dtr_multi *m, dtr_xfer *x, int tag);
/* Sends what was just started now, without a poll. */
void dtr_multi_kick(dtr_multi *m);
/* Adds multi (and the multi metatable). */
void dtr_multi_open(lua_State *L);

DTR_HIDDEN_END

#endif
