// The container's health check, run by its supervisor — never by a CLI that would have
// to stay alive — inside the container as `tupp exec` would run it: the init's mount and
// pid namespaces (net, ipc and uts are the supervisor's own already), its cgroup, rlimits,
// user, groups, capabilities, no_new_privs and seccomp filter.
//
// A check is two processes. The helper, forked from the (single-threaded) supervisor,
// opens the cgroup's cgroup.procs on the host's side, pins the init with a pidfd (its
// start time checked after opening), joins its namespaces (its user namespace first, when
// it has one), and forks the check, which
// joins the cgroup, becomes the container's user and execs the command with stdout and
// stderr into a pipe the supervisor reads (bounded to HEALTH_OUTPUT_MAX bytes, as
// Docker keeps). The helper exits with the check's status (128+N for a signal); the
// supervisor kills it at the timeout, and the check dies with it (PDEATHSIG, set again
// after the credentials changed, which clears it).
//
// Status, as Docker has it: "starting" after each start of the command, "healthy" after a
// success, "unhealthy" after `retries` failures in a row. Failures during the start
// period do not count while the run has not been healthy yet. DIR/health keeps the status,
// the failing streak and the last HEALTH_LOG_MAX results.
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
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double wall_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void health_reset(struct health_monitor *h, const struct shim_spec *spec, long long now_ms) {
    health_stop(h);
    h->logc = 0;
    h->failing_streak = 0;
    if (spec->health.argc == 0) {
        h->status = NULL;
        return;
    }
    h->status = "starting";
    h->run_started_ms = now_ms;
    h->next_at_ms = now_ms + spec->health.interval_ms;
}

void health_stop(struct health_monitor *h) {
    if (h->pid > 0) {
        kill(h->pid, SIGKILL);  // our unreaped child: the pid cannot have been reused
        while (waitpid(h->pid, NULL, 0) < 0 && errno == EINTR) {
        }
    }
    if (h->output_fd >= 0) close(h->output_fd);
    h->pid = 0;
    h->output_fd = -1;
    h->next_at_ms = 0;
    h->deadline_ms = 0;
}

/// The check itself, in the container's namespaces: never returns.
__attribute__((noreturn)) static void run_check(const struct shim_spec *spec, int *cgroup_fds, int output, int alive,
                                                const struct shim_filter *filter) {
    struct shim_failure failure;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (cgroup_join(cgroup_fds, spec->cgroupc) < 0) {
        dprintf(output, "health check: join the cgroup: %s\n", strerror(errno));
        _exit(126);
    }
    setsid();
    int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(output, 1) < 0 || dup2(output, 2) < 0) _exit(126);
    if (limits_apply(spec, &failure) < 0 || identity_apply(spec, &failure) < 0) {
        dprintf(2, "health check: %s %s: %s\n", failure.op, failure.object, strerror(failure.err));
        _exit(126);
    }
    // Changing credentials cleared the parent-death signal; if the helper died before it
    // is set again, its end of `alive` is closed already.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    struct pollfd gone = {.fd = alive, .events = POLLIN};
    if (poll(&gone, 1, 0) > 0) _exit(126);
    if (chdir(spec->workdir) < 0) {
        dprintf(2, "health check: chdir %s: %s\n", spec->workdir, strerror(errno));
        _exit(126);
    }
    build_environment(spec, NULL, 0);
    umask(022);
    sigset_t none;
    sigemptyset(&none);
    for (int s = 1; s < NSIG; s++) signal(s, SIG_DFL);
    sigprocmask(SIG_SETMASK, &none, NULL);
    close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
    if (seccomp_load_filter(filter, &failure) < 0) {
        dprintf(2, "health check: %s %s: %s\n", failure.op, failure.object, strerror(failure.err));
        _exit(126);
    }
    execvp(spec->health.argv[0], (char *const *)spec->health.argv);
    int err = errno;
    dprintf(2, "health check: exec %s: %s\n", spec->health.argv[0], strerror(err));
    _exit(err == ENOENT ? 127 : 126);
}

/// The helper: joins the container and waits for the check. Never returns.
__attribute__((noreturn)) static void run_helper(const struct shim_spec *spec, pid_t init_pid, unsigned long long init_start,
                                                 int output) {
    struct shim_failure failure;
    pid_t supervisor = getppid();
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != supervisor) _exit(125);
    struct shim_filter filter;
    if (seccomp_prepare(&spec->seccomp, &filter, &failure) < 0) {
        dprintf(output, "health check: %s %s: %s\n", failure.op, failure.object, strerror(failure.err));
        _exit(125);
    }
    int cgroup_fds[16];
    if (cgroup_open_procs(spec, cgroup_fds, &failure) < 0) {
        dprintf(output, "health check: %s %s: %s\n", failure.op, failure.object, strerror(failure.err));
        _exit(125);
    }
    int pidfd = (int)syscall(SYS_pidfd_open, init_pid, 0);
    // Checked after pinning it: a matching start time means the pidfd is the init.
    if (pidfd < 0 || process_start_time(init_pid) != init_start) {
        dprintf(output, "health check: the container's init %d is gone\n", (int)init_pid);
        _exit(125);
    }
    int flags = namespaces_to_join(init_pid, &failure);
    // With a user namespace (userns.c): rlimits first, a raised hard limit needs host
    // privileges; joining it changes the credentials, which clears the parent-death signal.
    if (flags > 0 && (flags & CLONE_NEWUSER) && limits_apply(spec, &failure) < 0) {
        dprintf(output, "health check: %s %s: %s\n", failure.op, failure.object, strerror(failure.err));
        _exit(125);
    }
    if (flags < 0 || (flags && setns(pidfd, flags) < 0)) {
        dprintf(output, "health check: join the namespaces of pid %d: %s\n", (int)init_pid, strerror(errno));
        _exit(125);
    }
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != supervisor) _exit(125);
    close(pidfd);
    int alive[2];
    if (pipe2(alive, O_CLOEXEC) < 0) _exit(125);
    pid_t check = fork();  // the pid namespace applies to children only
    if (check < 0) {
        dprintf(output, "health check: fork: %s\n", strerror(errno));
        _exit(125);
    }
    if (check == 0) {
        close(alive[1]);
        run_check(spec, cgroup_fds, output, alive[0], &filter);
    }
    close(alive[0]);
    close(output);
    int status;
    while (waitpid(check, &status, 0) < 0) {
        if (errno != EINTR) _exit(125);
    }
    _exit(WIFEXITED(status) ? WEXITSTATUS(status) : WIFSIGNALED(status) ? 128 + WTERMSIG(status) : 125);
}

