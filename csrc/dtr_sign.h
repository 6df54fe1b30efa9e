/*
 * dingtalk-recall: callback signatures (dtr_sign.c, libcrypto).
 */
#ifndef DTR_SIGN_H
#define DTR_SIGN_H

#include "dtr.h"

DTR_HIDDEN_BEGIN

/* Adds verify_callback, sign_callback. */
void dtr_sign_open(lua_State *L);

DTR_HIDDEN_END

#endif
