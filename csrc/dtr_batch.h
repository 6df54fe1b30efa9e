/*
 * dingtalk-recall: recall batches started straight from a plan
 * (dtr_batch.c), a method of the multi handle.
 */
#ifndef DTR_BATCH_H
#define DTR_BATCH_H

#include "dtr.h"

DTR_HIDDEN_BEGIN

/* m:start_batch(plan, keys, target, token [, tag]) */
int dtr_multi_start_batch(lua_State *L);

DTR_HIDDEN_END

#endif
