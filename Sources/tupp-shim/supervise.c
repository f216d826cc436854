// `tupp-shim run DIR`: the per-container supervisor.
//
// The shim is this container's "pause" process: it unshares the namespaces that must
// outlive a restart of the command (net, ipc, uts — as a Kubernetes pause container
// holds a pod's), so the veth and addresses the engine puts in the netns survive
// restarts, and the netns (with its veth pair) goes away when the shim exits. Each run
// of the command gets a fresh pid and mount namespace from clone(2).
//
// Conversation with TuppRuntime over fd 3 (one end of a SOCK_SEQPACKET socketpair; each
// message is one packet of text):
//     shim → "pids SHIM_PID INIT_PID"       the init exists and waits (netns is ready)
//     shim ← "go"                           the engine finished its outside work
//     shim → "started INIT_PID START_TIME"  the command was exec'd; DIR/state is written
//  or shim → "error\nERRNO\nOP\nOBJECT\nDETAIL"
// EOF instead of "go" aborts: the waiting init is killed and the shim exits.
//
// DIR/state is rewritten (temp file + rename) on every change; lines of KEY=VALUE:
//     version=1, shim-pid, shim-start, init-pid, init-start, state (starting | running |
//     restarting | exited | stopped), restarts, started-at (epoch seconds),
//     exit-code | exit-signal, exit-at, exit-oom (1: the kernel's OOM killer killed a
//     process of the container during the run that ended), ran-ms (how long that run
//     lasted), oom-kills (the cgroup's count since the container started), error,
//     health (starting | healthy | unhealthy, with a health check), health-failures
//     (failures in a row), ns-mnt ns-pid ns-net ns-uts ns-ipc.
// DIR/health (health.c) keeps the last health check results; DIR/events (events.c) is
// the stream of starts, exits, restarts, health changes and stops.
//
// SIGHUP makes the supervisor re-read the spec's in-place settings (restart policy, stop
// signal and timeout, log limit, health check) at once; it also re-reads them at every
// exit and stop.
// It is not fsynced: after a host crash no process it describes exists anyway, and the
// rename alone gives readers an old or a new record, never a mix.
//
// Each run of the command: clone (on cgroup v2 straight into the container's cgroup,
// CLONE_INTO_CGROUP) → "pids" → the shim puts the child into the container's cgroup
// (cgroup.c; a v1 migration waits for an RCU grace period, so it overlaps the engine's
// outside work) → the child prepares its seccomp filter while it waits for "go" → rootfs
// (rootfs.c) → rlimits (limits.c) → user, groups, capabilities, no_new_privs (caps.c) →
// seccomp (seccomp.c) → exec. When the command ends, whatever is left in the cgroup is
// killed before a restart, and stop kills through the cgroup.
//
// With a user namespace (userns.c) the user namespace comes first and owns net, ipc and
// uts; each run, the shim makes the idmapped trees, and the init is cloned from inside the
// user namespace by a short-lived middle process (rlimits are set there, while it still
// has host privileges). The seccomp filter is prepared once by the shim: the init, an
// unprivileged host user, cannot read the cache.
#include "shim.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { SYNC_FD = 3 };

static const long backoff_initial_ms = 100, backoff_max_ms = 10000, backoff_reset_after_ms = 10000;

struct supervisor {
    const char *dir;
    int dir_fd;
    struct shim_spec spec;
    int sync_fd;      // fd 3 until "started" was sent, then -1
    int log_read;     // the container's stdout/stderr pipe, kept across restarts
    int log_write;
    int signal_fd;
    struct shim_log log;

    pid_t shim_pid;
    unsigned long long shim_start;
    pid_t init_pid;   // 0 while no init runs
    unsigned long long init_start;
    const char *state;
    int restarts;
    int backoff_step;
    bool has_exit;
    int exit_code, exit_signal;
    bool exit_oom;
    long long oom_kills;      // the cgroup's counter, -1: not counted
    long long oom_at_start;   // … when the current run started
    double exit_at, started_at;
    long long started_mono_ms;
    char error[768];
    unsigned long long ns[5];

    long long ran_ms;         // how long the run that ended lasted
    struct health_monitor health;
    bool restart_unhealthy;   // the run is being ended because it became unhealthy

    bool stopping;
    long long kill_at_ms;     // SIGKILL deadline while stopping, 0: none
    long long restart_at_ms;  // backoff deadline, 0: none

    // With a user namespace (spec.uid_mapc > 0): its descriptor, and the seccomp filter
    // prepared by the shim. (A run's trees live on spawn_init's stack: a start's worth.)
    int userns_fd;
    struct shim_filter filter;
    bool filter_ready;
};

