/*
 * dingtalk-recall: concurrent transfers over one curl multi handle
 * (dtr_multi.c).
 */
#ifndef DTR_MULTI_H
#define DTR_MULTI_H

#include "dtr.h"

DTR_HIDDEN_BEGIN

/* Adds multi (and the multi metatable). */
void dtr_multi_open(lua_State *L);

DTR_HIDDEN_END

#endif
