/*
 * dingtalk-recall: the ledger's crash-safe journal (POSIX).
 *
 * A journal is an append-only file of lines (the ledger writes one JSON
 * event a line).  Every operation holds flock() on a lock file beside it
 * (`<path>.lock`, never replaced), so several processes may share one
 * journal: appends never interleave, and a compaction (which replaces the
 * journal by rename) never loses a line appended by someone else.
 *
 *   core.journal_append(path, lines [, async]) -> true, start, stop, id [, sync] | nil, err
 *       lines: one string or an array of strings, none holding a newline;
 *       an item may also be a key line {head, parts, tail} (dtr_jline.c).
 *       async: the fsync runs in a thread; sync:wait() says when the lines
 *       are durable (dtr_jsync.c).
 *       O_APPEND|O_CREAT (0600), LOCK_EX, the lines written (a write(2)
 *       per 32 KB: dtr_jline.c), fsync, close.  start
 *       and stop are the file offsets where the lines begin and end, id the
 *       journal's id after the write (as journal_read gives it): a reader
 *       whose offset and id were start and id has read everything but these
 *       lines, and may take them as read (offset stop) without reading them
 *       back.  (Nothing appended: true, nothing more.)  Missing
 *       directories are created 0700.  A torn last line (a crash or a full
 *       disk in the middle of an earlier write) is first ended with "\n",
 *       so it stays one bad line that readers skip; a failed write is cut
 *       back off the file.
 *   core.journal_read(path [, offset [, id]]) -> data, offset, id, reset | nil, err
 *       Under LOCK_SH, the complete lines from offset to the end (a torn
 *       last line is left out).  id names this version of the file: when
 *       the id passed differs (the journal was compacted or re-created) or
 *       offset is past the end, the whole file is read and reset is true.
 *       A missing journal reads as "" with id "".
 *   core.journal_compact(path, fn) -> true, offset, id | false | nil, err
 *       Under LOCK_EX: fn(data) gets the whole journal and returns the new
 *       lines (string or array), or nil to leave it as it is; they are
 *       written to a new temporary file beside it, fsynced and renamed
 *       over the journal, and the directory is fsynced.  fn must not use
 *       the same journal (the lock is held).
 *
 * Files on shared machines (every call; error code ledger.unsafe):
 *   - the journal's directory must not be writable by others, unless it
 *     is sticky and owned by this user (a group-writable one is trusted);
 *   - the journal and its lock file are opened with O_NOFOLLOW (a symbolic
 *     link is refused, never followed) and O_NONBLOCK (a FIFO never
 *     hangs), then fstat()ed: anything but a regular file owned by this
 *     user with one link is refused; one with group or other permission
 *     bits is fixed to 0600 (fchmod);
 *   - the compaction's temporary file is <path>.tmp.<pid>.<n>, created with
 *     O_CREAT|O_EXCL|O_NOFOLLOW, mode 0600: a file or link planted under
 *     that name is never opened, the next n is tried (at most 64).
 *
 * Only the Lua stack holds memory across Lua calls that may raise, and
 * the lock is taken and released around plain system calls, so a Lua
 * error never leaves a file descriptor or a lock behind.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "dtr.h"
#include "dtr_error.h"
#include "dtr_files.h"
#include "dtr_jline.h"
#include "dtr_jsync.h"

/* Pushes nil, err (code ledger.io); returns 2. */
static int dtr_j_push_err(lua_State *L, const char *path, const dtr_jerr *e)
{
    lua_pushnil(L);
    lua_createtable(L, 0, 6);
    if (e->why != NULL) {
        lua_pushliteral(L, "ledger.unsafe");
        lua_setfield(L, -2, "code");
        lua_pushfstring(L, "ledger journal %s: %s: %s", path, e->op, e->why);
        lua_setfield(L, -2, "message");
        lua_pushliteral(L, "The ledger must be a regular file owned by this user (no symbolic link), in a "
                           "directory only this user can write, or a sticky one this user owns.");
        lua_setfield(L, -2, "hint");
    } else {
        lua_pushliteral(L, "ledger.io");
        lua_setfield(L, -2, "code");
        lua_pushfstring(L, "ledger journal %s: %s: %s", path, e->op, strerror(e->errnum));
        lua_setfield(L, -2, "message");
        lua_pushliteral(L, "Check that the ledger's directory exists, is writable by this user and "
                           "that the disk is not full.");
        lua_setfield(L, -2, "hint");
    }
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "retryable");
    dtr_finish_error(L, lua_upvalueindex(DTR_UV_ERRMT));
    return 2;
}

