/*
 * dingtalk-recall: response decoding (dtr_decode.c).
 */
#ifndef DTR_DECODE_H
#define DTR_DECODE_H

#include "dtr.h"

DTR_HIDDEN_BEGIN

/* The range parse_token accepts for expireIn, in seconds (DingTalk
 * answers 7200): anything else, NaN and inf included, is response.invalid. */
#define DTR_TOKEN_MIN_TTL 60
#define DTR_TOKEN_MAX_TTL 86400

/* Response kinds the decoder knows. */
enum dtr_kind { DTR_KIND_RECALL, DTR_KIND_SEND, DTR_KIND_TOKEN };

/* (status, headers, body) at the given indexes, secrets at `secrets` (0
 * for none).  Pushes the result (returns 1) or nil, err (returns 2). */
int dtr_decode(lua_State *L, enum dtr_kind kind, int status, int headers, int body, int secrets);
/* The same, with the batch sent at `keys` (0 for none): its usual answer
 * is read without decoding (dtr_answer.c) and its successResult is the
 * batch's own array. */
int dtr_decode_keys(lua_State *L, enum dtr_kind kind, int status, int headers, int body, int secrets, int keys);
/* Adds parse, parse_send, parse_token. */
void dtr_decode_open(lua_State *L);

DTR_HIDDEN_END

#endif
