/*
 * dingtalk-recall: a minimal stand-alone Lua 5.4 host for the sanitizer
 * runs (`make asan` builds it as build/asan/lua).
 *
 * It behaves like `lua5.4 [options] [script [args]]` for what the test
 * suite needs: options -e STAT, -l NAME, -v, -E, -W, -i (ignored), -- and
 * -, LUA_INIT_5_4 / LUA_INIT, the global `arg` table (script at arg[0],
 * its arguments at 1..n, the interpreter and options at negative indices),
 * the arguments as the chunk's `...`, a traceback on error and the exit
 * code 1.  It exists so that AddressSanitizer and UBSan are linked into
 * the executable: nothing is LD_PRELOADed, so the children the specs
 * start (nginx, redis, curl, sh) do not inherit a sanitizer runtime, and
 * children that run our Lua code use this host again.
 *
 * Build: clang -fsanitize=address,undefined fuzz/lua_host.c -llua5.4
 * (or -I/usr/include/lua5.1 ... -llua5.1: `make asan ASAN_LUA_VERSION=5.1`,
 * a lua5.1 look-alike, for the 5.1 GC's timing).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua.h"
#include "lauxlib.h"
#include "lualib.h"

#if LUA_VERSION_NUM < 502
#define LUA_OK 0
#define luaL_len(L, i) ((lua_Integer)lua_objlen((L), (i)))
#define luaL_checkversion(L) ((void)(L))
/* luaL_traceback arrived in 5.2: debug.traceback does the same. */
static void luaL_traceback(lua_State *L, lua_State *L1, const char *msg, int level)
{
    (void)L1;
    lua_getglobal(L, "debug");
    lua_getfield(L, -1, "traceback");
    lua_remove(L, -2);
    lua_pushstring(L, msg);
    lua_pushinteger(L, level + 1);
    lua_call(L, 2, 1);
}
#endif

static const char *dtr_host_progname = "lua";

/* lua_close() unloads every C module (dlclose) before LeakSanitizer runs
 * at exit, which leaves a leak's allocation stack as "<unknown module>".
 * This definition takes the place of libc's for liblua (an executable's
 * symbols come first), so modules stay mapped and reports stay readable.
 * Nothing else changes: the process is about to end anyway. */
int dlclose(void *handle);
int dlclose(void *handle)
{
    (void)handle;
    return 0;
}

/* The state, reachable from a global so that LeakSanitizer sees every
 * block Lua holds as reachable when a script ends with os.exit(). */
static lua_State *dtr_host_state;

static void dtr_host_message(const char *msg)
{
    fprintf(stderr, "%s: %s\n", dtr_host_progname, msg);
    fflush(stderr);
}

static int dtr_host_report(lua_State *L, int status)
{
    if (status != LUA_OK) {
        const char *msg = lua_tostring(L, -1);
        dtr_host_message(msg != NULL ? msg : "(error object is not a string)");
        lua_pop(L, 1);
    }
    return status;
}

static int dtr_host_msghandler(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    if (msg == NULL) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
            return 1;
        msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    luaL_traceback(L, L, msg, 1);
    return 1;
}

static int dtr_host_docall(lua_State *L, int narg, int nres)
{
    int status;
    int base = lua_gettop(L) - narg;
    lua_pushcfunction(L, dtr_host_msghandler);
    lua_insert(L, base);
    status = lua_pcall(L, narg, nres, base);
    lua_remove(L, base);
    return status;
}

static int dtr_host_dochunk(lua_State *L, int status)
{
    if (status == LUA_OK)
        status = dtr_host_docall(L, 0, 0);
    return dtr_host_report(L, status);
}

static int dtr_host_dostring(lua_State *L, const char *s, const char *name)
{
    return dtr_host_dochunk(L, luaL_loadbuffer(L, s, strlen(s), name));
}

/* require(name), the result stored in the global `name` (as lua -l). */
static int dtr_host_dolibrary(lua_State *L, const char *name)
{
    int status;
    lua_getglobal(L, "require");
    lua_pushstring(L, name);
    status = dtr_host_docall(L, 1, 1);
    if (status == LUA_OK)
        lua_setglobal(L, name);
    return dtr_host_report(L, status);
}

/* arg: script (or the last option) at 0, the interpreter at -n. */
static void dtr_host_createargtable(lua_State *L, char **argv, int argc, int script)
{
    int i, narg;
    if (script == argc)
        script = 0; /* no script: the interpreter goes at 0 */
    narg = argc - (script + 1);
    lua_createtable(L, narg, script + 1);
    for (i = 0; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i - script);
    }
    lua_setglobal(L, "arg");
}

static int dtr_host_pushargs(lua_State *L)
{
    int i, n;
    lua_getglobal(L, "arg");
    if (lua_type(L, -1) != LUA_TTABLE)
        luaL_error(L, "'arg' is not a table");
    n = (int)luaL_len(L, -1);
    luaL_checkstack(L, n + 3, "too many arguments to script");
    for (i = 1; i <= n; i++)
        lua_rawgeti(L, -i, i);
    lua_remove(L, -i);
    return n;
}

static int dtr_host_handle_script(lua_State *L, char **argv)
{
    int status;
    const char *fname = argv[0];
    if (strcmp(fname, "-") == 0 && strcmp(argv[-1], "--") != 0)
        fname = NULL; /* stdin */
    status = luaL_loadfile(L, fname);
    if (status == LUA_OK) {
        int n = dtr_host_pushargs(L);
        status = dtr_host_docall(L, n, LUA_MULTRET);
    }
    return dtr_host_report(L, status);
}