static const char *ns_names[5] = {"mnt", "pid", "net", "uts", "ipc"};

static long long monotonic_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static double wall_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

unsigned long long process_start_time(pid_t pid) {
    char path[64], text[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t n = read(fd, text, sizeof text - 1);
    close(fd);
    if (n <= 0) return 0;
    text[n] = '\0';
    // The command (field 2) may contain spaces and ')': count fields after the last ')'.
    char *p = strrchr(text, ')');
    if (!p) return 0;
    int field = 2;
    for (p++; *p && field < 22; p++)
        if (*p == ' ') field++;
    return strtoull(p, NULL, 10);
}

int namespaces_to_join(pid_t pid, struct shim_failure *failure) {
    static const struct {
        const char *name;
        int flag;
    } kinds[] = {{"user", CLONE_NEWUSER}, {"mnt", CLONE_NEWNS}, {"uts", CLONE_NEWUTS}, {"ipc", CLONE_NEWIPC},
                 {"net", CLONE_NEWNET}, {"pid", CLONE_NEWPID}, {"cgroup", CLONE_NEWCGROUP}};
    int flags = 0;
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        char theirs[64], ours[64];
        struct stat a, b;
        snprintf(theirs, sizeof theirs, "/proc/%d/ns/%s", (int)pid, kinds[i].name);
        snprintf(ours, sizeof ours, "/proc/self/ns/%s", kinds[i].name);
        if (stat(theirs, &a) < 0) {
            failure_set(failure, errno, "stat", NULL, "%s", theirs);
            return -1;
        }
        if (stat(ours, &b) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev) continue;
        flags |= kinds[i].flag;
    }
    return flags;
}

void build_environment(const struct shim_spec *spec, const char **extra, int extrac) {
    clearenv();
    for (int i = 0; i < spec->envc; i++) putenv((char *)spec->env[i]);
    for (int i = 0; i < extrac; i++) putenv((char *)extra[i]);
    setenv("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", 0);
    setenv("HOME", spec->home ? spec->home : spec->uid == 0 ? "/root" : "/", 0);
    char host[256] = {0};
    if (gethostname(host, sizeof host - 1) == 0) setenv("HOSTNAME", host, 0);
    setenv("TERM", "xterm", 0);
}

// ---- state -----------------------------------------------------------------------------

