import Glibc
import CTuppSys
import TuppBase

/// File helpers with errors that name the path.
public enum Files {
    /// The file's bytes, or nil when it does not exist.
    public static func read(_ path: String, limit: Int = 64 << 20) throws(SystemError) -> [UInt8]? {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            if errno == ENOENT { return nil }
            throw SystemError("open", path)
        }
        return try FileDescriptor(adopting: fd).readAll(limit: limit, describedAs: path)
    }

    /// The file as UTF-8 text, or nil when it does not exist.
    public static func readText(_ path: String, limit: Int = 64 << 20) throws(SystemError) -> String? {
        guard let bytes = try read(path, limit: limit) else { return nil }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Replaces `path` atomically: a temporary file in the same directory is written,
    /// fsynced and renamed over the target, then the directory is fsynced. A reader sees
    /// the old content or the new one, never a mix — also after a crash.
    public static func writeAtomically(_ path: String, _ bytes: some Collection<UInt8>, mode: mode_t = 0o600) throws(SystemError) {
        let dir = Paths.dirname(path)
        let temp = "\(dir)/.\(Paths.basename(path)).tmp.\(getpid())"
        let fd = try FileDescriptor.open(temp, O_WRONLY | O_CREAT | O_TRUNC, mode: mode)
        do {
            try fd.writeAll(bytes, describedAs: temp)
            try Errno.check("fsync", temp) { fsync(fd.rawValue) }
            try Errno.check("rename", "\(temp) → \(path)") { rename(temp, path) }
        } catch {
            unlink(temp)
            throw error
        }
        try syncDirectory(dir)
    }

    /// Replaces `path` as atomically and durably as `writeAtomically`, without freeing an
    /// inode: the new content goes into `previous` (the copy the last replace left there),
    /// which is then swapped with `path` by renameat2(RENAME_EXCHANGE), so `previous`
    /// holds the old content afterwards. On ext4 without a journal every inode freed in
    /// the last 5–10 s is skipped, one by one, by each file creation in its group: a
    /// rename over a file per record made applying N containers cost O(N²).
    /// Only for files one writer at a time changes (under the host lock).
    public static func replace(_ path: String, _ bytes: some Collection<UInt8>, keepingPreviousIn previous: String,
                               mode: mode_t = 0o600) throws(SystemError) {
        let fd = try FileDescriptor.open(previous, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, mode: mode)
        try fd.writeAll(bytes, describedAs: previous)
        try Errno.check("fsync", previous) { fsync(fd.rawValue) }
        if tupp_renameat2(AT_FDCWD, previous, AT_FDCWD, path, UInt32(TUPP_RENAME_EXCHANGE)) != 0 {
            // Nothing to swap with yet, or a filesystem without RENAME_EXCHANGE.
            guard errno == ENOENT || errno == EINVAL else { throw SystemError("exchange", "\(previous) ↔ \(path)") }
            try Errno.check("rename", "\(previous) → \(path)") { rename(previous, path) }
        }
        try syncDirectory(Paths.dirname(path))
    }

    public static func writeAtomically(_ path: String, text: String, mode: mode_t = 0o600) throws(SystemError) {
        try writeAtomically(path, Array(text.utf8), mode: mode)
    }

    /// fsync of a directory, so a rename or unlink in it survives a crash.
    public static func syncDirectory(_ dir: String) throws(SystemError) {
        let fd = try FileDescriptor.open(dir, O_RDONLY | O_DIRECTORY)
        try Errno.check("fsync", dir) { fsync(fd.rawValue) }
    }

    /// mkdir -p with the given mode for directories it creates.
    public static func createDirectory(_ path: String, mode: mode_t = 0o755) throws(SystemError) {
        var current = path.hasPrefix("/") ? "" : "."
        for part in path.split(separator: "/") {
            current += "/" + part
            if mkdir(current, mode) != 0 && errno != EEXIST {
                throw SystemError("create directory", current)
            }
        }
        guard isDirectory(path) else {
            throw SystemError.failure("create directory", path, "exists and is not a directory")
        }
    }

    public static func exists(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0
    }

    public static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    /// lstat, or nil when the path does not exist.
    public static func status(_ path: String) throws(SystemError) -> stat? {
        var st = stat()
        if lstat(path, &st) == 0 { return st }
        if errno == ENOENT || errno == ENOTDIR { return nil }
        throw SystemError("stat", path)
    }

    /// Removes a file; a missing file is not an error.
    public static func remove(_ path: String) throws(SystemError) {
        if unlink(path) != 0 && errno != ENOENT { throw SystemError("remove", path) }
    }

    /// rm -r without following symlinks; a missing path is not an error.
    public static func removeTree(_ path: String) throws(SystemError) {
        guard let st = try status(path) else { return }
        if (st.st_mode & S_IFMT) == S_IFDIR {
            for name in try list(path) { try removeTree("\(path)/\(name)") }
            if rmdir(path) != 0 && errno != ENOENT { throw SystemError("remove directory", path) }
        } else {
            try remove(path)
        }
    }

    /// Entry names of a directory, without "." and "..", sorted. Missing → [].
    public static func list(_ path: String) throws(SystemError) -> [String] {
        guard let stream = opendir(path) else {
            if errno == ENOENT { return [] }
            throw SystemError("list directory", path)
        }
        return try names(in: stream, describedAs: path).sorted()
    }

    /// Entry names of the open directory `fd`, without "." and "..", in directory order,
    /// read from its start. `fd` stays open: the stream reads a close-on-exec duplicate.
    public static func entryNames(ofDirectory fd: Int32, describedAs object: String) throws(SystemError) -> [String] {
        let copy = try Errno.check("list directory", object) { fcntl(fd, F_DUPFD_CLOEXEC, 0) }
        guard let stream = fdopendir(copy) else {
            let code = errno
            close(copy)
            throw SystemError("list directory", object, errno: code)
        }
        rewinddir(stream)  // a duplicate shares the offset of whoever read `fd` before
        return try names(in: stream, describedAs: object)
    }

    /// Reads `stream` to the end and closes it.
    private static func names(in stream: OpaquePointer, describedAs object: String) throws(SystemError) -> [String] {
        defer { closedir(stream) }
        var names: [String] = []
        while true {
            errno = 0
            guard let entry = readdir(stream) else {
                if errno != 0 { throw SystemError("list directory", object) }
                return names
            }
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(cString: raw.bindMemory(to: CChar.self).baseAddress!)
            }
            if name != "." && name != ".." { names.append(name) }
        }
    }
}

extension Paths {
    /// realpath(3), or nil when the path does not resolve.
    public static func canonical(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }
}
