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
//   restart          no | on-failure | always | unless-stopped (runs as always)
//   cap              a capability number (linux/capability.h) kept in the bounding,
//                    permitted and effective sets            (repeated)
//   stop-timeout-ms  grace period between the stop signal and SIGKILL
//   stop-signal      the signal stop sends first, a number (default SIGTERM)
//   health-arg       the health check's argv, argv[0] first  (repeated; none: no check)
//   health-interval-ms, health-timeout-ms, health-start-period-ms, health-retries
//                    when and how often it runs (defaults 30 s, 30 s, 0, 3)
//   health-on-unhealthy  none | restart: what becoming unhealthy does
//   log-limit        size in bytes at which DIR/log rotates to DIR/log.1
//   mount            bind | tmpfs — starts a mount record; the mount-* keys that follow
//   mount-source     bind: absolute host path
//   mount-target     absolute path inside the container
//   mount-options    comma-separated options ("size=64m,nosuid"), may be empty
//   mount-readonly   0 | 1
//   user-uid         the process's uid (default 0)
//   user-gid         its gid (default 0)
//   user-group       a supplementary gid                     (repeated)
//   user-home        HOME (default /root for uid 0, else /)
//   cap-ambient      a capability number for the ambient set (repeated; ⊆ cap)
//   readonly         0 | 1: the rootfs is remounted read-only after the mounts
//   shm-size         bytes of /dev/shm (default 64 MiB)
//   device           "c|b MAJOR MINOR MODE UID GID PATH": an extra node below /dev (repeated)
//   rlimit           "RESOURCE SOFT HARD": RLIMIT_* number, values or "unlimited" (repeated)
//   rlimit-default   the same for a limit the manifest did not declare: where raising
//                    the hard limit is not allowed (no CAP_SYS_RESOURCE), the current
//                    hard limit is kept instead of failing (repeated)
//   seccomp          the filter's default action (below); absent: no filter
//   seccomp-arch     a libseccomp architecture name added besides the native one (repeated)
//   seccomp-rule     "ACTION SYSCALL [INDEX OP VALUE VALUE2]…"  (repeated)
//   seccomp-cache    absolute path of the compiled program for exactly these rules
//                    ACTION: allow | errno:N | trace:N | trap | log | kill-thread |
//                    kill-process; OP: ne lt le eq ge gt me (masked equal: VALUE is the
//                    mask, VALUE2 the datum, as in OCI). Conditions of one rule are ANDed.
//   cgroup           a cgroup directory the init and exec'd processes join (repeated)
//   cgroup-kill      the directory stop kills through: v2 (cgroup.kill) or the v1 freezer
//   cgroup-oom       a file with an "oom_kill N" line (memory.oom_control, memory.events)
//   cgroup-delegate  0 | 1: the init gets a cgroup namespace rooted at its cgroup (v2) and
//                    cgroup2 mounted read-write at /sys/fs/cgroup (TuppRuntime chowns the
//                    cgroup's delegation files to container root)
//   uid-map          "INSIDE OUTSIDE COUNT": a line of the user namespace's uid_map; any
//                    uid-map asks for a user namespace (userns.c)   (repeated, ≤ 5)
//   gid-map          the same for gid_map; required with uid-map    (repeated, ≤ 5)
//
// Unknown keys are an error: a newer writer must not be half-understood.
#include "shim.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
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

static bool parse_ull(const char *text, unsigned long long *out, char **end) {
    errno = 0;
    if (!strncmp(text, "unlimited", 9)) {
        *out = RLIM_INFINITY;
        *end = (char *)text + 9;
        return true;
    }
    if (*text < '0' || *text > '9') return false;
    *out = strtoull(text, end, 0);
    return errno == 0 && *end != text;
}

/// "RESOURCE SOFT HARD".
static bool parse_rlimit(const char *text, struct shim_rlimit *out) {
    char *end;
    long resource = strtol(text, &end, 10);
    if (end == text || *end != ' ' || resource < 0 || resource >= RLIM_NLIMITS) return false;
    out->resource = (int)resource;
    if (!parse_ull(end + 1, &out->soft, &end) || *end != ' ') return false;
    if (!parse_ull(end + 1, &out->hard, &end) || *end) return false;
    return out->soft <= out->hard;
}

/// "INSIDE OUTSIDE COUNT", a count ≥ 1 and no id beyond 4294967294.
static bool parse_idmap(const char *text, struct shim_idmap *out) {
    char *end;
    if (!parse_ull(text, &out->inside, &end) || *end != ' ') return false;
    if (!parse_ull(end + 1, &out->outside, &end) || *end != ' ') return false;
    if (!parse_ull(end + 1, &out->count, &end) || *end) return false;
    const unsigned long long limit = 4294967295ULL;
    return out->count >= 1 && out->inside < limit && out->outside < limit && out->count <= limit - out->inside &&
           out->count <= limit - out->outside;
}

