import Glibc
import Synchronization
import TuppBase
import TuppFacts
import TuppManifest
import TuppNetworking
import TuppSystem

/// An isolated tupp installation for one test: its own temporary directory (pool file,
/// pool mount point, manifests), state directory, bridge name and /24 subnet, and a
/// cleanup that removes everything it could have made — also when the test failed.
public final class Installation: @unchecked Sendable {
    public let root: TemporaryDirectory
    public let state: String
    /// Unique bridge name for this test ("tb" + 6 characters).
    public let bridge: String
    /// The test's subnet 10.214.N.0/24; `address(n)` is 10.214.N.n.
    public let subnetOctet: Int
    private var manifests: [String] = []

    private static let counter = Atomic<Int>(0)

    public init(_ label: String = #function) throws {
        root = try TemporaryDirectory("tupp-e2e")
        state = "\(root.path)/state"
        let unique = uniquePrefix(label)
        bridge = "tb" + unique.dropFirst(2)
        let n = Self.counter.add(1, ordering: .relaxed).newValue
        subnetOctet = (Int(getpid()) * 7 + n * 13) % 250 + 1
    }

    public var subnet: String { "10.214.\(subnetOctet).0/24" }
    public func address(_ host: Int) -> String { "10.214.\(subnetOctet).\(host)" }

    /// The identifier tupp derives from the state directory (links carry it in their alias).
    public var installationID: String { StableHash(Paths.canonical(state) ?? state).base32(6) }

    /// The project of manifests written here without a `project:` key: the directory's name.
    public var project: String { Names.project(fromDirectory: Paths.basename(root.path)) }

    /// Writes a manifest into the test directory; `{{ROOT}}`, `{{BRIDGE}}`, `{{SUBNET}}`,
    /// `{{NET}}` (10.214.N) are substituted.
    @discardableResult
    public func manifest(_ name: String, _ text: String) throws -> String {
        let path = "\(root.path)/\(name)"
        let filled = text
            .replacing("{{ROOT}}", with: root.path)
            .replacing("{{BRIDGE}}", with: bridge)
            .replacing("{{SUBNET}}", with: subnet)
            .replacing("{{NET}}", with: "10.214.\(subnetOctet)")
        try Files.writeAtomically(path, text: filled, mode: 0o644)
        if !manifests.contains(path) { manifests.append(path) }
        return path
    }

    /// Runs the built tupp with this installation's state directory.
    @discardableResult
    public func tupp(_ arguments: String..., environment: [String] = []) throws -> Output {
        try tupp(arguments, environment: environment)
    }

    @discardableResult
    public func tupp(_ arguments: [String], environment: [String] = []) throws -> Output {
        try Spawn.run([Built.tupp, "--state-dir", state] + arguments, environment: ["NO_COLOR=1"] + environment)
    }

    /// What of this installation is left on the host: mounts under its directory, loop
    /// devices backed by files in it, links it named or marked, supervisor processes
    /// working for it, and its state directory.
    public func leftovers() -> [String] {
        var found: [String] = []
        let table = (try? MountInfo.read()) ?? []
        found += MountInfo.mounts(under: root.path, in: table).map { "mount \($0.mountPoint)" }
        for loop in (try? Files.list("/sys/block")) ?? [] where loop.hasPrefix("loop") {
            if let backing = try? Files.readText("/sys/block/\(loop)/loop/backing_file"), backing.hasPrefix(root.path) {
                found.append("loop device /dev/\(loop) → \(backing.trimmingCharacters())")
            }
        }
        for link in (try? Files.list("/sys/class/net")) ?? [] {
            let alias = (try? Files.readText("/sys/class/net/\(link)/ifalias"))?.trimmingCharacters() ?? ""
            if link == bridge || LinkOwner(alias: alias)?.belongs(toInstallation: installationID) == true {
                found.append("link \(link) (\(alias))")
            }
        }
        for pid in processesMentioning(root.path) { found.append("process \(pid): \(commandLine(pid))") }
        if Files.exists(state) {
            let inside = ((try? Files.list(state)) ?? []).map { name in
                Files.isDirectory("\(state)/\(name)") ? "\(name)/[\(((try? Files.list("\(state)/\(name)")) ?? []).joined(separator: ", "))]" : name
            }
            found.append("state directory \(state) holding \(inside.joined(separator: ", "))")
        }
        return found
    }

    /// Removes everything, politely first (tupp destroy), then by force.
    public func cleanup() {
        if !manifests.isEmpty {
            _ = try? tupp(["destroy", "--include-storage", "--include-volumes", "--lock-timeout", "5"] + manifests)
        }
        for pid in processesMentioning(root.path) { kill(pid, SIGKILL) }
        let table = (try? MountInfo.read()) ?? []
        for mount in MountInfo.mounts(under: root.path, in: table).reversed() { umount2(mount.mountPoint, Int32(MNT_DETACH)) }
        for line in leftovers() where line.hasPrefix("link ") {
            let name = String(line.dropFirst(5).prefix { $0 != " " })
            _ = try? Spawn.run(["/sbin/ip", "link", "del", name])
        }
        for loop in (try? Files.list("/sys/block")) ?? [] where loop.hasPrefix("loop") {
            if let backing = try? Files.readText("/sys/block/\(loop)/loop/backing_file"), backing.hasPrefix(root.path) {
                _ = try? Spawn.run(["/sbin/losetup", "-d", "/dev/\(loop)"])
            }
        }
        root.remove()
    }

    func processesMentioning(_ text: String) -> [pid_t] {
        ((try? Files.list("/proc")) ?? []).compactMap { Int32($0) }.filter { pid in
            pid != getpid() && commandLine(pid).contains(text) && ProcessStat.read(pid)?.state != "Z"
        }
    }

    func commandLine(_ pid: pid_t) -> String {
        guard let bytes = try? Files.read("/proc/\(pid)/cmdline", limit: 65536) else { return "" }
        return String(decoding: bytes.map { $0 == 0 ? 32 : $0 }, as: UTF8.self)
    }
}
