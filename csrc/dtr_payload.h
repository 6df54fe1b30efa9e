/*
 * dingtalk-recall: a recall batch's request bytes as one string
 * (dtr_payload.c).
 */
#ifndef DTR_PAYLOAD_H
#define DTR_PAYLOAD_H

#include "dtr.h"

DTR_HIDDEN_BEGIN

/* Adds batch_payload. */
void dtr_payload_open(lua_State *L);

DTR_HIDDEN_END

#endif
