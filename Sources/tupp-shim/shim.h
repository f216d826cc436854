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
//   caps.c       user and groups, capability sets (bounding, permitted, effective,
//                inheritable, ambient), no_new_privs
//   limits.c     resource limits (setrlimit)
//   seccomp.c    the seccomp filter: built with libseccomp, loaded last before exec
//   userns.c     the user namespace (`userns: auto`): maps, idmapped mounts, the init's clone
//   cgroup.c     joining the container's cgroup, killing through it, OOM kill counts
//   log.c        errors from the container child, the rotated container log
//   health.c     the health check: run inside the container, states, the last results
//   events.c     DIR/events: what happened to the container, one JSON line each
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

// Fixed arrays keep the spec one allocation-free struct; every byte of it is resident in
// each supervisor (it is cleared on load), so the rarely long lists stay short.
enum { SHIM_MAX_ITEMS = 256, SHIM_MAX_DEVICES = 64, SHIM_MAX_SECCOMP_RULES = 4096, SHIM_MAX_SECCOMP_ARGS = 6 };

enum shim_mount_kind { SHIM_MOUNT_BIND, SHIM_MOUNT_TMPFS };

struct shim_mount {
    enum shim_mount_kind kind;
    const char *source;   // bind: absolute host path; tmpfs: NULL
    const char *target;   // absolute path inside the container
    const char *options;  // comma-separated mount options, may be ""
    bool readonly;
};

// unless-stopped runs as always here: being stopped on purpose is the engine's record.
enum shim_restart { SHIM_RESTART_NO, SHIM_RESTART_ON_FAILURE, SHIM_RESTART_ALWAYS };

enum { SHIM_HEALTH_ARGS = 64 };

/// The container's health check (`healthcheck:`); none when argc is 0.
struct shim_healthcheck {
    const char *argv[SHIM_HEALTH_ARGS + 1];
    int argc;
    long interval_ms, timeout_ms, start_period_ms;
    int retries;
    bool restart_when_unhealthy;  // onUnhealthy: restart
};

// Namespace bits, as requested by the spec.
enum {
    SHIM_NS_MOUNT = 1 << 0,
    SHIM_NS_UTS = 1 << 1,
    SHIM_NS_IPC = 1 << 2,
    SHIM_NS_NET = 1 << 3,
    SHIM_NS_PID = 1 << 4,
};

/// An extra device node in the container's /dev (`devices:`), made with mknod.
struct shim_device {
    char type;            // 'c' or 'b'
    unsigned major, minor;
    mode_t mode;          // permission bits
    uid_t uid;
    gid_t gid;
    const char *path;     // absolute, below /dev
};

/// One line of a uid_map or gid_map: `count` ids from `inside` map to host ids from `outside`.
struct shim_idmap {
    unsigned long long inside, outside, count;
};

enum { SHIM_MAX_IDMAP = 5 };  // the kernel's limit before 4.15, enough for tupp's one line

/// One resource limit for setrlimit(2).
struct shim_rlimit {
    int resource;                     // RLIMIT_*
    unsigned long long soft, hard;    // RLIM_INFINITY for unlimited
    bool fallback;                    // a default: lowered to what this process may set
};

/// One argument comparison of a seccomp rule (libseccomp's scmp_arg_cmp).
struct shim_seccomp_arg {
    unsigned index;
    int op;  // enum scmp_compare
    unsigned long long value, value_two;
};

/// One normalized seccomp rule: the action for one syscall, when all arguments match.
struct shim_seccomp_rule {
    unsigned action;        // SCMP_ACT_* with its errno folded in
    char syscall[64];       // resolved by name; unknown names are skipped (as runc does)
    struct shim_seccomp_arg args[SHIM_MAX_SECCOMP_ARGS];
    int argc;
};

