// Storage syscalls Swift cannot reach: variadic ioctls on loop devices and btrfs (and the
// kernel structs they take: quota control, qgroup limits, tree search, send),
// and glibc functions declared only under _GNU_SOURCE.
#define _GNU_SOURCE
#include "tupp_storage.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <linux/btrfs.h>
#include <linux/btrfs_tree.h>
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

// ---- volumes: quotas and send ------------------------------------------------------------

int tupp_btrfs_quota_ctl(int fd, int enable) {
    struct btrfs_ioctl_quota_ctl_args args;
    memset(&args, 0, sizeof args);
    args.cmd = enable ? BTRFS_QUOTA_CTL_ENABLE : BTRFS_QUOTA_CTL_DISABLE;
    return ioctl(fd, BTRFS_IOC_QUOTA_CTL, &args);
}

int tupp_btrfs_quota_rescan_wait(int fd) {
    return ioctl(fd, BTRFS_IOC_QUOTA_RESCAN_WAIT, 0);
}

int tupp_btrfs_quota_rescan(int fd) {
    struct btrfs_ioctl_quota_rescan_args args;
    memset(&args, 0, sizeof args);
    return ioctl(fd, BTRFS_IOC_QUOTA_RESCAN, &args);
}

int tupp_btrfs_qgroup_limit(int fd, uint64_t qgroup, uint64_t max_referenced) {
    struct btrfs_ioctl_qgroup_limit_args args;
    memset(&args, 0, sizeof args);
    args.qgroupid = qgroup;
    args.lim.flags = BTRFS_QGROUP_LIMIT_MAX_RFER;
    args.lim.max_rfer = max_referenced;
    return ioctl(fd, BTRFS_IOC_QGROUP_LIMIT, &args);
}

// The entry for `id` in the id-sorted array, appending one when it is new. Info items come
// before limit items and each kind is sorted by id, so appends keep the order.
static struct tupp_qgroup *qgroup_entry(struct tupp_qgroup **items, size_t *count, size_t *capacity, uint64_t id) {
    size_t low = 0, high = *count;
    while (low < high) {
        size_t mid = (low + high) / 2;
        if ((*items)[mid].id < id) low = mid + 1; else high = mid;
    }
    if (low < *count && (*items)[low].id == id) return &(*items)[low];
    if (*count == *capacity) {
        size_t grown = *capacity ? *capacity * 2 : 64;
        struct tupp_qgroup *bigger = realloc(*items, grown * sizeof **items);
        if (!bigger) return NULL;
        *items = bigger;
        *capacity = grown;
    }
    memmove(&(*items)[low + 1], &(*items)[low], (*count - low) * sizeof **items);
    memset(&(*items)[low], 0, sizeof **items);
    (*items)[low].id = id;
    (*count)++;
    return &(*items)[low];
}

int tupp_btrfs_qgroups(int fd, struct tupp_qgroup **out, size_t *count, uint64_t *status_flags) {
    struct btrfs_ioctl_search_args args;
    struct btrfs_ioctl_search_key *key = &args.key;
    struct tupp_qgroup *items = NULL;
    size_t used = 0, capacity = 0;
    uint64_t flags = 0;

    memset(&args, 0, sizeof args);
    key->tree_id = BTRFS_QUOTA_TREE_OBJECTID;
    // All of (0, STATUS, 0), (0, INFO, id…), (0, LIMIT, id…); relations (objectid ≠ 0) are not read.
    key->min_objectid = 0;
    key->max_objectid = 0;
    key->min_type = BTRFS_QGROUP_STATUS_KEY;
    key->max_type = BTRFS_QGROUP_LIMIT_KEY;
    key->min_offset = 0;
    key->max_offset = UINT64_MAX;
    key->max_transid = UINT64_MAX;

    for (;;) {
        key->nr_items = 4096;
        if (ioctl(fd, BTRFS_IOC_TREE_SEARCH, &args) < 0) {
            int saved = errno;
            free(items);
            errno = saved;  // ENOENT: there is no quota tree — quotas are off
            return -1;
        }
        if (key->nr_items == 0) break;
        size_t offset = 0;
        struct btrfs_ioctl_search_header header;
        for (uint32_t i = 0; i < key->nr_items; i++) {
            memcpy(&header, args.buf + offset, sizeof header);
            offset += sizeof header;
            const char *item = args.buf + offset;
            offset += header.len;
            if (header.objectid != 0) continue;
            if (header.type == BTRFS_QGROUP_STATUS_KEY && header.len >= sizeof(struct btrfs_qgroup_status_item)) {
                struct btrfs_qgroup_status_item status;
                memcpy(&status, item, sizeof status);
                flags = le64toh(status.flags);
            } else if (header.type == BTRFS_QGROUP_INFO_KEY && header.len >= sizeof(struct btrfs_qgroup_info_item)) {
                struct btrfs_qgroup_info_item info;
                memcpy(&info, item, sizeof info);
                struct tupp_qgroup *entry = qgroup_entry(&items, &used, &capacity, header.offset);
                if (!entry) { free(items); errno = ENOMEM; return -1; }
                entry->referenced = le64toh(info.rfer);
                entry->exclusive = le64toh(info.excl);
            } else if (header.type == BTRFS_QGROUP_LIMIT_KEY && header.len >= sizeof(struct btrfs_qgroup_limit_item)) {
                struct btrfs_qgroup_limit_item limit;
                memcpy(&limit, item, sizeof limit);
                struct tupp_qgroup *entry = qgroup_entry(&items, &used, &capacity, header.offset);
                if (!entry) { free(items); errno = ENOMEM; return -1; }
                entry->limit_flags = le64toh(limit.flags);
                entry->max_referenced = le64toh(limit.max_rfer);
                entry->max_exclusive = le64toh(limit.max_excl);
            }
        }
        // Continue after the last key returned (keys compare as (objectid, type, offset)).
        key->min_type = header.type;
        key->min_offset = header.offset + 1;
        if (header.offset == UINT64_MAX) {
            if (header.type >= BTRFS_QGROUP_LIMIT_KEY) break;
            key->min_type = header.type + 1;
            key->min_offset = 0;
        }
    }
    *out = items;
    *count = used;
    *status_flags = flags;
    return 0;
}

int tupp_btrfs_send(int subvolume_fd, int out_fd, uint64_t parent_id) {
    struct btrfs_ioctl_send_args args;
    __u64 clone_source = parent_id;
    memset(&args, 0, sizeof args);
    args.send_fd = out_fd;
    args.parent_root = parent_id;
    if (parent_id != 0) {
        // btrfs send does the same: the parent is also where shared extents are cloned from.
        args.clone_sources = &clone_source;
        args.clone_sources_count = 1;
    }
    return ioctl(subvolume_fd, BTRFS_IOC_SEND, &args);
}
