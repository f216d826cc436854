// Capabilities (capabilities(7)), without libcap: the container keeps exactly the
// spec's list in its bounding, permitted and effective sets; inheritable and ambient
// are empty. Because the process is uid 0, execve recomputes permitted = bounding and
// effective = permitted, so what the command gets is the list — and no_new_privs keeps
// setuid binaries or file capabilities from giving any of the rest back.
#include "shim.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

static int last_capability(void) {
    // The kernel may know more capabilities than our headers; drop those too.
    int last = CAP_LAST_CAP;
    char text[16] = {0};
    int fd = open("/proc/sys/kernel/cap_last_cap", 0);
    if (fd >= 0) {
        ssize_t n = read(fd, text, sizeof text - 1);
        close(fd);
        int value;
        if (n > 0 && sscanf(text, "%d", &value) == 1 && value > 0 && value < 64) last = value;
    }
    return last;
}

int caps_apply(const int *caps, int capc, struct shim_failure *failure) {
    uint64_t keep = 0;
    for (int i = 0; i < capc; i++) keep |= 1ULL << caps[i];

    int last = last_capability();
    for (int cap = 0; cap <= last; cap++) {
        if (keep & (1ULL << cap)) continue;
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL) {
            failure_set(failure, errno, "drop capability", NULL, "%d from the bounding set", cap);
            return -1;
        }
    }
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL) {
        failure_set(failure, errno, "clear", NULL, "ambient capabilities");
        return -1;
    }

    // capset(2) has no glibc wrapper; version 3 takes two 32-bit words per set.
    struct __user_cap_header_struct header = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof data);
    data[0].permitted = data[0].effective = (uint32_t)keep;
    data[1].permitted = data[1].effective = (uint32_t)(keep >> 32);
    if (syscall(SYS_capset, &header, data) < 0) {
        failure_set(failure, errno, "set", NULL, "capabilities (permitted, effective)");
        return -1;
    }
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
        failure_set(failure, errno, "set", NULL, "no_new_privs");
        return -1;
    }
    return 0;
}
