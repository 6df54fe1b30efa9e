/*
 * dingtalk-recall: concurrent transfers over one curl multi handle.
 *
 * The multi handle is driven the way event loops expect: libcurl tells us
 * which sockets to watch (CURLMOPT_SOCKETFUNCTION) and when to call back
 * (CURLMOPT_TIMERFUNCTION), and we hand it readiness and timeouts with
 * curl_multi_socket_action.  The socket set is kept here, so m:fds()
 * reports every socket, whatever its number (curl_multi_fdset hides
 * sockets >= FD_SETSIZE, 1024), and m:perform(wait) waits with poll(),
 * which has no such limit.
 *
 *   curl.multi([{max_connections = n}]) -> multi
 *   m:add(built [, tag]) -> id | nil, err
 *   m:start(built [, tag]) -> id | nil, err   (add, and send now)
 *   m:start_batch(plan, keys, target, token [, tag])   (dtr_batch.c)
 *   m:perform([wait_seconds]) -> done, in_flight
 *   m:fds() -> { {fd =, read =, write =}, ... }
 *   m:timeout() -> seconds until libcurl's timer, or nil
 *   m:in_flight(), m:close() (also __gc and __close)
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "dtr.h"
#include "dtr_error.h"
#include "dtr_xfer.h"
#include "dtr_multi.h"
#include "dtr_batch.h"

#define DTR_MULTI_MT "dingtalk.recall.multi"

/* A socket libcurl asked us to watch. */
typedef struct dtr_sock {
    curl_socket_t fd;
    int what; /* CURL_POLL_IN, _OUT or _INOUT */
} dtr_sock;

struct dtr_multi {
    CURLM *multi;
    dtr_xfer *active;
    dtr_xfer *idle;
    lua_Integer next_id;
    int running;
    dtr_sock *socks;      /* malloc'd; nsocks used of capsocks */
    int nsocks, capsocks;
    struct pollfd *pfds;  /* scratch for poll(), cappfds long; resized */
    int cappfds;          /* only outside libcurl's callbacks */
    double deadline;      /* monotonic seconds of libcurl's timer; < 0: none */
};

static double dtr_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CURLMOPT_SOCKETFUNCTION: add, change or forget a watched socket. */
static int dtr_on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    dtr_multi *m = (dtr_multi *)userp;
    int i;
    (void)easy;
    (void)socketp;
    for (i = 0; i < m->nsocks; i++)
        if (m->socks[i].fd == fd)
            break;
    if (what == CURL_POLL_REMOVE) {
        if (i < m->nsocks)
            m->socks[i] = m->socks[--m->nsocks];
        return 0;
    }
    if (i == m->nsocks) {
        if (m->nsocks == m->capsocks) {
            int cap = m->capsocks ? m->capsocks * 2 : 8;
            dtr_sock *s = (dtr_sock *)realloc(m->socks, (size_t)cap * sizeof *s);
            if (s == NULL)
                return -1;
            m->socks = s;
            m->capsocks = cap;
        }
        m->socks[m->nsocks].fd = fd;
        m->nsocks++;
    }
    m->socks[i].what = what;
    return 0;
}

/* CURLMOPT_TIMERFUNCTION: -1 deletes the timer, else ms from now. */
static int dtr_on_timer(CURLM *multi, long timeout_ms, void *userp)
{
    dtr_multi *m = (dtr_multi *)userp;
    (void)multi;
    m->deadline = timeout_ms < 0 ? -1.0 : dtr_mono() + (double)timeout_ms / 1000.0;
    return 0;
}

dtr_multi *dtr_check_multi(lua_State *L)
{
    dtr_multi *m = (dtr_multi *)luaL_checkudata(L, 1, DTR_MULTI_MT);
    if (m->multi == NULL)
        luaL_error(L, "multi handle is closed");
    return m;
}

