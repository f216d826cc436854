// Reporting: failures of the container child (sent over a CLOEXEC pipe, so the shim
// reads either a failure or EOF when exec succeeded), and the container's own output,
// appended to DIR/log and rotated to DIR/log.1 at a size limit so it stays bounded.
#include "shim.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

void failure_set(struct shim_failure *failure, int err, const char *op, const char *detail,
                 const char *object_format, ...) {
    memset(failure, 0, sizeof *failure);
    failure->err = err;
    snprintf(failure->op, sizeof failure->op, "%s", op);
    snprintf(failure->detail, sizeof failure->detail, "%s", detail ? detail : "");
    va_list args;
    va_start(args, object_format);
    vsnprintf(failure->object, sizeof failure->object, object_format, args);
    va_end(args);
}

int write_all(int fd, const void *data, size_t size) {
    const char *p = data;
    while (size > 0) {
        ssize_t n = write(fd, p, size);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += n;
        size -= (size_t)n;
    }
    return 0;
}

void failure_exit(int fd, const struct shim_failure *failure) {
    // One write of a fixed-size record: the pipe buffer holds it whole, so the shim
    // reads all of it or nothing.
    (void)write_all(fd, failure, sizeof *failure);
    _exit(127);
}

int log_open(struct shim_log *log, int dir_fd, long limit) {
    log->dir_fd = dir_fd;
    log->limit = limit;
    log->fd = openat(dir_fd, "log", O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (log->fd < 0) return -1;
    log->size = lseek(log->fd, 0, SEEK_END);
    if (log->size < 0) log->size = 0;
    return 0;
}

static void log_rotate(struct shim_log *log) {
    // rename keeps a reader that follows DIR/log on the old inode until it reopens;
    // exactly one old file is kept, so the total stays ≤ 2 × limit.
    if (renameat(log->dir_fd, "log", log->dir_fd, "log.1") < 0) return;
    int fd = openat(log->dir_fd, "log", O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) return;
    close(log->fd);
    log->fd = fd;
    log->size = 0;
}

void log_append(struct shim_log *log, const char *data, size_t size) {
    while (size > 0) {
        if (log->size >= log->limit) log_rotate(log);
        size_t room = (size_t)(log->limit - log->size);
        if (log->size == 0 && room == 0) room = size;
        size_t chunk = size < room ? size : room;
        if (write_all(log->fd, data, chunk) < 0) return;  // a full disk drops output, never blocks the container
        log->size += (long)chunk;
        data += chunk;
        size -= chunk;
    }
}
