import CTuppSys
import Glibc
import TuppFacts
import TuppSystem

/// btrfs quotas through the ioctls btrfs-progs uses (libbtrfsutil has none of them):
/// BTRFS_IOC_QUOTA_CTL, BTRFS_IOC_QGROUP_LIMIT and a tree search of the quota tree.
/// `fd` is any descriptor on the pool's filesystem.
enum Quotas {
    /// The status and every level-0 qgroup (one per subvolume, keyed by subvolume id).
    static func read(_ fd: FileDescriptor, describedAs object: String) throws(SystemError) -> (QuotaStatus, [UInt64: QgroupUsage]) {
        var items: UnsafeMutablePointer<tupp_qgroup>?
        var count = 0
        var flags: UInt64 = 0
        if tupp_btrfs_qgroups(fd.rawValue, &items, &count, &flags) != 0 {
            if errno == ENOENT { return (.disabled, [:]) }
            throw SystemError("read qgroups", object)
        }
        defer { free(items) }
        var usage: [UInt64: QgroupUsage] = [:]
        for index in 0..<count {
            let item = items![index]
            guard item.id >> 48 == 0 else { continue }  // higher levels group qgroups; tupp makes none
            let limited = item.limit_flags & UInt64(TUPP_QGROUP_LIMIT_MAX_REFERENCED) != 0
            usage[item.id] = QgroupUsage(referenced: item.referenced, exclusive: item.exclusive,
                                         limit: limited ? item.max_referenced : nil)
        }
        let status = QuotaStatus(enabled: flags & UInt64(TUPP_QGROUP_STATUS_ON) != 0,
                                 rescanning: flags & UInt64(TUPP_QGROUP_STATUS_RESCAN) != 0,
                                 inconsistent: flags & UInt64(TUPP_QGROUP_STATUS_INCONSISTENT) != 0)
        return (status, usage)
    }

    /// Turns quotas on and waits for the rescan that counts what already exists, so the
    /// first numbers read are right.
    static func enable(_ fd: FileDescriptor, describedAs object: String) throws(SystemError) {
        try Errno.check("enable quotas on", object) { tupp_btrfs_quota_ctl(fd.rawValue, 1) }
        try Errno.check("wait for the quota rescan of", object) { tupp_btrfs_quota_rescan_wait(fd.rawValue) }
    }

    static func disable(_ fd: FileDescriptor, describedAs object: String) throws(SystemError) {
        try Errno.check("disable quotas on", object) { tupp_btrfs_quota_ctl(fd.rawValue, 0) }
    }

    /// Sets (or with nil removes) the referenced-bytes limit of subvolume `id`'s qgroup.
    /// `fd` must not be inside that subvolume: the ioctl starts a transaction charged to
    /// the subvolume of `fd`, which fails with EDQUOT when that one is full — exactly when
    /// a limit needs raising. The pool root (outside every volume) is the right place.
    static func setLimit(_ fd: FileDescriptor, subvolume id: UInt64, bytes: UInt64?, describedAs object: String) throws(SystemError) {
        let value = bytes ?? UInt64.max
        if tupp_btrfs_qgroup_limit(fd.rawValue, id, value) != 0 {
            let code = errno
            throw SystemError(bytes == nil ? "remove qgroup limit of" : "set qgroup limit \(value) bytes on", object, errno: code,
                              detail: code == ENOTCONN || code == ENOENT ? "quotas are not enabled on the pool" : nil)
        }
    }

    /// Starts a rescan and waits for it: what clears `inconsistent`, under which the
    /// kernel stops enforcing limits.
    static func rescan(_ fd: FileDescriptor, describedAs object: String) throws(SystemError) {
        if tupp_btrfs_quota_rescan(fd.rawValue) != 0 && errno != EINPROGRESS {
            throw SystemError("start a quota rescan of", object)
        }
        try Errno.check("wait for the quota rescan of", object) { tupp_btrfs_quota_rescan_wait(fd.rawValue) }
    }
}
