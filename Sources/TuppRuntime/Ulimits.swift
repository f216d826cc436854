import TuppManifest
import TuppSystem

extension Ulimit {
    /// /proc/sys/kernel/threads-max (what the kernel computed at boot unless changed).
    public static func threadsMax() throws(SystemError) -> UInt64 {
        let path = "/proc/sys/kernel/threads-max"
        guard let value = try Files.readText(path).flatMap({ UInt64($0.trimmingSpaces) }) else {
            throw SystemError.failure("read", path, "not a number")
        }
        return value
    }
}
