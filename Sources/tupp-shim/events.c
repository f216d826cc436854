// DIR/events: what happened to the container, as the supervisor saw it happen, one JSON
// object per line, for `tupp events` to stream:
//
//   {"time":1764500000.123,"container":"db","type":"start","pid":4242,"restarts":0}
//   {"time":…,"container":"db","type":"exit","code":3,"oom":false,"ran_ms":41}
//   {"time":…,"container":"db","type":"exit","signal":9,"oom":true,"ran_ms":5012}
//   {"time":…,"container":"db","type":"restart","attempt":3,"delay_ms":400}
//   {"time":…,"container":"db","type":"health","from":"starting","to":"healthy","exit_code":0,"output":"…"}
//   {"time":…,"container":"db","type":"stop","signal":15}
//
// Each line is one write(2) with O_APPEND, so a reader never sees half a line from a
// whole write. The file rotates to events.1 at EVENTS_LIMIT: a reader following it
// continues with the new file after draining the old one (as with the log).
#include "shim.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { EVENTS_LIMIT = 256 * 1024 };

static int events_dir_fd = -1;
static int events_fd = -1;
static long events_size;
static char events_container[256] = "\"\"";

void events_open(int dir_fd, const char *container) {
    events_dir_fd = dir_fd;
    events_fd = openat(dir_fd, "events", O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    events_size = events_fd >= 0 ? lseek(events_fd, 0, SEEK_END) : 0;
    if (events_size < 0) events_size = 0;
    json_quote(events_container, sizeof events_container, container ? container : "", container ? strlen(container) : 0);
}

void json_quote(char *out, size_t size, const char *text, size_t length) {
    static const char hex[] = "0123456789abcdef";
    size_t used = 0;
    if (size < 3) return;
    out[used++] = '"';
    for (size_t i = 0; i < length; i++) {
        unsigned char c = (unsigned char)text[i];
        char escaped[7];
        size_t n = 0;
        if (c == '"' || c == '\\') {
            escaped[n++] = '\\';
            escaped[n++] = (char)c;
        } else if (c == '\n') {
            escaped[n++] = '\\';
            escaped[n++] = 'n';
        } else if (c == '\t') {
            escaped[n++] = '\\';
            escaped[n++] = 't';
        } else if (c < 0x20 || c == 0x7f) {
            memcpy(escaped, "\\u00", 4);
            escaped[4] = hex[c >> 4];
            escaped[5] = hex[c & 15];
            n = 6;
        } else {
            escaped[n++] = (char)c;  // UTF-8 passes through; invalid bytes are the reader's to replace
        }
        if (used + n + 2 > size) break;
        memcpy(out + used, escaped, n);
        used += n;
    }
    out[used++] = '"';
    out[used] = '\0';
}

void event_emit(const char *type, const char *fields_format, ...) {
    if (events_fd < 0) return;
    char fields[12288];
    va_list args;
    va_start(args, fields_format);
    vsnprintf(fields, sizeof fields, fields_format, args);
    va_end(args);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    char line[16384];
    int n = snprintf(line, sizeof line, "{\"time\":%lld.%03ld,\"container\":%s,\"type\":\"%s\"%s%s}\n", (long long)ts.tv_sec,
                     ts.tv_nsec / 1000000, events_container, type, fields[0] ? "," : "", fields);
    if (n <= 0 || n >= (int)sizeof line) return;
    if (events_size + n > EVENTS_LIMIT && renameat(events_dir_fd, "events", events_dir_fd, "events.1") == 0) {
        int fd = openat(events_dir_fd, "events", O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
        if (fd >= 0) {
            close(events_fd);
            events_fd = fd;
            events_size = 0;
        }
    }
    if (write_all(events_fd, line, (size_t)n) == 0) events_size += n;
}
