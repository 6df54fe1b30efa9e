/*
 * dingtalk-recall: the one catalogue of codes.
 */
#include <string.h>

#include "dtr.h"
#include "dtr_codes.h"

/* Per-key failure reasons. */
typedef struct dtr_reason_info {
    const char *reason;
    int already_recalled;
    const char *hint;
} dtr_reason_info;

/*
 * The one catalogue of codes: the spec's error table, the gateway codes
 * from the facts file, and every code this library makes, in C or in Lua.
 * core.codes is generated from it.  status: the HTTP status the server
 * answers with (for callback.* codes: the status to answer a refused
 * callback with), 0 for codes that no server sends.  Flags:
 *   RETRY    worth retrying after a wait
 *   AMBIG    the server may have done the work (the answer was lost)
 *   THROTTLE a QPS limit: wait about 1 s (retry_after)
 *   FATAL    no later batch of the run can succeed
 *   AUTH     the access token is bad: fetch a new one once
 */
#define R DTR_CODE_RETRY
#define A DTR_CODE_AMBIG
#define T DTR_CODE_THROTTLE
#define F DTR_CODE_FATAL
#define U DTR_CODE_AUTH
static const dtr_code_info dtr_codes[] = {
    /* The spec's table. */
    {"invalid.openConversationId", 400, 0,
     "Invalid openConversationId. Verify that the openConversationId is correct."},
    {"invalidParameter.robotCode", 400, 0, "Invalid robotCode. Verify that the bot is in the group."},
    {"invalidParameter.processQueryKeys.overMax", 400, 0,
     "processQueryKeys exceeds the maximum limit of 20. Split processQueryKeys into multiple arrays of "
     "no more than 20 entries each and call this API in batches."},
    {"not.allowed.robotCode", 400, 0, "Unauthorized robotCode."},
    {"invalidParameter.param.invalid", 400, 0, "Invalid parameter. Verify that no parameter is empty."},
    {"invalidParameter.robotCode.notExsit", 400, 0,
     "The bot does not exist. Verify that the bot corresponding to the robotCode is installed in the chat."},
    {"miss.chatbotId", 400, 0, "Missing robotCode."},
    {"invalidParameter.processQueryKey.missing", 400, 0, "Missing processQueryKey."},
    {"invalid.processQueryKey", 400, 0, "Invalid processQueryKey. Verify that the processQueryKey is correct."},
    {"miss.openConversationId", 400, 0, "Missing openConversationId."},
    {"bot.stopped", 400, 0, "The group bot has been disabled."},
    {"template.not.existed", 400, 0, "The bot template does not exist."},
    {"template.stopped", 400, 0, "The bot template has been disabled."},
    {"system.error", 500, R, "Unknown system error."},
    /* Gateway answers (facts file). */
    {"Forbidden.AccessDenied.QpsLimitForAppkeyAndApi", 403, R | T,
     "The app exceeded its QPS limit for this API (20/s on standard plans). Wait about 1 s and retry; "
     "lower the client's qps."},
    {"Forbidden.AccessDenied.QpsLimitForApi", 403, R | T,
     "The API's global QPS limit was hit. Wait about 1 s and retry."},
    {"Forbidden.AccessDenied.ApiCountLimitForOrg", 403, F,
     "The organisation's monthly call quota is used up; retrying will not help."},
    {"Forbidden.AccessDenied.AccessTokenPermissionDenied", 403, F,
     "The token's app lacks permission qyapi_robot_sendmsg or does not own this robot."},
    {"AuthenticationFailed.MissingParameter", 400, F,
     "No access token was sent. Set access_token, or app_key and app_secret."},
    {"InvalidAuthentication", 400, U,
     "The access token is invalid or expired. Fetch a new one (tokens live 7200 s)."},
    {"invalidClientIdOrSecret", 400, F, "The app key or app secret is wrong."},
    /* Client-side codes (C). */
    {"invalid.endpoint", 0, F, "Use https://host[:port]; plain http only reaches loopback addresses."},
    {"transport.timeout", 0, R | A, "The request timed out. Check the network or raise timeout."},
    {"transport.connect", 0, R, "Could not connect. Check the endpoint, DNS and firewall."},
    {"transport.tls", 0, F,
     "TLS verification failed. Check the server certificate, or pass ca_file for a private CA."},
    {"transport.io", 0, R | A,
     "The connection failed mid-request (reset or truncated answer). Safe to retry."},
    {"response.invalid", 0, A,
     "The answer was not the documented JSON; a proxy or gateway may be in the way."},
    {"response.too_large", 0, A, "The answer exceeded max_response_bytes and was dropped."},
    {"response.redirect", 0, F,
     "The server answered with a redirect; redirects are never followed so the token stays put. "
     "Check the endpoint."},
    {"response.missing_key", 0, 0, "The server answered neither success nor failure for this key."},
    {"callback.no_secret", 500, 0, "No app secret was given: pass the bot's AppSecret to check callbacks."},
    {"callback.bad_timestamp", 401, 0,
     "The timestamp header is not a decimal count of milliseconds. Refuse the request."},
    {"callback.expired", 401, 0, "The timestamp is over 1 hour from now: a replay, or a clock off (check NTP)."},
    {"callback.bad_signature", 401, 0, "The sign does not match: refuse the request, or check the AppSecret."},
    {"ledger.io", 0, 0,
     "Check that the ledger's directory exists, is writable by this user and that the disk is not full."},
    /* Codes made in Lua. */
    {"callback.replayed", 401, 0, "This signed callback was already accepted once: a replay. Refuse it."},
    {"callback.too_large", 413, 0, "The callback body exceeds max_body. Refuse it."},
    {"callback.bad_body", 400, 0, "The callback body is not a JSON object. Refuse it."},
    {"callback.store", 500, 0, "The replay store failed; the callback cannot be checked for replays."},
    {"config.invalid", 0, F, "Fix the option named in the message (see the configuration docs)."},
    {"config.credentials", 0, F,
     "Set DINGTALK_ACCESS_TOKEN, or DINGTALK_APP_KEY and DINGTALK_APP_SECRET (or the config file's keys)."},
    {"config.insecure", 0, F,
     "The config file holds secrets and is readable by others: chmod 600 it, or move the secrets to the "
     "environment."},
    {"config.unreadable", 0, F, "The config file cannot be read: check its path and permissions."},
    {"config.ledger", 0, F, "The ledger module cannot be loaded or opened: check the ledger settings."},
    {"ledger.invalid", 0, 0, "Check the ledger's arguments (path or URL, keys, selection)."},
    {"ledger.not_found", 0, 0, "No ledger entry has this key."},
    {"ledger.redis", 0, R, "The Redis server failed or is unreachable; check its URL and that it runs."},
    {"ledger.unsafe", 0, 0,
     "The ledger file or its folder is unsafe (a symlink, not a regular file, not yours, or a folder others "
     "can write without the sticky bit): keep the ledger in a private folder."},
    {"ledger.elsewhere", 0, 0,
     "Another host of a shared ledger claimed keys of this batch first: it recalls them (report.elsewhere)."},
    {"redis.invalid", 0, 0, "Check the redis:// URL (host, port, database, user and password)."},
    {"redis.reply", 0, 0, "Redis answered with an error; see the message (and the server's log)."},
    {"redis.io", 0, R, "Redis cannot be reached or timed out; check that it runs and the URL's host and port."},
    {"redis.auth", 0, 0, "Redis refused AUTH or SELECT: check the URL's user, password and database."},
    {"token.provider", 0, R, "The access-token provider failed; check its credentials and endpoint."},
    {"token.lifetime", 0, 0,
     "The token endpoint gave a lifetime that is not a finite number of at least 60 s; check the endpoint "
     "(a proxy in the way?)."},
    {"token.refresh_limit", 0, 0,
     "Over 6 token requests in a minute: the endpoint keeps handing out tokens that do not work. Check the "
     "credentials and the endpoint, then retry after a minute."},
    {"async.cancelled", 0, 0, "The task was cancelled before it finished."},
    {"async.failed", 0, 0, "The task raised an error; this is a bug in the task or a callback."},
    {NULL, 0, 0, NULL}};
