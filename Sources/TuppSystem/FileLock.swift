import Glibc

/// An exclusive flock(2) on a file. The kernel releases it when the holder dies, so a
/// crashed apply never leaves the host locked.
public final class FileLock: @unchecked Sendable {
    public let path: String
    private let fd: FileDescriptor

    /// Who holds the lock, as written into the lock file by the holder.
    public struct Holder: Sendable {
        public var pid: Int32
        public var command: String
    }

    public enum Outcome: Sendable {
        case acquired(FileLock)
        case timedOut(holder: Holder?)
    }

    private init(path: String, fd: FileDescriptor) {
        self.path = path
        self.fd = fd
    }

    /// Tries for up to `timeout` seconds (0: once). On success the file records our pid
    /// and command line so a waiting apply can name us.
    public static func acquire(_ path: String, timeout: Double, command: String) throws(SystemError) -> Outcome {
        let fd = try FileDescriptor.open(path, O_RDWR | O_CREAT, mode: 0o600)
        let deadline = Monotonic.nanoseconds() + UInt64(max(0, timeout) * 1e9)
        var delay: UInt32 = 5_000
        while true {
            if flock(fd.rawValue, LOCK_EX | LOCK_NB) == 0 { break }
            let code = errno
            if code == EINTR { continue }
            guard code == EWOULDBLOCK else { throw SystemError("lock", path, errno: code) }
            if Monotonic.nanoseconds() >= deadline {
                return .timedOut(holder: readHolder(path))
            }
            usleep(delay)
            delay = min(delay * 2, 100_000)
        }
        let note = "\(getpid())\n\(command)\n"
        ftruncate(fd.rawValue, 0)
        _ = note.withCString { pwrite(fd.rawValue, $0, strlen($0), 0) }
        return .acquired(FileLock(path: path, fd: fd))
    }

    static func readHolder(_ path: String) -> Holder? {
        guard let text = try? Files.readText(path, limit: 4096) else { return nil }
        let lines = text.split(separator: "\n", maxSplits: 1)
        guard let first = lines.first, let pid = Int32(first) else { return nil }
        return Holder(pid: pid, command: lines.count > 1 ? String(lines[1]).trimmingCharacters() : "")
    }
}

extension String {
    /// Leading and trailing whitespace removed (Foundation-free).
    public func trimmingCharacters() -> String {
        var s = Substring(self)
        while let c = s.first, c.isWhitespace { s.removeFirst() }
        while let c = s.last, c.isWhitespace { s.removeLast() }
        return String(s)
    }
}
