import Glibc

/// An owned file descriptor, closed when the last reference goes away.
///
/// Reconcilers hold descriptors across several calls (a pool's root, a container's
/// netns); owning them in a class keeps every error path from leaking one.
public final class FileDescriptor: @unchecked Sendable {
    public let rawValue: Int32

    public init(adopting fd: Int32) { rawValue = fd }

    deinit { close(rawValue) }

    /// open(2) with O_CLOEXEC always added.
    public static func open(_ path: String, _ flags: Int32, mode: mode_t = 0) throws(SystemError) -> FileDescriptor {
        let fd = try Errno.check("open", path) { Glibc.open(path, flags | O_CLOEXEC, mode) }
        return FileDescriptor(adopting: fd)
    }

    /// openat(2) relative to this directory descriptor, O_CLOEXEC always added.
    public func openAt(_ path: String, _ flags: Int32, mode: mode_t = 0, describedAs object: String? = nil) throws(SystemError) -> FileDescriptor {
        let fd = try Errno.check("open", object ?? path) { Glibc.openat(rawValue, path, flags | O_CLOEXEC, mode) }
        return FileDescriptor(adopting: fd)
    }

    /// The whole remaining content.
    public func readAll(limit: Int = 64 << 20, describedAs object: String = "file") throws(SystemError) -> [UInt8] {
        var out: [UInt8] = []
        let chunkSize = 65536
        let chunk = UnsafeMutableRawPointer.allocate(byteCount: chunkSize, alignment: 16)
        defer { chunk.deallocate() }
        while true {
            let n = try Errno.check("read", object) { Glibc.read(rawValue, chunk, chunkSize) }
            if n == 0 { return out }
            out.append(contentsOf: UnsafeRawBufferPointer(start: chunk, count: n))
            if out.count > limit {
                throw SystemError.failure("read", object, "larger than \(limit) bytes")
            }
        }
    }

    /// Writes every byte, retrying short writes.
    public func writeAll(_ bytes: some Collection<UInt8>, describedAs object: String = "file") throws(SystemError) {
        let array = ContiguousArray(bytes)
        var offset = 0
        while offset < array.count {
            let n = array.withUnsafeBytes { buf in
                Glibc.write(rawValue, buf.baseAddress! + offset, buf.count - offset)
            }
            if n < 0 {
                if errno == EINTR { continue }
                throw SystemError("write", object)
            }
            offset += n
        }
    }
}
