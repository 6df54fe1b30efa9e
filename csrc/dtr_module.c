/*
 * dingtalk-recall: the module entry of dingtalk.recall.core.
 *
 * The core is one translation unit made of one file per concern:
 *   dtr_encode.c  validation and encoding of requests (sans I/O)
 *   dtr_decode.c  response decoding and the error object (sans I/O)
 *   dtr_curl.c    the libcurl transport (easy and multi)
 * so that every symbol but luaopen_dingtalk_recall_core stays static.
 */
#include "dtr.h"

#include "dtr_encode.c"
#include "dtr_decode.c"
#include "dtr_plan.c"
#include "dtr_curl.c"
#include "dtr_sign.c"
#include "dtr_journal.c"

static const luaL_Reg dtr_functions[] = {
    {"plan", dtr_l_plan},
    {"target", dtr_l_target},
    {"build_batch", dtr_l_build_batch},
    {"validate", dtr_l_validate},
    {"build", dtr_l_build},
    {"parse", dtr_l_parse},
    {"build_send", dtr_l_build_send},
    {"parse_send", dtr_l_parse_send},
    {"build_token", dtr_l_build_token},
    {"parse_token", dtr_l_parse_token},
    {"recall", dtr_l_recall},
    {"perform", dtr_l_perform},
    {"multi", dtr_l_multi},
    {"error", dtr_l_error},
    {"is_error", dtr_l_is_error},
    {"json_string", dtr_l_json_string},
    {"curl_version", dtr_l_curl_version},
    {"verify_callback", dtr_l_verify_callback},
    {"sign_callback", dtr_l_sign_callback},
    {"now", dtr_l_now},
    {"sleep", dtr_l_sleep},
    {"journal_append", dtr_l_journal_append},
    {"journal_read", dtr_l_journal_read},
    {"journal_compact", dtr_l_journal_compact},
    {NULL, NULL}};

/* Pushes a private lua-cjson instance's decode and encode. */
static void dtr_push_cjson(lua_State *L)
{
    lua_getglobal(L, "require");
    lua_pushliteral(L, "cjson");
    if (lua_pcall(L, 1, 1, 0) != 0) {
        lua_pop(L, 1);
        luaL_error(L, "dingtalk.recall.core needs lua-cjson (module 'cjson')");
    }
    /* A fresh instance: the user's cjson settings do not reach us. */
    lua_getfield(L, -1, "new");
    if (lua_isfunction(L, -1)) {
        lua_call(L, 0, 1);
        lua_remove(L, -2);
    } else {
        lua_pop(L, 1);
    }
    lua_getfield(L, -1, "decode");
    lua_getfield(L, -2, "encode");
    lua_remove(L, -3);
}

int luaopen_dingtalk_recall_core(lua_State *L)
{
    int i;
    lua_newtable(L); /* the module */

    /* Upvalues, in DTR_UV_* order. */
    dtr_push_cjson(L);

    luaL_newmetatable(L, "dingtalk.recall.error");
    lua_pushcfunction(L, dtr_l_error_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushliteral(L, "dingtalk.recall.error");
    lua_setfield(L, -2, "__name");

    luaL_newmetatable(L, "dingtalk.recall.request");
    lua_pushcfunction(L, dtr_l_request_tostring);
    lua_setfield(L, -2, "__tostring");

    dtr_plan_register(L);
    dtr_curl_register(L);
    dtr_push_session(L);

    /* The module's functions and the multi's methods share them. */
    luaL_getmetatable(L, DTR_MULTI_MT);
    lua_getfield(L, -1, "__index");
    for (i = 0; i < DTR_NUPVALUES; i++)
        lua_pushvalue(L, -(DTR_NUPVALUES + 2));
    dtr_setfuncs(L, dtr_multi_methods, DTR_NUPVALUES);
    lua_pop(L, 2);

    dtr_setfuncs(L, dtr_functions, DTR_NUPVALUES);

    dtr_push_codes(L);
    lua_setfield(L, -2, "codes");
    dtr_push_reasons(L);
    lua_setfield(L, -2, "reasons");
    lua_pushliteral(L, DTR_VERSION);
    lua_setfield(L, -2, "_VERSION");
    lua_pushinteger(L, DTR_MAX_KEYS);
    lua_setfield(L, -2, "MAX_KEYS");
    lua_pushliteral(L, DTR_DEFAULT_ENDPOINT);
    lua_setfield(L, -2, "DEFAULT_ENDPOINT");
    return 1;
}