/* The one close, shared by m:close(), __gc and __close.  Idempotent. */
static int dtr_multi_close(lua_State *L)
{
    dtr_multi *m = (dtr_multi *)luaL_checkudata(L, 1, DTR_MULTI_MT);
    dtr_xfer *x, *next;
    for (x = m->active; x != NULL; x = next) {
        next = x->next;
        if (m->multi != NULL)
            curl_multi_remove_handle(m->multi, x->easy);
        luaL_unref(L, LUA_REGISTRYINDEX, x->tag_ref);
        luaL_unref(L, LUA_REGISTRYINDEX, x->batch_target);
        dtr_xfer_free(x);
    }
    for (x = m->idle; x != NULL; x = next) {
        next = x->next;
        luaL_unref(L, LUA_REGISTRYINDEX, x->batch_target);
        dtr_xfer_free(x);
    }
    m->active = m->idle = NULL;
    if (m->multi != NULL)
        curl_multi_cleanup(m->multi);
    m->multi = NULL;
    m->running = 0;
    free(m->socks);
    free(m->pfds);
    m->socks = NULL;
    m->pfds = NULL;
    m->nsocks = m->capsocks = m->cappfds = 0;
    m->deadline = -1.0;
    return 0;
}

/* curl.multi([{max_connections = n}]) -> multi */
static int dtr_l_multi(lua_State *L)
{
    dtr_multi *m;
    long maxconn = 0;
    if (!lua_isnoneornil(L, 1)) {
        luaL_checktype(L, 1, LUA_TTABLE);
        lua_getfield(L, 1, "max_connections");
        if (!lua_isnil(L, -1)) {
            /* NaN and huge values fail too: (long) of them is undefined. */
            if (lua_type(L, -1) != LUA_TNUMBER || !(lua_tonumber(L, -1) >= 1 && lua_tonumber(L, -1) <= 1e6))
                luaL_error(L, "option 'max_connections' must be a number from 1 to 1e6");
            maxconn = (long)lua_tonumber(L, -1);
        }
        lua_pop(L, 1);
    }
    if (!dtr_curl_ready())
        return luaL_error(L, "curl_global_init failed");
    m = (dtr_multi *)dtr_newuserdata(L, sizeof *m);
    memset(m, 0, sizeof *m);
    m->deadline = -1.0;
    luaL_getmetatable(L, DTR_MULTI_MT);
    lua_setmetatable(L, -2);
    m->multi = curl_multi_init();
    if (m->multi == NULL)
        return luaL_error(L, "cannot create a curl multi handle");
    curl_multi_setopt(m->multi, CURLMOPT_SOCKETFUNCTION, dtr_on_socket);
    curl_multi_setopt(m->multi, CURLMOPT_SOCKETDATA, m);
    curl_multi_setopt(m->multi, CURLMOPT_TIMERFUNCTION, dtr_on_timer);
    curl_multi_setopt(m->multi, CURLMOPT_TIMERDATA, m);
    if (maxconn > 0) {
        curl_multi_setopt(m->multi, CURLMOPT_MAX_HOST_CONNECTIONS, maxconn);
        curl_multi_setopt(m->multi, CURLMOPT_MAXCONNECTS, maxconn);
    }
    m->next_id = 1;
    return 1;
}

/* An idle transfer (or a new one), linked into the active list. */
dtr_xfer *dtr_multi_take(lua_State *L, dtr_multi *m)
{
    dtr_xfer *x = m->idle;
    if (x != NULL) {
        m->idle = x->next;
    } else if ((x = dtr_xfer_new()) == NULL) {
        luaL_error(L, "cannot create a curl handle");
        return NULL;
    }
    /* Linked first, so an error below cannot leak it. */
    x->next = m->active;
    m->active = x;
    return x;
}

/* Frees x, just taken and not started, and raises. */
int dtr_multi_drop(lua_State *L, dtr_multi *m, dtr_xfer *x, const char *why)
{
    m->active = x->next;
    luaL_unref(L, LUA_REGISTRYINDEX, x->batch_target);
    dtr_xfer_free(x);
    return luaL_error(L, "%s", why);
}

