/*
 * dingtalk-recall: files on shared machines for the journal (dtr_files.c):
 * safe opens and checks, directory creation and fsync, the lock file, and
 * whole reads and writes.  Plain system calls, no Lua.
 */
#ifndef DTR_FILES_H
#define DTR_FILES_H

#include <stddef.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "dtr.h"

#define DTR_J_PATH 4096  /* bytes in a journal path, with its suffixes */
#define DTR_J_HEAD 128   /* bytes of the first line that go into an id */
#define DTR_J_ID (64 + DTR_J_HEAD)
#define DTR_J_TMP_TRIES 64

#ifndef S_ISVTX
#define S_ISVTX 01000
#endif

/* The failing operation of a journal call; why: set when the file or its
 * directory is unsafe to use (code ledger.unsafe) rather than failing. */
typedef struct dtr_jerr {
    const char *op;
    int errnum;
    const char *why;
} dtr_jerr;

DTR_HIDDEN_BEGIN

int dtr_j_fail(dtr_jerr *e, const char *op);

int dtr_j_unsafe(dtr_jerr *e, const char *op, const char *why);

/* Maps a failed open(O_NOFOLLOW) to an unsafe-file error when the path was
 * a symbolic link or a directory; otherwise a plain failure. */
int dtr_j_open_fail(dtr_jerr *e, const char *op);

/* Checks an open journal or lock file: a regular file owned by this user
 * with one link; group or other permission bits are removed (0600). */
int dtr_j_check_file(int fd, struct stat *st, const char *op, dtr_jerr *e);

/* Checks the directory holding path: returns 0, -1 (e set) or -2 when it
 * does not exist. */
int dtr_j_check_dir(const char *path, dtr_jerr *e);

int dtr_j_write_all(int fd, const char *s, size_t n);

int dtr_j_pread_all(int fd, char *buf, size_t n, off_t at, size_t *got);

/* Creates the directories above path, each 0700 (existing ones are kept). */
int dtr_j_mkdirs(const char *path, dtr_jerr *e);

/* fsyncs the directory holding path, so a new or renamed entry lasts. */
int dtr_j_sync_dir(const char *path, dtr_jerr *e);

/* Opens and locks <path>.lock.  Returns its descriptor, -1 on failure, or
 * -2 when !create and the directory does not exist. */
int dtr_j_lock(const char *path, int exclusive, int create, dtr_jerr *e);

void dtr_j_unlock(int lock);

/* Writes the id of the open journal: device, inode and its first line. */
size_t dtr_j_id(int fd, const struct stat *st, char *out);

DTR_HIDDEN_END

#endif
