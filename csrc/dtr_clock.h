/*
 * dingtalk-recall: the clock of dingtalk.recall.curl (dtr_clock.c).
 */
#ifndef DTR_CLOCK_H
#define DTR_CLOCK_H

#include "dtr.h"

DTR_HIDDEN_BEGIN

/* Adds now, sleep. */
void dtr_clock_open(lua_State *L);

DTR_HIDDEN_END

#endif
