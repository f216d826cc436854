#ifndef TUPP_STORAGE_H
#define TUPP_STORAGE_H

#include <stdint.h>
#include <sys/types.h>
// Plain (non-variadic) glibc interfaces that Swift's Glibc module does not import:
// extended attributes and statfs(2). Including them here makes them callable from Swift.
#include <sys/xattr.h>
#include <sys/vfs.h>

/// statfs(2) f_type of btrfs (linux/magic.h).
#define TUPP_BTRFS_SUPER_MAGIC 0x9123683E

/// lseek(2) whences for sparse files; glibc exposes them only under _GNU_SOURCE.
#define TUPP_SEEK_DATA 3
#define TUPP_SEEK_HOLE 4

/// open(2) O_PATH (glibc exposes it only under _GNU_SOURCE): a descriptor that names a
/// directory for *at() calls without opening it for reading.
#define TUPP_O_PATH 010000000

/// renameat2(2) flags (linux/fs.h), repeated to keep kernel headers out of Swift.
#define TUPP_RENAME_NOREPLACE (1 << 0)
#define TUPP_RENAME_EXCHANGE  (1 << 1)

/// Loop device flags (linux/loop.h).
#define TUPP_LO_FLAGS_AUTOCLEAR 4

/// ioctl(LOOP_CTL_GET_FREE) on /dev/loop-control: the number of a free loop device
/// (allocating one when all are busy). ioctl is variadic, which Swift cannot call.
int tupp_loop_get_free(int control_fd);

/// ioctl(LOOP_CONFIGURE): binds `backing_fd` to the loop device in one step (no
/// window where the device is bound but unconfigured, unlike LOOP_SET_FD +
/// LOOP_SET_STATUS64). `flags` are LO_FLAGS_*; `file_name` is recorded for display.
/// C because of the variadic ioctl and the kernel's struct loop_config.
int tupp_loop_configure(int loop_fd, int backing_fd, uint32_t flags, const char *file_name);

/// ioctl(LOOP_SET_CAPACITY): re-reads the backing file's size after it grew.
int tupp_loop_set_capacity(int loop_fd);

/// ioctl(LOOP_CLR_FD): detaches the backing file (autoclear makes this rarely needed).
int tupp_loop_clear(int loop_fd);

/// ioctl(BTRFS_IOC_RESIZE) on any fd inside the mounted filesystem: `spec` is what
/// `btrfs filesystem resize` takes ("max", "+1g", "1:max"). C for the ioctl and
/// struct btrfs_ioctl_vol_args.
int tupp_btrfs_resize(int fd, const char *spec);

/// Sum of total_bytes over the filesystem's devices (BTRFS_IOC_FS_INFO +
/// BTRFS_IOC_DEV_INFO): the bytes the filesystem spans, which is what grows on resize.
int tupp_btrfs_total_bytes(int fd, uint64_t *total);

/// renameat2(2): glibc declares it only under _GNU_SOURCE, which Swift's Glibc lacks.
int tupp_renameat2(int old_dirfd, const char *old_path, int new_dirfd, const char *new_path, unsigned int flags);

/// copy_file_range(2): glibc declares it only under _GNU_SOURCE. On btrfs it shares
/// extents (reflink) instead of copying bytes.
ssize_t tupp_copy_file_range(int fd_in, int64_t *off_in, int fd_out, int64_t *off_out, size_t len);

// MARK: volumes — quotas and send (linux/btrfs.h has the structs; libbtrfsutil has neither)

/// One qgroup as the quota tree holds it: usage (updated at each transaction commit) and
/// limit. `id` is (level << 48) | number; a subvolume's own qgroup is level 0, its id.
struct tupp_qgroup {
    uint64_t id;
    uint64_t referenced;
    uint64_t exclusive;
    /// BTRFS_QGROUP_LIMIT_* bits saying which of the limits below are set.
    uint64_t limit_flags;
    uint64_t max_referenced;
    uint64_t max_exclusive;
};

/// BTRFS_QGROUP_LIMIT_MAX_RFER (linux/btrfs.h).
#define TUPP_QGROUP_LIMIT_MAX_REFERENCED 1
/// BTRFS_QGROUP_STATUS_FLAG_* (linux/btrfs_tree.h).
#define TUPP_QGROUP_STATUS_ON 1
#define TUPP_QGROUP_STATUS_RESCAN 2
#define TUPP_QGROUP_STATUS_INCONSISTENT 4

/// ioctl(BTRFS_IOC_QUOTA_CTL): enables (1) or disables (0) quotas on the filesystem
/// holding `fd`. Enabling starts a rescan of existing data. C for the ioctl and struct.
int tupp_btrfs_quota_ctl(int fd, int enable);

/// ioctl(BTRFS_IOC_QUOTA_RESCAN_WAIT): blocks until a running rescan finished (returns
/// at once when none runs), so usage read afterwards is exact.
int tupp_btrfs_quota_rescan_wait(int fd);

/// ioctl(BTRFS_IOC_QUOTA_RESCAN): recounts every qgroup in the background (EINPROGRESS
/// when one already runs); what clears the inconsistent flag.
int tupp_btrfs_quota_rescan(int fd);

/// ioctl(BTRFS_IOC_QGROUP_LIMIT): sets the referenced-bytes limit of `qgroup`;
/// UINT64_MAX removes it (the kernel's "clear" value, as `btrfs qgroup limit none`).
int tupp_btrfs_qgroup_limit(int fd, uint64_t qgroup, uint64_t max_referenced);

/// Every qgroup's usage and limit, and the quota status flags, from one walk of the quota
/// tree (BTRFS_IOC_TREE_SEARCH, as `btrfs qgroup show` reads it). On success `*out` is a
/// malloc'd array of `*count` entries sorted by id (free() it). Fails with ENOENT when
/// quotas are not enabled. C for the ioctl and the on-disk little-endian item layouts.
int tupp_btrfs_qgroups(int fd, struct tupp_qgroup **out, size_t *count, uint64_t *status_flags);

/// ioctl(BTRFS_IOC_SEND): the kernel writes a send stream of the read-only subvolume open
/// at `subvolume_fd` to `out_fd` (a file, pipe or socket), blocking until done. With a
/// `parent_id` (0: none) the stream holds only the differences from that read-only
/// subvolume, which is also offered as a clone source. C for the ioctl and struct.
int tupp_btrfs_send(int subvolume_fd, int out_fd, uint64_t parent_id);

#endif
