// The container's cgroup, from the shim's side. TuppRuntime creates the directories and
// writes the limits and the device policy before the shim starts; the shim only moves
// processes in, kills through the cgroup and reads the OOM kill counter.
//
//   enter   on v2 the init is born in the cgroup (clone3 CLONE_INTO_CGROUP, 5.7+). On v1
//           the supervisor writes the init's pid into cgroup.procs right after clone,
//           before the init runs anything — also for every restart, which happens
//           without the engine. exec opens cgroup.procs before it joins the container's
//           mount namespace (the host's cgroup tree is not mounted in there) and its
//           child writes "0" (itself) before it runs anything.
//   kill    v2: "1" into cgroup.kill (5.14+) kills every process atomically. v1: the
//           freezer stops every process, so none can fork while the list is read and
//           each gets SIGKILL; thawing lets the signals land. A daemonized process
//           (setsid, double fork, outside the init's process tree) dies too.
//   oom     memory.oom_control (v1) and memory.events (v2) both have an "oom_kill N" line.
#include "shim.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static int write_file(const char *dir, const char *name, const char *text) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = write_all(fd, text, strlen(text));
    int saved = errno;
    close(fd);
    errno = saved;
    return rc;
}

/// Reads DIR/NAME into `buffer` (NUL-terminated); the length, or -1.
static ssize_t read_file(const char *dir, const char *name, char *buffer, size_t size) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    size_t used = 0;
    for (;;) {
        ssize_t n = read(fd, buffer + used, size - 1 - used);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        used += (size_t)n;
        if (used == size - 1) break;
    }
    close(fd);
    buffer[used] = '\0';
    return (ssize_t)used;
}

static void sleep_ms(long ms) {
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

int cgroup_enter(const struct shim_spec *spec, pid_t pid, struct shim_failure *failure) {
    char text[32];
    snprintf(text, sizeof text, "%d", (int)pid);
    for (int i = 0; i < spec->cgroupc; i++) {
        if (write_file(spec->cgroups[i], "cgroup.procs", text) < 0) {
            failure_set(failure, errno, "join cgroup", errno == ENOENT ? "the cgroup was removed; start the container again" : NULL,
                        "%s (pid %d)", spec->cgroups[i], (int)pid);
            return -1;
        }
    }
    return 0;
}

pid_t cgroup_clone_into(const struct shim_spec *spec, unsigned long flags, bool *inside) {
    *inside = false;
    if (spec->cgroupc != 1) return -1;
    char path[4096];
    snprintf(path, sizeof path, "%s/cgroup.controllers", spec->cgroups[0]);
    if (access(path, F_OK) != 0) return -1;  // a v1 directory
    int fd = open(spec->cgroups[0], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    struct clone_args args = {.flags = flags | CLONE_INTO_CGROUP, .exit_signal = SIGCHLD, .cgroup = (uint64_t)fd};
    pid_t pid = (pid_t)syscall(SYS_clone3, &args, sizeof args);
    if (pid == 0) return 0;  // the child: its copy of fd closes at exec (O_CLOEXEC)
    int saved = errno;
    close(fd);
    errno = saved;
    // ENOSYS / E2BIG: a kernel without clone3 or CLONE_INTO_CGROUP; fall back.
    if (pid < 0 && (errno == ENOSYS || errno == E2BIG)) return -1;
    *inside = true;
    return pid;
}

int cgroup_open_procs(const struct shim_spec *spec, int *fds, struct shim_failure *failure) {
    for (int i = 0; i < spec->cgroupc; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/cgroup.procs", spec->cgroups[i]);
        fds[i] = open(path, O_WRONLY | O_CLOEXEC);
        if (fds[i] < 0) {
            failure_set(failure, errno, "open", NULL, "%s", path);
            while (i-- > 0) close(fds[i]);
            return -1;
        }
    }
    return 0;
}

int cgroup_join(int *fds, int count) {
    int rc = 0;
    for (int i = 0; i < count; i++) {
        if (write_all(fds[i], "0", 1) < 0) rc = -1;
        close(fds[i]);
    }
    return rc;
}

/// True when the cgroup at `dir` has no process left — on v2 in its whole subtree
/// ("populated 0" in cgroup.events), which a delegated container may have filled.
static bool cgroup_empty(const char *dir) {
    char text[256];
    if (read_file(dir, "cgroup.events", text, sizeof text) > 0) return strstr(text, "populated 0") != NULL;
    return read_file(dir, "cgroup.procs", text, sizeof text) == 0;
}

/// v1: freeze, SIGKILL each listed process, thaw.
static void kill_frozen(const char *freezer) {
    if (write_file(freezer, "freezer.state", "FROZEN") == 0) {
        // FREEZING until every task stopped; a task in an uninterruptible sleep can take
        // a moment. Killing while some are still running only risks a fork in between,
        // which the loop in cgroup_kill_all catches.
        for (int i = 0; i < 100; i++) {
            char state[32];
            if (read_file(freezer, "freezer.state", state, sizeof state) < 0 || !strncmp(state, "FROZEN", 6)) break;
            sleep_ms(1);
        }
    }
    static char list[1 << 16];
    if (read_file(freezer, "cgroup.procs", list, sizeof list) > 0) {
        char *save = NULL;
        for (char *line = strtok_r(list, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
            long pid = strtol(line, NULL, 10);
            // A pid listed in a frozen cgroup we created cannot exit and be reused
            // before the thaw below: signalling it by number is safe here.
            if (pid > 1) kill((pid_t)pid, SIGKILL);
        }
    }
    write_file(freezer, "freezer.state", "THAWED");
}

void cgroup_kill_all(const struct shim_spec *spec) {
    if (!spec->cgroup_kill) return;
    char path[4096];
    snprintf(path, sizeof path, "%s/cgroup.kill", spec->cgroup_kill);
    bool v2 = access(path, F_OK) == 0;
    for (int attempt = 0; attempt < 200 && !cgroup_empty(spec->cgroup_kill); attempt++) {
        if (attempt % 20 == 0) {
            if (v2) write_file(spec->cgroup_kill, "cgroup.kill", "1");
            else kill_frozen(spec->cgroup_kill);
        }
        sleep_ms(5);  // killed processes leave the cgroup once they have exited
    }
}

long long cgroup_oom_kills(const struct shim_spec *spec) {
    if (!spec->cgroup_oom) return -1;
    char dir[4096], text[2048];
    snprintf(dir, sizeof dir, "%s", spec->cgroup_oom);
    char *slash = strrchr(dir, '/');
    if (!slash) return -1;
    *slash = '\0';
    if (read_file(dir, slash + 1, text, sizeof text) < 0) return -1;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
        if (!strncmp(line, "oom_kill ", 9)) return strtoll(line + 9, NULL, 10);
    return -1;
}