#define DTR_HAS_ERROR 1
#define DTR_HAS_V 4
#define DTR_HAS_E 8
#define DTR_HAS_EXEC 16

/* Scans the options; returns the flags, *first the script's index (argc
 * when none), or DTR_HAS_ERROR with *first at the bad option. */
static int dtr_host_collectargs(char **argv, int *first)
{
    int flags = 0, i;
    for (i = 1; argv[i] != NULL; i++) {
        *first = i;
        if (argv[i][0] != '-')
            return flags;
        switch (argv[i][1]) {
        case '-':
            if (argv[i][2] != '\0')
                return DTR_HAS_ERROR;
            *first = i + 1;
            return flags;
        case '\0':
            return flags;
        case 'E':
            if (argv[i][2] != '\0')
                return DTR_HAS_ERROR;
            flags |= DTR_HAS_E;
            break;
        case 'W':
        case 'i':
            if (argv[i][2] != '\0')
                return DTR_HAS_ERROR;
            break;
        case 'v':
            if (argv[i][2] != '\0')
                return DTR_HAS_ERROR;
            flags |= DTR_HAS_V;
            break;
        case 'e':
            flags |= DTR_HAS_EXEC;
            /* fall through */
        case 'l':
            if (argv[i][2] == '\0') {
                i++;
                if (argv[i] == NULL || argv[i][0] == '-')
                    return DTR_HAS_ERROR;
            }
            break;
        default:
            return DTR_HAS_ERROR;
        }
    }
    *first = i;
    return flags;
}

static int dtr_host_runargs(lua_State *L, char **argv, int n)
{
    int i;
    for (i = 1; i < n; i++) {
        int opt = (unsigned char)argv[i][1];
        if (opt == 'e' || opt == 'l') {
            const char *extra = argv[i] + 2;
            int status;
            if (*extra == '\0')
                extra = argv[++i];
            status = opt == 'e' ? dtr_host_dostring(L, extra, "=(command line)")
                                : dtr_host_dolibrary(L, extra);
            if (status != LUA_OK)
                return 0;
        } else if (opt == 'W') {
#if LUA_VERSION_NUM >= 504
            lua_warning(L, "@on", 0);
#endif
        }
    }
    return 1;
}

#define DTR_HOST_INIT_VAR "LUA_INIT"
#if LUA_VERSION_NUM >= 502
#define DTR_HOST_INIT_VERSION DTR_HOST_INIT_VAR "_" LUA_VERSION_MAJOR "_" LUA_VERSION_MINOR
#else
#define DTR_HOST_INIT_VERSION DTR_HOST_INIT_VAR /* lua5.1 reads LUA_INIT only */
#endif

static int dtr_host_init(lua_State *L)
{
    const char *name = "=" DTR_HOST_INIT_VERSION;
    const char *init = getenv(name + 1);
    if (init == NULL) {
        name = "=" DTR_HOST_INIT_VAR;
        init = getenv(name + 1);
    }
    if (init == NULL)
        return LUA_OK;
    if (init[0] == '@')
        return dtr_host_dochunk(L, luaL_loadfile(L, init + 1));
    return dtr_host_dostring(L, init, name);
}

static int dtr_host_pmain(lua_State *L)
{
    int argc = (int)lua_tointeger(L, 1);
    char **argv = (char **)lua_touserdata(L, 2);
    int script = 0;
    int flags = dtr_host_collectargs(argv, &script);
    luaL_checkversion(L);
    if (flags == DTR_HAS_ERROR) {
        fprintf(stderr, "%s: unrecognized option '%s'\nusage: %s [-e stat] [-l name] [-v] [-E] [-W] "
                        "[script [args]]\n",
                dtr_host_progname, argv[script], dtr_host_progname);
        return 0;
    }
    if (flags & DTR_HAS_V)
        printf("%s (dingtalk-recall sanitizer host)\n", LUA_RELEASE);
    if (flags & DTR_HAS_E) {
        lua_pushboolean(L, 1);
        lua_setfield(L, LUA_REGISTRYINDEX, "LUA_NOENV");
    }
    luaL_openlibs(L);
    dtr_host_createargtable(L, argv, argc, script);
#ifdef LUA_GCGEN
    lua_gc(L, LUA_GCGEN, 0, 0);
#endif
    if (!(flags & DTR_HAS_E) && dtr_host_init(L) != LUA_OK)
        return 0;
    if (!dtr_host_runargs(L, argv, script))
        return 0;
    if (script < argc) {
        if (dtr_host_handle_script(L, argv + script) != LUA_OK)
            return 0;
    } else if (!(flags & (DTR_HAS_EXEC | DTR_HAS_V))) {
        /* No script and nothing to run: the script is stdin. */
        if (dtr_host_dochunk(L, luaL_loadfile(L, NULL)) != LUA_OK)
            return 0;
    }
    lua_pushboolean(L, 1);
    return 1;
}

int main(int argc, char **argv)
{
    int status, result;
    lua_State *L = luaL_newstate();
    if (argv[0] != NULL && argv[0][0] != '\0')
        dtr_host_progname = argv[0];
    if (L == NULL) {
        dtr_host_message("cannot create state: not enough memory");
        return EXIT_FAILURE;
    }
    dtr_host_state = L;
    lua_pushcfunction(L, dtr_host_pmain);
    lua_pushinteger(L, argc);
    lua_pushlightuserdata(L, argv);
    status = lua_pcall(L, 2, 1, 0);
    result = lua_toboolean(L, -1);
    dtr_host_report(L, status);
    lua_close(L);
    dtr_host_state = NULL;
    return (result && status == LUA_OK) ? EXIT_SUCCESS : EXIT_FAILURE;
}
