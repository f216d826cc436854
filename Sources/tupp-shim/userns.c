// The container's user namespace (`userns: auto`), from the shim's side.
//
// Container root is an unprivileged host user: its ids are the spec's range of host ids
// (uid-map, gid-map), and the files it sees are not chowned to that range but *mounted*
// shifted — idmapped mounts (mount_setattr MOUNT_ATTR_IDMAP), so a file owned by 0 in
// the image appears as 0 inside and what the container writes is stored as 0 on disk.
//
// Who does what, and why (the kernel's rules decide it):
//
//   create   A helper is cloned with CLONE_NEWUSER and the shared namespaces (net, ipc,
//            uts) at once: those are then owned by the new user namespace, so container
//            root is their administrator (binds port 80, sets its hostname, mounts sysfs).
//            The shim writes uid_map and gid_map from outside — as host root it may map
//            any range, so setgroups(2) stays allowed ("deny" is only needed for an
//            unprivileged writer) — joins net, ipc and uts (not the user namespace: it
//            keeps its host privileges for cgroups and state files), keeps a descriptor of
//            the user namespace and sets the hostname. The helper never needs to run: it
//            is killed (waiting for a new process to be scheduled costs milliseconds on a
//            busy host).
//   trees    Per run, the shim (host root) makes detached mounts: the rootfs and every
//            bind, cloned with open_tree and idmapped to the user namespace (only a
//            process privileged over the filesystem's superblock may do that), flags
//            such as read-only set in the same call; and the container's /dev, a tmpfs
//            it fills with device nodes (mknod needs host privileges) owned by container
//            root. The init attaches them with move_mount in its own mount namespace.
//   clone    The init's mount and pid namespaces must be owned by the user namespace too
//            (container root mounts /proc and its tree there), so they are created by a
//            process inside it: a short-lived middle process applies the rlimits (a
//            raised hard limit needs host privileges), changes into the rootfs (the path
//            is not reachable by container root: the pool is 0700; the kernel carries the
//            working directory into the new mount namespace), joins the user namespace,
//            becomes root there, sets the netns's ping group range (read in the writer's
//            ids), and clones the init with CLONE_PARENT — the init is the shim's child,
//            as without a user namespace.
//
// Every function here runs in the single-threaded shim or its children.
#include "shim.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

long long userns_outside(const struct shim_idmap *map, int count, unsigned long long inside) {
    for (int i = 0; i < count; i++)
        if (inside >= map[i].inside && inside - map[i].inside < map[i].count) return (long long)(map[i].outside + inside - map[i].inside);
    return -1;
}

/// "INSIDE OUTSIDE COUNT\n" lines, written with one write(2) as the kernel requires.
static int write_map(pid_t pid, const char *file, const struct shim_idmap *map, int count) {
    char text[512], path[64];
    int used = 0;
    for (int i = 0; i < count; i++)
        used += snprintf(text + used, sizeof text - (size_t)used, "%llu %llu %llu\n", map[i].inside, map[i].outside, map[i].count);
    snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, file);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = write(fd, text, (size_t)used);
    int saved = errno;
    close(fd);
    errno = saved;
    return n == used ? 0 : -1;
}

/// The helper only holds the new namespaces until the shim joined them: it never has to
/// run (the maps are written and the namespaces joined from outside), and is killed.
__attribute__((noreturn)) static void helper(void) {
    for (;;) pause();
}

