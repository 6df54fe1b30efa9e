/*
 * dingtalk-recall: the clock of dingtalk.recall.curl (now, sleep).
 */
#include <errno.h>
#include <time.h>

#include "dtr.h"
#include "dtr_clock.h"

/* curl.now() -> seconds on the monotonic clock (for timers and limits) */
static int dtr_l_now(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
    return 1;
}

/* curl.sleep(seconds): blocks the calling thread (plain Lua only). */
static int dtr_l_sleep(lua_State *L)
{
    double s = luaL_checknumber(L, 1);
    struct timespec ts;
    if (!(s > 0)) /* NaN too */
        return 0;
    if (s > 1e9) /* (time_t) of inf or 1e300 is undefined; 31 years is forever */
        s = 1e9;
    ts.tv_sec = (time_t)s;
    ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
    if (ts.tv_nsec > 999999999L) /* rounding: 1e9 would be EINVAL */
        ts.tv_nsec = 999999999L;
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
    return 0;
}

static const luaL_Reg dtr_clock_functions[] = {
    {"now", dtr_l_now},
    {"sleep", dtr_l_sleep},
    {NULL, NULL}};

void dtr_clock_open(lua_State *L)
{
    dtr_register(L, dtr_clock_functions);
}
