/*
 * dingtalk-recall: a journal append's fsync in a thread of its own
 * (dtr_jsync.c), so that an event loop keeps running while the disk
 * makes the lines durable; the caller waits before it relies on them.
 */
#ifndef DTR_JSYNC_H
#define DTR_JSYNC_H

#include "dtr.h"

DTR_HIDDEN_BEGIN

/* Pushes a handle with nothing to wait for yet (wait() answers true);
 * path names the journal in its errors.  May raise: made before any
 * descriptor or lock is taken. */
void *dtr_jsync_new(lua_State *L, const char *path);

/* Starts fsync(fd) in a new thread; the handle owns fd from then on
 * (closed once the fsync is done).  Returns 0, or -1 when no thread could
 * be started (fd still the caller's).  Never raises. */
int dtr_jsync_begin(void *handle, int fd);

/* Creates the handles' metatable (h:wait(), __gc). */
void dtr_jsync_open(lua_State *L);

DTR_HIDDEN_END

#endif