/* Starts x, just taken and set up, with the tag at stack index tag;
 * returns its id.  The request goes out at the next drive or kick. */
lua_Integer dtr_multi_launch(lua_State *L, dtr_multi *m, dtr_xfer *x, int tag)
{
    if (curl_multi_add_handle(m->multi, x->easy) != CURLM_OK)
        dtr_multi_drop(L, m, x, "cannot start a transfer");
    x->id = m->next_id++;
    lua_pushvalue(L, tag);
    x->tag_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    m->running++;
    return x->id;
}

/* Sends what was just added: libcurl's timer, which adding a transfer
 * sets to now, runs at once (no poll: sockets that became readable wait
 * for the next perform, which looks first). */
void dtr_multi_kick(dtr_multi *m)
{
    int still = 0;
    if (m->deadline >= 0 && dtr_mono() >= m->deadline) {
        m->deadline = -1.0; /* libcurl sets the next one from inside */
        curl_multi_socket_action(m->multi, CURL_SOCKET_TIMEOUT, 0, &still);
    }
}

/* m:add(built [, tag]) -> id | nil, err */
static int dtr_multi_add(lua_State *L)
{
    dtr_multi *m = dtr_check_multi(L);
    dtr_spec sp;
    dtr_err e;
    dtr_xfer *x;
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 3);
    if (!dtr_read_spec(L, 2, &sp, &e))
        return dtr_push_err(L, &e);
    x = dtr_multi_take(L, m);
    if (!dtr_xfer_setup(L, x, &sp))
        return dtr_multi_drop(L, m, x, "cannot start a transfer");
    lua_pushinteger(L, dtr_multi_launch(L, m, x, 3));
    return 1;
}

/* m:start(built [, tag]) -> id | nil, err
 * m:add, and the request goes out now (dtr_multi_kick).  What finishes
 * meanwhile stays queued for perform. */
static int dtr_multi_start(lua_State *L)
{
    int n = dtr_multi_add(L);
    if (n == 1)
        dtr_multi_kick((dtr_multi *)lua_touserdata(L, 1));
    return n;
}

/* Moves finished transfers into the array at done_idx. */
static void dtr_multi_collect(lua_State *L, dtr_multi *m, int done_idx)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(m->multi, &left)) != NULL) {
        dtr_xfer *x = NULL, **pp;
        int n, top;
        if (msg->msg != CURLMSG_DONE)
            continue;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&x);
        top = lua_gettop(L);
        lua_createtable(L, 0, 5);
        lua_pushinteger(L, x->id);
        lua_setfield(L, -2, "id");
        lua_rawgeti(L, LUA_REGISTRYINDEX, x->tag_ref);
        lua_setfield(L, -2, "tag");
        n = dtr_xfer_push_outcome(L, x, msg->data.result);
        if (n == 3) {
            lua_setfield(L, top + 1, "body");
            lua_setfield(L, top + 1, "headers");
            lua_setfield(L, top + 1, "status");
        } else {
            lua_setfield(L, top + 1, "error");
            lua_pop(L, 1);
        }
        lua_rawseti(L, done_idx, (int)dtr_rawlen(L, done_idx) + 1);
        /* Back to the idle list; the connection stays in the multi's cache. */
        curl_multi_remove_handle(m->multi, x->easy);
        luaL_unref(L, LUA_REGISTRYINDEX, x->tag_ref);
        x->tag_ref = LUA_NOREF;
        for (pp = &m->active; *pp != NULL; pp = &(*pp)->next)
            if (*pp == x) {
                *pp = x->next;
                break;
            }
        x->next = m->idle;
        m->idle = x;
        m->running--;
    }
}