int userns_create(const struct shim_spec *spec, int shared, int *userns_fd, struct shim_failure *failure) {
    pid_t pid = (pid_t)syscall(SYS_clone, (unsigned long)(CLONE_NEWUSER | shared | SIGCHLD), NULL, NULL, NULL, 0);
    if (pid < 0) {
        failure_set(failure, errno, "clone", errno == EPERM || errno == ENOSPC ? "user namespaces disabled or exhausted (user.max_user_namespaces)" : NULL,
                    "a user namespace for %s", spec->rootfs);
        return -1;
    }
    if (pid == 0) helper();
    int pidfd = -1;
    *userns_fd = -1;
    if (write_map(pid, "uid_map", spec->uid_map, spec->uid_mapc) < 0) {
        failure_set(failure, errno, "write", "host ids already mapped elsewhere, or outside 0…4294967294", "uid_map of %s", spec->rootfs);
        goto fail;
    }
    if (write_map(pid, "gid_map", spec->gid_map, spec->gid_mapc) < 0) {
        failure_set(failure, errno, "write", NULL, "gid_map of %s", spec->rootfs);
        goto fail;
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/ns/user", (int)pid);
    *userns_fd = open(path, O_RDONLY | O_CLOEXEC);
    pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (*userns_fd < 0 || pidfd < 0) {
        failure_set(failure, errno, "open", NULL, "the namespaces of helper %d for %s", (int)pid, spec->rootfs);
        goto fail;
    }
    if (shared && setns(pidfd, shared) < 0) {
        failure_set(failure, errno, "join", NULL, "the net/ipc/uts namespaces of %s", spec->rootfs);
        goto fail;
    }
    close(pidfd);
    // Reaped with the other children the supervisor does not run (supervise.c).
    kill(pid, SIGKILL);
    // As host root the shim administers namespaces its user namespace owns.
    if ((shared & CLONE_NEWUTS) && spec->hostname && sethostname(spec->hostname, strlen(spec->hostname)) < 0) {
        failure_set(failure, errno, "sethostname", NULL, "%s", spec->hostname);
        return -1;
    }
    return 0;
fail:
    if (*userns_fd >= 0) close(*userns_fd);
    *userns_fd = -1;
    if (pidfd >= 0) close(pidfd);
    kill(pid, SIGKILL);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
    }
    return -1;
}

/// As Docker does: unprivileged ICMP echo sockets for every group of the container. Written
/// from inside the user namespace (the middle process): the kernel reads the range in the
/// writer's ids, and the sysctl takes no id above 2^31 - 1, so host ids would not always fit.
static int set_ping_range(const struct shim_spec *spec, struct shim_failure *failure) {
    unsigned long long groups = 0;
    for (int i = 0; i < spec->gid_mapc; i++) groups += spec->gid_map[i].count;
    char range[64];
    int n = snprintf(range, sizeof range, "0 %llu", groups ? groups - 1 : 0);
    int fd = open("/proc/sys/net/ipv4/ping_group_range", O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write_all(fd, range, (size_t)n) < 0) {
        failure_set(failure, errno, "write", NULL, "net.ipv4.ping_group_range for %s", spec->rootfs);
        if (fd >= 0) close(fd);
        return -1;
    }
    close(fd);
    return 0;
}

// ---- trees ------------------------------------------------------------------------------

static const char idmap_detail[] =
    "the filesystem cannot be idmapped; with userns: auto every bind source must be on a filesystem with idmapped "
    "mounts (btrfs, ext4, xfs, tmpfs on Linux 6.3+ …) — move it, or give the container userns: host";

