/*
 * libFuzzer target "http": the harness is fuzz/fuzz_common.h, the
 * invariants are in fuzz/http.lua (README: "Memory safety and static analysis").
 */
#define DTR_FUZZ_NAME "http"
#include "fuzz_common.h"
