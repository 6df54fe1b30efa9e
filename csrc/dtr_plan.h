/*
 * dingtalk-recall: plans and batches (dtr_plan.c).
 */
#ifndef DTR_PLAN_H
#define DTR_PLAN_H

#include "dtr.h"
#include "dtr_error.h"
#include "dtr_text.h"

DTR_HIDDEN_BEGIN

#define DTR_PLAN_MT "dingtalk.recall.plan"

/* The arguments of core.build_batch at base..base+3 (plan, i, target,
 * token), read and checked as it does, or with the batch's keys array
 * (core.batch's) for i when by_keys (another module cannot find a plan's
 * keys: their slot is this unit's address): raises for wrong arguments;
 * returns the number of keys (anchored on the stack, in keys[]) with the
 * target's settings and the token in o, or 0 with e set when the token
 * is refused. */
int dtr_plan_batch_args(lua_State *L, int base, int by_keys, dtr_str *cid, dtr_str *robot, dtr_str *keys,
                        dtr_opts *o, dtr_err *e);
/* Adds plan, build_batch, batch, new_array (and target: dtr_target.c). */
void dtr_plan_open(lua_State *L);

DTR_HIDDEN_END

#endif
