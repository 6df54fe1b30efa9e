/*
 * dingtalk-recall: a journal append's fsync in a thread of its own.
 *
 *   journal.append(path, lines, true) -> true, start, stop, id, sync
 *       The lines are written (and visible to every reader) under the lock
 *       as usual, but their fsync runs in a thread: sync:wait() -> true |
 *       nil, err (ledger.io) blocks until it is done and says whether the
 *       lines are durable.  Until then nothing may rely on them (the
 *       ledger sends no batch its marks cover).  wait() again answers the
 *       same; a handle collected unwaited is waited for first (__gc), so
 *       no thread or descriptor is ever left behind.
 *
 * The thread touches nothing but its own descriptor and the handle's
 * result fields; the handle (a userdata) outlives it: __gc joins first.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "dtr_jsync.h"
#include "dtr_error.h"

#define DTR_JSYNC_MT "dingtalk.recall.journal.sync"

typedef struct dtr_jsync {
    pthread_t tid;
    int fd;
    int running; /* a thread to join */
    int rc;      /* fsync's answer, once joined */
    int errnum;
    char path[1]; /* the journal's path (allocated longer) */
} dtr_jsync;

static void *dtr_jsync_run(void *arg)
{
    dtr_jsync *s = (dtr_jsync *)arg;
    s->rc = fsync(s->fd);
    s->errnum = s->rc != 0 ? errno : 0;
    return NULL;
}

/* Joins the thread (once) and closes the descriptor. */
static void dtr_jsync_finish(dtr_jsync *s)
{
    if (s->running) {
        pthread_join(s->tid, NULL);
        s->running = 0;
    }
    if (s->fd >= 0) {
        close(s->fd);
        s->fd = -1;
    }
}

void *dtr_jsync_new(lua_State *L, const char *path)
{
    size_t n = strlen(path);
    dtr_jsync *s = (dtr_jsync *)dtr_newuserdata(L, sizeof(dtr_jsync) + n);
    memset(s, 0, sizeof *s);
    s->fd = -1;
    memcpy(s->path, path, n + 1);
    luaL_getmetatable(L, DTR_JSYNC_MT);
    lua_setmetatable(L, -2);
    return s;
}

int dtr_jsync_begin(void *handle, int fd)
{
    dtr_jsync *s = (dtr_jsync *)handle;
    s->fd = fd;
    if (pthread_create(&s->tid, NULL, dtr_jsync_run, s) != 0) {
        s->fd = -1;
        return -1;
    }
    s->running = 1;
    return 0;
}

/* sync:wait() -> true | nil, err */
static int dtr_l_jsync_wait(lua_State *L)
{
    dtr_jsync *s = (dtr_jsync *)luaL_checkudata(L, 1, DTR_JSYNC_MT);
    dtr_jsync_finish(s);
    if (s->rc == 0) {
        lua_pushboolean(L, 1);
        return 1;
    }
    lua_pushnil(L);
    lua_createtable(L, 0, 5);
    lua_pushliteral(L, "ledger.io");
    lua_setfield(L, -2, "code");
    lua_pushfstring(L, "ledger journal %s: fsync: %s", s->path, strerror(s->errnum));
    lua_setfield(L, -2, "message");
    lua_pushliteral(L, "Check that the disk holding the ledger is healthy and not full.");
    lua_setfield(L, -2, "hint");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "retryable");
    dtr_finish_error(L, lua_upvalueindex(DTR_UV_ERRMT));
    return 2;
}

static int dtr_l_jsync_gc(lua_State *L)
{
    dtr_jsync_finish((dtr_jsync *)luaL_checkudata(L, 1, DTR_JSYNC_MT));
    return 0;
}

static const luaL_Reg dtr_jsync_methods[] = {
    {"wait", dtr_l_jsync_wait},
    {NULL, NULL}};

void dtr_jsync_open(lua_State *L)
{
    /* Below the module's upvalues (on top, as dtr_register_into wants
     * them): the metatable, then the methods, which share the upvalues. */
    int p = lua_gettop(L) - DTR_NUPVALUES + 1;
    luaL_newmetatable(L, DTR_JSYNC_MT);
    lua_newtable(L);
    lua_insert(L, p); /* the methods at p */
    lua_insert(L, p); /* the metatable at p, the methods at p + 1 */
    dtr_register_into(L, p + 1, dtr_jsync_methods);
    lua_pushvalue(L, p + 1);
    lua_setfield(L, p, "__index");
    lua_pushcfunction(L, dtr_l_jsync_gc);
    lua_setfield(L, p, "__gc");
    lua_remove(L, p);
    lua_remove(L, p);
}
