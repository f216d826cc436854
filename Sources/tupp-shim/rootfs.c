// The container's file tree, built in its new mount namespace (runc/crun sequence):
//
//   1. / becomes rslave: nothing mounted here propagates back to the host.
//   2. The rootfs is bind-mounted onto itself, so it is a mount point pivot_root accepts.
//   3. /proc (of the new pid namespace), /dev (tmpfs, device nodes, devpts, shm),
//      /sys read-only (with a delegated cgroup, cgroup2 writable at /sys/fs/cgroup), then
//      the spec's tmpfs and bind mounts.
//   4. pivot_root(".", ".") and a lazy unmount of the old root stacked on top: nothing of
//      the host's tree stays reachable.
//   5. With `readOnly`, / is remounted read-only (the mounts on it stay as they are).
//   6. Masked /proc paths and /sys/firmware; read-only /proc/{bus,fs,irq,sys,sysrq-trigger}.
//
// In a user namespace (userns.c) the same sequence, except what container root may not
// do itself: the rootfs, the binds and /dev come as detached mounts made by the shim
// (idmapped; /dev with its device nodes), attached here with move_mount. Where the pid or
// net namespace is the host's (owned by the host's user namespace), /proc or /sys cannot
// be mounted from inside and the host's is bound instead, as runc does.
//
// Every mount target is resolved inside the root with openat2(RESOLVE_IN_ROOT |
// RESOLVE_NO_SYMLINKS) and the mount goes to /proc/self/fd/N (runc's way), so an image
// whose /proc, /dev or mount target is a symlink (say to /etc on the host) is refused
// instead of mounting over a host path.
#include "shim.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

static const char symlink_detail[] =
    "a symlink in the path is refused: targets are resolved inside the root without following symlinks";

static int openat2_fd(int dirfd, const char *path, int flags, unsigned long long resolve) {
    struct open_how how = {.flags = (unsigned long long)(flags | O_CLOEXEC), .resolve = resolve};
    int fd;
    do {
        fd = (int)syscall(SYS_openat2, dirfd, path, &how, sizeof how);
    } while (fd < 0 && errno == EAGAIN);
    return fd;
}

/// Opens `path` (absolute inside the container) relative to the root, never following
/// a symlink and never leaving the root.
static int open_in_root(int root, const char *path, int flags) {
    while (*path == '/') path++;
    if (!*path) path = ".";
    return openat2_fd(root, path, flags, RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS);
}

