import CBtrfsUtil
import CTuppSys
import Glibc
import TuppFacts
import TuppSystem

/// Thin, throwing wrappers over libbtrfsutil. Every failure names the operation and the
/// subvolume, with libbtrfsutil's own message and the errno it left behind.
enum Btrfs {
    /// BTRFS_ROOT_SUBVOL_RDONLY in the root item flags.
    static let readOnlyFlag: UInt64 = 1 << 0

    static func check(_ operation: String, _ object: @autoclosure () -> String,
                      _ body: () -> btrfs_util_error) throws(SystemError) {
        let code = body()
        guard code != BTRFS_UTIL_OK else { return }
        let savedErrno = errno
        let message = String(cString: btrfs_util_strerror(code))
        throw SystemError(operation, object(), errno: savedErrno, detail: "libbtrfsutil: \(message)")
    }

    static func createSubvolume(in parent: FileDescriptor, named name: String, describedAs object: String) throws(SystemError) {
        try check("create subvolume", object) {
            btrfs_util_create_subvolume_fd(parent.rawValue, name, 0, nil, nil)
        }
    }

    /// A snapshot of the subvolume open at `source`, created as `parent/name`: writable, or
    /// read-only from the start (one ioctl, so it is never visible writable).
    static func createSnapshot(of source: FileDescriptor, in parent: FileDescriptor, named name: String,
                               readOnly: Bool = false, describedAs object: String) throws(SystemError) {
        let flags = readOnly ? Int32(BTRFS_UTIL_CREATE_SNAPSHOT_READ_ONLY) : 0
        try check(readOnly ? "create read-only snapshot" : "create snapshot", object) {
            btrfs_util_create_snapshot_fd2(source.rawValue, parent.rawValue, name, flags, nil, nil)
        }
    }

    /// Deletes `parent/name` and, recursively, any subvolume nested inside it.
    static func deleteSubvolume(in parent: FileDescriptor, named name: String, describedAs object: String) throws(SystemError) {
        try check("delete subvolume", object) {
            btrfs_util_delete_subvolume_fd(parent.rawValue, name, Int32(BTRFS_UTIL_DELETE_SUBVOLUME_RECURSIVE))
        }
    }

    static func setReadOnly(_ subvolume: FileDescriptor, _ readOnly: Bool, describedAs object: String) throws(SystemError) {
        try check("set read-only flag of subvolume", object) {
            btrfs_util_set_subvolume_read_only_fd(subvolume.rawValue, readOnly)
        }
    }

    static func isSubvolume(_ fd: FileDescriptor) -> Bool {
        btrfs_util_is_subvolume_fd(fd.rawValue) == BTRFS_UTIL_OK
    }

    /// Flushes delayed allocation and commits the transaction, so what was written
    /// survives a crash before anything points at it.
    static func sync(_ fd: FileDescriptor, describedAs object: String) throws(SystemError) {
        try check("sync filesystem", object) { btrfs_util_sync_fd(fd.rawValue) }
    }

    /// Information about the subvolume open at `fd`.
    static func info(_ fd: FileDescriptor, path: String) throws(SystemError) -> SubvolumeInfo {
        var raw = btrfs_util_subvolume_info()
        try check("read subvolume information", path) { btrfs_util_subvolume_info_fd(fd.rawValue, 0, &raw) }
        return SubvolumeInfo(raw, path: path)
    }

    /// Every subvolume below the subvolume containing `fd`, in one pass of the tree
    /// search (paths relative to that containing subvolume).
    static func subvolumes(below fd: FileDescriptor, describedAs object: String) throws(SystemError) -> [SubvolumeInfo] {
        var iterator: OpaquePointer?
        try check("list subvolumes", object) {
            btrfs_util_create_subvolume_iterator_fd(fd.rawValue, 0, 0, &iterator)
        }
        defer { btrfs_util_destroy_subvolume_iterator(iterator) }
        var result: [SubvolumeInfo] = []
        while true {
            var pathPointer: UnsafeMutablePointer<CChar>?
            var raw = btrfs_util_subvolume_info()
            let code = btrfs_util_subvolume_iterator_next_info(iterator, &pathPointer, &raw)
            if code == BTRFS_UTIL_ERROR_STOP_ITERATION { break }
            try check("list subvolumes", object) { code }
            let path = pathPointer.map { String(cString: $0) } ?? ""
            free(pathPointer)
            result.append(SubvolumeInfo(raw, path: path))
        }
        return result
    }

    static func formatUUID(_ bytes: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                                     UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8)) -> String? {
        let array = withUnsafeBytes(of: bytes) { Array($0) }
        if array.allSatisfy({ $0 == 0 }) { return nil }
        let hex = "0123456789abcdef".utf8.map { Character(UnicodeScalar($0)) }
        var text = ""
        for (index, byte) in array.enumerated() {
            if index == 4 || index == 6 || index == 8 || index == 10 { text.append("-") }
            text.append(hex[Int(byte >> 4)])
            text.append(hex[Int(byte & 15)])
        }
        return text
    }
}

extension SubvolumeInfo {
    init(_ raw: btrfs_util_subvolume_info, path: String) {
        self.init(path: path, id: raw.id, uuid: Btrfs.formatUUID(raw.uuid) ?? "",
                  parentUUID: Btrfs.formatUUID(raw.parent_uuid),
                  readOnly: raw.flags & Btrfs.readOnlyFlag != 0,
                  generation: raw.generation,
                  createdAt: Double(raw.otime.tv_sec) + Double(raw.otime.tv_nsec) / 1e9,
                  createdGeneration: raw.otransid,
                  receivedUUID: Btrfs.formatUUID(raw.received_uuid))
    }
}
