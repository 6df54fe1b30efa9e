/*
 * dingtalk-recall: the journal's state-change lines written in C
 * (dtr_jline.c): a JSON array of thousands of keys in one call.
 */
#ifndef DTR_JLINE_H
#define DTR_JLINE_H

#include "dtr.h"

DTR_HIDDEN_BEGIN

/* Adds journal.keys_line to the module table below the upvalues. */
void dtr_jline_open(lua_State *L);

DTR_HIDDEN_END

#endif
