/*
 * dingtalk-recall: plans, targets and batches (dtr_plan.c).
 */
#ifndef DTR_PLAN_H
#define DTR_PLAN_H

#include "dtr.h"

DTR_HIDDEN_BEGIN

/* Adds plan, target, build_batch. */
void dtr_plan_open(lua_State *L);

DTR_HIDDEN_END

#endif
