// Reporting: failures of the container child (sent over a CLOEXEC pipe, so the shim
// reads either a failure or EOF when exec succeeded), and the container's own output,
// appended to DIR/log and rotated to DIR/log.1 at a size limit so it stays bounded.
//
// DIR/log holds the output exactly as written. When it was written is kept beside it,
// in DIR/log.times: one "OFFSET SECONDS" line per write (the byte offset in DIR/log where
// the write began, wall clock with microseconds), at most one per millisecond and never
// more bytes than the log's limit; it rotates with the log to DIR/log.1.times. A line's
// time is that of the write holding its first byte (`tupp logs --timestamps --since`).
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
    log->times_fd = openat(dir_fd, "log.times", O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    log->times_size = log->times_fd >= 0 ? lseek(log->times_fd, 0, SEEK_END) : 0;
    if (log->times_size < 0) log->times_size = 0;
    log->times_last = 0;
    return 0;
}

static void log_note_time(struct shim_log *log, double now) {
    if (log->times_fd < 0 || now - log->times_last < 0.001 || log->times_size >= log->limit) return;
    char line[64];
    int n = snprintf(line, sizeof line, "%ld %.6f\n", log->size, now);
    if (n > 0 && write_all(log->times_fd, line, (size_t)n) == 0) {
        log->times_size += n;
        log->times_last = now;
    }
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
    // The times follow their log; the old file's are its own.
    if (renameat(log->dir_fd, "log.times", log->dir_fd, "log.1.times") < 0) unlinkat(log->dir_fd, "log.1.times", 0);
    if (log->times_fd >= 0) close(log->times_fd);
    log->times_fd = openat(log->dir_fd, "log.times", O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
    log->times_size = 0;
    log->times_last = 0;
}

void log_append(struct shim_log *log, const char *data, size_t size, double now) {
    bool noted = false;
    while (size > 0) {
        if (log->size >= log->limit) {
            log_rotate(log);
            noted = false;
        }
        if (!noted) {
            log_note_time(log, now);
            noted = true;
        }
        size_t room = (size_t)(log->limit - log->size);
        if (log->size == 0 && room == 0) room = size;
        size_t chunk = size < room ? size : room;
        if (write_all(log->fd, data, chunk) < 0) return;  // a full disk drops output, never blocks the container
        log->size += (long)chunk;
        data += chunk;
        size -= chunk;
    }
}
