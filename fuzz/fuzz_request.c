/*
 * libFuzzer target "request": the harness is fuzz/fuzz_common.h, the
 * invariants are in fuzz/request.lua (README: "Memory safety and static analysis").
 */
#define DTR_FUZZ_NAME "request"
#include "fuzz_common.h"