static void write_state(struct supervisor *s) {
    char text[4096];
    int n = snprintf(text, sizeof text,
                     "version=1\nshim-pid=%d\nshim-start=%llu\ninit-pid=%d\ninit-start=%llu\nstate=%s\n"
                     "restarts=%d\nstarted-at=%.3f\n",
                     (int)s->shim_pid, s->shim_start, (int)s->init_pid, s->init_start, s->state, s->restarts,
                     s->started_at);
    if (s->has_exit) {
        if (s->exit_signal)
            n += snprintf(text + n, sizeof text - (size_t)n, "exit-signal=%d\n", s->exit_signal);
        else
            n += snprintf(text + n, sizeof text - (size_t)n, "exit-code=%d\n", s->exit_code);
        n += snprintf(text + n, sizeof text - (size_t)n, "exit-at=%.3f\n", s->exit_at);
        if (s->exit_oom) n += snprintf(text + n, sizeof text - (size_t)n, "exit-oom=1\n");
        n += snprintf(text + n, sizeof text - (size_t)n, "ran-ms=%lld\n", s->ran_ms);
    }
    if (s->health.status)
        n += snprintf(text + n, sizeof text - (size_t)n, "health=%s\nhealth-failures=%d\n", s->health.status,
                      s->health.failing_streak);
    if (s->oom_kills >= 0) n += snprintf(text + n, sizeof text - (size_t)n, "oom-kills=%lld\n", s->oom_kills);
    if (s->error[0]) n += snprintf(text + n, sizeof text - (size_t)n, "error=%s\n", s->error);
    for (int i = 0; i < 5; i++)
        if (s->ns[i]) n += snprintf(text + n, sizeof text - (size_t)n, "ns-%s=%llu\n", ns_names[i], s->ns[i]);
    if (n >= (int)sizeof text) n = (int)sizeof text - 1;

    int fd = openat(s->dir_fd, ".state.tmp", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return;
    int rc = write_all(fd, text, (size_t)n);
    close(fd);
    if (rc == 0) renameat(s->dir_fd, ".state.tmp", s->dir_fd, "state");
}

static void record_namespaces(struct supervisor *s) {
    for (int i = 0; i < 5; i++) {
        char path[64];
        struct stat st;
        snprintf(path, sizeof path, "/proc/%d/ns/%s", (int)s->init_pid, ns_names[i]);
        s->ns[i] = stat(path, &st) == 0 ? (unsigned long long)st.st_ino : 0;
    }
}

// ---- messages to TuppRuntime --------------------------------------------------------

static void sync_send(struct supervisor *s, const char *text) {
    if (s->sync_fd < 0) return;
    while (send(s->sync_fd, text, strlen(text), MSG_NOSIGNAL) < 0 && errno == EINTR) {
    }
}

static void sync_send_failure(struct supervisor *s, const struct shim_failure *f) {
    char text[1024];
    snprintf(text, sizeof text, "error\n%d\n%s\n%s\n%s", f->err, f->op, f->object, f->detail);
    sync_send(s, text);
}

static void describe_failure(char *out, size_t size, const struct shim_failure *f) {
    snprintf(out, size, "%s %s: %s%s%s", f->op, f->object, f->err ? strerror(f->err) : "failed",
             f->detail[0] ? " — " : "", f->detail);
}

// ---- the container init ---------------------------------------------------------------

struct pending_init {
    pid_t pid;
    bool in_cgroup;  // born there (CLONE_INTO_CGROUP)
    int go_fd;     // the child reads "j" (it is in its cgroup), then "g" (go on)
    int error_fd;  // a struct shim_failure, or EOF once exec succeeded
};

/// One byte from the go pipe; exits when the shim is gone (EOF).
static char wait_for(int go_fd) {
    char byte;
    ssize_t n;
    do n = read(go_fd, &byte, 1);
    while (n < 0 && errno == EINTR);
    if (n != 1) _exit(1);
    return byte;
}

/// `trees`: in a user namespace, the run's detached mounts (userns.c); NULL without one.
__attribute__((noreturn)) static void init_child(struct supervisor *s, const struct shim_trees *trees, int go_fd, int error_fd) {
    struct shim_failure failure;
    // Die with the shim. Set before waiting for "go": if the shim died between clone and
    // this prctl, the read below sees EOF instead (the shim held the pipe's write end),
    // so there is no window where the child outlives it. getppid() cannot be used to
    // check — in a new pid namespace it is 0 whoever the parent is.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    wait_for(go_fd);  // in the container's cgroup now
    // A delegated cgroup is the root of the container's own cgroup namespace.
    if (s->spec.cgroup_delegate && unshare(CLONE_NEWCGROUP) < 0) {
        failure_set(&failure, errno, "unshare", NULL, "a cgroup namespace for %s", s->spec.rootfs);
        wait_for(go_fd);
        failure_exit(error_fd, &failure);
    }
    bool userns = trees != NULL;
    struct shim_filter filter = s->filter;
    struct shim_failure compile_failure;
    bool compiled = s->filter_ready || seccomp_prepare(&s->spec.seccomp, &filter, &compile_failure) == 0;
    wait_for(go_fd);
    if (!compiled) failure_exit(error_fd, &compile_failure);

    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);  // an ignored signal would stay ignored across exec

    if (rootfs_setup(&s->spec, trees, &failure) < 0) failure_exit(error_fd, &failure);
    // In a user namespace the middle process set them (userns.c).
    if (!userns && limits_apply(&s->spec, &failure) < 0) failure_exit(error_fd, &failure);
    if (identity_apply(&s->spec, &failure) < 0) failure_exit(error_fd, &failure);
    if (chdir(s->spec.workdir) < 0) {
        failure_set(&failure, errno, "chdir", "the workdir must exist in the image and be reachable by the user",
                    "workdir %s in %s (uid %u)", s->spec.workdir, s->spec.rootfs, (unsigned)s->spec.uid);
        failure_exit(error_fd, &failure);
    }
    build_environment(&s->spec, NULL, 0);
    umask(022);

    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(s->log_write, 1) < 0 || dup2(s->log_write, 2) < 0) {
        failure_set(&failure, errno, "set up", NULL, "stdio of %s", s->spec.argv[0]);
        failure_exit(error_fd, &failure);
    }
    // Everything but 0, 1, 2 disappears at exec, including the error pipe, whose EOF
    // tells the shim that exec succeeded.
    if (close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) < 0) {
        failure_set(&failure, errno, "close_range", NULL, "descriptors of %s", s->spec.argv[0]);
        failure_exit(error_fd, &failure);
    }
    if (seccomp_load_filter(&filter, &failure) < 0) failure_exit(error_fd, &failure);
    execvp(s->spec.argv[0], (char *const *)s->spec.argv);
    failure_set(&failure, errno, "exec", NULL, "%s in %s", s->spec.argv[0], s->spec.rootfs);
    failure_exit(error_fd, &failure);
}

