/*
 * dingtalk-recall: the usual recall answer, read without decoding it
 * (dtr_answer.c).
 */
#ifndef DTR_ANSWER_H
#define DTR_ANSWER_H

#include "dtr.h"

DTR_HIDDEN_BEGIN

/*
 * Reads body[0..n) when it is the usual answer to the batch at `keys`:
 * {"successResult": [the batch's keys, in order], "failedResult": {}}, in
 * any field order, with at most the request id ("requestid", "RequestId"
 * or "requestId") beside, every string free of escapes and controls.
 * Then returns 1 and sets *rid (s = NULL when the body has none); the
 * answer means what lua-cjson would decode it to.  Anything else returns 0
 * (nothing pushed): the caller decodes the body in full.  Raises nothing.
 */
int dtr_answer_usual(lua_State *L, const char *body, size_t n, int keys, dtr_str *rid);

DTR_HIDDEN_END

#endif