void health_launch(struct health_monitor *h, const struct shim_spec *spec, pid_t init_pid, unsigned long long init_start,
                   long long now_ms) {
    h->next_at_ms = 0;
    int pipe_fds[2];
    if (pipe2(pipe_fds, O_CLOEXEC) < 0) {
        h->next_at_ms = now_ms + spec->health.interval_ms;
        return;
    }
    memset(&h->current, 0, sizeof h->current);
    h->current.start = wall_now();
    h->timed_out = false;
    pid_t pid = fork();
    if (pid < 0) {
        close(pipe_fds[0]);
        close(pipe_fds[1]);
        h->next_at_ms = now_ms + spec->health.interval_ms;
        return;
    }
    if (pid == 0) {
        close(pipe_fds[0]);
        run_helper(spec, init_pid, init_start, pipe_fds[1]);
    }
    close(pipe_fds[1]);
    fcntl(pipe_fds[0], F_SETFL, O_NONBLOCK);
    h->pid = pid;
    h->output_fd = pipe_fds[0];
    h->deadline_ms = now_ms + spec->health.timeout_ms;
}

void health_read_output(struct health_monitor *h) {
    if (h->output_fd < 0) return;
    for (;;) {
        char buffer[4096];
        ssize_t n = read(h->output_fd, buffer, sizeof buffer);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return;  // EAGAIN: nothing more for now
        if (n == 0) {
            close(h->output_fd);  // every writer is gone
            h->output_fd = -1;
            return;
        }
        size_t room = HEALTH_OUTPUT_MAX - h->current.output_length;
        size_t kept = (size_t)n < room ? (size_t)n : room;
        memcpy(h->current.output + h->current.output_length, buffer, kept);
        h->current.output_length += kept;
    }
}

const char *health_finish(struct health_monitor *h, const struct shim_spec *spec, int status, long long now_ms) {
    health_read_output(h);
    // A process the check left behind may hold the pipe: what it writes later is not this result's.
    if (h->output_fd >= 0) close(h->output_fd);
    h->output_fd = -1;
    h->pid = 0;
    h->deadline_ms = 0;
    h->current.end = wall_now();
    if (h->timed_out) {
        h->current.exit_code = -1;
        char note[128];
        int n = snprintf(note, sizeof note, "%sHealth check exceeded timeout (%ld ms)", h->current.output_length ? "\n" : "",
                         spec->health.timeout_ms);
        size_t room = HEALTH_OUTPUT_MAX - h->current.output_length;
        size_t kept = (size_t)n < room ? (size_t)n : room;
        memcpy(h->current.output + h->current.output_length, note, kept);
        h->current.output_length += kept;
    } else {
        h->current.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    }
    if (h->logc == HEALTH_LOG_MAX) {
        memmove(&h->log[0], &h->log[1], sizeof h->log[0] * (HEALTH_LOG_MAX - 1));
        h->logc--;
    }
    h->log[h->logc++] = h->current;

    const char *before = h->status;
    if (h->current.exit_code == 0) {
        h->failing_streak = 0;
        h->status = "healthy";
    } else if (strcmp(h->status, "starting") != 0 || now_ms - h->run_started_ms >= spec->health.start_period_ms) {
        h->failing_streak++;
        if (h->failing_streak >= spec->health.retries) h->status = "unhealthy";
    }
    h->next_at_ms = now_ms + spec->health.interval_ms;
    return before != h->status && strcmp(before, h->status) != 0 ? before : NULL;
}

void health_write(const struct health_monitor *h, int dir_fd) {
    if (!h->status) {
        unlinkat(dir_fd, "health", 0);
        return;
    }
    // At most HEALTH_LOG_MAX outputs of HEALTH_OUTPUT_MAX bytes, each at most 6× escaped.
    static char text[HEALTH_LOG_MAX * (HEALTH_OUTPUT_MAX * 6 + 160) + 128];
    static char quoted[HEALTH_OUTPUT_MAX * 6 + 3];
    size_t used = (size_t)snprintf(text, sizeof text, "{\"status\":\"%s\",\"failing_streak\":%d,\"log\":[", h->status,
                                   h->failing_streak);
    for (int i = 0; i < h->logc; i++) {
        const struct health_result *r = &h->log[i];
        json_quote(quoted, sizeof quoted, r->output, r->output_length);
        used += (size_t)snprintf(text + used, sizeof text - used, "%s{\"start\":%.3f,\"end\":%.3f,\"exit_code\":%d,\"output\":%s}",
                                 i ? "," : "", r->start, r->end, r->exit_code, quoted);
    }
    used += (size_t)snprintf(text + used, sizeof text - used, "]}\n");
    int fd = openat(dir_fd, ".health.tmp", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return;
    int rc = write_all(fd, text, used);
    close(fd);
    if (rc == 0) renameat(dir_fd, ".health.tmp", dir_fd, "health");
}
