import Glibc
import Synchronization
import Testing
import TuppBase
import TuppFacts
import TuppManifest
import TuppManifestLoader
import TuppSystem

/// An isolated tupp installation for one test: its own temporary directory (pool file,
/// pool mount point, manifests), state directory, bridge name and /24 subnet.
///
/// `finish()` (deferred by every test) destroys it the way a user would, then takes the
/// leak inventory *before* removing anything by force: whatever `tupp destroy` left is a
/// test failure, not something the cleanup quietly deletes.
public final class Installation: @unchecked Sendable {
    public let root: TemporaryDirectory
    public let state: String
    /// Unique bridge name for this test ("tb" + 6 characters); links the test makes start with it.
    public let bridge: String
    /// The test's subnet 10.214.N.0/24; `address(n)` is 10.214.N.n.
    public let subnetOctet: Int
    private var manifests: [String] = []
    /// Every container name seen in a manifest or record: the host veth names derived
    /// from them stay in the inventory's scope after the records are gone.
    private var seenContainers: Set<String> = []
    private let lock = Mutex(())

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

    /// A host port for this test to publish (31000 + N; ports other tests publish are below).
    public var port: Int { 31000 + subnetOctet }

    /// Writes a manifest into the test directory; `{{ROOT}}`, `{{BRIDGE}}`, `{{SUBNET}}`,
    /// `{{NET}}` (10.214.N) and `{{PORT}}` are substituted.
    @discardableResult
    public func manifest(_ name: String, _ text: String) throws -> String {
        let path = "\(root.path)/\(name)"
        let filled = text
            .replacing("{{ROOT}}", with: root.path)
            .replacing("{{BRIDGE}}", with: bridge)
            .replacing("{{SUBNET}}", with: subnet)
            .replacing("{{NET}}", with: "10.214.\(subnetOctet)")
            .replacing("{{PORT}}", with: String(port))
        try Files.writeAtomically(path, text: filled, mode: 0o644)
        track(path)
        return path
    }