static const char *dtr_j_path(lua_State *L, int idx)
{
    size_t n;
    const char *p = luaL_checklstring(L, idx, &n);
    if (n == 0 || n + 32 >= DTR_J_PATH || memchr(p, '\0', n) != NULL)
        luaL_argerror(L, idx, "a journal path must be a non-empty file name");
    return p;
}

/* Pushes the lines at idx (absolute; see dtr_jline.h) as one string, each
 * ended by "\n"; what names whose lines they are (NULL: an argument). */
static void dtr_j_push_lines(lua_State *L, int idx, const char *what)
{
    int esc;
    size_t n = dtr_jline_size(L, idx, what, &esc);
    char *buf = (char *)dtr_newuserdata(L, n + 1);
    dtr_jline_fill(L, idx, buf, esc);
    lua_pushlstring(L, buf, n);
}

/* core.journal_append(path, lines [, async]) -> true, start, stop, id [, sync] | nil, err */
static int dtr_l_journal_append(lua_State *L)
{
    const char *path = dtr_j_path(L, 1);
    size_t n = 0;
    dtr_jerr e = {NULL, 0, NULL};
    struct stat st;
    char id[DTR_J_ID];
    size_t idlen = 0;
    off_t start = 0;
    int lock, fd, ok = 0, later = 0;
    void *sync = NULL;
    /* Checked (may raise) and the handle of an async fsync made: nothing
     * below raises until the descriptor is closed or handed to the handle
     * (the lines are streamed to the file under the lock). */
    if (!dtr_jline_check(L, 2, NULL)) {
        lua_pushboolean(L, 1);
        return 1;
    }
    if (lua_toboolean(L, 3)) {
        lua_settop(L, 3);
        sync = dtr_jsync_new(L, path); /* at 4 */
    }
    lock = dtr_j_lock(path, 1, 1, &e);
    if (lock < 0)
        return dtr_j_push_err(L, path, &e);
    fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0600);
    if (fd < 0) {
        dtr_j_open_fail(&e, "open");
    } else if (dtr_j_check_file(fd, &st, "open", &e) != 0) {
        /* e is set */
    } else {
        char last = '\n';
        size_t got = 0;
        if (st.st_size > 0 && dtr_j_pread_all(fd, &last, 1, st.st_size - 1, &got) != 0)
            last = '\n';
        start = st.st_size + (last != '\n' ? 1 : 0);
        /* a new journal is made durable at once, with its directory */
        later = sync != NULL && st.st_size > 0;
        if ((last != '\n' && dtr_j_write_all(fd, "\n", 1) != 0) || dtr_jline_write(L, 2, fd, &n) != 0) {
            dtr_j_fail(&e, "write");
            if (ftruncate(fd, st.st_size) != 0) { /* the torn tail stays; readers skip it */
            }
        } else if (!later && fsync(fd) != 0) {
            dtr_j_fail(&e, "fsync");
        } else if (st.st_size == 0 && dtr_j_sync_dir(path, &e) != 0) {
            /* e is set */
        } else {
            ok = 1;
            idlen = dtr_j_id(fd, &st, id); /* same file: its first line now exists */
        }
    }
    dtr_j_unlock(lock);
    if (ok && later) {
        if (dtr_jsync_begin(sync, fd) == 0) {
            fd = -1; /* the handle's now */
        } else if (fsync(fd) != 0) { /* no thread: at once */
            dtr_j_fail(&e, "fsync");
            ok = 0;
        }
    }
    if (fd >= 0)
        close(fd);
    if (!ok)
        return dtr_j_push_err(L, path, &e);
    lua_pushboolean(L, 1);
    lua_pushinteger(L, (lua_Integer)start);
    lua_pushinteger(L, (lua_Integer)start + (lua_Integer)n);
    lua_pushlstring(L, id, idlen);
    if (sync == NULL)
        return 4;
    lua_pushvalue(L, 4);
    return 5;
}

/* Reads the journal from start (or from 0 when the id differs) into a new
 * buffer.  *reset tells whether it restarted from 0. */
typedef struct dtr_jread {
    char *buf;
    size_t len;         /* bytes of complete lines in buf */
    off_t start;        /* file offset of buf[0] */
    char id[DTR_J_ID];
    size_t idlen;
    int reset;
    int missing;
} dtr_jread;

