/*
 * dingtalk-recall: files on shared machines for the journal (see
 * dtr_files.h and the rules at the top of dtr_journal.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "dtr_files.h"

int dtr_j_fail(dtr_jerr *e, const char *op)
{
    e->op = op;
    e->errnum = errno;
    e->why = NULL;
    return -1;
}

int dtr_j_unsafe(dtr_jerr *e, const char *op, const char *why)
{
    e->op = op;
    e->errnum = EPERM;
    e->why = why;
    return -1;
}

/* Maps a failed open(O_NOFOLLOW) to an unsafe-file error when the path was
 * a symbolic link or a directory; otherwise a plain failure. */
int dtr_j_open_fail(dtr_jerr *e, const char *op)
{
    if (errno == ELOOP)
        return dtr_j_unsafe(e, op, "it is a symbolic link (refused, never followed)");
    if (errno == EISDIR)
        return dtr_j_unsafe(e, op, "it is a directory, not a regular file");
    return dtr_j_fail(e, op);
}

/* Checks an open journal or lock file: a regular file owned by this user
 * with one link; group or other permission bits are removed (0600). */
int dtr_j_check_file(int fd, struct stat *st, const char *op, dtr_jerr *e)
{
    if (fstat(fd, st) != 0)
        return dtr_j_fail(e, "fstat");
    if (!S_ISREG(st->st_mode))
        return dtr_j_unsafe(e, op, "it is not a regular file");
    if (st->st_uid != geteuid())
        return dtr_j_unsafe(e, op, "it is owned by another user");
    if (st->st_nlink > 1)
        return dtr_j_unsafe(e, op, "it has other hard links");
    if ((st->st_mode & 077) != 0) {
        if (fchmod(fd, 0600) != 0)
            return dtr_j_fail(e, "fchmod 0600");
        st->st_mode &= ~(mode_t)077;
    }
    return 0;
}

/* Writes the directory holding path into dir (DTR_J_PATH bytes): "." for a
 * bare name, "/" for a name at the root. */
static void dtr_j_dirname(char dir[DTR_J_PATH], const char *path)
{
    char *p;
    snprintf(dir, DTR_J_PATH, "%s", path);
    p = strrchr(dir, '/');
    if (p == NULL)
        snprintf(dir, DTR_J_PATH, ".");
    else if (p == dir)
        dir[1] = '\0';
    else
        *p = '\0';
}

/* Checks the directory holding path: returns 0, -1 (e set) or -2 when it
 * does not exist. */
int dtr_j_check_dir(const char *path, dtr_jerr *e)
{
    char dir[DTR_J_PATH];
    struct stat st;
    dtr_j_dirname(dir, path);
    if (stat(dir, &st) != 0) {
        if (errno == ENOENT)
            return -2;
        return dtr_j_fail(e, "stat directory");
    }
    if (!S_ISDIR(st.st_mode)) {
        errno = ENOTDIR;
        return dtr_j_fail(e, "open directory");
    }
    if ((st.st_mode & S_IWOTH) != 0 && !((st.st_mode & S_ISVTX) != 0 && st.st_uid == geteuid()))
        return dtr_j_unsafe(e, "directory",
                            "its directory is writable by others (allowed only when sticky and owned by this user)");
    return 0;
}

int dtr_j_write_all(int fd, const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, s, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

int dtr_j_pread_all(int fd, char *buf, size_t n, off_t at, size_t *got)
{
    size_t done = 0;
    while (done < n) {
        ssize_t r = pread(fd, buf + done, n - done, at + (off_t)done);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (r == 0)
            break;
        done += (size_t)r;
    }
    *got = done;
    return 0;
}

/* Creates the directories above path, each 0700 (existing ones are kept). */
int dtr_j_mkdirs(const char *path, dtr_jerr *e)
{
    char dir[DTR_J_PATH];
    char *p;
    snprintf(dir, sizeof dir, "%s", path);
    p = strrchr(dir, '/');
    if (p == NULL || p == dir)
        return 0;
    *p = '\0';
    for (p = dir + 1; *p != '\0'; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(dir, 0700) != 0 && errno != EEXIST)
            return dtr_j_fail(e, "mkdir");
        *p = '/';
    }
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return dtr_j_fail(e, "mkdir");
    return 0;
}

/* fsyncs the directory holding path, so a new or renamed entry lasts. */
int dtr_j_sync_dir(const char *path, dtr_jerr *e)
{
    char dir[DTR_J_PATH];
    int fd, rc;
    dtr_j_dirname(dir, path);
    fd = open(dir, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return dtr_j_fail(e, "open directory");
    rc = fsync(fd);
    if (rc != 0)
        dtr_j_fail(e, "fsync directory");
    close(fd);
    return rc;
}

/* Opens and locks <path>.lock.  Returns its descriptor, -1 on failure, or
 * -2 when !create and the directory does not exist. */
int dtr_j_lock(const char *path, int exclusive, int create, dtr_jerr *e)
{
    char lpath[DTR_J_PATH];
    struct stat st;
    int fd, rc;
    snprintf(lpath, sizeof lpath, "%s.lock", path);
    if (create && dtr_j_mkdirs(path, e) != 0)
        return -1;
    rc = dtr_j_check_dir(path, e);
    if (rc == -2 && !create)
        return -2;
    if (rc == -2)
        return dtr_j_fail(e, "stat directory");
    if (rc != 0)
        return -1;
    fd = open(lpath, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0600);
    if (fd < 0) {
        if (!create && errno == ENOENT)
            return -2;
        return dtr_j_open_fail(e, "open lock file");
    }
    if (dtr_j_check_file(fd, &st, "lock file", e) != 0) {
        close(fd);
        return -1;
    }
    while (flock(fd, exclusive ? LOCK_EX : LOCK_SH) != 0) {
        if (errno != EINTR) {
            dtr_j_fail(e, "flock");
            close(fd);
            return -1;
        }
    }
    return fd;
}

void dtr_j_unlock(int lock)
{
    if (lock >= 0)
        close(lock); /* closing the only descriptor releases the flock */
}

/* Writes the id of the open journal: device, inode and its first line. */
size_t dtr_j_id(int fd, const struct stat *st, char *out)
{
    char head[DTR_J_HEAD];
    size_t got = 0, n, i;
    n = (size_t)snprintf(out, DTR_J_ID, "%llu:%llu:", (unsigned long long)st->st_dev,
                         (unsigned long long)st->st_ino);
    if (dtr_j_pread_all(fd, head, sizeof head, 0, &got) != 0)
        got = 0;
    for (i = 0; i < got && head[i] != '\n' && n < DTR_J_ID; i++)
        out[n++] = head[i];
    return n;
}