static int spawn_init(struct supervisor *s, struct pending_init *out, struct shim_failure *failure) {
    int go[2], error[2];
    if (pipe2(go, O_CLOEXEC) < 0) {
        failure_set(failure, errno, "create", NULL, "sync pipe");
        return -1;
    }
    if (pipe2(error, O_CLOEXEC) < 0) {
        failure_set(failure, errno, "create", NULL, "error pipe");
        close(go[0]);
        close(go[1]);
        return -1;
    }
    unsigned long flags = CLONE_NEWNS;
    if (s->spec.namespaces & SHIM_NS_PID) flags |= CLONE_NEWPID;
    bool born_inside = false;
    pid_t pid;
    if (s->spec.uid_mapc > 0) {
        // The trees of this run; the shim's copies close once the init holds its own.
        struct shim_trees trees;
        if (userns_prepare_trees(&s->spec, s->userns_fd, &trees, failure) < 0) {
            close(go[0]);
            close(go[1]);
            close(error[0]);
            close(error[1]);
            return -1;
        }
        int theirs[] = {go[1], error[0]};
        pid = userns_clone_init(&s->spec, s->userns_fd, flags | SIGCHLD, theirs, 2, &born_inside, failure);
        if (pid == 0) init_child(s, &trees, go[0], error[1]);
        userns_close_trees(&trees);
        if (pid < 0) {
            close(go[0]);
            close(go[1]);
            close(error[0]);
            close(error[1]);
            return -1;
        }
        close(go[0]);
        close(error[1]);
        *out = (struct pending_init){.pid = pid, .go_fd = go[1], .error_fd = error[0], .in_cgroup = born_inside};
        return 0;
    }
    // On cgroup v2 the child is born in its cgroup (clone3 CLONE_INTO_CGROUP): nothing
    // to migrate. Otherwise a raw clone with a NULL stack, which behaves like fork(2) but
    // takes namespace flags; the shim is single-threaded, so the child may use malloc and
    // stdio freely.
    pid = cgroup_clone_into(&s->spec, flags, &born_inside);
    if (pid < 0 && !born_inside) pid = (pid_t)syscall(SYS_clone, flags | SIGCHLD, NULL, NULL, NULL, 0);
    if (pid < 0) {
        failure_set(failure, errno, "clone", NULL, "the init of %s", s->spec.rootfs);
        close(go[0]);
        close(go[1]);
        close(error[0]);
        close(error[1]);
        return -1;
    }
    if (pid == 0) {
        close(go[1]);
        close(error[0]);
        init_child(s, NULL, go[0], error[1]);
    }
    close(go[0]);
    close(error[1]);
    *out = (struct pending_init){.pid = pid, .go_fd = go[1], .error_fd = error[0], .in_cgroup = born_inside};
    return 0;
}

/// Moves the waiting child into the container's cgroup (unless it was born there) and
/// lets it prepare; it runs nothing of its own before this "j". On failure the child is
/// killed and reaped, and -1 returned with `failure` set.
static int enter_cgroup(struct supervisor *s, struct pending_init *p, struct shim_failure *failure) {
    int rc = p->in_cgroup ? 0 : cgroup_enter(&s->spec, p->pid, failure);
    if (rc == 0 && write_all(p->go_fd, "j", 1) < 0) {
        failure_set(failure, errno, "release", NULL, "container init %d", (int)p->pid);
        rc = -1;
    }
    if (rc < 0) {
        kill(p->pid, SIGKILL);
        while (waitpid(p->pid, NULL, 0) < 0 && errno == EINTR) {
        }
        close(p->go_fd);
        close(p->error_fd);
    }
    return rc;
}

/// Lets the child go on and waits until it exec'd (0) or failed (-1, `failure` set).
static int release_init(struct pending_init *p, struct shim_failure *failure) {
    int rc = 0;
    if (write_all(p->go_fd, "g", 1) < 0) {
        failure_set(failure, errno, "release", NULL, "container init %d", (int)p->pid);
        rc = -1;
    } else {
        ssize_t n;
        do n = read(p->error_fd, failure, sizeof *failure);
        while (n < 0 && errno == EINTR);
        if (n > 0) {
            failure->op[sizeof failure->op - 1] = failure->object[sizeof failure->object - 1] = '\0';
            failure->detail[sizeof failure->detail - 1] = '\0';
            rc = -1;
        }
    }
    close(p->go_fd);
    close(p->error_fd);
    return rc;
}