/// "c|b MAJOR MINOR MODE UID GID PATH", PATH below /dev.
static bool parse_device(const char *text, struct shim_device *out) {
    unsigned mode, uid, gid;
    int used = 0;
    char type;
    if (sscanf(text, "%c %u %u %o %u %u %n", &type, &out->major, &out->minor, &mode, &uid, &gid, &used) != 6 || !used)
        return false;
    out->type = type;
    out->mode = (mode_t)(mode & 07777);
    out->uid = (uid_t)uid;
    out->gid = (gid_t)gid;
    out->path = text + used;
    return (type == 'c' || type == 'b') && !strncmp(out->path, "/dev/", 5) && out->path[5] && !strstr(out->path, "..");
}

static int spec_parse(const char *dir, struct shim_spec *spec, char *error, size_t error_size) {
    memset(spec, 0, sizeof *spec);
    spec->workdir = "/";
    spec->stop_timeout_ms = 10000;
    spec->stop_signal = SIGTERM;
    spec->health.interval_ms = spec->health.timeout_ms = 30000;
    spec->health.retries = 3;
    spec->log_limit = 1 << 20;
    spec->shm_size = 64LL << 20;
    int rule_capacity = 0;

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
            else if (!strcmp(value, "always") || !strcmp(value, "unless-stopped")) spec->restart = SHIM_RESTART_ALWAYS;
            else goto bad_value;
        } else if (!strcmp(key, "cap")) {
            if (spec->capc >= SHIM_MAX_ITEMS) goto too_many;
            if (!parse_long(value, &number) || number < 0 || number > 63) goto bad_value;
            spec->caps[spec->capc++] = (int)number;
        } else if (!strcmp(key, "stop-timeout-ms")) {
            if (!parse_long(value, &number) || number < 0) goto bad_value;
            spec->stop_timeout_ms = number;
        } else if (!strcmp(key, "stop-signal")) {
            if (!parse_long(value, &number) || number < 1 || number >= NSIG || number == SIGKILL || number == SIGSTOP)
                goto bad_value;
            spec->stop_signal = (int)number;
        } else if (!strcmp(key, "health-arg")) {
            if (spec->health.argc >= SHIM_HEALTH_ARGS) goto too_many;
            spec->health.argv[spec->health.argc++] = value;
        } else if (!strcmp(key, "health-interval-ms")) {
            if (!parse_long(value, &number) || number < 1) goto bad_value;
            spec->health.interval_ms = number;
        } else if (!strcmp(key, "health-timeout-ms")) {
            if (!parse_long(value, &number) || number < 1) goto bad_value;
            spec->health.timeout_ms = number;
        } else if (!strcmp(key, "health-start-period-ms")) {
            if (!parse_long(value, &number) || number < 0) goto bad_value;
            spec->health.start_period_ms = number;
        } else if (!strcmp(key, "health-retries")) {
            if (!parse_long(value, &number) || number < 1 || number > 1000) goto bad_value;
            spec->health.retries = (int)number;
        } else if (!strcmp(key, "health-on-unhealthy")) {
            if (!strcmp(value, "none")) spec->health.restart_when_unhealthy = false;
            else if (!strcmp(value, "restart")) spec->health.restart_when_unhealthy = true;
            else goto bad_value;
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
        } else if (!strcmp(key, "user-uid")) {
            if (!parse_long(value, &number) || number < 0 || number > 0xfffffffeL) goto bad_value;
            spec->uid = (uid_t)number;
        } else if (!strcmp(key, "user-gid")) {
            if (!parse_long(value, &number) || number < 0 || number > 0xfffffffeL) goto bad_value;
            spec->gid = (gid_t)number;
        } else if (!strcmp(key, "user-group")) {
            if (spec->groupc >= SHIM_MAX_ITEMS) goto too_many;
            if (!parse_long(value, &number) || number < 0 || number > 0xfffffffeL) goto bad_value;
            spec->groups[spec->groupc++] = (gid_t)number;
        } else if (!strcmp(key, "user-home")) {
            if (value[0] != '/') goto bad_value;
            spec->home = value;
        } else if (!strcmp(key, "cap-ambient")) {
            if (spec->ambientc >= (int)(sizeof spec->ambient / sizeof spec->ambient[0])) goto too_many;
            if (!parse_long(value, &number) || number < 0 || number > 63) goto bad_value;
            spec->ambient[spec->ambientc++] = (int)number;
        } else if (!strcmp(key, "readonly")) {
            spec->readonly = !strcmp(value, "1");
        } else if (!strcmp(key, "shm-size")) {
            if (!parse_long(value, &number) || number < 4096) goto bad_value;
            spec->shm_size = number;
        } else if (!strcmp(key, "device")) {
            if (spec->devicec >= SHIM_MAX_DEVICES) goto too_many;
            if (!parse_device(value, &spec->devices[spec->devicec])) goto bad_value;
            spec->devicec++;
        } else if (!strcmp(key, "rlimit") || !strcmp(key, "rlimit-default")) {
            if (spec->rlimitc >= (int)(sizeof spec->rlimits / sizeof spec->rlimits[0])) goto too_many;
            if (!parse_rlimit(value, &spec->rlimits[spec->rlimitc])) goto bad_value;
            spec->rlimits[spec->rlimitc++].fallback = key[6] == '-';
        } else if (!strcmp(key, "seccomp")) {
            if (seccomp_parse_action(value, &spec->seccomp.default_action) < 0) goto bad_value;
            spec->seccomp.enabled = true;
        } else if (!strcmp(key, "seccomp-cache")) {
            if (value[0] != '/') goto bad_value;
            spec->seccomp.cache = value;
        } else if (!strcmp(key, "seccomp-arch")) {
            if (spec->seccomp.archc >= (int)(sizeof spec->seccomp.arches / sizeof spec->seccomp.arches[0])) goto too_many;
            spec->seccomp.arches[spec->seccomp.archc++] = value;
        } else if (!strcmp(key, "seccomp-rule")) {
            struct shim_seccomp_rule rule;
            if (seccomp_parse_rule(value, &rule) < 0) goto bad_value;
            if (spec->seccomp.rulec >= SHIM_MAX_SECCOMP_RULES) goto too_many;
            if (spec->seccomp.rulec == rule_capacity) {
                rule_capacity = rule_capacity ? 2 * rule_capacity : 512;
                const char **grown = realloc(spec->seccomp.rules, (size_t)rule_capacity * sizeof *grown);
                if (!grown) {
                    snprintf(error, error_size, "%s: out of memory for seccomp rules", path);
                    return -1;
                }
                spec->seccomp.rules = grown;
            }
            spec->seccomp.rules[spec->seccomp.rulec++] = value;
        } else if (!strcmp(key, "cgroup")) {
            if (spec->cgroupc >= (int)(sizeof spec->cgroups / sizeof spec->cgroups[0])) goto too_many;
            if (value[0] != '/') goto bad_value;
            spec->cgroups[spec->cgroupc++] = value;
        } else if (!strcmp(key, "cgroup-kill")) {
            if (value[0] != '/') goto bad_value;
            spec->cgroup_kill = value;
        } else if (!strcmp(key, "cgroup-oom")) {
            if (value[0] != '/') goto bad_value;
            spec->cgroup_oom = value;
        } else if (!strcmp(key, "cgroup-delegate")) {
            spec->cgroup_delegate = !strcmp(value, "1");
        } else if (!strcmp(key, "uid-map") || !strcmp(key, "gid-map")) {
            bool uid = key[0] == 'u';
            int *count = uid ? &spec->uid_mapc : &spec->gid_mapc;
            if (*count >= SHIM_MAX_IDMAP) goto too_many;
            if (!parse_idmap(value, uid ? &spec->uid_map[*count] : &spec->gid_map[*count])) goto bad_value;
            (*count)++;
        } else {
            goto unknown;
        }
        continue;

    bad_value:
        snprintf(error, error_size, "%s: invalid value for %s: \"%s\"", path, key, value);
        return -1;
    too_many:
        snprintf(error, error_size, "%s: too many entries for %s", path, key);
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
    if ((spec->uid_mapc > 0) != (spec->gid_mapc > 0)) {
        snprintf(error, error_size, "%s: a user namespace needs both uid-map and gid-map", path);
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
    spec->health.argv[spec->health.argc] = NULL;
    return 0;

truncated:
    snprintf(error, error_size, "%s: truncated (a key without value)", path);
    return -1;
}

int spec_load(const char *dir, struct shim_spec *spec, char *error, size_t error_size) {
    int rc = spec_parse(dir, spec, error, error_size);
    if (rc < 0) spec_free(spec);
    return rc;
}

void spec_free(struct shim_spec *spec) {
    free(spec->buffer);
    spec->buffer = NULL;
    free(spec->seccomp.rules);
    spec->seccomp.rules = NULL;
    spec->seccomp.rulec = 0;
}
