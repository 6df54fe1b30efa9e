/*
 * dingtalk-recall: the journal's lines, gathered in C (dtr_jline.c), so
 * that a state change of thousands of keys is written with no Lua string
 * of its own.
 */
#ifndef DTR_JLINE_H
#define DTR_JLINE_H

#include "dtr.h"

DTR_HIDDEN_BEGIN

/* The lines at idx: one string, or an array whose items are strings (a
 * line each) or key lines {head, parts, tail} (head .. the keys of parts,
 * an array of arrays of strings, as JSON strings joined by "," .. tail).
 * No line may hold a newline.  dtr_jline_size checks them (raising, with
 * `what` naming whose lines they are when not NULL, else as an argument
 * error) and returns the bytes they take, each line ended by "\n", and in
 * *esc whether a key needs escaping; dtr_jline_fill(..., esc) then writes
 * exactly that many bytes to out and never raises (nothing may run between
 * the two calls). */
size_t dtr_jline_size(lua_State *L, int idx, const char *what, int *esc);
void dtr_jline_fill(lua_State *L, int idx, char *out, int esc);

/* dtr_jline_check checks the lines at idx as dtr_jline_size does but reads
 * no key's bytes (only their types), and answers 0 when there is no line
 * at all (an empty array), else 1; dtr_jline_write(..., fd, &n) then
 * writes them to fd in pieces (write(2) per 32 KB), never raises, and
 * answers 0 with n the bytes written, or -1 (errno set; n bytes went out
 * before the failure, a torn tail the caller cuts off).  Nothing may run
 * between the two calls. */
int dtr_jline_check(lua_State *L, int idx, const char *what);
int dtr_jline_write(lua_State *L, int idx, int fd, size_t *n);

/* Adds journal.keys_line to the module table below the upvalues. */
void dtr_jline_open(lua_State *L);

DTR_HIDDEN_END

#endif
