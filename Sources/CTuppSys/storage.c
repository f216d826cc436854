// Storage syscalls Swift cannot reach: variadic ioctls on loop devices and btrfs,
// and glibc functions declared only under _GNU_SOURCE.
#define _GNU_SOURCE
#include "tupp_storage.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <linux/btrfs.h>
#include <linux/loop.h>

int tupp_loop_get_free(int control_fd) {
    return ioctl(control_fd, LOOP_CTL_GET_FREE);
}

int tupp_loop_configure(int loop_fd, int backing_fd, uint32_t flags, const char *file_name) {
    struct loop_config config;
    memset(&config, 0, sizeof config);
    config.fd = (uint32_t)backing_fd;
    config.info.lo_flags = flags;
    if (file_name) {
        strncpy((char *)config.info.lo_file_name, file_name, LO_NAME_SIZE - 1);
    }
    return ioctl(loop_fd, LOOP_CONFIGURE, &config);
}

int tupp_loop_set_capacity(int loop_fd) {
    return ioctl(loop_fd, LOOP_SET_CAPACITY, 0);
}

int tupp_loop_clear(int loop_fd) {
    return ioctl(loop_fd, LOOP_CLR_FD, 0);
}

int tupp_btrfs_resize(int fd, const char *spec) {
    struct btrfs_ioctl_vol_args args;
    memset(&args, 0, sizeof args);
    if (strlen(spec) >= sizeof args.name) {
        errno = ENAMETOOLONG;
        return -1;
    }
    strcpy(args.name, spec);
    return ioctl(fd, BTRFS_IOC_RESIZE, &args);
}

int tupp_btrfs_total_bytes(int fd, uint64_t *total) {
    struct btrfs_ioctl_fs_info_args fs;
    memset(&fs, 0, sizeof fs);
    if (ioctl(fd, BTRFS_IOC_FS_INFO, &fs) < 0) return -1;
    uint64_t sum = 0;
    for (uint64_t id = 1; id <= fs.max_id; id++) {
        struct btrfs_ioctl_dev_info_args dev;
        memset(&dev, 0, sizeof dev);
        dev.devid = id;
        if (ioctl(fd, BTRFS_IOC_DEV_INFO, &dev) < 0) {
            if (errno == ENODEV) continue;  // a removed device leaves a gap in the ids
            return -1;
        }
        sum += dev.total_bytes;
    }
    *total = sum;
    return 0;
}

int tupp_renameat2(int old_dirfd, const char *old_path, int new_dirfd, const char *new_path, unsigned int flags) {
    return renameat2(old_dirfd, old_path, new_dirfd, new_path, flags);
}

ssize_t tupp_copy_file_range(int fd_in, int64_t *off_in, int fd_out, int64_t *off_out, size_t len) {
    return copy_file_range(fd_in, (off64_t *)off_in, fd_out, (off64_t *)off_out, len, 0);
}
