// `tupp-shim exec DIR [--tty] [--env K=V]... [--workdir W] [--user UID:GID [--group GID]...
//                  [--home DIR]] -- CMD ARGS...`
//
// Runs a command inside a running container: the namespaces, cgroup, root, rlimits,
// user, capabilities, no_new_privs, seccomp filter and environment of its init. --user
// (with its groups and home, resolved by TuppRuntime) replaces the container's user. The init is found through DIR/state and
// pinned with a pidfd whose start time is checked after opening, so a recycled pid is
// never joined. setns(pidfd, flags) joins every namespace at once — the user namespace,
// when the container has one, first (the kernel's order), so the command is container
// root there, an unprivileged host user; the pid namespace applies to children only,
// hence the fork. rlimits are set before joining a user namespace: a raised hard limit
// needs host privileges. The exit status is the command's (128+N
// when killed by signal N); tupp-shim's own failures exit 125, like docker/podman.
//
// The command always starts a session of its own. With --tty the pty comes from the
// container's own devpts (/dev/pts/ptmx after joining the mount namespace), the command
// gets the peer as its controlling terminal, and this process relays between the
// caller's terminal (in raw mode) and the pty, forwarding window size changes.
//
// Without --tty the command gets nothing of the caller's terminal: a descriptor of it
// would let a process in the container push input into the caller's shell (TIOCSTI) or
// change its modes. Each of fds 0-2 that is a terminal is replaced by a pipe this process
// relays; the others (files, pipes, sockets) are passed through as they are.
#include "shim.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

enum { EXIT_SHIM_FAILURE = 125, EXIT_CANNOT_RUN = 126, EXIT_NOT_FOUND = 127 };

static __attribute__((noreturn, format(printf, 1, 2))) void die(const char *format, ...) {
    char text[1024];
    va_list args;
    va_start(args, format);
    vsnprintf(text, sizeof text, format, args);
    va_end(args);
    dprintf(2, "tupp-shim exec: %s\n", text);
    exit(EXIT_SHIM_FAILURE);
}

/// init-pid and init-start from DIR/state.
static void read_state(const char *dir, pid_t *pid, unsigned long long *start, char *state, size_t state_size) {
    char path[4096], text[4096];
    snprintf(path, sizeof path, "%s/state", dir);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) die("read %s: %s (is the container running?)", path, strerror(errno));
    ssize_t n = read(fd, text, sizeof text - 1);
    close(fd);
    text[n > 0 ? n : 0] = '\0';
    *pid = 0;
    *start = 0;
    state[0] = '\0';
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (!strncmp(line, "init-pid=", 9)) *pid = (pid_t)atoi(line + 9);
        else if (!strncmp(line, "init-start=", 11)) *start = strtoull(line + 11, NULL, 10);
        else if (!strncmp(line, "state=", 6)) snprintf(state, state_size, "%s", line + 6);
    }
}

static struct termios saved_termios;
static bool terminal_raw;

static void restore_terminal(void) {
    if (terminal_raw) tcsetattr(0, TCSANOW, &saved_termios);
    terminal_raw = false;
}

static void copy_window_size(int from, int to) {
    struct winsize size;
    if (ioctl(from, TIOCGWINSZ, &size) == 0) ioctl(to, TIOCSWINSZ, &size);
}

static int exit_status(int status) {
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return EXIT_SHIM_FAILURE;
}

