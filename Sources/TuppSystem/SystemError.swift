import Glibc

/// A failed system call, told the way a user can act on it: what tupp was doing,
/// to which object (a path, a link name, a subvolume), and what the kernel answered.
///
///     open /var/lib/tupp/pool.img: No such file or directory (ENOENT)
public struct SystemError: Error, CustomStringConvertible, Equatable, Sendable {
    /// What tupp was doing: "open", "create subvolume", "attach loop device".
    public var operation: String
    /// The object it was done to: a path, a link name, a pid.
    public var object: String
    /// The errno value, or 0 when the failure did not come with one.
    public var code: Int32
    /// Extra context after the errno text (a library's own message, a hint).
    public var detail: String?

    public init(_ operation: String, _ object: String, errno code: Int32 = Glibc.errno, detail: String? = nil) {
        self.operation = operation
        self.object = object
        self.code = code
        self.detail = detail
    }

    /// An error that has no errno: a library code or a violated expectation.
    public static func failure(_ operation: String, _ object: String, _ detail: String) -> SystemError {
        SystemError(operation, object, errno: 0, detail: detail)
    }

    public var description: String {
        var text = "\(operation) \(object)"
        if code != 0 { text += ": \(Errno.describe(code))" }
        if let detail { text += code != 0 ? " — \(detail)" : ": \(detail)" }
        return text
    }
}

/// errno values as names and text.
public enum Errno {
    private static let names: [Int32: String] = [
        EPERM: "EPERM", ENOENT: "ENOENT", ESRCH: "ESRCH", EINTR: "EINTR", EIO: "EIO",
        ENXIO: "ENXIO", E2BIG: "E2BIG", ENOEXEC: "ENOEXEC", EBADF: "EBADF", ECHILD: "ECHILD",
        EAGAIN: "EAGAIN", ENOMEM: "ENOMEM", EACCES: "EACCES", EFAULT: "EFAULT", EBUSY: "EBUSY",
        EEXIST: "EEXIST", EXDEV: "EXDEV", ENODEV: "ENODEV", ENOTDIR: "ENOTDIR", EISDIR: "EISDIR",
        EINVAL: "EINVAL", ENFILE: "ENFILE", EMFILE: "EMFILE", ENOTTY: "ENOTTY", EFBIG: "EFBIG",
        ENOSPC: "ENOSPC", ESPIPE: "ESPIPE", EROFS: "EROFS", EMLINK: "EMLINK", EPIPE: "EPIPE",
        ERANGE: "ERANGE", ENAMETOOLONG: "ENAMETOOLONG", ENOSYS: "ENOSYS", ENOTEMPTY: "ENOTEMPTY",
        ELOOP: "ELOOP", ENODATA: "ENODATA", EOPNOTSUPP: "EOPNOTSUPP", EADDRINUSE: "EADDRINUSE",
        EADDRNOTAVAIL: "EADDRNOTAVAIL", ENETUNREACH: "ENETUNREACH", ETIMEDOUT: "ETIMEDOUT",
        ECONNREFUSED: "ECONNREFUSED",
    ]

    /// "No such file or directory (ENOENT)".
    public static func describe(_ code: Int32) -> String {
        let text = String(cString: strerror(code))
        if let name = names[code] { return "\(text) (\(name))" }
        return "\(text) (errno \(code))"
    }

    /// Runs a syscall-style closure, retrying on EINTR; throws SystemError on -1.
    @discardableResult
    public static func check<T: BinaryInteger>(
        _ operation: @autoclosure () -> String, _ object: @autoclosure () -> String,
        _ body: () -> T
    ) throws(SystemError) -> T {
        while true {
            let result = body()
            if result != -1 { return result }
            let code = Glibc.errno
            if code == EINTR { continue }
            throw SystemError(operation(), object(), errno: code)
        }
    }
}
