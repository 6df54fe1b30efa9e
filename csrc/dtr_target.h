/*
 * dingtalk-recall: targets, the transport settings checked once
 * (dtr_target.c).
 */
#ifndef DTR_TARGET_H
#define DTR_TARGET_H

#include "dtr.h"

DTR_HIDDEN_BEGIN

/* Adds target (and its metatable). */
void dtr_target_open(lua_State *L);

DTR_HIDDEN_END

#endif
