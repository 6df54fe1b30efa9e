/*
 * dingtalk-recall: the libcurl transport, dingtalk.recall.curl: the
 * module's entry and its blocking session (dtr_curl.c: perform, recall);
 * transfers in dtr_xfer.c, the multi handle in dtr_multi.c, the clock in
 * dtr_clock.c.  The entry, luaopen_dingtalk_recall_curl, is declared in
 * dtr.h (the only exported symbols).
 */
#ifndef DTR_CURL_H
#define DTR_CURL_H

#include "dtr.h"

#endif
