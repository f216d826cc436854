// inject PID SOURCE TARGET: makes the host path SOURCE visible at TARGET inside the mount
// namespace of process PID, as a plain bind (not idmapped): what a leaked host directory
// would look like to the container. Run on the host as root; single-threaded, because
// setns into a mount namespace refuses a process whose threads share its filesystem view.
// Prints "inject=ok" or "inject=STEP ERRNO".
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <unistd.h>

static int fail(const char *step) {
    printf("inject=%s %s\n", step, strerrorname_np(errno));
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 4) return 2;
    int tree = open_tree(AT_FDCWD, argv[2], OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
    if (tree < 0) return fail("open_tree");
    int pidfd = (int)syscall(SYS_pidfd_open, atoi(argv[1]), 0);
    if (pidfd < 0) return fail("pidfd_open");
    if (setns(pidfd, CLONE_NEWNS) < 0) return fail("setns");
    if (move_mount(tree, "", AT_FDCWD, argv[3], MOVE_MOUNT_F_EMPTY_PATH) < 0) return fail("move_mount");
    printf("inject=ok\n");
    return 0;
}