/// Copies what is readable from `from` to `to`; false on EOF or error of `from`, or
/// when `to` is a pipe whose reader is gone.
static bool relay(int from, int to) {
    char buffer[8192];
    ssize_t n = read(from, buffer, sizeof buffer);
    if (n > 0) {
        // A vanished reader of the caller's side must not stop the relay; a vanished
        // reader of the command's stdin pipe ends that direction (EPIPE, SIGPIPE ignored).
        if (write_all(to, buffer, (size_t)n) < 0 && errno == EPIPE) return false;
        return true;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return true;
    return false;
}

/// One direction between the caller and the command.
struct stream {
    int from, to;
    bool to_command;  // the caller's input (fd 0) going to the command
};

enum { MAX_STREAMS = 3 };

/// Relays the streams until `child` exits, forwarding signals; the command's exit status.
/// `master`: the pty with --tty (input EOF becomes the terminal's ^D), else -1.
static int supervise_command(pid_t child, struct stream *streams, int count, int master, int signal_fd) {
    for (;;) {
        struct pollfd fds[1 + MAX_STREAMS] = {{.fd = signal_fd, .events = POLLIN}};
        for (int k = 0; k < count; k++) fds[1 + k] = (struct pollfd){.fd = streams[k].from, .events = POLLIN};
        int ready = poll(fds, (nfds_t)(1 + count), -1);
        if (ready < 0) {
            if (errno == EINTR) continue;
            die("poll: %s", strerror(errno));
        }
        for (int k = 0; k < count; k++) {
            struct stream *st = &streams[k];
            if (st->from < 0 || !fds[1 + k].revents || relay(st->from, st->to)) continue;
            if (st->to_command) {
                // The caller's input ended (a pipe, say). On a pty, pass it on as the
                // terminal's EOF character so a program reading it sees end of input.
                // Best effort: if the program switches the pty out of canonical mode after
                // the ^D was queued (an interactive shell starting up), the line discipline
                // drops it. On a pipe, closing it is the EOF.
                if (master >= 0) (void)write_all(master, "\x04", 1);
                else close(st->to);
            } else {
                // EOF (or EIO on a pty: every holder of its peer closed it). Wait for the
                // command itself.
                close(st->from);
            }
            st->from = -1;
        }
        if (fds[0].revents) {
            struct signalfd_siginfo info;
            while (read(signal_fd, &info, sizeof info) == sizeof info) {
                if (info.ssi_signo == SIGWINCH) {
                    if (master >= 0) copy_window_size(0, master);
                } else if (info.ssi_signo != SIGCHLD) {
                    kill(child, (int)info.ssi_signo);  // our unreaped child: the pid is stable
                }
            }
            int status;
            pid_t done = waitpid(child, &status, WNOHANG);
            if (done == child) {
                // What the command wrote before it exited is in the pipe or pty already;
                // a descendant still holding it open must not keep us here.
                for (int k = 0; k < count; k++) {
                    if (streams[k].to_command || streams[k].from < 0) continue;
                    struct pollfd more = {.fd = streams[k].from, .events = POLLIN};
                    while (poll(&more, 1, 0) > 0 && relay(streams[k].from, streams[k].to)) {
                    }
                }
                return exit_status(status);
            }
        }
    }
}

static unsigned parse_id(const char *text, const char *what) {
    char *end;
    errno = 0;
    unsigned long value = strtoul(text, &end, 10);
    if (errno || end == text || (*end && *end != ':') || value > 0xfffffffeUL) die("%s: invalid id \"%s\"", what, text);
    return (unsigned)value;
}

int exec_main(int argc, char **argv) {
    if (argc < 3) die("usage: tupp-shim exec DIR [--tty] [--env K=V]... [--workdir W] [--user UID:GID [--group GID]... [--home DIR]] -- CMD ARGS...");
    const char *dir = argv[2];
    bool tty = false;
    const char *workdir = NULL;
    const char *extra_env[SHIM_MAX_ITEMS];
    int extra_envc = 0;
    const char *user = NULL, *home = NULL;
    gid_t groups[SHIM_MAX_ITEMS];
    int groupc = 0;
    int i = 3;
    for (; i < argc; i++) {
        if (!strcmp(argv[i], "--")) {
            i++;
            break;
        } else if (!strcmp(argv[i], "--tty")) {
            tty = true;
        } else if (!strcmp(argv[i], "--env") && i + 1 < argc) {
            if (!strchr(argv[i + 1], '=')) die("--env %s: expected KEY=VALUE", argv[i + 1]);
            if (extra_envc >= SHIM_MAX_ITEMS) die("too many --env");
            extra_env[extra_envc++] = argv[++i];
        } else if (!strcmp(argv[i], "--workdir") && i + 1 < argc) {
            workdir = argv[++i];
        } else if (!strcmp(argv[i], "--user") && i + 1 < argc) {
            user = argv[++i];
            if (!strchr(user, ':')) die("--user %s: expected UID:GID", user);
        } else if (!strcmp(argv[i], "--group") && i + 1 < argc) {
            if (groupc >= SHIM_MAX_ITEMS) die("too many --group");
            groups[groupc++] = (gid_t)parse_id(argv[++i], "--group");
        } else if (!strcmp(argv[i], "--home") && i + 1 < argc) {
            home = argv[++i];
            if (home[0] != '/') die("--home %s: expected an absolute path", home);
        } else {
            die("unknown argument %s", argv[i]);
        }
    }
    if (i >= argc) die("no command after --");
    char **command = &argv[i];

    struct shim_spec spec;
    char error[512];
    if (spec_load(dir, &spec, error, sizeof error) < 0) die("%s", error);
    if (!workdir) workdir = spec.workdir;
    if (user) {
        spec.uid = (uid_t)parse_id(user, "--user");
        spec.gid = (gid_t)parse_id(strchr(user, ':') + 1, "--user");
        memcpy(spec.groups, groups, sizeof(gid_t) * (size_t)groupc);
        spec.groupc = groupc;
        spec.home = home;
    }
    struct shim_failure failure;
    struct shim_filter filter;
    if (seccomp_prepare(&spec.seccomp, &filter, &failure) < 0)
        die("%s %s: %s%s%s", failure.op, failure.object, strerror(failure.err), failure.detail[0] ? " — " : "", failure.detail);

    pid_t pid;
    unsigned long long start;
    char state[32];
    read_state(dir, &pid, &start, state, sizeof state);
    const char *name = spec.name ? spec.name : dir;
    if (pid <= 0 || strcmp(state, "running") != 0)
        die("container %s is not running (state %s)", name, state[0] ? state : "unknown");
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (pidfd < 0) die("container %s: init %d is gone: %s", name, (int)pid, strerror(errno));
    // Checked after pinning the process with the pidfd: if the start time matches now,
    // the pidfd is the init and stays so.
    if (process_start_time(pid) != start) die("container %s: pid %d was reused; its init is gone", name, (int)pid);

    // Opened on the host's side: inside the container's mount namespace the cgroup tree
    // is not there. The child writes itself into them before it runs anything.
    int cgroup_fds[16];
    if (cgroup_open_procs(&spec, cgroup_fds, &failure) < 0)
        die("container %s: %s %s: %s", name, failure.op, failure.object, strerror(failure.err));
    int flags = namespaces_to_join(pid, &failure);
    if (flags < 0) die("%s %s: %s", failure.op, failure.object, strerror(failure.err));
    if ((flags & CLONE_NEWUSER) && limits_apply(&spec, &failure) < 0)
        die("container %s: %s %s: %s", name, failure.op, failure.object, strerror(failure.err));
    if (flags && setns(pidfd, flags) < 0) die("join the namespaces of container %s (pid %d): %s", name, (int)pid, strerror(errno));
    close(pidfd);

    int master = -1, peer = -1;
    if (tty) {
        // The container may have tampered with its /dev: no symlinks, and the node must
        // be devpts's own ptmx before this (fully privileged) process trusts it.
        master = open("/dev/pts/ptmx", O_RDWR | O_NOCTTY | O_NOFOLLOW | O_CLOEXEC);
        struct statfs fs;
        int unlock = 0;
        if (master < 0 || fstatfs(master, &fs) < 0 || ioctl(master, TIOCSPTLCK, &unlock) < 0)
            die("open /dev/pts/ptmx in container %s: %s", name, strerror(errno));
        if (fs.f_type != DEVPTS_SUPER_MAGIC) die("/dev/pts/ptmx in container %s is not on devpts", name);
        // TIOCGPTPEER opens the peer from the master, without a path lookup that could be raced.
        peer = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (peer < 0) die("open the pty peer in container %s: %s", name, strerror(errno));
        if (isatty(0)) copy_window_size(0, master);
    }

    // Without --tty: a pipe in place of each standard descriptor that is a terminal.
    // command_fd[k] is what the command gets as fd k.
    int command_fd[3] = {0, 1, 2};
    struct stream streams[MAX_STREAMS];
    int stream_count = 0;
    if (tty) {
        streams[stream_count++] = (struct stream){.from = master, .to = 1};
        streams[stream_count++] = (struct stream){.from = 0, .to = master, .to_command = true};
    } else {
        for (int k = 0; k < 3; k++) {
            if (!isatty(k)) continue;
            int p[2];
            if (pipe2(p, O_CLOEXEC) < 0) die("create a pipe for fd %d: %s", k, strerror(errno));
            bool input = k == 0;
            command_fd[k] = input ? p[0] : p[1];
            streams[stream_count++] = (struct stream){.from = input ? 0 : p[0], .to = input ? p[1] : k, .to_command = input};
        }
    }
    signal(SIGPIPE, SIG_IGN);  // a command that stops reading its stdin pipe: EPIPE, not death

    sigset_t handled, none;
    sigemptyset(&handled);
    sigemptyset(&none);
    int forwarded[] = {SIGCHLD, SIGWINCH, SIGINT, SIGTERM, SIGHUP, SIGQUIT};
    for (size_t k = 0; k < sizeof forwarded / sizeof forwarded[0]; k++) sigaddset(&handled, forwarded[k]);
    sigprocmask(SIG_BLOCK, &handled, NULL);
    int signal_fd = signalfd(-1, &handled, SFD_CLOEXEC | SFD_NONBLOCK);
    if (signal_fd < 0) die("signalfd: %s", strerror(errno));

    pid_t child = fork();
    if (child < 0) die("fork: %s", strerror(errno));
    if (child == 0) {
        if (cgroup_join(cgroup_fds, spec.cgroupc) < 0) {
            dprintf(2, "tupp-shim exec: join the cgroup of container %s: %s\n", name, strerror(errno));
            _exit(EXIT_CANNOT_RUN);
        }
        // tupp execs this helper from a Swift thread whose mask may block every signal and
        // whose runtime may ignore SIGPIPE; both survive exec, so the command starts clean.
        for (int s = 1; s < NSIG; s++) signal(s, SIG_DFL);
        sigprocmask(SIG_SETMASK, &none, NULL);
        // A session of its own: no controlling terminal of the caller's, whatever it holds.
        if (setsid() < 0) {
            dprintf(2, "tupp-shim exec: setsid: %s\n", strerror(errno));
            _exit(EXIT_CANNOT_RUN);
        }
        if (tty) {
            if (ioctl(peer, TIOCSCTTY, 0) < 0) {
                dprintf(2, "tupp-shim exec: make the pty the controlling terminal: %s\n", strerror(errno));
                _exit(EXIT_CANNOT_RUN);
            }
            for (int k = 0; k < 3; k++) command_fd[k] = peer;
        }
        for (int k = 0; k < 3; k++) {
            if (command_fd[k] != k && dup2(command_fd[k], k) < 0) {
                dprintf(2, "tupp-shim exec: set up fd %d: %s\n", k, strerror(errno));
                _exit(EXIT_CANNOT_RUN);
            }
        }
        if (limits_apply(&spec, &failure) < 0 || identity_apply(&spec, &failure) < 0) {
            dprintf(2, "tupp-shim exec: %s %s: %s\n", failure.op, failure.object, strerror(failure.err));
            _exit(EXIT_CANNOT_RUN);
        }
        if (chdir(workdir) < 0) {
            dprintf(2, "tupp-shim exec: chdir %s in container %s (uid %u): %s\n", workdir, name, (unsigned)spec.uid,
                    strerror(errno));
            _exit(EXIT_CANNOT_RUN);
        }
        build_environment(&spec, extra_env, extra_envc);
        umask(022);
        close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
        if (seccomp_load_filter(&filter, &failure) < 0) {
            dprintf(2, "tupp-shim exec: %s %s: %s\n", failure.op, failure.object, strerror(failure.err));
            _exit(EXIT_CANNOT_RUN);
        }
        execvp(command[0], command);
        int err = errno;
        dprintf(2, "tupp-shim exec: exec %s in container %s: %s\n", command[0], name, strerror(err));
        _exit(err == ENOENT ? EXIT_NOT_FOUND : EXIT_CANNOT_RUN);
    }

    for (int k = 0; k < spec.cgroupc; k++) close(cgroup_fds[k]);
    // The command's ends of the pipes (or the pty peer) are the command's alone.
    for (int k = 0; k < 3; k++)
        if (command_fd[k] != k) close(command_fd[k]);
    if (tty) {
        close(peer);
        fcntl(master, F_SETFL, O_NONBLOCK);
        if (isatty(0) && tcgetattr(0, &saved_termios) == 0) {
            struct termios raw = saved_termios;
            cfmakeraw(&raw);
            if (tcsetattr(0, TCSANOW, &raw) == 0) terminal_raw = true;
        }
    }
    int status = supervise_command(child, streams, stream_count, master, signal_fd);
    restore_terminal();
    return status;
}