struct shim_seccomp {
    bool enabled;
    unsigned default_action;
    const char *arches[8];  // libseccomp architecture names besides the native one
    int archc;
    const char **rules;     // the "seccomp-rule" values (malloc'd array into the spec buffer)
    int rulec;
    const char *cache;      // where the compiled program is kept, NULL: compile every time
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
    int stop_signal;       // what stop sends first (default SIGTERM)
    long log_limit;
    struct shim_healthcheck health;
    struct shim_mount mounts[SHIM_MAX_ITEMS];
    int mountc;

    // The process's identity (resolved by TuppRuntime in the container's /etc files).
    uid_t uid;
    gid_t gid;
    gid_t groups[SHIM_MAX_ITEMS];
    int groupc;
    const char *home;      // HOME, NULL: /root for uid 0, else /
    int ambient[64];
    int ambientc;

    bool readonly;         // the rootfs is remounted read-only after the mounts
    long long shm_size;    // bytes of the /dev/shm tmpfs
    struct shim_device devices[SHIM_MAX_DEVICES];
    int devicec;
    struct shim_rlimit rlimits[32];
    int rlimitc;
    struct shim_seccomp seccomp;

    // The container's cgroup (see cgroup.c); none when cgroupc is 0.
    const char *cgroups[16];  // directories whose cgroup.procs the init joins
    int cgroupc;
    const char *cgroup_kill;  // the v2 directory (cgroup.kill) or the v1 freezer directory
    const char *cgroup_oom;   // a file with an "oom_kill N" line, NULL: OOM kills not counted
    bool cgroup_delegate;     // v2: a cgroup namespace at it, cgroup2 rw at /sys/fs/cgroup

    // The container's user namespace (userns.c); none when uid_mapc is 0.
    struct shim_idmap uid_map[SHIM_MAX_IDMAP], gid_map[SHIM_MAX_IDMAP];
    int uid_mapc, gid_mapc;
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
    int times_fd;        // DIR/log.times: "OFFSET SECONDS" per write, -1 when unavailable
    long times_size;
    double times_last;   // wall clock of the last entry
};

int log_open(struct shim_log *log, int dir_fd, long limit);
/// Appends, rotating to log.1 first when the write would cross the limit, and notes in
/// DIR/log.times when (wall clock `now`) the bytes were written.
void log_append(struct shim_log *log, const char *data, size_t size, double now);

/// write(2) of everything, retrying on EINTR and short writes.
int write_all(int fd, const void *data, size_t size);

// ---- caps.c ---------------------------------------------------------------------------

/// Becomes the spec's user with the spec's capabilities, then sets no_new_privs:
/// bounding set reduced to the caps, supplementary groups, gid and uid, permitted and
/// effective sets, the ambient set. On failure fills `failure`, returns -1.
int identity_apply(const struct shim_spec *spec, struct shim_failure *failure);

// ---- limits.c -------------------------------------------------------------------------

/// setrlimit(2) for every limit of the spec. On failure fills `failure`, returns -1.
int limits_apply(const struct shim_spec *spec, struct shim_failure *failure);

// ---- seccomp.c ------------------------------------------------------------------------

/// A compiled filter (classic BPF), ready to load in a child without libseccomp.
struct shim_filter {
    void *program;  // struct sock_filter[], malloc'd
    unsigned short length;
};

/// "ACTION" as the spec writes it ("allow", "errno 1", "kill-process", …) → SCMP_ACT_*.
int seccomp_parse_action(const char *text, unsigned *action);

/// A "seccomp-rule" value: "ACTION SYSCALL [INDEX OP VALUE VALUE2]…" (format in spec.c).
int seccomp_parse_rule(const char *text, struct shim_seccomp_rule *rule);

/// Builds the spec's filter with libseccomp and exports it. A spec without seccomp gives
/// an empty filter (length 0). On failure fills `failure`, returns -1.
int seccomp_compile(const struct shim_seccomp *seccomp, struct shim_filter *filter, struct shim_failure *failure);

/// The spec's filter from its cache file, or compiled and then stored there.
int seccomp_prepare(const struct shim_seccomp *seccomp, struct shim_filter *filter, struct shim_failure *failure);

