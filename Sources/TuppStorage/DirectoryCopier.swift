import CTuppSys
import Glibc
import TuppSystem

/// Copies a host directory tree into a rootfs through `RootfsWriter`, preserving
/// owners, modes, times, xattrs, symlinks, hard links and holes. Reads go through
/// descriptors with O_NOFOLLOW, so a symlink in the source is copied, never followed.
struct DirectoryCopier {
    /// The source directory's path, or how errors name it when `opened` is given.
    let source: String
    /// The source directory, already resolved (a volume's seed, found inside its image).
    private let opened: FileDescriptor?
    let writer: RootfsWriter
    let progress: ProgressMeter
    private var firstPathOfInode: [InodeKey: String] = [:]
    private var bytesCopied: UInt64 = 0

    private struct InodeKey: Hashable { var device: UInt64; var inode: UInt64 }

    init(source: String, writer: RootfsWriter, progress: ProgressMeter) {
        self.source = source
        self.opened = nil
        self.writer = writer
        self.progress = progress
    }

    /// Copies from a directory already open for reading; `name` is for errors.
    init(directory: FileDescriptor, describedAs name: String, writer: RootfsWriter, progress: ProgressMeter) {
        self.source = name
        self.opened = directory
        self.writer = writer
        self.progress = progress
    }

    /// Bytes of regular-file content copied so far.
    var bytes: UInt64 { bytesCopied }

    mutating func copy() throws {
        let root = try opened ?? FileDescriptor.open(source, O_RDONLY | O_DIRECTORY)
        var st = stat()
        try Errno.check("stat", source) { fstat(root.rawValue, &st) }
        try writer.apply(header(for: st, path: "", kind: .directory, xattrs: try Self.xattrs(fd: root.rawValue, path: source))) { _ in }
        try copyChildren(of: root, relative: "")
        try writer.finish()
        progress.update(bytes: bytesCopied, entries: writer.entriesWritten)
    }

    private mutating func copyChildren(of directory: FileDescriptor, relative: String) throws {
        for name in try Self.list(directory, path: "\(source)/\(relative)") {
            if Task.isCancelled { throw CancellationError() }
            let path = relative.isEmpty ? name : "\(relative)/\(name)"
            let hostPath = "\(source)/\(path)"
            var st = stat()
            try Errno.check("stat", hostPath) { fstatat(directory.rawValue, name, &st, AT_SYMLINK_NOFOLLOW) }
            let type = st.st_mode & S_IFMT
            let key = InodeKey(device: UInt64(st.st_dev), inode: UInt64(st.st_ino))
            if type != S_IFDIR, st.st_nlink > 1 {
                if let first = firstPathOfInode[key] {
                    try writer.apply(header(for: st, path: path, kind: .hardlink(target: first))) { _ in }
                    continue
                }
                firstPathOfInode[key] = path
            }
            switch type {
            case S_IFDIR:
                let child = try directory.openAt(name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, describedAs: hostPath)
                try writer.apply(header(for: st, path: path, kind: .directory,
                                        xattrs: try Self.xattrs(fd: child.rawValue, path: hostPath))) { _ in }
                try copyChildren(of: child, relative: path)
            case S_IFREG:
                let file = try directory.openAt(name, O_RDONLY | O_NOFOLLOW, describedAs: hostPath)
                var entry = header(for: st, path: path, kind: .regular, xattrs: try Self.xattrs(fd: file.rawValue, path: hostPath))
                entry.size = Int64(st.st_size)
                try writer.apply(entry) { out in
                    try Self.copyContent(from: file.rawValue, to: out, size: Int64(st.st_size), path: hostPath)
                }
                bytesCopied += UInt64(st.st_size)
                progress.update(bytes: bytesCopied, entries: writer.entriesWritten)
            case S_IFLNK:
                var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
                let n = try Errno.check("read symlink", hostPath) { readlinkat(directory.rawValue, name, &buffer, buffer.count - 1) }
                let target = String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
                let linkXattrs = try Self.xattrs(path: "/proc/self/fd/\(directory.rawValue)/\(name)", display: hostPath)
                try writer.apply(header(for: st, path: path, kind: .symlink(target: target), xattrs: linkXattrs)) { _ in }
            case S_IFIFO:
                try writer.apply(header(for: st, path: path, kind: .fifo)) { _ in }
            case S_IFCHR, S_IFBLK:
                let device = UInt64(st.st_rdev)
                let major = UInt32((device >> 8) & 0xfff) | UInt32((device >> 32) & ~0xfff)
                let minor = UInt32(device & 0xff) | UInt32((device >> 12) & ~0xff)
                try writer.apply(header(for: st, path: path, kind: .device(character: type == S_IFCHR, major: major, minor: minor))) { _ in }
            default:
                try writer.apply(header(for: st, path: path, kind: .socket)) { _ in }
            }
        }
    }

