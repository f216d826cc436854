import Glibc
import TuppBase
import TuppFacts
import TuppSystem

/// A process holding a fresh network namespace: `unshare --net sleep infinity`, started
/// with posix_spawn. `stop()` kills it by pid and reaps it.
public final class NetnsHolder: @unchecked Sendable {
    public let pid: pid_t
    public var path: String { "/proc/\(pid)/ns/net" }

    public init() throws {
        pid = try Spawn.start(["/usr/bin/unshare", "--net", "/bin/sleep", "infinity"])
        // unshare(2) runs before the exec of sleep: wait until the namespace differs.
        let own = namespaceInode(pid: "self", kind: "net")
        for _ in 0..<2000 {
            if let inode = namespaceInode(pid: String(pid), kind: "net"), inode != own,
               let command = try? Files.readText("/proc/\(pid)/comm"), command.hasPrefix("sleep") {
                return
            }
            usleep(1000)
        }
        stop()
        throw SystemError.failure("wait for netns holder", String(pid), "namespace never appeared")
    }

    /// SIGKILL by pid, then reap. Safe to call twice.
    public func stop() {
        if kill(pid, SIGKILL) == 0 || errno != ESRCH {
            var status: Int32 = 0
            _ = waitpid(pid, &status, 0)
        }
    }
}
