/* bench/cgctl.c: callgrind's client requests for bench/openresty.lua's
 * callgrind mode, called through LuaJIT's FFI inside nginx: zero the
 * counters before a location's calls, dump them after.  Outside valgrind
 * both are no-ops.  Built by the bench (cc -shared), never installed. */
#include <valgrind/callgrind.h>

void dtr_bench_cg_zero(void);
void dtr_bench_cg_dump(void);

void dtr_bench_cg_zero(void) { CALLGRIND_ZERO_STATS; }
void dtr_bench_cg_dump(void) { CALLGRIND_DUMP_STATS; }