#undef R
#undef A
#undef T
#undef F
#undef U

/* Per-key failure reasons in failedResult (the API does not document
 * their text; these are the simulator's). */
static const dtr_reason_info dtr_reasons[] = {
    {"ALREADY_RECALLED", 1, "The message was recalled before; it counts as recalled."},
    {"PROCESS_QUERY_KEY_NOT_EXIST", 0, "No message has this processQueryKey: check the key."},
    {"CONVERSATION_OR_ROBOT_MISMATCH", 0,
     "The key belongs to another conversation or robot: check openConversationId and robotCode."},
    {"RECALL_TIME_EXPIRED", 0, "The message is too old to be recalled (about 24 hours)."},
    {"SYSTEM_ERROR", 0, "The server failed for this key; a later retry may work."},
    {NULL, 0, NULL}};

const dtr_code_info *dtr_code_lookup(const char *code)
{
    const dtr_code_info *c;
    for (c = dtr_codes; c->code != NULL; c++)
        if (strcmp(c->code, code) == 0)
            return c;
    return NULL;
}

int dtr_retryable(const char *code, int status)
{
    const dtr_code_info *c = dtr_code_lookup(code);
    if (strcmp(code, "response.too_large") == 0)
        return 0;
    if (c != NULL && (c->flags & DTR_CODE_RETRY))
        return 1;
    return status >= 500 || status == 429;
}

