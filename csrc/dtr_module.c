/*
 * dingtalk-recall: the entry of dingtalk.recall.core, the protocol
 * without I/O: validation, plans, request building, response parsing,
 * the error object and the one catalogue of codes, callback signatures.
 * It links libcrypto (signatures), never libcurl: the libcurl transport
 * is dingtalk.recall.curl, the ledger's journal dingtalk.recall.journal.
 */
#include "dtr.h"
#include "dtr_error.h"
#include "dtr_codes.h"
#include "dtr_text.h"
#include "dtr_encode.h"
#include "dtr_decode.h"
#include "dtr_plan.h"
#include "dtr_payload.h"
#include "dtr_sign.h"
#include "dtr_http.h"

int luaopen_dingtalk_recall_core(lua_State *L)
{
    lua_newtable(L); /* the module */
    dtr_push_upvalues(L, 1);
    dtr_error_open(L);
    dtr_codes_open(L);
    dtr_encode_open(L);
    dtr_decode_open(L);
    dtr_plan_open(L);
    dtr_payload_open(L);
    dtr_sign_open(L);
    dtr_http_open(L);
    lua_pop(L, DTR_NUPVALUES);

    lua_pushliteral(L, DTR_VERSION);
    lua_setfield(L, -2, "_VERSION");
    lua_pushinteger(L, DTR_MAX_KEYS);
    lua_setfield(L, -2, "MAX_KEYS");
    lua_pushliteral(L, DTR_DEFAULT_ENDPOINT);
    lua_setfield(L, -2, "DEFAULT_ENDPOINT");
    return 1;
}