static void mark_started(struct supervisor *s, pid_t pid) {
    s->oom_at_start = s->oom_kills = cgroup_oom_kills(&s->spec);
    s->init_pid = pid;
    s->init_start = process_start_time(pid);
    s->started_at = wall_seconds();
    s->started_mono_ms = monotonic_ms();
    s->state = "running";
    s->error[0] = '\0';
    record_namespaces(s);
    health_reset(&s->health, &s->spec, s->started_mono_ms);
    health_write(&s->health, s->dir_fd);
    event_emit("start", "\"pid\":%d,\"restarts\":%d", (int)pid, s->restarts);
}

// ---- exits, restarts, stop ------------------------------------------------------------

static void drain_log(struct supervisor *s) {
    char buffer[16384];
    for (;;) {
        ssize_t n = read(s->log_read, buffer, sizeof buffer);
        if (n > 0) {
            log_append(&s->log, buffer, (size_t)n, wall_seconds());
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        return;  // EAGAIN (empty) or EOF
    }
}

__attribute__((noreturn)) static void finish(struct supervisor *s, const char *state) {
    drain_log(s);
    health_stop(&s->health);
    s->state = state;
    s->init_pid = 0;
    s->init_start = 0;
    write_state(s);
    _exit(0);
}

static bool same_healthcheck(const struct shim_healthcheck *a, const struct shim_healthcheck *b) {
    if (a->argc != b->argc || a->interval_ms != b->interval_ms || a->timeout_ms != b->timeout_ms ||
        a->start_period_ms != b->start_period_ms || a->retries != b->retries ||
        a->restart_when_unhealthy != b->restart_when_unhealthy)
        return false;
    for (int i = 0; i < a->argc; i++)
        if (strcmp(a->argv[i], b->argv[i]) != 0) return false;
    return true;
}

/// Re-reads the spec, whose in-place settings (restart policy, stop signal and timeout,
/// log limit, health check) the engine may have changed; at every exit, every stop and
/// on SIGHUP. The engine rewrites the others only together with a new start, so taking
/// the whole new spec is the same as taking these. A changed health check starts over.
static void reload_live_settings(struct supervisor *s) {
    struct shim_spec fresh;
    char error[512];
    if (spec_load(s->dir, &fresh, error, sizeof error) < 0) return;  // keep the old ones
    bool health_changed = !same_healthcheck(&s->spec.health, &fresh.health);
    spec_free(&s->spec);
    s->spec = fresh;
    s->log.limit = fresh.log_limit;
    if (health_changed && s->init_pid && !s->stopping) {
        health_reset(&s->health, &s->spec, monotonic_ms());
        health_write(&s->health, s->dir_fd);
    }
}

static void start_again(struct supervisor *s);

static void handle_exit(struct supervisor *s, int status) {
    s->has_exit = true;
    s->exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 0;
    s->exit_signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
    s->exit_at = wall_seconds();
    long long ran_ms = monotonic_ms() - s->started_mono_ms;
    s->ran_ms = ran_ms;
    s->init_pid = 0;
    s->init_start = 0;
    s->kill_at_ms = 0;  // the SIGKILL deadline was this run's; the next one starts without
    health_stop(&s->health);
    // Nothing of this run may outlive it (a daemonized child, an exec'd process
    // without a pid namespace): the next run, or the stop, starts from an empty cgroup.
    cgroup_kill_all(&s->spec);
    long long oom = cgroup_oom_kills(&s->spec);
    s->exit_oom = oom > s->oom_at_start && s->oom_at_start >= 0;
    s->oom_kills = oom;
    char error[800] = "";
    if (s->error[0]) {
        error[0] = ',';
        memcpy(error + 1, "\"error\":", 8);
        json_quote(error + 9, sizeof error - 9, s->error, strlen(s->error));
    }
    if (s->exit_signal)
        event_emit("exit", "\"signal\":%d,\"oom\":%s,\"ran_ms\":%lld%s", s->exit_signal, s->exit_oom ? "true" : "false",
                   ran_ms, error);
    else
        event_emit("exit", "\"code\":%d,\"oom\":%s,\"ran_ms\":%lld%s", s->exit_code, s->exit_oom ? "true" : "false",
                   ran_ms, error);
    if (s->stopping) finish(s, "stopped");

    reload_live_settings(s);
    bool failed = s->exit_signal != 0 || s->exit_code != 0;
    bool again = s->spec.restart == SHIM_RESTART_ALWAYS || (s->spec.restart == SHIM_RESTART_ON_FAILURE && failed) ||
                 s->restart_unhealthy;
    s->restart_unhealthy = false;
    if (!again) finish(s, "exited");

    if (ran_ms >= backoff_reset_after_ms) s->backoff_step = 0;
    long delay = backoff_initial_ms << (s->backoff_step < 7 ? s->backoff_step : 7);
    if (delay > backoff_max_ms) delay = backoff_max_ms;
    s->backoff_step++;
    s->state = "restarting";
    s->restart_at_ms = monotonic_ms() + delay;
    write_state(s);
    event_emit("restart", "\"attempt\":%d,\"delay_ms\":%ld", s->restarts + 1, delay);
}

static void start_again(struct supervisor *s) {
    struct pending_init pending;
    struct shim_failure failure;
    s->restart_at_ms = 0;
    s->restarts++;
    if (spawn_init(s, &pending, &failure) == 0 && enter_cgroup(s, &pending, &failure) == 0) {
        if (release_init(&pending, &failure) == 0) {
            mark_started(s, pending.pid);
            write_state(s);
            return;
        }
        int status;
        while (waitpid(pending.pid, &status, 0) < 0 && errno == EINTR) {
        }
        s->started_mono_ms = monotonic_ms();
        describe_failure(s->error, sizeof s->error, &failure);
        handle_exit(s, status);
        return;
    }
    // clone or joining the cgroup failed: count it as a failed run and back off.
    describe_failure(s->error, sizeof s->error, &failure);
    s->started_mono_ms = monotonic_ms();
    handle_exit(s, 127 << 8);
}

/// PID 1 of a pid namespace only receives signals it installed a handler for: a
/// SIGTERM to an init that did not (a plain `sleep`, a shell) is silently dropped,
/// so waiting out the grace period would only delay the SIGKILL.
static bool catches_signal(pid_t pid, int signal) {
    char path[64], text[4096];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return true;
    ssize_t n = read(fd, text, sizeof text - 1);
    close(fd);
    if (n <= 0) return true;
    text[n] = '\0';
    const char *line = strstr(text, "\nSigCgt:");
    if (!line) return true;
    unsigned long long mask = strtoull(line + 8, NULL, 16);
    return (mask >> (signal - 1)) & 1;
}

/// SIGKILL to the init (our unreaped child: its pid cannot be reused) and to everything
/// else in the container's cgroup.
static void kill_container(struct supervisor *s) {
    kill(s->init_pid, SIGKILL);
    cgroup_kill_all(&s->spec);
}

/// The stop signal to the init, SIGKILL after `timeout_ms` (or at once when the init
/// would not receive it).
static void terminate_run(struct supervisor *s, long timeout_ms) {
    // The init is our unreaped child: its pid cannot be reused, so kill(2) is safe here.
    int signal = s->spec.stop_signal;
    bool polite = (s->spec.namespaces & SHIM_NS_PID) == 0 || catches_signal(s->init_pid, signal);
    if (polite && timeout_ms > 0) {
        kill(s->init_pid, signal);
        s->kill_at_ms = monotonic_ms() + timeout_ms;
    } else {
        kill_container(s);
    }
}

static void handle_stop(struct supervisor *s, long timeout_override_ms) {
    if (s->stopping) return;
    reload_live_settings(s);
    event_emit("stop", "\"signal\":%d", s->spec.stop_signal);
    if (!s->init_pid) finish(s, "stopped");  // between restarts: nothing to signal
    long timeout = timeout_override_ms >= 0 ? timeout_override_ms : s->spec.stop_timeout_ms;
    s->stopping = true;
    s->state = "stopping";
    write_state(s);
    terminate_run(s, timeout);
}

/// A health check ended: its result, a changed status recorded and announced, and an
/// unhealthy run ended for a restart when the spec asks for that.
static void handle_health_exit(struct supervisor *s, int status) {
    const char *before = health_finish(&s->health, &s->spec, status, monotonic_ms());
    health_write(&s->health, s->dir_fd);
    if (!before) return;
    write_state(s);
    static char quoted[HEALTH_OUTPUT_MAX * 6 + 3];
    const struct health_result *r = &s->health.log[s->health.logc - 1];
    json_quote(quoted, sizeof quoted < 8192 ? sizeof quoted : 8192, r->output, r->output_length);
    event_emit("health", "\"from\":\"%s\",\"to\":\"%s\",\"exit_code\":%d,\"output\":%s", before, s->health.status,
               r->exit_code, quoted);
    if (!strcmp(s->health.status, "unhealthy") && s->spec.health.restart_when_unhealthy && s->init_pid && !s->stopping &&
        !s->restart_unhealthy) {
        s->restart_unhealthy = true;
        terminate_run(s, s->spec.stop_timeout_ms);
    }
}

static void reap(struct supervisor *s) {
    for (;;) {
        int status;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid <= 0) return;
        if (pid == s->init_pid) handle_exit(s, status);
        else if (pid == s->health.pid) handle_health_exit(s, status);
        // Others: orphans adopted as subreaper (only without a pid namespace).
    }
}

