// tupp-shim: the per-container supervisor and `exec` helper.
//
// One single-threaded C process per container. It is C, not Swift, because it forks and
// sets up namespaces and mounts between fork and exec (only async-signal-safe work is
// allowed there in a multithreaded process), and because it stays resident: a static C
// binary costs well under 1 MiB per container.
//
// Files, one per concern (crun style):
//   spec.c       the spec file written by TuppRuntime (format documented there)
//   rootfs.c     mounts, /dev, pivot_root, masked and read-only paths
//   caps.c       capability bounding/effective sets, no_new_privs
//   log.c        errors from the container child, the rotated container log
//   supervise.c  `run`: namespaces, the container init, restarts, stop, the state file
//   exec.c       `exec`: join a running container, optionally through a pty
//   main.c       argument dispatch
#ifndef TUPP_SHIM_H
#define TUPP_SHIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

// ---- spec.c ---------------------------------------------------------------------------

enum { SHIM_MAX_ITEMS = 256 };

enum shim_mount_kind { SHIM_MOUNT_BIND, SHIM_MOUNT_TMPFS };

struct shim_mount {
    enum shim_mount_kind kind;
    const char *source;   // bind: absolute host path; tmpfs: NULL
    const char *target;   // absolute path inside the container
    const char *options;  // comma-separated mount options, may be ""
    bool readonly;
};

enum shim_restart { SHIM_RESTART_NO, SHIM_RESTART_ON_FAILURE, SHIM_RESTART_ALWAYS };

// Namespace bits, as requested by the spec.
enum {
    SHIM_NS_MOUNT = 1 << 0,
    SHIM_NS_UTS = 1 << 1,
    SHIM_NS_IPC = 1 << 2,
    SHIM_NS_NET = 1 << 3,
    SHIM_NS_PID = 1 << 4,
};

struct shim_spec {
    char *buffer;  // the file's bytes; every string below points into it
    size_t size;
    const char *name;
    const char *rootfs;
    const char *hostname;  // NULL: keep the inherited hostname
    unsigned namespaces;   // SHIM_NS_* bits
    const char *argv[SHIM_MAX_ITEMS + 1];
    int argc;
    const char *env[SHIM_MAX_ITEMS + 1];
    int envc;
    const char *workdir;
    enum shim_restart restart;
    int caps[SHIM_MAX_ITEMS];
    int capc;
    long stop_timeout_ms;
    long log_limit;
    struct shim_mount mounts[SHIM_MAX_ITEMS];
    int mountc;
};

/// Reads and parses DIR/spec. On failure returns -1 with `error` describing why.
int spec_load(const char *dir, struct shim_spec *spec, char *error, size_t error_size);
void spec_free(struct shim_spec *spec);

// ---- log.c ----------------------------------------------------------------------------

/// A failed step in the container child, sent to the shim over the error pipe.
struct shim_failure {
    int err;             // errno, 0 when none
    char op[64];         // "mount", "pivot_root", "exec"
    char object[512];    // "/proc in /pool/containers/web"
    char detail[256];    // extra text, may be empty
};

/// Fills `failure` (op, object printf-style) — used by the child and by the shim.
void failure_set(struct shim_failure *failure, int err, const char *op, const char *detail,
                 const char *object_format, ...) __attribute__((format(printf, 5, 6)));

/// Child side: writes the failure to `fd` and exits 127.
__attribute__((noreturn)) void failure_exit(int fd, const struct shim_failure *failure);

/// The rotated container log: DIR/log, DIR/log.1.
struct shim_log {
    int dir_fd;
    int fd;
    long size;
    long limit;
};

int log_open(struct shim_log *log, int dir_fd, long limit);
/// Appends, rotating to log.1 first when the write would cross the limit.
void log_append(struct shim_log *log, const char *data, size_t size);

/// write(2) of everything, retrying on EINTR and short writes.
int write_all(int fd, const void *data, size_t size);

// ---- caps.c ---------------------------------------------------------------------------

/// Reduces the bounding set to `caps`, clears inheritable and ambient, sets permitted and
/// effective to `caps`, then no_new_privs. On failure fills `failure`, returns -1.
int caps_apply(const int *caps, int capc, struct shim_failure *failure);

// ---- rootfs.c -------------------------------------------------------------------------

/// In the new mount namespace: makes / rslave, builds the container's tree under the
/// rootfs, pivots into it and applies masks. On failure fills `failure`, returns -1.
int rootfs_setup(const struct shim_spec *spec, struct shim_failure *failure);

// ---- supervise.c / exec.c -------------------------------------------------------------

int supervise_main(const char *dir);
int exec_main(int argc, char **argv);

// ---- shared helpers (supervise.c) -----------------------------------------------------

/// Field 22 of /proc/PID/stat (start time in clock ticks since boot); 0 when unknown.
unsigned long long process_start_time(pid_t pid);
/// The environment for a process in this container: spec env plus the defaults
/// (PATH, HOME, HOSTNAME, TERM) for keys the spec does not set.
void build_environment(const struct shim_spec *spec, const char **extra, int extrac);

#endif
