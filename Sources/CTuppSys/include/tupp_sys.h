#ifndef TUPP_SYS_H
#define TUPP_SYS_H

#include <spawn.h>
#include <stdint.h>
#include <sys/types.h>

// RESOLVE_* flags for tupp_openat2 (linux/openat2.h), repeated so Swift sees them
// without pulling in kernel headers that clash with glibc's.
#define TUPP_RESOLVE_NO_XDEV       0x01
#define TUPP_RESOLVE_NO_MAGICLINKS 0x02
#define TUPP_RESOLVE_NO_SYMLINKS   0x04
#define TUPP_RESOLVE_BENEATH       0x08
#define TUPP_RESOLVE_IN_ROOT       0x10

/// openat2(2): glibc 2.36 has no wrapper. Returns an fd or -1 with errno set.
int tupp_openat2(int dirfd, const char *path, uint64_t flags, uint64_t mode, uint64_t resolve);

/// pidfd_open(2): no glibc 2.36 wrapper. Returns an fd or -1 with errno set.
int tupp_pidfd_open(pid_t pid, unsigned int flags);

/// pidfd_send_signal(2): no glibc 2.36 wrapper. Returns 0 or -1 with errno set.
int tupp_pidfd_send_signal(int pidfd, int sig);

/// fcntl(F_GETFL/F_SETFL) and flock-style calls are variadic in C; Swift cannot call
/// variadic functions, so this sets or clears FD_CLOEXEC.
int tupp_set_cloexec(int fd, int on);

/// setns(2): glibc declares it only under _GNU_SOURCE, which Swift's Glibc module lacks.
int tupp_setns(int fd, int nstype);

/// posix_spawn_file_actions_addclosefrom_np (glibc 2.34+, _GNU_SOURCE only): the child
/// closes every descriptor from `from` up. O_CLOEXEC on our own opens is not enough —
/// libraries (libbtrfsutil among them) open without it, and a descriptor another thread
/// holds at the moment of a spawn would otherwise live on in the child.
int tupp_spawn_close_from(posix_spawn_file_actions_t *actions, int from);

/// The CLONE_NEW* flags, which glibc exposes only under _GNU_SOURCE.
enum {
    TUPP_CLONE_NEWNS = 0x00020000,
    TUPP_CLONE_NEWUTS = 0x04000000,
    TUPP_CLONE_NEWIPC = 0x08000000,
    TUPP_CLONE_NEWUSER = 0x10000000,
    TUPP_CLONE_NEWPID = 0x20000000,
    TUPP_CLONE_NEWNET = 0x40000000,
    TUPP_CLONE_NEWCGROUP = 0x02000000,
};

#endif
