import Glibc
import TuppBase
import TuppSystem

/// Gates for integration tests that need root and kernel features.
///
/// Locally a missing capability skips the test (so `swift test` works as a normal user
/// for the unit tiers); with `CI=true` it is a failure, never a silent skip.
public enum Host {
    public static var isRoot: Bool { geteuid() == 0 }
    public static var isCI: Bool { getenv("CI").map { String(cString: $0) } == "true" }

    /// True when the test may run. When it may not: in CI this is a failure the caller
    /// reports (by throwing `missing`), locally the test returns early.
    public static func require(_ features: Feature...) throws -> Bool {
        for feature in features where !feature.available {
            if isCI { throw MissingFeature(feature: feature.name) }
            return false
        }
        return true
    }

    public struct MissingFeature: Error, CustomStringConvertible {
        public var feature: String
        public var description: String { "integration test needs \(feature) (CI=true makes this a failure)" }
    }

    public struct Feature: Sendable {
        public var name: String
        public var available: Bool

        public static var root: Feature { Feature(name: "root", available: Host.isRoot) }
        public static var btrfs: Feature {
            Feature(name: "btrfs in /proc/filesystems (modprobe btrfs)",
                    available: (try? Files.readText("/proc/filesystems"))?.contains("btrfs") ?? false)
        }
        public static func command(_ path: String) -> Feature {
            Feature(name: path, available: access(path, X_OK) == 0)
        }
    }
}

/// A unique, short prefix for names a test creates (links, bridges, containers), so
/// parallel tests and leftovers are easy to tell apart: "tt" + 6 base-32 characters.
public func uniquePrefix(_ label: String = #function) -> String {
    var hash = StableHash(label, String(getpid()), String(Monotonic.nanoseconds()))
    hash.combine(String(UInt64.random(in: 0...UInt64.max)))
    return "tt" + hash.base32(6)
}

/// A fresh directory under /tmp, removed by `remove()`.
public struct TemporaryDirectory: Sendable {
    public let path: String

    public init(_ label: String = "tupp-test") throws {
        var template = Array("/tmp/\(label).XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw SystemError("create temporary directory", "/tmp") }
        path = String(cString: made)
    }

    public func remove() { try? Files.removeTree(path) }
}

/// Reachability as a test sees it: one ICMP echo at a time until one is answered.
///
/// A single echo is not a fair witness of a working path. Right after links change, the
/// first frames can be lost while the kernel settles the bridge port and the neighbour
/// entry (an entry left from a deleted veth still points at the old port, and link state
/// changes reach the bridge through a deferred, rate-limited work item); on a loaded CI
/// machine that took longer than busybox's one-second wait. A broken path never answers.
public enum Ping {
    /// Runs `attempt` (a one-echo ping, one-second wait) until it exits 0 or `seconds`
    /// have passed, and returns the last result so a failure shows what ping printed.
    public static func untilAnswered(within seconds: Double = 8, _ attempt: () throws -> Output) rethrows -> Output {
        let deadline = Monotonic.nanoseconds() + UInt64(seconds * 1e9)
        while true {
            let result = try attempt()
            if result.status == 0 || Monotonic.nanoseconds() >= deadline { return result }
            usleep(100_000)  // "unreachable" can come back at once: do not spin
        }
    }

    /// One echo, one second's wait: the arguments after the program.
    public static func once(_ address: String) -> [String] { ["-c", "1", "-W", "1", address] }

    /// True when `address` answers the host's busybox ping, run through `prefix` (an
    /// nsenter into another namespace, say) when one is given, within `seconds`.
    public static func reaches(_ address: String, through prefix: [String] = [], within seconds: Double = 8) throws -> Bool {
        try untilAnswered(within: seconds) { try Spawn.run(prefix + ["/bin/busybox", "ping"] + once(address)) }.status == 0
    }
}

/// True when `pid` exists and is neither a zombie nor dead (/proc/PID/stat).
public func isProcessAlive(_ pid: Int32) -> Bool {
    guard pid > 0, let stat = ProcessStat.read(pid) else { return false }
    return stat.state != "Z" && stat.state != "X"
}

/// Processes with a mount of `root` (a path inside the filesystem) of the filesystem
/// mounted at `mountPoint` on the host, in whatever mount namespace: /proc/PID/mountinfo's
/// "MAJOR:MINOR ROOT" columns. A container's idmapped rootfs shows there while any process
/// of it lives.
public func processesMounting(root: String, ofFilesystemAt mountPoint: String) -> [Int32] {
    guard let device = ((try? MountInfo.read()) ?? []).last(where: { $0.mountPoint == mountPoint })?.device else { return [] }
    let needle = " \(device) \(root) "
    return ((try? Files.list("/proc")) ?? []).compactMap(Int32.init).filter { pid in
        ((try? Files.readText("/proc/\(pid)/mountinfo")) ?? nil)?.contains(needle) == true
    }
}