/* Pushes core.codes: code -> {status, retryable, ambiguous, throttle,
 * fatal, auth, hint}, from the one table above. */
static void dtr_push_codes(lua_State *L)
{
    const dtr_code_info *c;
    lua_newtable(L);
    for (c = dtr_codes; c->code != NULL; c++) {
        lua_createtable(L, 0, 7);
        if (c->status > 0) {
            lua_pushinteger(L, c->status);
            lua_setfield(L, -2, "status");
        }
        lua_pushboolean(L, (c->flags & DTR_CODE_RETRY) != 0);
        lua_setfield(L, -2, "retryable");
        lua_pushboolean(L, (c->flags & DTR_CODE_AMBIG) != 0);
        lua_setfield(L, -2, "ambiguous");
        lua_pushboolean(L, (c->flags & DTR_CODE_THROTTLE) != 0);
        lua_setfield(L, -2, "throttle");
        lua_pushboolean(L, (c->flags & DTR_CODE_FATAL) != 0);
        lua_setfield(L, -2, "fatal");
        lua_pushboolean(L, (c->flags & DTR_CODE_AUTH) != 0);
        lua_setfield(L, -2, "auth");
        lua_pushstring(L, c->hint);
        lua_setfield(L, -2, "hint");
        lua_setfield(L, -2, c->code);
    }
}

/* Pushes core.reasons: reason -> {already_recalled, hint}. */
static void dtr_push_reasons(lua_State *L)
{
    const dtr_reason_info *r;
    lua_newtable(L);
    for (r = dtr_reasons; r->reason != NULL; r++) {
        lua_createtable(L, 0, 2);
        lua_pushboolean(L, r->already_recalled);
        lua_setfield(L, -2, "already_recalled");
        lua_pushstring(L, r->hint);
        lua_setfield(L, -2, "hint");
        lua_setfield(L, -2, r->reason);
    }
}

void dtr_codes_open(lua_State *L)
{
    int mod = lua_gettop(L) - DTR_NUPVALUES;
    dtr_push_codes(L);
    lua_setfield(L, mod, "codes");
    dtr_push_reasons(L);
    lua_setfield(L, mod, "reasons");
}
