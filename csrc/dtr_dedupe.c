/*
 * dingtalk-recall: the first pass of core.plan (sans I/O): each key of an
 * array checked once and its duplicates found, with an open-addressing
 * set of entry numbers in the allocator's memory (no Lua table of seen
 * keys), freed before anything can raise.
 */
#include <stdint.h>
#include <string.h>

#include "dtr.h"
#include "dtr_text.h"
#include "dtr_encode.h"
#include "dtr_dedupe.h"

/* The dedupe set's hash: every byte mixed in, eight at a time (a
 * multiply, then the high half folded into the low, so that the table's
 * low bits depend on all of them). */
static unsigned long dtr_dedupe_hash(const char *s, size_t n)
{
    uint64_t h = 0x9e3779b97f4a7c15ULL ^ n, w;
    size_t i;
    for (i = 0; i < n; i += 8) {
        if (n - i >= 8)
            memcpy(&w, s + i, 8);
        else {
            w = 0;
            memcpy(&w, s + i, n - i);
        }
        h = (h ^ w) * 0xff51afd7ed558ccdULL;
        h ^= h >> 32;
    }
    return (unsigned long)(h ^ (h >> 29));
}

/* A cheaper hash for the few-keys pass, whose cost is bounded whatever the
 * keys: the length and the first and last eight bytes (dtr_dedupe_hash
 * below eight). */
static uint64_t dtr_dedupe_quick(const char *s, size_t n)
{
    uint64_t a, b;
    if (n < 8)
        return dtr_dedupe_hash(s, n);
    memcpy(&a, s, 8);
    memcpy(&b, s + n - 8, 8);
    return (a ^ (b * 0x9e3779b97f4a7c15ULL) ^ n) * 0xff51afd7ed558ccdULL;
}

/* The state of a key that is no duplicate: keep or bad. */
static unsigned char dtr_dedupe_check(const dtr_str *k)
{
    if (k->n == 0 || k->n > DTR_MAX_FIELD || dtr_text_check((const unsigned char *)k->s, k->n) != 0)
        return DTR_KEY_BAD;
    return DTR_KEY_KEEP;
}

/* First pass, raising nothing: marks each entry of the array at idx (n
 * strings) keep, duplicate or bad in state[0..n-1], with an open-addressing
 * set of entry numbers (slots: a power of two above 2n, zeroed).  Counts
 * the kept and the bad. */
static void dtr_dedupe_mark(lua_State *L, int idx, size_t n, unsigned char *state, uint32_t *slots,
                          size_t mask, size_t *nkeep, size_t *nbad)
{
    size_t i;
    for (i = 1; i <= n; i++) {
        dtr_str k;
        size_t at;
        int dup = 0;
        lua_rawgeti(L, idx, (int)i);
        k.s = lua_tolstring(L, -1, &k.n); /* anchored by the keys table */
        lua_pop(L, 1);
        for (at = dtr_dedupe_hash(k.s, k.n) & mask; slots[at] != 0; at = (at + 1) & mask) {
            size_t on;
            const char *o;
            lua_rawgeti(L, idx, (int)slots[at]);
            o = lua_tolstring(L, -1, &on);
            lua_pop(L, 1);
            if (on == k.n && memcmp(o, k.s, on) == 0) {
                dup = 1;
                break;
            }
        }
        if (dup) {
            state[i - 1] = DTR_KEY_DUP;
            continue;
        }
        slots[at] = (uint32_t)i;
        state[i - 1] = dtr_dedupe_check(&k);
        if (state[i - 1] == DTR_KEY_BAD)
            (*nbad)++;
        else
            (*nkeep)++;
    }
}

/* A few keys (a batch or so), their strings at hand (k[]): a set of
 * entry numbers on the stack, indexed by the top bits of the quick hash
 * (which depend on every byte it reads), compared by hash first. */
static void dtr_dedupe_few(const dtr_str *k, size_t n, unsigned char *state, size_t *nkeep, size_t *nbad)
{
    enum { DTR_FEW_SLOTS = 2 * DTR_DEDUPE_FEW }; /* at most half full; the hash's top six bits */
    unsigned char slots[DTR_FEW_SLOTS]; /* entry + 1 of a kept or bad key; 0: free */
    uint64_t h[DTR_DEDUPE_FEW];
    size_t i, at;
    memset(slots, 0, sizeof slots);
    for (i = 0; i < n; i++) {
        h[i] = dtr_dedupe_quick(k[i].s, k[i].n);
        state[i] = DTR_KEY_KEEP;
        for (at = (size_t)(h[i] >> 58); slots[at] != 0; at = (at + 1) % (size_t)DTR_FEW_SLOTS) {
            size_t j = (size_t)slots[at] - 1;
            if (h[j] == h[i] && k[j].n == k[i].n && memcmp(k[j].s, k[i].s, k[i].n) == 0) {
                state[i] = DTR_KEY_DUP;
                break;
            }
        }
        if (state[i] == DTR_KEY_DUP)
            continue;
        slots[at] = (unsigned char)(i + 1);
        state[i] = dtr_dedupe_check(&k[i]);
        if (state[i] == DTR_KEY_BAD)
            (*nbad)++;
        else
            (*nkeep)++;
    }
}

/* Dedupes and checks the n strings of the array at idx: state[] as in
 * dtr_dedupe_mark.  The set is the allocator's memory, freed before
 * anything can raise.  0 when it cannot be had. */
int dtr_dedupe(lua_State *L, int idx, size_t n, const dtr_str *few, unsigned char *state, size_t *nkeep,
               size_t *nbad)
{
    void *ud;
    lua_Alloc alloc = lua_getallocf(L, &ud);
    size_t nslots = 16, bytes;
    uint32_t *slots;
    if (few != NULL && n <= DTR_DEDUPE_FEW) {
        dtr_dedupe_few(few, n, state, nkeep, nbad);
        return 1;
    }
    while (nslots < 2 * n)
        nslots *= 2; /* n <= 2^31 - 1: at most 2^32 */
    if (nslots > ((size_t)-1) / sizeof *slots)
        return 0;
    bytes = nslots * sizeof *slots;
    slots = (uint32_t *)alloc(ud, NULL, 0, bytes);
    if (slots == NULL)
        return 0;
    memset(slots, 0, bytes);
    dtr_dedupe_mark(L, idx, n, state, slots, nslots - 1, nkeep, nbad);
    alloc(ud, slots, bytes, 0);
    return 1;
}
