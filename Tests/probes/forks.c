// forks N: forks up to N children that wait, stops at the first refused fork, prints
// "forked=K error=ERRNO" (or "error=none") and then waits itself. Built static by the
// tests and copied into a container's root; a shell cannot do this — busybox sh exits
// when a fork fails.
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 2) return 2;
    int wanted = atoi(argv[1]), forked = 0;
    const char *error = "none";
    for (; forked < wanted; forked++) {
        pid_t pid = fork();
        if (pid == 0) {
            for (;;) pause();
        }
        if (pid < 0) {
            error = strerrorname_np(errno);
            break;
        }
    }
    printf("forked=%d error=%s\n", forked, error);
    fflush(stdout);
    for (;;) pause();
}
