#define _GNU_SOURCE
#include "tupp_sys.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sched.h>
#include <unistd.h>

// Mirrors struct open_how from linux/openat2.h; kept local to avoid header clashes.
struct tupp_open_how {
    uint64_t flags;
    uint64_t mode;
    uint64_t resolve;
};

int tupp_openat2(int dirfd, const char *path, uint64_t flags, uint64_t mode, uint64_t resolve) {
    struct tupp_open_how how = {.flags = flags, .mode = mode, .resolve = resolve};
    long fd;
    do {
        fd = syscall(SYS_openat2, dirfd, path, &how, sizeof how);
    } while (fd < 0 && errno == EAGAIN);  // EAGAIN: a concurrent rename raced the lookup
    return (int)fd;
}

int tupp_spawn_close_from(posix_spawn_file_actions_t *actions, int from) {
    return posix_spawn_file_actions_addclosefrom_np(actions, from);
}

int tupp_pidfd_open(pid_t pid, unsigned int flags) {
    return (int)syscall(SYS_pidfd_open, pid, flags);
}

int tupp_pidfd_send_signal(int pidfd, int sig) {
    return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
}

int tupp_set_cloexec(int fd, int on) {
    int flags = fcntl(fd, F_GETFD);
    if (flags < 0) return -1;
    flags = on ? (flags | FD_CLOEXEC) : (flags & ~FD_CLOEXEC);
    return fcntl(fd, F_SETFD, flags);
}

int tupp_setns(int fd, int nstype) {
    return setns(fd, nstype);
}
