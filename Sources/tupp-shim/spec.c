// The spec file DIR/spec, written by TuppRuntime (SpecFile.swift) and read here.
//
// Format: a flat sequence of NUL-terminated strings read in pairs, KEY \0 VALUE \0.
// Nothing needs quoting or escaping (paths, arguments and environment entries cannot
// contain NUL) and parsing is a walk over the buffer with pointers into it.
//
//   version          1 (first pair; other versions are refused)
//   name             container name, for messages
//   rootfs           absolute host path of the container's root directory
//   hostname         set in the new UTS namespace (optional)
//   namespace        mount | uts | ipc | net | pid          (repeated)
//   arg              argv entries in order, argv[0] first    (repeated, ≥ 1)
//   env              KEY=VALUE                               (repeated)
//   workdir          absolute path inside the container
//   restart          no | on-failure | always
//   cap              a capability number (linux/capability.h) kept in the bounding,
//                    permitted and effective sets            (repeated)
//   stop-timeout-ms  grace period between SIGTERM and SIGKILL
//   log-limit        size in bytes at which DIR/log rotates to DIR/log.1
//   mount            bind | tmpfs — starts a mount record; the mount-* keys that follow
//   mount-source     bind: absolute host path
//   mount-target     absolute path inside the container
//   mount-options    comma-separated options ("size=64m,nosuid"), may be empty
//   mount-readonly   0 | 1
//
// Unknown keys are an error: a newer writer must not be half-understood.
#include "shim.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { SPEC_MAX_SIZE = 1 << 20 };

static int read_file(const char *path, char **out, size_t *size) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    struct stat st;
    if (fstat(fd, &st) < 0 || st.st_size > SPEC_MAX_SIZE) {
        if (errno == 0 || st.st_size > SPEC_MAX_SIZE) errno = EFBIG;
        close(fd);
        return -1;
    }
    char *buffer = malloc((size_t)st.st_size + 1);
    if (!buffer) {
        close(fd);
        return -1;
    }
    size_t done = 0;
    while (done < (size_t)st.st_size) {
        ssize_t n = read(fd, buffer + done, (size_t)st.st_size - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        done += (size_t)n;
    }
    close(fd);
    buffer[done] = '\0';
    *out = buffer;
    *size = done;
    return 0;
}

static bool parse_long(const char *text, long *out) {
    char *end;
    errno = 0;
    long value = strtol(text, &end, 10);
    if (errno || end == text || *end) return false;
    *out = value;
    return true;
}

