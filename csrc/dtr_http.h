/*
 * dingtalk-recall: the head of an HTTP/1.x answer, read from the bytes
 * received so far (dtr_http.c).
 */
#ifndef DTR_HTTP_H
#define DTR_HTTP_H

#include "dtr.h"

DTR_HIDDEN_BEGIN

/* The most bytes of one head line, and of a head's header lines together
 * (as libcurl's CURL_MAX_HTTP_HEADER). */
#define DTR_HTTP_MAX_HEAD 102400

/* The most bytes of a chunk's size line (its extension included). */
#define DTR_HTTP_CHUNK_LINE 4096

/* Adds http_head, http_chunks and HTTP_MAX_HEAD. */
void dtr_http_open(lua_State *L);

DTR_HIDDEN_END

#endif