/*
 * One round: waits up to wait_ms (0: only looks) for a watched socket or
 * libcurl's timer, then tells libcurl what happened.  With no socket and
 * no timer it simply waits (the caller's sleep until its next timer).
 */
static void dtr_multi_drive(dtr_multi *m, double wait_ms)
{
    int i, n = m->nsocks, ready, still = 0;
    double now = dtr_mono(), ms = wait_ms;
    if (n > m->cappfds) {
        struct pollfd *p = (struct pollfd *)realloc(m->pfds, (size_t)m->capsocks * sizeof *p);
        if (p == NULL)
            n = m->cappfds; /* out of memory: watch what fits */
        else {
            m->pfds = p;
            m->cappfds = m->capsocks;
        }
    }
    if (m->deadline >= 0) {
        double due = (m->deadline - now) * 1000.0;
        if (due < ms)
            ms = due < 0 ? 0 : due;
    }
    for (i = 0; i < n; i++) {
        m->pfds[i].fd = m->socks[i].fd;
        m->pfds[i].events = (short)(((m->socks[i].what & CURL_POLL_IN) ? POLLIN : 0) |
                                    ((m->socks[i].what & CURL_POLL_OUT) ? POLLOUT : 0));
        m->pfds[i].revents = 0;
    }
    /* Never negative (poll would wait forever), NaN included; capped at
     * a day: (int) of a larger value is undefined. */
    if (!(ms > 0))
        ms = 0;
    if (ms > 86400000.0)
        ms = 86400000.0;
    ready = poll(n > 0 ? m->pfds : NULL, (nfds_t)n, (int)(ms + 0.999));
    if (ready < 0 && errno != EINTR)
        ready = 0;
    /* The snapshot in pfds stays valid while the callbacks change socks. */
    for (i = 0; i < n && ready > 0; i++) {
        int ev = 0;
        short re = m->pfds[i].revents;
        if (re == 0)
            continue;
        ready--;
        if (re & (POLLIN | POLLHUP))
            ev |= CURL_CSELECT_IN;
        if (re & POLLOUT)
            ev |= CURL_CSELECT_OUT;
        if (re & (POLLERR | POLLNVAL))
            ev |= CURL_CSELECT_ERR;
        curl_multi_socket_action(m->multi, m->pfds[i].fd, ev, &still);
    }
    if (m->deadline >= 0 && dtr_mono() >= m->deadline) {
        m->deadline = -1.0; /* libcurl sets the next one from inside */
        curl_multi_socket_action(m->multi, CURL_SOCKET_TIMEOUT, 0, &still);
    }
}

/* m:drive() -> in_flight
 * Drives every transfer once without waiting and without collecting:
 * a request just added goes out now; what finishes stays queued in
 * libcurl for the next perform. */
static int dtr_multi_drive_l(lua_State *L)
{
    dtr_multi *m = dtr_check_multi(L);
    dtr_multi_drive(m, 0);
    lua_pushinteger(L, (lua_Integer)m->running);
    return 1;
}

/* m:perform([wait_seconds]) -> done, in_flight
 * Drives every transfer; waits up to wait_seconds (default 0: never
 * blocks) for activity when nothing has finished yet.  `done` is an
 * array of {id, tag, status, headers, body} or {id, tag, error}. */
static int dtr_multi_perform(lua_State *L)
{
    dtr_multi *m = dtr_check_multi(L);
    double wait = luaL_optnumber(L, 2, 0);
    int done;
    lua_settop(L, 2);
    lua_newtable(L);
    done = lua_gettop(L);
    /* What finished already (while starting) comes back without a look
     * at the sockets; else one look, or the wait below. */
    dtr_multi_collect(L, m, done);
    if (dtr_rawlen(L, done) == 0 && !(wait > 0)) {
        dtr_multi_drive(m, 0);
        dtr_multi_collect(L, m, done);
    }
    if (wait > 0 && dtr_rawlen(L, done) == 0) { /* NaN is not > 0 */
        double end = dtr_mono() + (wait < 86400.0 ? wait : 86400.0);
        /* Until something finishes or the wait is over: a timer that
         * fires (a connect step) must not end the caller's wait early. */
        do {
            dtr_multi_drive(m, (end - dtr_mono()) * 1000.0);
            dtr_multi_collect(L, m, done);
        } while (dtr_rawlen(L, done) == 0 && m->running > 0 && dtr_mono() < end);
    }
    lua_pushinteger(L, m->running);
    return 2;
}