int spec_load(const char *dir, struct shim_spec *spec, char *error, size_t error_size) {
    memset(spec, 0, sizeof *spec);
    spec->workdir = "/";
    spec->stop_timeout_ms = 10000;
    spec->log_limit = 1 << 20;

    char path[4096];
    snprintf(path, sizeof path, "%s/spec", dir);
    if (read_file(path, &spec->buffer, &spec->size) < 0) {
        snprintf(error, error_size, "read %s: %s", path, strerror(errno));
        return -1;
    }

    struct shim_mount *mount = NULL;
    const char *cursor = spec->buffer, *end = spec->buffer + spec->size;
    bool versioned = false;
    while (cursor < end) {
        const char *key = cursor;
        const char *key_end = memchr(key, '\0', (size_t)(end - key));
        if (!key_end || key_end + 1 >= end) goto truncated;
        const char *value = key_end + 1;
        const char *value_end = memchr(value, '\0', (size_t)(end - value));
        if (!value_end) goto truncated;
        cursor = value_end + 1;

        long number;
        if (!versioned) {
            if (strcmp(key, "version") != 0 || strcmp(value, "1") != 0) {
                snprintf(error, error_size, "%s: unsupported spec version (want version 1 first)", path);
                return -1;
            }
            versioned = true;
        } else if (!strcmp(key, "name")) {
            spec->name = value;
        } else if (!strcmp(key, "rootfs")) {
            spec->rootfs = value;
        } else if (!strcmp(key, "hostname")) {
            spec->hostname = value;
        } else if (!strcmp(key, "namespace")) {
            if (!strcmp(value, "mount")) spec->namespaces |= SHIM_NS_MOUNT;
            else if (!strcmp(value, "uts")) spec->namespaces |= SHIM_NS_UTS;
            else if (!strcmp(value, "ipc")) spec->namespaces |= SHIM_NS_IPC;
            else if (!strcmp(value, "net")) spec->namespaces |= SHIM_NS_NET;
            else if (!strcmp(value, "pid")) spec->namespaces |= SHIM_NS_PID;
            else goto bad_value;
        } else if (!strcmp(key, "arg")) {
            if (spec->argc >= SHIM_MAX_ITEMS) goto too_many;
            spec->argv[spec->argc++] = value;
        } else if (!strcmp(key, "env")) {
            if (spec->envc >= SHIM_MAX_ITEMS) goto too_many;
            if (!strchr(value, '=')) goto bad_value;
            spec->env[spec->envc++] = value;
        } else if (!strcmp(key, "workdir")) {
            if (value[0] != '/') goto bad_value;
            spec->workdir = value;
        } else if (!strcmp(key, "restart")) {
            if (!strcmp(value, "no")) spec->restart = SHIM_RESTART_NO;
            else if (!strcmp(value, "on-failure")) spec->restart = SHIM_RESTART_ON_FAILURE;
            else if (!strcmp(value, "always")) spec->restart = SHIM_RESTART_ALWAYS;
            else goto bad_value;
        } else if (!strcmp(key, "cap")) {
            if (spec->capc >= SHIM_MAX_ITEMS) goto too_many;
            if (!parse_long(value, &number) || number < 0 || number > 63) goto bad_value;
            spec->caps[spec->capc++] = (int)number;
        } else if (!strcmp(key, "stop-timeout-ms")) {
            if (!parse_long(value, &number) || number < 0) goto bad_value;
            spec->stop_timeout_ms = number;
        } else if (!strcmp(key, "log-limit")) {
            if (!parse_long(value, &number) || number < 4096) goto bad_value;
            spec->log_limit = number;
        } else if (!strcmp(key, "mount")) {
            if (spec->mountc >= SHIM_MAX_ITEMS) goto too_many;
            mount = &spec->mounts[spec->mountc++];
            if (!strcmp(value, "bind")) mount->kind = SHIM_MOUNT_BIND;
            else if (!strcmp(value, "tmpfs")) mount->kind = SHIM_MOUNT_TMPFS;
            else goto bad_value;
            mount->options = "";
        } else if (!strncmp(key, "mount-", 6)) {
            if (!mount) {
                snprintf(error, error_size, "%s: %s before any mount", path, key);
                return -1;
            }
            if (!strcmp(key, "mount-source")) mount->source = value;
            else if (!strcmp(key, "mount-target")) mount->target = value;
            else if (!strcmp(key, "mount-options")) mount->options = value;
            else if (!strcmp(key, "mount-readonly")) mount->readonly = !strcmp(value, "1");
            else goto unknown;
        } else {
            goto unknown;
        }
        continue;

    bad_value:
        snprintf(error, error_size, "%s: invalid value for %s: \"%s\"", path, key, value);
        return -1;
    too_many:
        snprintf(error, error_size, "%s: more than %d entries for %s", path, SHIM_MAX_ITEMS, key);
        return -1;
    unknown:
        snprintf(error, error_size, "%s: unknown key \"%s\"", path, key);
        return -1;
    }

    if (!spec->rootfs || spec->rootfs[0] != '/') {
        snprintf(error, error_size, "%s: rootfs missing or not absolute", path);
        return -1;
    }
    if (spec->argc == 0) {
        snprintf(error, error_size, "%s: no command (arg)", path);
        return -1;
    }
    if (!(spec->namespaces & SHIM_NS_MOUNT)) {
        snprintf(error, error_size, "%s: the mount namespace is required", path);
        return -1;
    }
    for (int i = 0; i < spec->mountc; i++) {
        const struct shim_mount *m = &spec->mounts[i];
        if (!m->target || m->target[0] != '/' ||
            (m->kind == SHIM_MOUNT_BIND && (!m->source || m->source[0] != '/'))) {
            snprintf(error, error_size, "%s: mount %d needs an absolute target%s", path, i + 1,
                     m->kind == SHIM_MOUNT_BIND ? " and source" : "");
            return -1;
        }
    }
    spec->argv[spec->argc] = NULL;
    spec->env[spec->envc] = NULL;
    return 0;

truncated:
    snprintf(error, error_size, "%s: truncated (a key without value)", path);
    return -1;
}

void spec_free(struct shim_spec *spec) {
    free(spec->buffer);
    spec->buffer = NULL;
}