/// Loads `filter` into the calling thread (no_new_privs must be set); nothing when empty.
int seccomp_load_filter(const struct shim_filter *filter, struct shim_failure *failure);

// ---- cgroup.c -------------------------------------------------------------------------

/// Writes `pid` into cgroup.procs of every cgroup of the spec. On failure fills
/// `failure`, returns -1.
int cgroup_enter(const struct shim_spec *spec, pid_t pid, struct shim_failure *failure);

/// On cgroup v2 (the spec names one directory, with cgroup.controllers): clone3 with
/// `flags` (CLONE_NEW*) and CLONE_INTO_CGROUP, so the child starts inside. Returns the
/// pid in the parent, 0 in the child, and -1 when it did not clone: `*inside` false when
/// the caller should fall back to clone and cgroup_enter (v1, an older kernel), true with
/// errno set when clone3 itself failed for another reason.
pid_t cgroup_clone_into(const struct shim_spec *spec, unsigned long flags, bool *inside);

/// Opens cgroup.procs of every cgroup of the spec for writing (exec opens them before it
/// joins the container's mount namespace, where the host's cgroup tree is not visible).
/// `fds` gets spec->cgroupc descriptors. On failure fills `failure`, returns -1.
int cgroup_open_procs(const struct shim_spec *spec, int *fds, struct shim_failure *failure);

/// The calling process joins through descriptors from cgroup_open_procs; closes them.
int cgroup_join(int *fds, int count);

/// Kills every process in the container's cgroup (v2 cgroup.kill, v1 freezer), and
/// waits briefly until the cgroup has no process left. Nothing without a cgroup.
void cgroup_kill_all(const struct shim_spec *spec);

/// The cgroup's OOM kill counter ("oom_kill" in memory.oom_control or memory.events);
/// -1 when the spec names no such file or it cannot be read.
long long cgroup_oom_kills(const struct shim_spec *spec);

// ---- userns.c -------------------------------------------------------------------------

/// Detached mounts the shim makes for one run in a user namespace, attached by the init.
struct shim_trees {
    int rootfs;                  // the rootfs, idmapped
    int dev;                     // the /dev tmpfs with its nodes; -1 when a mount overrides /dev
    int binds[SHIM_MAX_ITEMS];   // per spec mount: the idmapped bind source; -1 for a tmpfs
};

/// The host id of `inside` through `map`; -1 when it is not mapped.
long long userns_outside(const struct shim_idmap *map, int count, unsigned long long inside);

/// Creates the user namespace with the `shared` namespaces (CLONE_NEWNET/IPC/UTS) owned
/// by it, writes its maps, sets the netns's ping group range and the hostname inside, and
/// joins the shared ones (not the user namespace). `*userns_fd` gets a descriptor of the
/// user namespace. On failure fills `failure`, returns -1.
int userns_create(const struct shim_spec *spec, int shared, int *userns_fd, struct shim_failure *failure);

/// Makes the run's detached trees: the rootfs and binds idmapped, /dev filled.
int userns_prepare_trees(const struct shim_spec *spec, int userns_fd, struct shim_trees *trees, struct shim_failure *failure);
void userns_close_trees(struct shim_trees *trees);

/// Clones the init with `flags` (CLONE_NEWNS, CLONE_NEWPID) from inside the user
/// namespace, as the shim's child, with the spec's rlimits and its working directory in the
/// rootfs. `close_in_child`: descriptors of the shim the init must not hold. Returns the
/// init's pid in the shim, 0 in the init, -1 with `failure` set.
pid_t userns_clone_init(const struct shim_spec *spec, int userns_fd, unsigned long flags, const int *close_in_child, int closec,
                        bool *born_inside, struct shim_failure *failure);

// ---- rootfs.c -------------------------------------------------------------------------

/// Mount options: flag words become MS_* bits, everything else is filesystem data.
struct mount_options {
    unsigned long flags;
    char data[1024];
};