static void supervise_loop(struct supervisor *s) {
    for (;;) {
        long long now = monotonic_ms();
        long long deadline = 0;
        long long candidates[] = {s->restart_at_ms, s->kill_at_ms, s->health.next_at_ms, s->health.deadline_ms};
        for (size_t i = 0; i < sizeof candidates / sizeof candidates[0]; i++)
            if (candidates[i] && (!deadline || candidates[i] < deadline)) deadline = candidates[i];
        int timeout = deadline ? (int)(deadline > now ? deadline - now : 0) : -1;

        struct pollfd fds[3] = {{.fd = s->signal_fd, .events = POLLIN}, {.fd = s->log_read, .events = POLLIN},
                                {.fd = s->health.output_fd, .events = POLLIN}};
        int ready = poll(fds, s->health.output_fd >= 0 ? 3 : 2, timeout);
        if (ready < 0 && errno != EINTR) _exit(3);
        if (ready > 0 && fds[1].revents) drain_log(s);
        if (ready > 0 && s->health.output_fd >= 0 && fds[2].revents) health_read_output(&s->health);
        if (ready > 0 && fds[0].revents) {
            struct signalfd_siginfo info;
            while (read(s->signal_fd, &info, sizeof info) == sizeof info) {
                if (info.ssi_signo == SIGCHLD) {
                    reap(s);
                } else if (info.ssi_signo == SIGTERM || info.ssi_signo == SIGINT) {
                    // TuppRuntime.stop may queue the grace period (ms) with the signal.
                    long override = info.ssi_code == SI_QUEUE ? (long)info.ssi_int : -1;
                    handle_stop(s, override);
                } else if (info.ssi_signo == SIGHUP) {
                    reload_live_settings(s);
                    write_state(s);
                }
            }
        }
        now = monotonic_ms();
        if (s->kill_at_ms && now >= s->kill_at_ms && s->init_pid) {
            kill_container(s);
            s->kill_at_ms = 0;
        }
        if (s->restart_at_ms && now >= s->restart_at_ms) start_again(s);
        if (s->health.deadline_ms && now >= s->health.deadline_ms && s->health.pid) {
            s->health.timed_out = true;
            kill(s->health.pid, SIGKILL);  // reaped through SIGCHLD; the check dies with it
            s->health.deadline_ms = 0;
        }
        if (s->health.next_at_ms && now >= s->health.next_at_ms && s->init_pid && !s->stopping && !s->health.pid)
            health_launch(&s->health, &s->spec, s->init_pid, s->init_start, now);
    }
}