/// Creates what is missing of `path` inside the root, component by component without
/// following symlinks; the last component is an empty file when `leaf_is_file`.
static int ensure_in_root(int root, const char *path, bool leaf_is_file) {
    char copy[4096];
    if (snprintf(copy, sizeof copy, "%s", path) >= (int)sizeof copy) {
        errno = ENAMETOOLONG;
        return -1;
    }
    int dir = dup(root);
    if (dir < 0) return -1;
    char *save = NULL;
    for (char *part = strtok_r(copy, "/", &save); part; part = strtok_r(NULL, "/", &save)) {
        bool last = (save == NULL || *save == '\0');
        bool want_file = last && leaf_is_file;
        int flags = O_PATH | (want_file ? 0 : O_DIRECTORY);
        unsigned long long resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
        int next = openat2_fd(dir, part, flags, resolve);
        if (next < 0 && errno == ENOENT) {
            if (want_file) {
                int fd = openat(dir, part, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
                if (fd >= 0) close(fd);
                else if (errno != EEXIST) goto fail;
            } else if (mkdirat(dir, part, 0755) < 0 && errno != EEXIST) {
                goto fail;
            }
            next = openat2_fd(dir, part, flags, resolve);
        }
        if (next < 0) goto fail;
        close(dir);
        dir = next;
    }
    close(dir);
    return 0;
fail:;
    int saved = errno;
    close(dir);
    errno = saved;
    return -1;
}

static void fd_path(char *out, size_t size, int fd) { snprintf(out, size, "/proc/self/fd/%d", fd); }

int mount_options_parse(const char *text, struct mount_options *out) {
    static const struct {
        const char *name;
        unsigned long set, clear;
    } words[] = {
        {"ro", MS_RDONLY, 0},         {"rw", 0, MS_RDONLY},       {"nosuid", MS_NOSUID, 0},
        {"suid", 0, MS_NOSUID},       {"nodev", MS_NODEV, 0},     {"dev", 0, MS_NODEV},
        {"noexec", MS_NOEXEC, 0},     {"exec", 0, MS_NOEXEC},     {"noatime", MS_NOATIME, 0},
        {"relatime", MS_RELATIME, 0}, {"strictatime", MS_STRICTATIME, 0},
        {"nodiratime", MS_NODIRATIME, 0}, {"sync", MS_SYNCHRONOUS, 0}, {"dirsync", MS_DIRSYNC, 0},
        {"bind", 0, 0},               {"rbind", 0, 0},
    };
    char copy[1024];
    if (snprintf(copy, sizeof copy, "%s", text) >= (int)sizeof copy) return -1;
    out->data[0] = '\0';
    size_t used = 0;
    char *save = NULL;
    for (char *word = strtok_r(copy, ",", &save); word; word = strtok_r(NULL, ",", &save)) {
        bool known = false;
        for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
            if (!strcmp(word, words[i].name)) {
                out->flags = (out->flags | words[i].set) & ~words[i].clear;
                known = true;
                break;
            }
        }
        if (known) continue;
        int n = snprintf(out->data + used, sizeof out->data - used, "%s%s", used ? "," : "", word);
        if (n < 0 || (size_t)n >= sizeof out->data - used) return -1;
        used += (size_t)n;
    }
    return 0;
}

struct rootfs_context {
    const struct shim_spec *spec;
    struct shim_failure *failure;
    int root;  // the rootfs bind mount
    const struct shim_trees *trees;  // in a user namespace: the shim's detached mounts
};

/// Resolves `target` inside the root (creating it), mounts there; -1 on failure.
static int mount_at(struct rootfs_context *ctx, const char *target, bool create_file, const char *source,
                    const char *fstype, unsigned long flags, const char *data) {
    if (ensure_in_root(ctx->root, target, create_file) < 0) goto fail;
    int fd = open_in_root(ctx->root, target, O_PATH);
    if (fd < 0) goto fail;
    char path[64];
    fd_path(path, sizeof path, fd);
    int rc = mount(source, path, fstype, flags, data);
    int saved = errno;
    close(fd);
    errno = saved;
    if (rc == 0) return 0;
fail:
    failure_set(ctx->failure, errno, "mount", errno == ELOOP ? symlink_detail : NULL, "%s in %s", target,
                ctx->spec->rootfs);
    return -1;
}

static int remount_readonly(struct rootfs_context *ctx, int root, const char *target, unsigned long flags);

/// Attaches the detached mount `tree` at `target` inside the root (created to match).
static int attach_at(struct rootfs_context *ctx, int tree, const char *target, bool create_file) {
    if (ensure_in_root(ctx->root, target, create_file) < 0) goto fail;
    int fd = open_in_root(ctx->root, target, O_PATH);
    if (fd < 0) goto fail;
    int rc = move_mount(tree, "", fd, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH);
    int saved = errno;
    close(fd);
    errno = saved;
    if (rc == 0) return 0;
fail:
    failure_set(ctx->failure, errno, "attach", errno == ELOOP ? symlink_detail : NULL, "%s in %s", target, ctx->spec->rootfs);
    return -1;
}

