/*
 * libFuzzer target "callback": the harness is fuzz/fuzz_common.h, the
 * invariants are in fuzz/callback.lua (README: "Memory safety and static analysis").
 */
#define DTR_FUZZ_NAME "callback"
#include "fuzz_common.h"