/* m:timeout() -> seconds until libcurl wants m:perform() again, or nil
 * when it has no timer (for driving from a foreign event loop). */
static int dtr_multi_timeout(lua_State *L)
{
    dtr_multi *m = dtr_check_multi(L);
    if (m->deadline < 0) {
        lua_pushnil(L);
    } else {
        double s = m->deadline - dtr_mono();
        lua_pushnumber(L, s > 0 ? s : 0);
    }
    return 1;
}

/* m:fds() -> array of {fd, read, write}: the sockets to wait on, every
 * one of them (no FD_SETSIZE limit). */
static int dtr_multi_fds(lua_State *L)
{
    dtr_multi *m = dtr_check_multi(L);
    int i;
    lua_createtable(L, m->nsocks, 0);
    for (i = 0; i < m->nsocks; i++) {
        lua_createtable(L, 0, 3);
        lua_pushinteger(L, (lua_Integer)m->socks[i].fd);
        lua_setfield(L, -2, "fd");
        lua_pushboolean(L, (m->socks[i].what & CURL_POLL_IN) != 0);
        lua_setfield(L, -2, "read");
        lua_pushboolean(L, (m->socks[i].what & CURL_POLL_OUT) != 0);
        lua_setfield(L, -2, "write");
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

/* m:in_flight() -> number of transfers not yet collected */
static int dtr_multi_in_flight(lua_State *L)
{
    dtr_multi *m = dtr_check_multi(L);
    lua_pushinteger(L, m->running);
    return 1;
}

static int dtr_multi_tostring(lua_State *L)
{
    dtr_multi *m = (dtr_multi *)luaL_checkudata(L, 1, DTR_MULTI_MT);
    if (m->multi == NULL)
        lua_pushliteral(L, "dingtalk.recall.multi (closed)");
    else
        lua_pushfstring(L, "dingtalk.recall.multi (%d in flight)", m->running);
    return 1;
}

static const luaL_Reg dtr_multi_methods[] = {
    {"add", dtr_multi_add},
    {"start", dtr_multi_start},
    {"start_batch", dtr_multi_start_batch},
    {"perform", dtr_multi_perform},
    {"drive", dtr_multi_drive_l},
    {"timeout", dtr_multi_timeout},
    {"fds", dtr_multi_fds},
    {"in_flight", dtr_multi_in_flight},
    {"close", dtr_multi_close},
    {NULL, NULL}};

static const luaL_Reg dtr_multi_functions[] = {
    {"multi", dtr_l_multi},
    {NULL, NULL}};

void dtr_multi_open(lua_State *L)
{
    int i;
    luaL_newmetatable(L, DTR_MULTI_MT);
    lua_newtable(L);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, dtr_multi_close);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, dtr_multi_close);
    lua_setfield(L, -2, "__close");
    lua_pushcfunction(L, dtr_multi_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushliteral(L, DTR_MULTI_MT);
    lua_setfield(L, -2, "__name");
    lua_getfield(L, -1, "__index");
    /* The methods share the module's upvalues: copies on top. */
    for (i = 0; i < DTR_NUPVALUES; i++)
        lua_pushvalue(L, -(DTR_NUPVALUES + 2));
    dtr_register_into(L, -(DTR_NUPVALUES + 1), dtr_multi_methods);
    lua_pop(L, DTR_NUPVALUES + 2);
    dtr_register(L, dtr_multi_functions);
}