/// A detached copy of `path` (recursive), idmapped to the user namespace, with `attr`.
static int idmapped_tree(const char *path, int userns_fd, unsigned long long attr, const char *what,
                         struct shim_failure *failure) {
    int fd = open_tree(AT_FDCWD, path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
    if (fd < 0) {
        failure_set(failure, errno, "clone mount", NULL, "%s", what);
        return -1;
    }
    struct mount_attr set = {.attr_set = MOUNT_ATTR_IDMAP | attr, .userns_fd = (unsigned long long)userns_fd};
    if (mount_setattr(fd, "", AT_EMPTY_PATH | AT_RECURSIVE, &set, sizeof set) < 0) {
        failure_set(failure, errno, "idmap", errno == EINVAL ? idmap_detail : NULL, "%s", what);
        close(fd);
        return -1;
    }
    return fd;
}

/// Mount options of a bind as MOUNT_ATTR_* bits.
static unsigned long long bind_attributes(const struct shim_mount *m, struct shim_failure *failure) {
    struct mount_options options = {0};
    if (mount_options_parse(m->options, &options) < 0) {
        failure_set(failure, EINVAL, "mount", "options too long", "%s", m->target);
        return ~0ULL;
    }
    unsigned long long attr = 0;
    if (m->readonly || (options.flags & MS_RDONLY)) attr |= MOUNT_ATTR_RDONLY;
    if (options.flags & MS_NOSUID) attr |= MOUNT_ATTR_NOSUID;
    if (options.flags & MS_NODEV) attr |= MOUNT_ATTR_NODEV;
    if (options.flags & MS_NOEXEC) attr |= MOUNT_ATTR_NOEXEC;
    if (options.flags & MS_NOATIME) attr |= MOUNT_ATTR_NOATIME;
    if (options.flags & MS_STRICTATIME) attr |= MOUNT_ATTR_STRICTATIME;
    if (options.flags & MS_NODIRATIME) attr |= MOUNT_ATTR_NODIRATIME;
    return attr;
}

/// Sets the fsconfig string KEY=VALUE; -1 with errno on failure.
static int fs_string(int fs, const char *key, const char *value) { return fsconfig(fs, FSCONFIG_SET_STRING, key, value, 0); }

/// The container's /dev: a tmpfs made here, outside the user namespace, so its superblock
/// allows device nodes, filled as rootfs.c fills it without a user namespace — owned by
/// container root. The init adds devpts and /dev/shm after attaching it.
static int make_dev(const struct shim_spec *spec, struct shim_failure *failure) {
    long long root_uid = userns_outside(spec->uid_map, spec->uid_mapc, 0), root_gid = userns_outside(spec->gid_map, spec->gid_mapc, 0);
    if (root_uid < 0 || root_gid < 0) {
        failure_set(failure, EINVAL, "map", "uid-map and gid-map must map 0", "root of %s", spec->rootfs);
        return -1;
    }
    char uid[32], gid[32];
    snprintf(uid, sizeof uid, "%lld", root_uid);
    snprintf(gid, sizeof gid, "%lld", root_gid);
    int fs = fsopen("tmpfs", FSOPEN_CLOEXEC), dev = -1;
    mode_t saved_umask = umask(0);  // nodes and directories get exactly their modes
    if (fs < 0 || fs_string(fs, "mode", "755") < 0 || fs_string(fs, "size", "65536k") < 0 || fs_string(fs, "uid", uid) < 0 ||
        fs_string(fs, "gid", gid) < 0 || fsconfig(fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0 ||
        (dev = fsmount(fs, FSMOUNT_CLOEXEC, MOUNT_ATTR_NOSUID | MOUNT_ATTR_STRICTATIME)) < 0) {
        failure_set(failure, errno, "mount", NULL, "tmpfs for /dev of %s", spec->rootfs);
        if (fs >= 0) close(fs);
        umask(saved_umask);
        return -1;
    }
    close(fs);
    static const struct {
        const char *name;
        unsigned major, minor;
    } nodes[] = {{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0}};
    for (size_t i = 0; i < sizeof nodes / sizeof nodes[0]; i++) {
        if (mknodat(dev, nodes[i].name, S_IFCHR | 0666, makedev(nodes[i].major, nodes[i].minor)) < 0 ||
            fchownat(dev, nodes[i].name, (uid_t)root_uid, (gid_t)root_gid, AT_SYMLINK_NOFOLLOW) < 0) {
            failure_set(failure, errno, "create device", NULL, "/dev/%s in %s", nodes[i].name, spec->rootfs);
            goto fail;
        }
    }
    static const struct {
        const char *name, *target;
    } links[] = {{"fd", "/proc/self/fd"}, {"stdin", "/proc/self/fd/0"}, {"stdout", "/proc/self/fd/1"},
                 {"stderr", "/proc/self/fd/2"}, {"ptmx", "pts/ptmx"}};
    for (size_t i = 0; i < sizeof links / sizeof links[0]; i++) {
        if (symlinkat(links[i].target, dev, links[i].name) < 0 ||
            fchownat(dev, links[i].name, (uid_t)root_uid, (gid_t)root_gid, AT_SYMLINK_NOFOLLOW) < 0) {
            failure_set(failure, errno, "create symlink", NULL, "/dev/%s in %s", links[i].name, spec->rootfs);
            goto fail;
        }
    }
    static const struct {
        const char *name;
        mode_t mode;
    } dirs[] = {{"pts", 0755}, {"shm", 01777}};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        if (mkdirat(dev, dirs[i].name, dirs[i].mode) < 0 || fchownat(dev, dirs[i].name, (uid_t)root_uid, (gid_t)root_gid, 0) < 0) {
            failure_set(failure, errno, "create directory", NULL, "/dev/%s in %s", dirs[i].name, spec->rootfs);
            goto fail;
        }
    }
    for (int i = 0; i < spec->devicec; i++) {
        const struct shim_device *d = &spec->devices[i];
        long long owner = userns_outside(spec->uid_map, spec->uid_mapc, d->uid), group = userns_outside(spec->gid_map, spec->gid_mapc, d->gid);
        // The path is below /dev (spec.c checked): parents first, relative to this tmpfs.
        char relative[4096];
        snprintf(relative, sizeof relative, "%s", d->path + 5);
        for (char *slash = strchr(relative, '/'); slash; slash = strchr(slash + 1, '/')) {
            *slash = '\0';
            if ((mkdirat(dev, relative, 0755) < 0 && errno != EEXIST) || fchownat(dev, relative, (uid_t)root_uid, (gid_t)root_gid, 0) < 0) {
                failure_set(failure, errno, "create directory", NULL, "/dev/%s in %s", relative, spec->rootfs);
                goto fail;
            }
            *slash = '/';
        }
        mode_t type = d->type == 'b' ? S_IFBLK : S_IFCHR;
        if (owner < 0 || group < 0) {
            failure_set(failure, EINVAL, "create device", "its owner is outside the container's user namespace", "%s (%u:%u) in %s",
                        d->path, (unsigned)d->uid, (unsigned)d->gid, spec->rootfs);
            goto fail;
        }
        if (mknodat(dev, relative, type | (d->mode & 07777), makedev(d->major, d->minor)) < 0 ||
            fchownat(dev, relative, (uid_t)owner, (gid_t)group, 0) < 0) {
            failure_set(failure, errno, "create device", NULL, "%s (%c %u:%u) in %s", d->path, d->type, d->major, d->minor, spec->rootfs);
            goto fail;
        }
    }
    umask(saved_umask);
    return dev;
fail:
    umask(saved_umask);
    close(dev);
    return -1;
}

static bool overridden(const struct shim_spec *spec, const char *target) {
    for (int i = 0; i < spec->mountc; i++)
        if (!strcmp(spec->mounts[i].target, target)) return true;
    return false;
}

int userns_prepare_trees(const struct shim_spec *spec, int userns_fd, struct shim_trees *trees, struct shim_failure *failure) {
    trees->rootfs = trees->dev = -1;
    for (int i = 0; i < SHIM_MAX_ITEMS; i++) trees->binds[i] = -1;
    char what[4200];
    snprintf(what, sizeof what, "rootfs %s", spec->rootfs);
    if ((trees->rootfs = idmapped_tree(spec->rootfs, userns_fd, 0, what, failure)) < 0) goto fail;
    for (int i = 0; i < spec->mountc; i++) {
        const struct shim_mount *m = &spec->mounts[i];
        if (m->kind != SHIM_MOUNT_BIND) continue;
        unsigned long long attr = bind_attributes(m, failure);
        if (attr == ~0ULL) goto fail;
        snprintf(what, sizeof what, "bind %s (for %s in %s)", m->source, m->target, spec->rootfs);
        if ((trees->binds[i] = idmapped_tree(m->source, userns_fd, attr, what, failure)) < 0) goto fail;
    }
    if (!overridden(spec, "/dev") && (trees->dev = make_dev(spec, failure)) < 0) goto fail;
    return 0;
fail:
    userns_close_trees(trees);
    return -1;
}

void userns_close_trees(struct shim_trees *trees) {
    if (trees->rootfs >= 0) close(trees->rootfs);
    if (trees->dev >= 0) close(trees->dev);
    for (int i = 0; i < SHIM_MAX_ITEMS; i++)
        if (trees->binds[i] >= 0) close(trees->binds[i]);
    trees->rootfs = trees->dev = -1;
    for (int i = 0; i < SHIM_MAX_ITEMS; i++) trees->binds[i] = -1;
}

// ---- the init's clone -----------------------------------------------------------------

/// What the middle process reports: the init's pid, or why there is none.
struct middle_report {
    pid_t pid;
    struct shim_failure failure;
};

/// The middle process: never returns, except as the init (0).
static pid_t middle(const struct shim_spec *spec, int userns_fd, unsigned long flags, int report_fd) {
    struct middle_report report = {0};
    // A raised hard limit needs host privileges: set now, the init inherits them.
    if (limits_apply(spec, &report.failure) < 0) goto fail;
    if (chdir(spec->rootfs) < 0) {
        failure_set(&report.failure, errno, "chdir", NULL, "rootfs %s", spec->rootfs);
        goto fail;
    }
    if (setns(userns_fd, CLONE_NEWUSER) < 0) {
        failure_set(&report.failure, errno, "join", NULL, "the user namespace of %s", spec->rootfs);
        goto fail;
    }
    // Root of the user namespace from here on: what the init creates while it sets up
    // the rootfs belongs to container root.
    if (setgroups(0, NULL) < 0 || setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0) {
        failure_set(&report.failure, errno, "become", NULL, "root of the user namespace of %s", spec->rootfs);
        goto fail;
    }
    if ((spec->namespaces & SHIM_NS_NET) && set_ping_range(spec, &report.failure) < 0) goto fail;
    // CLONE_PARENT: the init is the shim's child (it reaps it, PDEATHSIG follows the
    // shim); its exit signal is this process's own, SIGCHLD.
    pid_t pid = (pid_t)syscall(SYS_clone, flags | CLONE_PARENT, NULL, NULL, NULL, 0);
    if (pid == 0) return 0;
    if (pid < 0) {
        failure_set(&report.failure, errno, "clone", NULL, "the init of %s in its user namespace", spec->rootfs);
        goto fail;
    }
    report.pid = pid;
    (void)write_all(report_fd, &report, sizeof report);
    _exit(0);
fail:
    (void)write_all(report_fd, &report, sizeof report);
    _exit(127);
}

pid_t userns_clone_init(const struct shim_spec *spec, int userns_fd, unsigned long flags, const int *close_in_child, int closec,
                        bool *born_inside, struct shim_failure *failure) {
    int report[2];
    if (pipe2(report, O_CLOEXEC) < 0) {
        failure_set(failure, errno, "create", NULL, "report pipe for the init of %s", spec->rootfs);
        return -1;
    }
    // On cgroup v2 the middle process is born in the container's cgroup, and the init
    // with it; on v1 the shim moves the init as without a user namespace.
    *born_inside = false;
    pid_t middle_pid = cgroup_clone_into(spec, 0, born_inside);
    if (middle_pid < 0 && !*born_inside) middle_pid = fork();
    if (middle_pid < 0) {
        failure_set(failure, errno, "fork", NULL, "the init of %s", spec->rootfs);
        close(report[0]);
        close(report[1]);
        return -1;
    }
    if (middle_pid == 0) {
        close(report[0]);
        for (int i = 0; i < closec; i++) close(close_in_child[i]);
        if (middle(spec, userns_fd, flags, report[1]) == 0) {
            close(report[1]);
            return 0;
        }
    }
    close(report[1]);
    struct middle_report got;
    ssize_t n;
    do n = read(report[0], &got, sizeof got);
    while (n < 0 && errno == EINTR);
    close(report[0]);
    while (waitpid(middle_pid, NULL, 0) < 0 && errno == EINTR) {
    }
    if (n != (ssize_t)sizeof got) {
        failure_set(failure, EPIPE, "clone", "the middle process died", "the init of %s", spec->rootfs);
        return -1;
    }
    if (got.pid <= 0) {
        got.failure.op[sizeof got.failure.op - 1] = got.failure.object[sizeof got.failure.object - 1] = '\0';
        got.failure.detail[sizeof got.failure.detail - 1] = '\0';
        *failure = got.failure;
        return -1;
    }
    return got.pid;
}
