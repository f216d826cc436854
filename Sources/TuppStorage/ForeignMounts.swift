import Synchronization
import TuppSystem

/// The mounts of other mount namespaces, for "is this subvolume mounted anywhere?".
///
/// Every container is a mount namespace of its own, so one question reads every
/// namespace's mountinfo — which the kernel formats anew on each read. Destroying N
/// containers asked N times: N² tables formatted (1,000 containers: 33 s of system time).
/// The btrfs mounts of each namespace are kept for `maximumAge`; /proc is listed on every
/// question, and only namespaces not seen before are read. A namespace whose kept table
/// pins the path is read again before it is believed. Each pid's namespace is kept as
/// well, ours included. What the kept tables can miss, for at most `maximumAge`: a bind
/// mount made inside a namespace already read, and a namespace made by a process already
/// seen (unshare(2) moves the process itself) — a window like the one between any such
/// check and the deletion it guards. Our own namespace (where mounts made on the host
/// show) is read by the caller every time.
final class ForeignMounts: Sendable {
    static let shared = ForeignMounts()

    static let maximumAge: UInt64 = 2_000_000_000

    private struct Tables {
        var taken: UInt64 = 0
        /// pid → its mount namespace's inode, as last seen.
        var namespaceOfPid: [Int32: UInt64] = [:]
        /// Mount namespace inode → (a pid in it, its mounts).
        var mounts: [UInt64: (pid: Int32, mounts: [MountInfo])] = [:]
    }

    private let tables = Mutex(Tables())

    /// The first btrfs mount in a mount namespace other than ours (and its pid) for which
    /// `pins` holds, confirmed by a fresh read of that namespace's table.
    func first(where pins: (MountInfo) -> Bool) -> (MountInfo, Int32)? {
        let candidates = tables.withLock { tables -> [(Int32, MountInfo)] in
            refresh(&tables)
            return tables.mounts.values.compactMap { entry in entry.mounts.first(where: pins).map { (entry.pid, $0) } }
        }
        for (pid, _) in candidates.sorted(by: { $0.0 < $1.0 }) {
            guard let fresh = try? MountInfo.read(pid: "\(pid)"), let mount = fresh.first(where: pins) else { continue }
            return (mount, pid)
        }
        return nil
    }

    /// Reads the tables of namespaces not seen before; all of them once `maximumAge` passed.
    private func refresh(_ tables: inout Tables) {
        let now = Monotonic.nanoseconds()
        if now - tables.taken > Self.maximumAge { tables = Tables(taken: now) }
        let own = namespaceInode(pid: "self", kind: "mnt")
        var alive: [Int32: UInt64] = [:]
        var member: [UInt64: Int32] = [:]
        for entry in (try? Files.list("/proc")) ?? [] {
            guard let pid = Int32(entry) else { continue }
            guard let inode = tables.namespaceOfPid[pid] ?? namespaceInode(pid: entry, kind: "mnt") else { continue }
            // Kept for pids in our own namespace too (every supervisor is): else each
            // question stat'ed them all again (destroying 1,000 containers: a million stats).
            alive[pid] = inode
            guard inode != own else { continue }
            if member[inode] == nil { member[inode] = pid }
            guard tables.mounts[inode] == nil, let mounts = try? MountInfo.read(pid: entry) else { continue }
            tables.mounts[inode] = (pid, mounts.filter { $0.fsType == "btrfs" })
        }
        // A namespace is read again through a pid still in it; one with none left is gone.
        var kept: [UInt64: (pid: Int32, mounts: [MountInfo])] = [:]
        for (inode, entry) in tables.mounts {
            if let pid = member[inode] { kept[inode] = (pid, entry.mounts) }
        }
        tables.mounts = kept
        tables.namespaceOfPid = alive
    }
}
