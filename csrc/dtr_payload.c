/*
 * dingtalk-recall: a recall batch's request bytes as one string (sans
 * I/O), for a transport that writes requests itself (cosockets).
 *
 *   core.batch_payload(plan, keys, target, token, head, tail) -> bytes | nil, err
 *       head .. #body .. tail .. body, where body is the JSON that
 *       core.build_batch(plan, i, target, token) writes for the batch
 *       whose keys are `keys` (core.batch's array of it), with the same
 *       argument and token checks (dtr_plan_batch_args).  head and tail
 *       are the request line, Host and the header lines that the
 *       transport put together and checked once for the target and token
 *       from a built request (head ends "Content-Length: ", tail starts
 *       "\r\n"): one string per batch, no built table.
 */
#include "dtr.h"
#include "dtr_error.h"
#include "dtr_text.h"
#include "dtr_encode.h"
#include "dtr_plan.h"
#include "dtr_payload.h"

/* core.batch_payload(plan, keys, target, token, head, tail) -> bytes | nil, err */
static int dtr_l_batch_payload(lua_State *L)
{
    dtr_str cid, robot, keys[DTR_MAX_KEYS];
    dtr_opts o;
    dtr_err e;
    dtr_field f[3];
    size_t hn, tn;
    const char *head, *tail;
    int nkeys;
    lua_settop(L, 6);
    head = luaL_checklstring(L, 5, &hn);
    tail = luaL_checklstring(L, 6, &tn);
    nkeys = dtr_plan_batch_args(L, 1, 1, &cid, &robot, keys, &o, &e);
    if (nkeys == 0)
        return dtr_push_err(L, &e);
    dtr_recall_fields(f, &cid, &robot, keys, nkeys);
    dtr_push_json_framed(L, f, 3, head, hn, tail, tn);
    return 1;
}

static const luaL_Reg dtr_payload_functions[] = {
    {"batch_payload", dtr_l_batch_payload},
    {NULL, NULL}};

void dtr_payload_open(lua_State *L)
{
    dtr_register(L, dtr_payload_functions);
}
