@_exported import TuppTestTools
import Glibc
import Testing
import TuppBase
import TuppSystem

/// Gates for integration tests that need root, kernel features or tools.
///
/// A missing prerequisite skips the test — Swift Testing reports it as cancelled with the
/// reason, and `scripts/test` lists every such test at the end — so `swift test` runs the
/// unit tiers as a normal user. With `CI=true` it is a failure instead, never a skip.
public enum Host {
    public static var isRoot: Bool { geteuid() == 0 }
    public static var isCI: Bool { getenv("CI").map { String(cString: $0) } == "true" }

    /// Returns true when every feature is there. Otherwise the test ends here: skipped with
    /// the reason, or (CI=true) failed with it. `guard try Host.require(…) else { return }`
    /// reads as before; the `else` is never taken.
    @discardableResult
    public static func require(_ features: Feature..., sourceLocation: SourceLocation = #_sourceLocation) throws -> Bool {
        try require(features, sourceLocation: sourceLocation)
    }

    @discardableResult
    public static func require(_ features: [Feature], sourceLocation: SourceLocation = #_sourceLocation) throws -> Bool {
        let missing = features.filter { !$0.available }
        guard missing.isEmpty else {
            try unavailable("needs \(missing.map(\.name).joined(separator: ", "))", sourceLocation: sourceLocation)
        }
        return true
    }

    /// Ends the test for a reason that is not a missing feature (the kernel refuses what the
    /// test would witness): skipped, or with CI=true failed.
    public static func unavailable(_ reason: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> Never {
        if isCI { throw Missing(reason: reason) }
        try Test.cancel("skipped: \(reason) (CI=true makes this a failure)", sourceLocation: sourceLocation)
    }

    public struct Missing: Error, CustomStringConvertible {
        public var reason: String
        public var description: String { "integration test \(reason); CI=true makes a missing prerequisite a failure" }
    }

    public struct Feature: Sendable {
        public var name: String
        public var available: Bool

        public init(name: String, available: Bool) {
            self.name = name
            self.available = available
        }

        public static var root: Feature { Feature(name: "root (run as root)", available: Host.isRoot) }
        public static var btrfs: Feature {
            Feature(name: "btrfs in /proc/filesystems (modprobe btrfs)",
                    available: (try? Files.readText("/proc/filesystems"))?.contains("btrfs") ?? false)
        }
        public static func command(_ path: String) -> Feature {
            Feature(name: "\(path) (scripts/install-deps)", available: access(path, X_OK) == 0)
        }
    }
}

extension Trait where Self == ConditionTrait {
    /// The gate as a trait, for parameterized tests: Swift Testing does not report a
    /// cancelled test case, but it does report a skipped test. With CI=true the test runs
    /// (and fails on its own `Host.require`).
    public static func requires(_ features: Host.Feature...) -> Self { requires(features) }

    public static func requires(_ features: [Host.Feature]) -> Self {
        let missing = features.filter { !$0.available }.map(\.name)
        return .enabled(if: Host.isCI || missing.isEmpty,
                        Comment(rawValue: "skipped: needs \(missing.joined(separator: ", ")) (CI=true makes this a failure)"))
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
    pid > 0 && ProcEntry.read(pid) != nil
}

/// Polls `condition` every 10 ms until it holds or `seconds` have passed; the last answer.
public func eventually(seconds: Double = 5, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Monotonic.nanoseconds() + UInt64(seconds * 1e9)
    while Monotonic.nanoseconds() < deadline {
        if try condition() { return true }
        usleep(10_000)
    }
    return try condition()
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

/// A process's namespace held open by the test: while it is, its inode number cannot be
/// given to a namespace created after it is gone (the kernel reuses freed numbers at once,
/// and tests running beside this one make namespaces all the time), so "who is still in
/// it" asks about this namespace only.
public final class PinnedNamespace: @unchecked Sendable {
    public let inode: UInt64
    private let fd: Int32

    /// nil when the process or the namespace kind is not there.
    public init?(pid: Int32, kind: String) {
        let fd = open("/proc/\(pid)/ns/\(kind)", O_RDONLY | O_CLOEXEC)
        var st = stat()
        guard fd >= 0, fstat(fd, &st) == 0 else {
            if fd >= 0 { close(fd) }
            return nil
        }
        self.fd = fd
        inode = UInt64(st.st_ino)
        self.kind = kind
    }

    private let kind: String

    deinit { close(fd) }

    /// The processes in it now, zombies included (a zombie keeps its credentials, and
    /// with them its user namespace, until it is reaped).
    public func members() -> [String] {
        ((try? Files.list("/proc")) ?? []).filter { Int32($0) != nil && ProcEntry.namespace($0, kind) == inode }.map { pid in
            let status = (try? Files.readText("/proc/\(pid)/status")) ?? nil
            let fields = status?.split(separator: "\n").filter { $0.hasPrefix("Name:") || $0.hasPrefix("State:") || $0.hasPrefix("PPid:") }
            return "\(pid) (\(fields?.map { $0.split(separator: "\t").dropFirst().joined(separator: " ") }.joined(separator: ", ") ?? "gone"))"
        }
    }
}