static int dtr_j_read_open(const char *path, off_t start, const char *want_id, size_t want_len,
                           dtr_jread *r, dtr_jerr *e)
{
    struct stat st;
    size_t want, got = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    memset(r, 0, sizeof *r);
    if (fd < 0) {
        if (errno != ENOENT)
            return dtr_j_open_fail(e, "open");
        r->missing = 1;
        r->reset = start != 0 || want_len != 0;
        return 0;
    }
    if (dtr_j_check_file(fd, &st, "open", e) != 0) {
        close(fd);
        return -1;
    }
    r->idlen = dtr_j_id(fd, &st, r->id);
    if (want_id == NULL || want_len != r->idlen || memcmp(want_id, r->id, want_len) != 0 ||
        start > st.st_size) {
        r->reset = want_id != NULL || start != 0;
        start = 0;
    }
    r->start = start;
    want = (size_t)(st.st_size - start);
    if (want > 0) {
        r->buf = (char *)malloc(want);
        if (r->buf == NULL) {
            errno = ENOMEM;
            dtr_j_fail(e, "read");
            close(fd);
            return -1;
        }
        if (dtr_j_pread_all(fd, r->buf, want, start, &got) != 0) {
            dtr_j_fail(e, "read");
            free(r->buf);
            r->buf = NULL;
            close(fd);
            return -1;
        }
        while (got > 0 && r->buf[got - 1] != '\n') /* leave a torn last line out */
            got--;
    }
    r->len = got;
    close(fd);
    return 0;
}

/* core.journal_read(path [, offset [, id]]) -> data, offset, id, reset | nil, err */
static int dtr_l_journal_read(lua_State *L)
{
    const char *path = dtr_j_path(L, 1);
    lua_Number off = luaL_optnumber(L, 2, 0);
    size_t want_len = 0;
    const char *want_id = luaL_optlstring(L, 3, NULL, &want_len);
    dtr_jerr e = {NULL, 0, NULL};
    dtr_jread r;
    int lock, rc;
    if (!(off >= 0) || off > 9.0e15)
        luaL_argerror(L, 2, "offset must be a non-negative number");
    if (want_id != NULL && want_len == 0)
        want_id = NULL;
    lock = dtr_j_lock(path, 0, 0, &e);
    if (lock == -1)
        return dtr_j_push_err(L, path, &e);
    if (lock == -2) {
        memset(&r, 0, sizeof r);
        r.missing = 1;
        r.reset = off != 0 || want_id != NULL;
        rc = 0;
    } else {
        rc = dtr_j_read_open(path, (off_t)off, want_id, want_len, &r, &e);
        dtr_j_unlock(lock);
    }
    if (rc != 0)
        return dtr_j_push_err(L, path, &e);
    /* From here on only the heap buffer is ours: hand it to Lua first. */
    lua_pushlstring(L, r.buf != NULL ? r.buf : "", r.len);
    free(r.buf);
    lua_pushinteger(L, (lua_Integer)r.start + (lua_Integer)r.len);
    lua_pushlstring(L, r.id, r.idlen);
    lua_pushboolean(L, r.reset);
    return 4;
}

/* Runs fn(data) under pcall and turns its answer into one string of lines
 * (or nil).  Arguments: fn, a light userdata pointing to the dtr_jread. */
static int dtr_j_compact_call(lua_State *L)
{
    const dtr_jread *r = (const dtr_jread *)lua_touserdata(L, 2);
    lua_settop(L, 1);
    lua_pushlstring(L, r->buf != NULL ? r->buf : "", r->len);
    lua_call(L, 1, 1);
    if (lua_isnil(L, -1) || (lua_type(L, -1) == LUA_TBOOLEAN && !lua_toboolean(L, -1))) {
        lua_pushnil(L);
        return 1;
    }
    if (lua_type(L, -1) == LUA_TTABLE && dtr_rawlen(L, -1) == 0) {
        lua_pushliteral(L, "");
        return 1;
    }
    dtr_j_push_lines(L, lua_gettop(L), "journal_compact: the function's answer");
    return 1;
}

