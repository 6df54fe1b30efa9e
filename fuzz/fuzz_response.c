/*
 * libFuzzer target "response": the harness is fuzz/fuzz_common.h, the
 * invariants are in fuzz/response.lua (README: "Memory safety and static analysis").
 */
#define DTR_FUZZ_NAME "response"
#include "fuzz_common.h"
