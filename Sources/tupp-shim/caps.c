// The process's identity: user, groups and capabilities (capabilities(7)), without libcap.
//
// The bounding set is reduced to the spec's list first, while the process is still fully
// privileged. Then it becomes the spec's user: supplementary groups, gid, uid — with
// PR_SET_KEEPCAPS, so a switch away from uid 0 keeps the permitted set for the capset
// that follows. Permitted and effective become the list, inheritable the ambient list,
// and the ambient set is raised to it.
//
// At exec the kernel's rules take over. As uid 0 the command gets the whole list
// (permitted = bounding for root). Any other uid gets only its ambient capabilities —
// none unless the spec asks (`capabilities.ambient`), as with Docker or a login shell.
// no_new_privs, set last, keeps setuid binaries and file capabilities from giving
// anything back.
#include "shim.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
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
    int fd = open("/proc/sys/kernel/cap_last_cap", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t n = read(fd, text, sizeof text - 1);
        close(fd);
        int value;
        if (n > 0 && sscanf(text, "%d", &value) == 1 && value > 0 && value < 64) last = value;
    }
    return last;
}

static uint64_t mask_of(const int *caps, int count) {
    uint64_t mask = 0;
    for (int i = 0; i < count; i++) mask |= 1ULL << caps[i];
    return mask;
}

int identity_apply(const struct shim_spec *spec, struct shim_failure *failure) {
    uint64_t keep = mask_of(spec->caps, spec->capc), ambient = mask_of(spec->ambient, spec->ambientc);

    int last = last_capability();
    for (int cap = 0; cap <= last; cap++) {
        if (keep & (1ULL << cap)) continue;
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL) {
            failure_set(failure, errno, "drop capability", NULL, "%d from the bounding set", cap);
            return -1;
        }
    }

    if (spec->uid != 0 && prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0) {
        failure_set(failure, errno, "set", NULL, "keep-capabilities for the switch to uid %u", (unsigned)spec->uid);
        return -1;
    }
    if (setgroups((size_t)spec->groupc, spec->groups) < 0) {
        failure_set(failure, errno, "setgroups", NULL, "%d supplementary groups of uid %u", spec->groupc, (unsigned)spec->uid);
        return -1;
    }
    if (setresgid(spec->gid, spec->gid, spec->gid) < 0) {
        failure_set(failure, errno, "setresgid", NULL, "gid %u", (unsigned)spec->gid);
        return -1;
    }
    if (setresuid(spec->uid, spec->uid, spec->uid) < 0) {
        failure_set(failure, errno, "setresuid", NULL, "uid %u", (unsigned)spec->uid);
        return -1;
    }

    // capset(2) has no glibc wrapper; version 3 takes two 32-bit words per set.
    struct __user_cap_header_struct header = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof data);
    data[0].permitted = data[0].effective = (uint32_t)keep;
    data[1].permitted = data[1].effective = (uint32_t)(keep >> 32);
    data[0].inheritable = (uint32_t)ambient;
    data[1].inheritable = (uint32_t)(ambient >> 32);
    if (syscall(SYS_capset, &header, data) < 0) {
        failure_set(failure, errno, "set", NULL, "capabilities (permitted, effective, inheritable)");
        return -1;
    }
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL) {
        failure_set(failure, errno, "clear", NULL, "ambient capabilities");
        return -1;
    }
    for (int i = 0; i < spec->ambientc; i++) {
        if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, spec->ambient[i], 0, 0) < 0) {
            failure_set(failure, errno, "raise", "an ambient capability must also be in the capability list",
                        "ambient capability %d", spec->ambient[i]);
            return -1;
        }
    }
    if (spec->uid != 0) (void)prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0);
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
        failure_set(failure, errno, "set", NULL, "no_new_privs");
        return -1;
    }
    return 0;
}