    private func header(for st: stat, path: String, kind: EntryHeader.Kind,
                        xattrs: [(name: String, value: [UInt8])] = []) -> EntryHeader {
        EntryHeader(path: path, kind: kind, permissions: st.st_mode & 0o7777, uid: st.st_uid, gid: st.st_gid,
                    accessTime: st.st_atim, modificationTime: st.st_mtim, xattrs: xattrs)
    }

    /// Data segments found with SEEK_DATA/SEEK_HOLE, each copied with copy_file_range
    /// (extent sharing on the same btrfs) or read/write across filesystems.
    static func copyContent(from input: Int32, to output: Int32, size: Int64, path: String) throws {
        var position: Int64 = 0
        while position < size {
            let dataStart = lseek(input, off_t(position), TUPP_SEEK_DATA)
            if dataStart < 0 {
                if errno == ENXIO { break }  // only a hole remains
                throw SystemError("seek data", path)
            }
            var dataEnd = lseek(input, dataStart, TUPP_SEEK_HOLE)
            if dataEnd < 0 { dataEnd = off_t(size) }
            try copyRange(from: input, to: output, start: Int64(dataStart), end: Int64(dataEnd), path: path)
            position = Int64(dataEnd)
        }
        if ftruncate(output, off_t(size)) != 0 { throw SystemError("set size", path) }
    }

    private static func copyRange(from input: Int32, to output: Int32, start: Int64, end: Int64, path: String) throws {
        var inOffset = start
        var outOffset = start
        while inOffset < end {
            let n = tupp_copy_file_range(input, &inOffset, output, &outOffset, Int(end - inOffset))
            if n > 0 { continue }
            if n == 0 { return }
            let code = errno
            if code == EINTR { continue }
            guard code == EXDEV || code == EINVAL || code == EOPNOTSUPP || code == ENOSYS else {
                throw SystemError("copy data", path, errno: code)
            }
            try readWriteRange(from: input, to: output, start: inOffset, end: end, path: path)
            return
        }
    }

    private static func readWriteRange(from input: Int32, to output: Int32, start: Int64, end: Int64, path: String) throws {
        let size = 1 << 20
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 64)
        defer { buffer.deallocate() }
        var offset = start
        while offset < end {
            let n = pread(input, buffer, min(size, Int(end - offset)), off_t(offset))
            if n < 0 { if errno == EINTR { continue }; throw SystemError("read", path) }
            if n == 0 { return }
            var written = 0
            while written < n {
                let w = pwrite(output, buffer + written, n - written, off_t(offset) + off_t(written))
                if w < 0 { if errno == EINTR { continue }; throw SystemError("write copy of", path) }
                written += w
            }
            offset += Int64(n)
        }
    }

    static func list(_ directory: FileDescriptor, path: String) throws(SystemError) -> [String] {
        try Files.entryNames(ofDirectory: directory.rawValue, describedAs: path).sorted()
    }

    static func xattrs(fd: Int32, path: String) throws(SystemError) -> [(name: String, value: [UInt8])] {
        try readXattrs(path) { flistxattr(fd, $0, $1) } get: { fgetxattr(fd, $0, $1, $2) }
    }

    static func xattrs(path: String, display: String) throws(SystemError) -> [(name: String, value: [UInt8])] {
        try readXattrs(display) { llistxattr(path, $0, $1) } get: { lgetxattr(path, $0, $1, $2) }
    }

    private static func readXattrs(_ display: String,
                                   list: (UnsafeMutablePointer<CChar>?, Int) -> Int,
                                   get: (String, UnsafeMutableRawPointer?, Int) -> Int) throws(SystemError) -> [(name: String, value: [UInt8])] {
        let needed = list(nil, 0)
        if needed < 0 {
            if errno == ENOTSUP || errno == EOPNOTSUPP { return [] }
            throw SystemError("list extended attributes", display)
        }
        if needed == 0 { return [] }
        var names = [CChar](repeating: 0, count: needed)
        let got = list(&names, needed)
        if got < 0 { throw SystemError("list extended attributes", display) }
        var result: [(name: String, value: [UInt8])] = []
        var start = 0
        for index in 0..<got where names[index] == 0 {
            let name = String(decoding: names[start..<index].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            start = index + 1
            let size = get(name, nil, 0)
            if size < 0 { throw SystemError("read extended attribute \(name)", display) }
            var value = [UInt8](repeating: 0, count: size)
            let read = value.withUnsafeMutableBytes { get(name, $0.baseAddress, size) }
            if read < 0 { throw SystemError("read extended attribute \(name)", display) }
            result.append((name, Array(value[0..<read])))
        }
        return result
    }
}