/* core.journal_compact(path, fn) -> true, offset, id | false | nil, err */
static int dtr_l_journal_compact(lua_State *L)
{
    const char *path = dtr_j_path(L, 1);
    char tmp[DTR_J_PATH];
    dtr_jerr e = {NULL, 0, NULL};
    dtr_jread r;
    size_t n;
    const char *data;
    int lock, fd, rc, tries, ok = 0;
    struct stat st;
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_settop(L, 2);
    /* Everything that may raise is pushed before the lock is taken, and
     * the callback (which may raise too) runs under a pcall. */
    lua_pushcfunction(L, dtr_j_compact_call);
    lua_pushvalue(L, 2);
    lua_pushlightuserdata(L, &r);
    lock = dtr_j_lock(path, 1, 1, &e);
    if (lock < 0)
        return dtr_j_push_err(L, path, &e);
    if (dtr_j_read_open(path, 0, NULL, 0, &r, &e) != 0) {
        dtr_j_unlock(lock);
        return dtr_j_push_err(L, path, &e);
    }
    rc = lua_pcall(L, 2, 1, 0);
    free(r.buf);
    if (rc != 0) {
        dtr_j_unlock(lock);
        return lua_error(L);
    }
    if (lua_isnil(L, -1)) {
        dtr_j_unlock(lock);
        lua_pushboolean(L, 0);
        return 1;
    }
    data = lua_tolstring(L, -1, &n);
    /* A new file of our own: O_EXCL never opens one planted under the name,
     * O_NOFOLLOW never follows a planted link; the next name is tried. */
    fd = -1;
    errno = EEXIST;
    for (tries = 0; fd < 0 && errno == EEXIST && tries < DTR_J_TMP_TRIES; tries++) {
        snprintf(tmp, sizeof tmp, "%s.tmp.%ld.%d", path, (long)getpid(), tries);
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    }
    if (fd < 0) {
        dtr_j_open_fail(&e, "create temporary file");
    } else if (fchmod(fd, 0600) != 0) { /* whatever the umask */
        dtr_j_fail(&e, "fchmod temporary file");
        close(fd);
        unlink(tmp);
    } else {
        if (dtr_j_write_all(fd, data, n) != 0)
            dtr_j_fail(&e, "write temporary file");
        else if (fsync(fd) != 0)
            dtr_j_fail(&e, "fsync temporary file");
        else if (fstat(fd, &st) != 0)
            dtr_j_fail(&e, "fstat temporary file");
        else
            ok = 1;
        close(fd);
        if (ok && rename(tmp, path) != 0) {
            dtr_j_fail(&e, "rename");
            ok = 0;
        }
        if (!ok)
            unlink(tmp);
        else if (dtr_j_sync_dir(path, &e) != 0)
            ok = 0;
    }
    if (ok) {
        /* The id of the new journal, read back through a fresh descriptor. */
        char id[DTR_J_ID];
        size_t idlen = 0;
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
        if (fd >= 0 && fstat(fd, &st) == 0)
            idlen = dtr_j_id(fd, &st, id);
        if (fd >= 0)
            close(fd);
        dtr_j_unlock(lock);
        lua_pushboolean(L, 1);
        lua_pushinteger(L, (lua_Integer)n);
        lua_pushlstring(L, id, idlen);
        return 3;
    }
    dtr_j_unlock(lock);
    return dtr_j_push_err(L, path, &e);
}

/* journal.isatty(fd) -> boolean: whether descriptor 0, 1 or 2 is a
 * terminal (the CLI's progress bar and stdin; no process spawned). */
static int dtr_l_journal_isatty(lua_State *L)
{
    lua_Integer fd = luaL_checkinteger(L, 1);
    luaL_argcheck(L, fd >= 0 && fd <= 2, 1, "0, 1 or 2");
    lua_pushboolean(L, isatty((int)fd) == 1);
    return 1;
}

/* The module dingtalk.recall.journal: journal.append, journal.read and
 * journal.compact are the core.journal_* described at the top; isatty is
 * the CLI's (this module is the one that is plain libc); keys_line is
 * dtr_jline.c's. */
static const luaL_Reg dtr_journal_functions[] = {
    {"append", dtr_l_journal_append},
    {"read", dtr_l_journal_read},
    {"compact", dtr_l_journal_compact},
    {"isatty", dtr_l_journal_isatty},
    {NULL, NULL}};

int luaopen_dingtalk_recall_journal(lua_State *L)
{
    lua_newtable(L); /* the module */
    dtr_push_upvalues(L, 0);
    dtr_register(L, dtr_journal_functions);
    dtr_jline_open(L);
    dtr_jsync_open(L);
    lua_pop(L, DTR_NUPVALUES);
    return 1;
}
