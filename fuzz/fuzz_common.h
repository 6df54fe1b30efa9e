/*
 * dingtalk-recall: the libFuzzer harness shared by fuzz/fuzz_*.c.
 *
 * The core is compiled into the fuzzer itself (the Makefile links its
 * units, csrc/$(CORE_UNITS).c, instrumented for coverage) and loaded into one lua_State as dingtalk.recall.core;
 * lua-cjson comes from the system's Lua 5.4 C path.  The invariants are
 * written in Lua: fuzz/<target>.lua returns a function check(flags,
 * fields, raw) that calls the core and raises when an invariant fails.
 *
 * Input layout: two bytes of flags (little-endian; what they select is
 * the target's business), then fields separated by 0xFF (a byte that
 * never occurs in UTF-8, so every other byte, valid UTF-8 or not, can be
 * in a field).  `raw` is everything after the flags, unsplit.
 *
 * A failed invariant or an unexpected Lua error prints the traceback and
 * aborts, which libFuzzer records as a crash with its input.
 */
#ifndef DTR_FUZZ_COMMON_H
#define DTR_FUZZ_COMMON_H

#include "../csrc/dtr.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "lualib.h"

#ifndef DTR_FUZZ_DIR
#define DTR_FUZZ_DIR "fuzz"
#endif
/* Where lua-cjson for 5.4 lives on Debian, then the usual places. */
#ifndef DTR_FUZZ_CPATH
#define DTR_FUZZ_CPATH "/usr/lib/x86_64-linux-gnu/lua/5.4/?.so;/usr/local/lib/lua/5.4/?.so;/usr/lib/lua/5.4/?.so"
#endif
#define DTR_FUZZ_SEP 0xff

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static lua_State *dtr_fuzz_L;
static int dtr_fuzz_check = LUA_NOREF;

/*
 * ref_hmac(key, msg) -> the 32-byte HMAC-SHA256, computed from SHA-256
 * by the RFC 2104 construction: an implementation independent of the
 * core's HMAC() call, for the callback target's differential check.
 */
static int dtr_fuzz_ref_hmac(lua_State *L)
{
    size_t klen, mlen, i;
    const unsigned char *key = (const unsigned char *)luaL_checklstring(L, 1, &klen);
    const unsigned char *msg = (const unsigned char *)luaL_checklstring(L, 2, &mlen);
    unsigned char k[64], pad[64], inner[32], outer[32];
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    if (c == NULL)
        return luaL_error(L, "out of memory");
    memset(k, 0, sizeof k);
    if (klen > sizeof k)
        EVP_Digest(key, klen, k, NULL, EVP_sha256(), NULL);
    else
        memcpy(k, key, klen);
    for (i = 0; i < sizeof pad; i++)
        pad[i] = (unsigned char)(k[i] ^ 0x36);
    EVP_DigestInit_ex(c, EVP_sha256(), NULL);
    EVP_DigestUpdate(c, pad, sizeof pad);
    EVP_DigestUpdate(c, msg, mlen);
    EVP_DigestFinal_ex(c, inner, NULL);
    for (i = 0; i < sizeof pad; i++)
        pad[i] = (unsigned char)(k[i] ^ 0x5c);
    EVP_DigestInit_ex(c, EVP_sha256(), NULL);
    EVP_DigestUpdate(c, pad, sizeof pad);
    EVP_DigestUpdate(c, inner, sizeof inner);
    EVP_DigestFinal_ex(c, outer, NULL);
    EVP_MD_CTX_free(c);
    lua_pushlstring(L, (const char *)outer, sizeof outer);
    return 1;
}

static int dtr_fuzz_traceback(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    luaL_traceback(L, L, msg != NULL ? msg : "(error object is not a string)", 1);
    return 1;
}

static void dtr_fuzz_die(lua_State *L, const char *what)
{
    const char *msg = lua_tostring(L, -1);
    fprintf(stderr, "\n*** %s: %s\n", what, msg != NULL ? msg : "(no message)");
    fflush(stderr);
    abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    lua_State *L = luaL_newstate();
    (void)argc;
    (void)argv;
    if (L == NULL)
        abort();
    luaL_openlibs(L);
    lua_getglobal(L, "package");
    lua_pushliteral(L, DTR_FUZZ_CPATH);
    lua_setfield(L, -2, "cpath");
    lua_pop(L, 1);
    lua_pushcfunction(L, dtr_fuzz_traceback);
    luaL_requiref(L, "dingtalk.recall.core", luaopen_dingtalk_recall_core, 0);
    lua_pop(L, 1);
    if (luaL_loadfile(L, DTR_FUZZ_DIR "/" DTR_FUZZ_NAME ".lua") != LUA_OK)
        dtr_fuzz_die(L, "cannot load the target's checks");
    lua_pushliteral(L, DTR_FUZZ_DIR);
    lua_pushcfunction(L, dtr_fuzz_ref_hmac);
    if (lua_pcall(L, 2, 1, 1) != LUA_OK || lua_type(L, -1) != LUA_TFUNCTION)
        dtr_fuzz_die(L, "the target's script must return its check function");
    dtr_fuzz_check = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pop(L, 1); /* traceback */
    dtr_fuzz_L = L;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lua_State *L = dtr_fuzz_L;
    const char *rest;
    size_t n, i, start;
    int nf = 0, flags;
    if (size < 2)
        return -1; /* not worth keeping */
    flags = data[0] | (data[1] << 8);
    rest = (const char *)data + 2;
    n = size - 2;
    lua_settop(L, 0);
    lua_pushcfunction(L, dtr_fuzz_traceback);
    lua_rawgeti(L, LUA_REGISTRYINDEX, dtr_fuzz_check);
    lua_pushinteger(L, flags);
    lua_newtable(L);
    for (i = 0, start = 0; i <= n; i++) {
        if (i == n || (unsigned char)rest[i] == DTR_FUZZ_SEP) {
            lua_pushlstring(L, rest + start, i - start);
            lua_rawseti(L, -2, ++nf);
            start = i + 1;
        }
    }
    lua_pushlstring(L, rest, n);
    if (lua_pcall(L, 3, 0, 1) != LUA_OK)
        dtr_fuzz_die(L, "invariant failed");
    lua_settop(L, 0);
    return 0;
}

#endif
