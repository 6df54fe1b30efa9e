/*
 * dingtalk-recall: checking and deduplicating a plan's keys in one pass
 * (dtr_dedupe.c).
 */
#ifndef DTR_DEDUPE_H
#define DTR_DEDUPE_H

#include <stddef.h>

#include "dtr.h"

DTR_HIDDEN_BEGIN

/* A key's state after the pass (one byte per input entry). */
#define DTR_KEY_DUP 0
#define DTR_KEY_KEEP 1
#define DTR_KEY_BAD 2

/* Up to this many keys, given as strings at hand (few), are deduplicated
 * with a set on the stack; the state of that many fits on the caller's
 * stack too.  (2 * 32 slots: at most half full; the top six bits index.) */
#define DTR_DEDUPE_FEW 32

/* Marks each of the n strings of the array at idx keep, duplicate (a
 * later copy of a kept or bad key) or bad (empty, too long, control
 * characters, invalid UTF-8) in state[0..n-1], and counts the kept and
 * the bad.  few: the n strings already read (n <= DTR_DEDUPE_FEW), or
 * NULL.  Raises nothing.  0 when the set's memory cannot be had. */
int dtr_dedupe(lua_State *L, int idx, size_t n, const dtr_str *few, unsigned char *state, size_t *nkeep,
               size_t *nbad);

DTR_HIDDEN_END

#endif