/// A kernel filesystem (proc, sysfs) mounted fresh; in a user namespace that does not own
/// the pid or net namespace the kernel refuses (EPERM), and the host's is bound instead.
static int mount_kernel_fs(struct rootfs_context *ctx, const char *target, const char *type, unsigned long flags) {
    if (mount_at(ctx, target, false, type, type, flags, NULL) == 0) return 0;
    if (!ctx->trees || ctx->failure->err != EPERM) return -1;
    if (mount_at(ctx, target, false, target, NULL, MS_BIND | MS_REC, NULL) < 0) return -1;
    return (flags & MS_RDONLY) ? remount_readonly(ctx, ctx->root, target, flags & (MS_NOSUID | MS_NODEV | MS_NOEXEC)) : 0;
}

/// Remounts the mount now on top of `target` read-only, keeping `flags`.
static int remount_readonly(struct rootfs_context *ctx, int root, const char *target, unsigned long flags) {
    int fd = open_in_root(root, target, O_PATH);
    if (fd >= 0) {
        char path[64];
        fd_path(path, sizeof path, fd);
        int rc = mount(NULL, path, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | flags, NULL);
        int saved = errno;
        close(fd);
        errno = saved;
        if (rc == 0) return 0;
    }
    failure_set(ctx->failure, errno, "remount read-only", NULL, "%s in %s", target, ctx->spec->rootfs);
    return -1;
}

static bool spec_overrides(const struct shim_spec *spec, const char *target) {
    for (int i = 0; i < spec->mountc; i++)
        if (!strcmp(spec->mounts[i].target, target)) return true;
    return false;
}

/// An extra device node (`devices:`): parents created below /dev, the node made with the
/// host device's numbers, mode and owner. The device cgroup allows exactly these.
static int create_device(struct rootfs_context *ctx, const struct shim_device *device) {
    char parent[4096];
    snprintf(parent, sizeof parent, "%s", device->path);
    char *slash = strrchr(parent, '/');
    const char *name = slash + 1;
    *slash = '\0';
    int dir = -1;
    if (ensure_in_root(ctx->root, parent, false) < 0 || (dir = open_in_root(ctx->root, parent, O_DIRECTORY | O_RDONLY)) < 0)
        goto fail;
    mode_t type = device->type == 'b' ? S_IFBLK : S_IFCHR;
    if (mknodat(dir, name, type | device->mode, makedev(device->major, device->minor)) < 0 ||
        fchownat(dir, name, device->uid, device->gid, AT_SYMLINK_NOFOLLOW) < 0)
        goto fail;
    close(dir);
    return 0;
fail:
    failure_set(ctx->failure, errno, "create device", NULL, "%s (%c %u:%u) in %s", device->path, device->type, device->major,
                device->minor, ctx->spec->rootfs);
    if (dir >= 0) close(dir);
    return -1;
}