/// "size=64m,nosuid,ro" → flags and data; -1 when too long.
int mount_options_parse(const char *text, struct mount_options *out);

/// In the new mount namespace: makes / rslave, builds the container's tree under the
/// rootfs, pivots into it and applies masks. `trees`: in a user namespace, the detached
/// mounts to attach (the working directory is the rootfs); NULL without one. On failure
/// fills `failure`, returns -1.
int rootfs_setup(const struct shim_spec *spec, const struct shim_trees *trees, struct shim_failure *failure);

// ---- events.c -------------------------------------------------------------------------

/// Opens DIR/events for appending (container name for every line).
void events_open(int dir_fd, const char *container);
/// Appends {"time":…,"container":…,"type":TYPE,FIELDS} as one line; `fields` is JSON
/// members without braces ("\"pid\":12"), may be "". Rotates to events.1 at a limit.
void event_emit(const char *type, const char *fields_format, ...) __attribute__((format(printf, 2, 3)));
/// `text` as a JSON string literal (quotes included) into `out`; truncated to fit.
void json_quote(char *out, size_t size, const char *text, size_t length);

// ---- health.c -------------------------------------------------------------------------

enum { HEALTH_OUTPUT_MAX = 4096, HEALTH_LOG_MAX = 5 };

struct health_result {
    double start, end;     // wall clock
    int exit_code;         // -1: timed out
    char output[HEALTH_OUTPUT_MAX];
    size_t output_length;
};

/// The health of the current run (Docker's semantics): "starting" until the first
/// success, "healthy" after it, "unhealthy" after `retries` failures in a row; failures
/// within the start period of a run that never succeeded do not count.
struct health_monitor {
    const char *status;       // NULL: no health check
    int failing_streak;
    long long run_started_ms; // monotonic
    long long next_at_ms;     // the next check, 0: none scheduled
    pid_t pid;                // the check's helper process, 0: none
    int output_fd;            // what the check prints, -1
    long long deadline_ms;    // the helper is killed then (timeout)
    bool timed_out;
    struct health_result current;
    struct health_result log[HEALTH_LOG_MAX];
    int logc;
};

/// A new run started (or the settings changed): status "starting", first check after
/// one interval. Without a health check the monitor is cleared.
void health_reset(struct health_monitor *h, const struct shim_spec *spec, long long now_ms);
/// The run ended: a check in flight is killed and reaped; nothing more is scheduled.
void health_stop(struct health_monitor *h);
/// Starts a check of the container whose init is `init_pid` (started at `init_start`).
void health_launch(struct health_monitor *h, const struct shim_spec *spec, pid_t init_pid, unsigned long long init_start,
                   long long now_ms);
/// Reads what the check printed (bounded; the rest is discarded).
void health_read_output(struct health_monitor *h);
/// The helper exited with `status`: records the result. Returns the previous status when
/// the status changed, else NULL.
const char *health_finish(struct health_monitor *h, const struct shim_spec *spec, int status, long long now_ms);
/// DIR/health: the status, the failing streak and the last results, as JSON.
void health_write(const struct health_monitor *h, int dir_fd);

// ---- supervise.c / exec.c -------------------------------------------------------------

int supervise_main(const char *dir);
int exec_main(int argc, char **argv);

// ---- shared helpers (supervise.c) -----------------------------------------------------

/// Field 22 of /proc/PID/stat (start time in clock ticks since boot); 0 when unknown.
unsigned long long process_start_time(pid_t pid);
/// The CLONE_NEW* flags of the namespaces of `pid` that differ from ours (for setns on
/// its pidfd: exec and health checks join only those); -1 with `failure` set when one
/// cannot be read.
int namespaces_to_join(pid_t pid, struct shim_failure *failure);
/// The environment for a process in this container: spec env plus the defaults
/// (PATH, HOME, HOSTNAME, TERM) for keys the spec does not set.
void build_environment(const struct shim_spec *spec, const char **extra, int extrac);

#endif
