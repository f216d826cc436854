// syscalls: which syscalls reach the kernel, for the seccomp tests.
//
// Prints one line per syscall, "NAME=RESULT", where RESULT is "ok" or the errno's name.
// Each call gets arguments the kernel rejects on its own (a NULL pointer, a bad flag, a
// missing path): where seccomp lets a call through, the kernel answers EFAULT, EINVAL,
// ENOENT … — never EPERM when the container has the capability the call needs — and
// nothing on the host changes. Where the filter refuses it, the answer is EPERM.
// Built static by the tests and copied into a container's root.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/perf_event.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/swap.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void report(const char *name, long rc) {
    printf("%s=%s\n", name, rc < 0 ? strerrorname_np(errno) : "ok");
    fflush(stdout);
}

/// unshare(CLONE_NEWUSER) in a child, so this process keeps its namespaces.
static long unshare_user(void) {
    pid_t child = fork();
    if (child == 0) _exit(unshare(CLONE_NEWUSER) < 0 ? errno : 0);
    int status;
    waitpid(child, &status, 0);
    int err = WIFEXITED(status) ? WEXITSTATUS(status) : EIO;
    errno = err;
    return err ? -1 : 0;
}

/// PTRACE_ATTACH to a sibling: two children of this process, one tracing the other.
static long ptrace_sibling(void) {
    pid_t tracee = fork();
    if (tracee == 0) {
        pause();
        _exit(0);
    }
    pid_t tracer = fork();
    if (tracer == 0) {
        long rc = ptrace(PTRACE_ATTACH, tracee, NULL, NULL);
        _exit(rc < 0 ? errno : 0);
    }
    int status;
    waitpid(tracer, &status, 0);
    kill(tracee, SIGKILL);
    waitpid(tracee, NULL, 0);
    int err = WIFEXITED(status) ? WEXITSTATUS(status) : EIO;
    errno = err;
    return err ? -1 : 0;
}

int main(void) {
    report("unshare-user", unshare_user());
    report("keyctl", syscall(SYS_keyctl, 9999, 0, 0, 0, 0));
    report("add_key", syscall(SYS_add_key, NULL, NULL, NULL, 0, 0));
    report("bpf", syscall(SYS_bpf, -1, NULL, 0));
    report("perf_event_open", syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0));
    report("userfaultfd", syscall(SYS_userfaultfd, ~0));
    report("io_uring_setup", syscall(SYS_io_uring_setup, 0, NULL));
    report("kexec_load", syscall(SYS_kexec_load, 0, 0, NULL, ~0UL));
    report("init_module", syscall(SYS_init_module, NULL, 16, ""));
    report("open_by_handle_at", syscall(SYS_open_by_handle_at, -1, NULL, 0));
    report("mount", mount("none", "/nonexistent-target", "tmpfs", 0, NULL));
    report("reboot", syscall(SYS_reboot, 0, 0, 0, NULL));
    report("swapon", syscall(SYS_swapon, NULL, 0));
    report("clock_settime", syscall(SYS_clock_settime, CLOCK_REALTIME, NULL));
    report("ptrace-sibling", ptrace_sibling());
    // Conditional rules of the default profile: clone without namespace flags is fine,
    // with one it is refused; personality only for the usual personas.
    pid_t plain = (pid_t)syscall(SYS_clone, SIGCHLD, NULL, NULL, NULL, 0);
    if (plain == 0) _exit(0);
    if (plain > 0) waitpid(plain, NULL, 0);
    report("clone", plain);
    pid_t namespaced = (pid_t)syscall(SYS_clone, SIGCHLD | CLONE_NEWUTS, NULL, NULL, NULL, 0);
    if (namespaced == 0) _exit(0);
    if (namespaced > 0) waitpid(namespaced, NULL, 0);
    report("clone-newuts", namespaced);
    report("clone3", syscall(SYS_clone3, NULL, 0));
    report("personality-linux", personality(PER_LINUX));
    report("personality-exec", personality(READ_IMPLIES_EXEC));
    int vsock = socket(AF_VSOCK, SOCK_STREAM, 0);
    report("socket-vsock", vsock);
    if (vsock >= 0) close(vsock);
    return 0;
}