// ---- entry ----------------------------------------------------------------------------

static __attribute__((noreturn)) void fail_start(struct supervisor *s, const struct shim_failure *f) {
    sync_send_failure(s, f);
    _exit(1);
}

int supervise_main(const char *dir) {
    struct stat st;
    if (fstat(SYNC_FD, &st) < 0 || !S_ISSOCK(st.st_mode)) {
        fprintf(stderr, "tupp-shim run: fd 3 must be the sync socket from TuppRuntime\n");
        return 2;
    }
    // Detach from the caller: the intermediate process exits at once (the caller reaps
    // it), so the supervisor is reparented to init and outlives the CLI that started it.
    pid_t daemon = fork();
    if (daemon < 0) {
        perror("tupp-shim run: fork");
        return 1;
    }
    if (daemon > 0) _exit(0);
    setsid();

    static struct supervisor s;  // static: large and lives for the whole process
    s.dir = dir;
    s.sync_fd = SYNC_FD;
    s.state = "starting";
    s.oom_kills = s.oom_at_start = -1;
    s.health.output_fd = -1;
    s.shim_pid = getpid();
    s.shim_start = process_start_time(s.shim_pid);
    struct shim_failure failure;

    int devnull = open("/dev/null", O_RDWR);
    if (devnull >= 0) {
        dup2(devnull, 0);
        dup2(devnull, 1);
        dup2(devnull, 2);
        if (devnull > 3) close(devnull);
    }
    close_range(4, ~0U, 0);
    signal(SIGPIPE, SIG_IGN);
    sigset_t handled;
    sigemptyset(&handled);
    sigaddset(&handled, SIGCHLD);
    sigaddset(&handled, SIGTERM);
    sigaddset(&handled, SIGINT);
    sigaddset(&handled, SIGHUP);  // re-read the in-place settings
    sigprocmask(SIG_BLOCK, &handled, NULL);
    s.signal_fd = signalfd(-1, &handled, SFD_CLOEXEC | SFD_NONBLOCK);
    if (s.signal_fd < 0) {
        failure_set(&failure, errno, "create", NULL, "signalfd");
        fail_start(&s, &failure);
    }
    prctl(PR_SET_CHILD_SUBREAPER, 1);

    s.dir_fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (s.dir_fd < 0) {
        failure_set(&failure, errno, "open", NULL, "runtime directory %s", dir);
        fail_start(&s, &failure);
    }
    char error[512];
    if (spec_load(dir, &s.spec, error, sizeof error) < 0) {
        failure_set(&failure, 0, "load spec", error, "%s/spec", dir);
        fail_start(&s, &failure);
    }
    events_open(s.dir_fd, s.spec.name);

    int shared = 0;
    if (s.spec.namespaces & SHIM_NS_NET) shared |= CLONE_NEWNET;
    if (s.spec.namespaces & SHIM_NS_IPC) shared |= CLONE_NEWIPC;
    if (s.spec.namespaces & SHIM_NS_UTS) shared |= CLONE_NEWUTS;
    s.userns_fd = -1;
    if (s.spec.uid_mapc > 0) {
        // The user namespace owns the shared ones (userns.c); the ping range is set per run.
        if (userns_create(&s.spec, shared, &s.userns_fd, &failure) < 0) fail_start(&s, &failure);
        if (seccomp_prepare(&s.spec.seccomp, &s.filter, &failure) < 0) fail_start(&s, &failure);
        s.filter_ready = true;
        shared = 0;
    }
    if (shared && unshare(shared) < 0) {
        failure_set(&failure, errno, "unshare", NULL, "net/ipc/uts namespaces for %s", s.spec.rootfs);
        fail_start(&s, &failure);
    }
    if (shared & CLONE_NEWNET) {
        // As Docker does: unprivileged ICMP echo sockets for every group in this netns,
        // so ping works without CAP_NET_RAW. /proc/sys/net follows the opener's netns.
        int fd = open("/proc/sys/net/ipv4/ping_group_range", O_WRONLY | O_CLOEXEC);
        if (fd < 0 || write_all(fd, "0 2147483647", 12) < 0) {
            failure_set(&failure, errno, "write", NULL, "net.ipv4.ping_group_range for %s", s.spec.rootfs);
            fail_start(&s, &failure);
        }
        close(fd);
    }
    if ((shared & CLONE_NEWUTS) && s.spec.hostname &&
        sethostname(s.spec.hostname, strlen(s.spec.hostname)) < 0) {
        failure_set(&failure, errno, "sethostname", NULL, "%s", s.spec.hostname);
        fail_start(&s, &failure);
    }

    int log_pipe[2];
    if (pipe2(log_pipe, O_CLOEXEC) < 0 || log_open(&s.log, s.dir_fd, s.spec.log_limit) < 0) {
        failure_set(&failure, errno, "open", NULL, "log %s/log", dir);
        fail_start(&s, &failure);
    }
    s.log_read = log_pipe[0];
    s.log_write = log_pipe[1];
    fcntl(s.log_read, F_SETFL, O_NONBLOCK);

    struct pending_init pending;
    if (spawn_init(&s, &pending, &failure) < 0) fail_start(&s, &failure);

    char message[128];
    snprintf(message, sizeof message, "pids %d %d", (int)s.shim_pid, (int)pending.pid);
    sync_send(&s, message);
    // While the engine does its outside work (the veth into our netns).
    if (enter_cgroup(&s, &pending, &failure) < 0) fail_start(&s, &failure);
    ssize_t n;
    do n = recv(s.sync_fd, message, sizeof message - 1, 0);
    while (n < 0 && errno == EINTR);
    if (n != 2 || memcmp(message, "go", 2) != 0) {
        // TuppRuntime gave up (its outside setup failed or it died): no container.
        kill(pending.pid, SIGKILL);
        waitpid(pending.pid, NULL, 0);
        _exit(1);
    }
    if (release_init(&pending, &failure) < 0) {
        int status;
        waitpid(pending.pid, &status, 0);
        describe_failure(s.error, sizeof s.error, &failure);
        s.has_exit = true;
        s.exit_code = 127;
        s.exit_at = wall_seconds();
        s.state = "exited";
        write_state(&s);
        fail_start(&s, &failure);
    }
    mark_started(&s, pending.pid);
    write_state(&s);
    snprintf(message, sizeof message, "started %d %llu", (int)s.init_pid, s.init_start);
    sync_send(&s, message);
    close(s.sync_fd);
    s.sync_fd = -1;

    supervise_loop(&s);
    return 0;
}
