// opendev PATH: opens a device node for reading and prints "open=ok" or "open=ERRNO".
// Built static by the tests and copied into a container's root; the device policy
// (cgroup) is what decides, not the node's mode — the container runs as root.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 2) return 2;
    int fd = open(argv[1], O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    printf("open=%s\n", fd < 0 ? strerrorname_np(errno) : "ok");
    if (fd >= 0) close(fd);
    return 0;
}