/// /dev/pts and /dev/shm, on the /dev tmpfs.
static int setup_dev_mounts(struct rootfs_context *ctx) {
    // newinstance: the container's own pty numbering, not the host's /dev/pts.
    if (mount_at(ctx, "/dev/pts", false, "devpts", "devpts", MS_NOSUID | MS_NOEXEC,
                 "newinstance,ptmxmode=0666,mode=0620,gid=5") < 0)
        return -1;
    if (!spec_overrides(ctx->spec, "/dev/shm")) {
        char options[64];
        snprintf(options, sizeof options, "mode=1777,size=%lldk", (ctx->spec->shm_size + 1023) / 1024);
        if (mount_at(ctx, "/dev/shm", false, "shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, options) < 0) return -1;
    }
    return 0;
}

static int setup_dev(struct rootfs_context *ctx) {
    if (ctx->trees) {
        // The shim made it, nodes and all (mknod is not allowed in a user namespace).
        if (attach_at(ctx, ctx->trees->dev, "/dev", false) < 0) return -1;
        return setup_dev_mounts(ctx);
    }
    if (mount_at(ctx, "/dev", false, "tmpfs", "tmpfs", MS_NOSUID | MS_STRICTATIME, "mode=755,size=65536k") < 0)
        return -1;
    int dev = open_in_root(ctx->root, "/dev", O_DIRECTORY | O_RDONLY);
    if (dev < 0) {
        failure_set(ctx->failure, errno, "open", NULL, "/dev in %s", ctx->spec->rootfs);
        return -1;
    }
    static const struct {
        const char *name;
        unsigned major, minor;
    } nodes[] = {{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0}};
    for (size_t i = 0; i < sizeof nodes / sizeof nodes[0]; i++) {
        if (mknodat(dev, nodes[i].name, S_IFCHR | 0666, makedev(nodes[i].major, nodes[i].minor)) < 0) {
            failure_set(ctx->failure, errno, "create device", NULL, "/dev/%s in %s", nodes[i].name, ctx->spec->rootfs);
            goto fail;
        }
    }
    static const struct {
        const char *name, *target;
    } links[] = {{"fd", "/proc/self/fd"}, {"stdin", "/proc/self/fd/0"}, {"stdout", "/proc/self/fd/1"},
                 {"stderr", "/proc/self/fd/2"}, {"ptmx", "pts/ptmx"}};
    for (size_t i = 0; i < sizeof links / sizeof links[0]; i++) {
        if (symlinkat(links[i].target, dev, links[i].name) < 0) {
            failure_set(ctx->failure, errno, "create symlink", NULL, "/dev/%s in %s", links[i].name, ctx->spec->rootfs);
            goto fail;
        }
    }
    if (mkdirat(dev, "pts", 0755) < 0 || mkdirat(dev, "shm", 01777) < 0) {
        failure_set(ctx->failure, errno, "create directory", NULL, "/dev/pts, /dev/shm in %s", ctx->spec->rootfs);
        goto fail;
    }
    for (int i = 0; i < ctx->spec->devicec; i++)
        if (create_device(ctx, &ctx->spec->devices[i]) < 0) goto fail;
    close(dev);
    return setup_dev_mounts(ctx);
fail:
    close(dev);
    return -1;
}

static int setup_spec_mounts(struct rootfs_context *ctx) {
    for (int i = 0; i < ctx->spec->mountc; i++) {
        const struct shim_mount *m = &ctx->spec->mounts[i];
        struct mount_options options = {0};
        if (mount_options_parse(m->options, &options) < 0) {
            failure_set(ctx->failure, EINVAL, "mount", "options too long", "%s in %s", m->target, ctx->spec->rootfs);
            return -1;
        }
        if (m->readonly) options.flags |= MS_RDONLY;
        if (m->kind == SHIM_MOUNT_TMPFS) {
            unsigned long flags = options.flags | MS_NOSUID | MS_NODEV;
            if (mount_at(ctx, m->target, false, "tmpfs", "tmpfs", flags, options.data[0] ? options.data : NULL) < 0)
                return -1;
            continue;
        }
        if (ctx->trees) {
            // Idmapped by the shim with its flags set; created to match: directory or file.
            struct stat st;
            if (fstat(ctx->trees->binds[i], &st) < 0) {
                failure_set(ctx->failure, errno, "stat bind source", NULL, "%s (for %s in %s)", m->source, m->target, ctx->spec->rootfs);
                return -1;
            }
            if (attach_at(ctx, ctx->trees->binds[i], m->target, !S_ISDIR(st.st_mode)) < 0) return -1;
            continue;
        }
        // A bind's target is created to match its source: directory or file.
        int source = open(m->source, O_PATH | O_CLOEXEC);
        struct stat st;
        if (source < 0 || fstat(source, &st) < 0) {
            failure_set(ctx->failure, errno, "open bind source", NULL, "%s (for %s in %s)", m->source, m->target,
                        ctx->spec->rootfs);
            if (source >= 0) close(source);
            return -1;
        }
        char source_path[64];
        fd_path(source_path, sizeof source_path, source);
        int rc = mount_at(ctx, m->target, !S_ISDIR(st.st_mode), source_path, NULL, MS_BIND | MS_REC, NULL);
        close(source);
        if (rc < 0) return -1;
        unsigned long extra = options.flags & (MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME | MS_RELATIME);
        if ((options.flags & MS_RDONLY) && remount_readonly(ctx, ctx->root, m->target, extra) < 0) return -1;
        if (!(options.flags & MS_RDONLY) && extra) {
            // Flags on a bind need a remount too; keep it writable.
            int fd = open_in_root(ctx->root, m->target, O_PATH);
            char path[64];
            fd_path(path, sizeof path, fd);
            if (fd < 0 || mount(NULL, path, NULL, MS_BIND | MS_REMOUNT | extra, NULL) < 0) {
                failure_set(ctx->failure, errno, "remount", NULL, "%s in %s", m->target, ctx->spec->rootfs);
                if (fd >= 0) close(fd);
                return -1;
            }
            close(fd);
        }
    }
    return 0;
}

/// After pivot_root: hide kernel information the container must not read or write.
static int apply_masks(struct rootfs_context *ctx, bool proc, bool sys) {
    static const char *masked_proc[] = {"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                                        "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                                        "/proc/sched_debug", "/proc/scsi"};
    static const char *readonly_proc[] = {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"};
    int root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (root < 0) {
        failure_set(ctx->failure, errno, "open", NULL, "/ after pivot_root in %s", ctx->spec->rootfs);
        return -1;
    }
    size_t count = (proc ? sizeof masked_proc / sizeof masked_proc[0] : 0) + (sys ? 1 : 0);
    for (size_t i = 0; i < count; i++) {
        const char *path = (proc && i < sizeof masked_proc / sizeof masked_proc[0]) ? masked_proc[i] : "/sys/firmware";
        int fd = open_in_root(root, path, O_PATH);
        if (fd < 0 && errno == ENOENT) continue;  // not every kernel has every entry
        struct stat st;
        char target[64];
        fd_path(target, sizeof target, fd);
        int rc = -1;
        if (fd >= 0 && fstat(fd, &st) == 0) {
            if (S_ISDIR(st.st_mode))
                rc = mount("tmpfs", target, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=0k,mode=555");
            else
                rc = mount("/dev/null", target, NULL, MS_BIND, NULL);
        }
        int saved = errno;
        if (fd >= 0) close(fd);
        if (rc < 0) {
            failure_set(ctx->failure, saved, "mask", NULL, "%s in %s", path, ctx->spec->rootfs);
            close(root);
            return -1;
        }
    }
    for (size_t i = 0; proc && i < sizeof readonly_proc / sizeof readonly_proc[0]; i++) {
        const char *path = readonly_proc[i];
        int fd = open_in_root(root, path, O_PATH);
        if (fd < 0 && errno == ENOENT) continue;
        char target[64];
        fd_path(target, sizeof target, fd);
        int rc = fd >= 0 ? mount(target, target, NULL, MS_BIND | MS_REC, NULL) : -1;
        int saved = errno;
        if (fd >= 0) close(fd);
        if (rc < 0) {
            failure_set(ctx->failure, saved, "bind read-only", NULL, "%s in %s", path, ctx->spec->rootfs);
            close(root);
            return -1;
        }
        if (remount_readonly(ctx, root, path, MS_NOSUID | MS_NODEV | MS_NOEXEC) < 0) {
            close(root);
            return -1;
        }
    }
    close(root);
    return 0;
}

int rootfs_setup(const struct shim_spec *spec, const struct shim_trees *trees, struct shim_failure *failure) {
    struct rootfs_context ctx = {.spec = spec, .failure = failure, .root = -1, .trees = trees};
    mode_t saved_umask = umask(0);  // device nodes and directories get exactly their modes

    if (mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) < 0) {
        failure_set(failure, errno, "make rslave", NULL, "/ (for %s)", spec->rootfs);
        return -1;
    }
    if (trees) {
        // Over the rootfs directory, which is the working directory (userns.c): its path
        // is not reachable by container root. The tree's descriptor is then the root.
        if (move_mount(trees->rootfs, "", AT_FDCWD, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0) {
            failure_set(failure, errno, "attach", NULL, "the idmapped rootfs %s", spec->rootfs);
            return -1;
        }
        ctx.root = fcntl(trees->rootfs, F_DUPFD_CLOEXEC, 3);
    } else if (mount(spec->rootfs, spec->rootfs, NULL, MS_BIND | MS_REC, NULL) < 0) {
        failure_set(failure, errno, "bind", NULL, "rootfs %s onto itself", spec->rootfs);
        return -1;
    } else {
        ctx.root = open(spec->rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
    }
    if (ctx.root < 0) {
        failure_set(failure, errno, "open", NULL, "rootfs %s", spec->rootfs);
        return -1;
    }

    bool proc = !spec_overrides(spec, "/proc"), dev = !spec_overrides(spec, "/dev"), sys = !spec_overrides(spec, "/sys");
    if (proc && mount_kernel_fs(&ctx, "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC) < 0) goto fail;
    if (dev && setup_dev(&ctx) < 0) goto fail;
    if (sys && mount_kernel_fs(&ctx, "/sys", "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC) < 0) goto fail;
    // A delegated cgroup: the container's cgroup namespace (its root is the container's
    // cgroup) mounted writable, on the read-only /sys.
    if (spec->cgroup_delegate &&
        mount_at(&ctx, "/sys/fs/cgroup", false, "cgroup2", "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
        goto fail;
    if (setup_spec_mounts(&ctx) < 0) goto fail;

    if (fchdir(ctx.root) < 0) {
        failure_set(failure, errno, "chdir", NULL, "rootfs %s", spec->rootfs);
        goto fail;
    }
    // pivot_root(".", "."): the old root ends up stacked on the new one at "/" (see
    // pivot_root(2)); detaching "." removes it without needing a put_old directory.
    if (syscall(SYS_pivot_root, ".", ".") < 0) {
        failure_set(failure, errno, "pivot_root", NULL, "into %s", spec->rootfs);
        goto fail;
    }
    // Make sure the detach below cannot propagate anywhere, whatever / was.
    if (mount(NULL, ".", NULL, MS_SLAVE | MS_REC, NULL) < 0 || umount2(".", MNT_DETACH) < 0) {
        failure_set(failure, errno, "detach", NULL, "the old root (host tree) from %s", spec->rootfs);
        goto fail;
    }
    if (chdir("/") < 0) {
        failure_set(failure, errno, "chdir", NULL, "/ in %s", spec->rootfs);
        goto fail;
    }
    close(ctx.root);
    ctx.root = -1;
    if (spec->readonly) {
        // A bind remount changes only this mount's flags; keep the ones it has
        // (nosuid, nodev … from the host), which a remount would otherwise clear.
        struct statvfs fs;
        unsigned long keep = 0;
        if (statvfs("/", &fs) == 0) {
            if (fs.f_flag & ST_NOSUID) keep |= MS_NOSUID;
            if (fs.f_flag & ST_NODEV) keep |= MS_NODEV;
            if (fs.f_flag & ST_NOEXEC) keep |= MS_NOEXEC;
            if (fs.f_flag & ST_NOATIME) keep |= MS_NOATIME;
            if (fs.f_flag & ST_NODIRATIME) keep |= MS_NODIRATIME;
            if (fs.f_flag & ST_RELATIME) keep |= MS_RELATIME;
        }
        if (mount(NULL, "/", NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | keep, NULL) < 0) {
            failure_set(failure, errno, "remount read-only", NULL, "/ (%s)", spec->rootfs);
            return -1;
        }
    }
    if (apply_masks(&ctx, proc, sys) < 0) return -1;
    umask(saved_umask);
    return 0;
fail:
    if (ctx.root >= 0) close(ctx.root);
    return -1;
}