    /// Makes a manifest written elsewhere part of the installation: `finish()` destroys
    /// what it declares, and the inventory knows its names.
    public func track(_ path: String) {
        lock.withLock { _ in if !manifests.contains(path) { manifests.append(path) } }
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

    // MARK: What the manifests declare

    /// The union of what the tracked manifests (each read alone) declare now.
    public var declared: Manifest {
        var union = Manifest()
        for path in lock.withLock({ _ in manifests }) where Files.exists(path) {
            guard case .success(let loaded) = ManifestLoader.load([path]) else { continue }
            union.storage = union.storage ?? loaded.manifest.storage
            union.images.merge(loaded.manifest.images) { a, _ in a }
            union.networks.merge(loaded.manifest.networks) { a, _ in a }
            union.containers.merge(loaded.manifest.containers) { a, _ in a }
        }
        return union
    }

    /// What the inventory looks at: the test's directory and state, its link prefix, its
    /// installation and every container name it used.
    public var scope: Inventory.Scope {
        let records = ((try? Files.list("\(state)/records")) ?? []).compactMap { file -> String? in
            guard file.hasPrefix("container."), file.hasSuffix(".json") else { return nil }
            return String(file.dropFirst("container.".count).dropLast(".json".count))
        }
        let names = lock.withLock { _ in
            seenContainers.formUnion(records)
            return seenContainers
        }.union(declared.containers.keys)
        lock.withLock { _ in seenContainers = names }
        return Inventory.Scope(prefixes: [bridge], installations: [installationID], containers: names,
                               directories: [root.path], stateDirectories: [state])
    }

    /// Everything of this installation on the host now.
    public func inventory() -> Inventory { Inventory.take(scope) }

    /// What of this installation is left on the host, one line per object.
    public func leftovers() -> [String] { inventory().lines }

    // MARK: Expectations

    /// The objects on the host while `running` (default: every declared container) run,
    /// compared with what the manifests declare: one pool mount from one loop device, the
    /// declared bridges, exactly one marked host veth per running networked container on
    /// its bridge, exactly one supervisor per running container and nothing else of the
    /// installation's processes, the nft table only while a network masquerades, cgroups
    /// only of running containers. Each line is something unexpected.
    public func unexpected(running: Set<String>? = nil) -> [String] {
        let manifest = declared
        let running = running ?? Set(manifest.containers.keys)
        let found = inventory()
        var problems: [String] = []

        // Links: declared bridges, one veth per running networked container.
        var expectedVeths: [String: (container: String, bridge: String)] = [:]
        for name in running {
            guard let attach = manifest.containers[name]?.network?.attach, let network = manifest.networks[attach] else { continue }
            expectedVeths[LinkNames.hostVeth(installation: installationID, container: name)] = (name, network.bridge)
        }
        let bridges = Set(manifest.networks.values.map(\.bridge))
        for link in found.links {
            if bridges.contains(link.name) {
                if link.kind != "bridge" { problems.append("\(link.name) is a \(link.kind ?? "?"), not a bridge") }
            } else if let veth = expectedVeths[link.name] {
                let owner = LinkOwner(installation: installationID, role: .container, name: veth.container)
                if link.owner != owner { problems.append("host veth \(link.name) of \(veth.container) is marked \(link.alias ?? "nothing"), not \(owner)") }
                if link.master != veth.bridge { problems.append("host veth \(link.name) of \(veth.container) is on \(link.master ?? "no bridge"), not \(veth.bridge)") }
                if link.kind != "veth" || !link.peerElsewhere { problems.append("host veth \(link.name) of \(veth.container) has no peer in another namespace") }
            } else {
                problems.append("unexpected link \(link.name) (\(link.kind ?? "?"), alias \(link.alias ?? "none"))")
            }
        }
        for (name, veth) in expectedVeths where !found.links.contains(where: { $0.name == name }) {
            problems.append("host veth \(name) of \(veth.container) is missing")
        }
        for bridge in bridges where !found.links.contains(where: { $0.name == bridge }) {
            problems.append("bridge \(bridge) is missing")
        }

        // The pool: one mount from one loop device backed by the declared file.
        if let storage = manifest.storage, let file = storage.device?.file {
            let loops = found.loopDevices.filter { $0.hasSuffix("← \(Paths.canonical(file) ?? file)") }
            if found.loopDevices.count != 1 || loops.count != 1 { problems.append("loop devices: \(found.loopDevices), expected one for \(file)") }
            let root = Paths.canonical(storage.root) ?? storage.root
            let poolMounts = found.mounts.filter { $0.mountPoint == root && $0.fsType == "btrfs" }
            if found.mounts.count != 1 || poolMounts.count != 1 { problems.append("mounts: \(found.mounts.map(\.mountPoint)), expected only the pool at \(root)") }
            if found.poolFiles != [Paths.canonical(file) ?? file] { problems.append("pool files: \(found.poolFiles), expected \(file)") }
        }

        // nftables: tupp's table while a network masquerades, its port table while a
        // running container publishes a port.
        var tables: [String] = []
        if manifest.networks.values.contains(where: \.nat) { tables.append("ip tupp_\(installationID)") }
        if running.contains(where: { manifest.containers[$0]?.network?.ports.isEmpty == false }) {
            tables.append("ip \(PortRules.tableName(installation: installationID))")
        }
        if found.nftTables.sorted() != tables.sorted() { problems.append("nft tables: \(found.nftTables), expected \(tables)") }
        problems += found.namedNetns.map { "unexpected netns /run/netns/\($0)" }

        // Processes: one supervisor per running container, the container's own processes.
        let supervisors = Dictionary(grouping: found.processes.filter { $0.role == .supervisor }, by: { $0.container ?? "?" })
        for name in running where supervisors[name]?.count != 1 {
            problems.append("container \(name) has \(supervisors[name]?.count ?? 0) supervisors: \(supervisors[name]?.map(\.commandLine) ?? [])")
        }
        for process in found.processes {
            switch process.role {
            case .supervisor where !running.contains(process.container ?? ""),
                 .container where !running.contains(process.container ?? ""),
                 .other:
                problems.append("unexpected process \(process.pid) (\(process.role.rawValue)): \(process.commandLine)")
            default: break
            }
        }

        // cgroups: the installation's parent and one per running container below it.
        for cgroup in found.cgroups {
            let name = Paths.basename(cgroup)
            if !name.contains(installationID) && !running.contains(name) { problems.append("unexpected cgroup \(cgroup)") }
        }
        return problems
    }

    /// Records an issue for everything `unexpected(running:)` finds.
    public func expectOnlyDeclared(running: Set<String>? = nil, _ comment: String = "", sourceLocation: SourceLocation = #_sourceLocation) {
        let problems = unexpected(running: running)
        #expect(problems.isEmpty, "\(comment.isEmpty ? "" : comment + ": ")\(problems.joined(separator: "\n"))", sourceLocation: sourceLocation)
    }

    /// Records an issue for anything of this installation still on the host.
    public func expectNothingLeft(_ comment: String = "", sourceLocation: SourceLocation = #_sourceLocation) {
        let found = inventory()
        #expect(found.isEmpty, "\(comment.isEmpty ? "left behind" : comment):\n\(found)", sourceLocation: sourceLocation)
    }

    // MARK: The end of a test

    /// Destroys what the manifests declare (`destroy --include-storage --include-volumes`), checks that nothing
    /// is left, then removes by force whatever was — also after a failed test — and checks
    /// again. Call it deferred, after the test's own objects (a foreign bridge) are gone.
    public func finish(sourceLocation: SourceLocation = #_sourceLocation) {
        let tracked = lock.withLock { _ in manifests }.filter { Files.exists($0) }
        var destroyed: Output?
        if !tracked.isEmpty {
            destroyed = try? tupp(["destroy", "--include-storage", "--include-volumes", "--lock-timeout", "10"] + tracked)
        }
        let left = inventory()
        if !left.isEmpty {
            Issue.record("tupp destroy left behind:\n\(left)\n\(destroyed.map { "destroy: \($0)" } ?? "")", sourceLocation: sourceLocation)
        }
        forceCleanup(left)
        let survivors = inventory()
        if !survivors.isEmpty {
            Issue.record("still there after the forced cleanup:\n\(survivors)", sourceLocation: sourceLocation)
        }
        root.remove()
    }

    /// The old names of `finish()`.
    public func cleanup(sourceLocation: SourceLocation = #_sourceLocation) { finish(sourceLocation: sourceLocation) }
    public func cleanupLeavingNothing(sourceLocation: SourceLocation = #_sourceLocation) { finish(sourceLocation: sourceLocation) }

    /// Removes what `found` lists, by pid, mount point, device and name.
    func forceCleanup(_ found: Inventory) {
        for process in found.processes where process.role != .container {
            if ProcEntry.read(process.pid)?.startTime == process.startTime { kill(process.pid, SIGKILL) }
        }
        for process in found.processes where process.role == .container {
            if ProcEntry.read(process.pid)?.startTime == process.startTime { kill(process.pid, SIGKILL) }
        }
        _ = eventually(seconds: 5) { found.processes.allSatisfy { !$0.isLiveProcess } }
        for mount in found.mounts.sorted(by: { $0.mountPoint.count > $1.mountPoint.count }) {
            umount2(mount.mountPoint, Int32(MNT_DETACH))
        }
        for loop in found.loopDevices {
            _ = try? Spawn.run(["/usr/sbin/losetup", "-d", String(loop.prefix { $0 != " " })])
        }
        for link in found.links { _ = try? Spawn.run(["/usr/sbin/ip", "link", "del", link.name]) }
        for table in found.nftTables { _ = try? Spawn.run(["/usr/sbin/nft", "delete", "table"] + table.split(separator: " ").map(String.init)) }
        for cgroup in found.cgroups.reversed() { rmdir(cgroup) }
        for netns in found.namedNetns { _ = try? Spawn.run(["/usr/sbin/ip", "netns", "del", netns]) }
        try? Files.removeTree(state)
        for file in found.poolFiles { unlink(file) }
    }
}

extension Inventory.Process {
    var isLiveProcess: Bool { ProcEntry.read(pid)?.startTime == startTime }
}
