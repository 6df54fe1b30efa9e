/*
 * dingtalk-recall: plans and batches (dtr_plan.c).
 */
#ifndef DTR_PLAN_H
#define DTR_PLAN_H

#include "dtr.h"

DTR_HIDDEN_BEGIN

/* Adds plan, build_batch, batch, new_array (and target: dtr_target.c). */
void dtr_plan_open(lua_State *L);

DTR_HIDDEN_END

#endif
