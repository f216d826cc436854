import Glibc
import Logging
import TuppManifest
import TuppNetworking
import TuppPlan
import TuppRuntime
import TuppStorage
import TuppSystem

/// Carries out one planned change through the reconcilers, recording intent before
/// each side effect and the result after it.
struct Executor: Sendable {
    let store: StateStore
    let runtime: Runtime
    let installation: String
    let logger: Logger
    let manifest: Manifest
    let observation: Observation
    let options: PlanOptions

    typealias Progress = @Sendable (String) -> Void

    func execute(_ change: Plan.ResourceChange, progress: @escaping Progress) async throws {
        switch change.address.kind {
        case .pool: try await pool(change)
        case .image: try await image(change, progress: progress)
        case .network: try await network(change)
        case .container: try container(change)
        }
    }

    func record(_ change: Plan.ResourceChange) -> Record? { observation.records[change.address] }

    // MARK: Pool

    func pool(_ change: Plan.ResourceChange) async throws {
        let address = change.address
        switch change.action {
        case .delete:
            let storage = try declaredStorage()
            if storage.device != nil {
                try Pool.unmountAndDetach(storage)
                if options.includeStorage { try Pool.removeFile(storage) }
                // The mount point tupp made; left in place if anything else is in it.
                rmdir(storage.root)
            }
            try store.remove(address)
        case .create, .update, .replace:
            let storage = try declaredStorage()
            try store.save(Record(kind: .pool, name: address.name, status: .creating, attributes: change.after ?? [:]))
            if change.action == .create {
                try await Pool.create(storage)
                Checkpoint.pass("pool created")
            } else {
                if storage.device != nil && !Pool.observe(storage).mounted { try Pool.mount(storage) }
                // Grow when the file is smaller than declared, or the filesystem smaller
                // than its file (a grow interrupted between the two).
                let now = Pool.observe(storage)
                if let device = storage.device, let size = now.fileSize,
                   device.size > size || (now.filesystemSize ?? size) + (64 << 20) < size {
                    try Pool.grow(storage)
                }
                try Errno.check("chmod 0700", storage.root) { chmod(storage.root, 0o700) }
            }
            try store.save(Record(kind: .pool, name: address.name, status: .ready, attributes: change.after ?? [:]))
        case .noop:
            break
        }
    }

    /// The pool's root: declared, or recorded when the manifest no longer has storage.
    var poolRoot: String? {
        if let root = manifest.storage?.root { return root }
        if case .string(let root)? = observation.records[ResourceAddress(.pool, "main")]?.attributes["root"] { return root }
        return nil
    }

    func declaredStorage() throws -> Storage {
        guard let storage = manifest.storage else {
            throw SystemError.failure("use pool", "pool.main", "the manifest declares no storage")
        }
        return storage
    }

    // MARK: Images

    func image(_ change: Plan.ResourceChange, progress: @escaping Progress) async throws {
        let name = change.address.name
        let storage = try declaredStorage()
        let images = ImageStore(poolRoot: storage.root)
        let leftovers = (try images.contents()).leftovers.filter { Paths.basename($0.path).hasPrefix(".import-\(name)-") }
        switch change.action {
        case .delete:
            var record = record(change) ?? Record(kind: .image, name: name, status: .deleting)
            record.status = .deleting
            try store.save(record)
            for leftover in leftovers { try images.removeLeftover(leftover) }
            if try images.subvolume("images/\(name)") != nil { try images.deleteSubvolume("images/\(name)") }
            try store.remove(change.address)
        case .create, .replace:
            guard let image = manifest.images[name] else { return }
            for leftover in leftovers { try images.removeLeftover(leftover) }
            try store.save(Record(kind: .image, name: name, status: .creating, attributes: change.after ?? [:], protect: image.protect))
            let meter = RateMeter()
            let imported = try await images.importImage(name: name, from: ImageSource(image.source),
                                                        cacheDirectory: store.cacheDirectory) { p in
                if meter.first() { Checkpoint.pass("importing images/\(name)") }
                if let line = meter.line(bytes: p.bytesRead) { progress(line) }
            }
            for warning in imported.warnings { progress("warning: \(warning)") }
            var attributes = change.after ?? [:]
            attributes["digest"] = .string(imported.digest)
            try store.save(Record(kind: .image, name: name, status: .ready, attributes: attributes,
                                  facts: ["uuid": imported.info.uuid], protect: image.protect))
        case .update:
            for leftover in leftovers { try images.removeLeftover(leftover) }
            guard var record = record(change) else { return }
            record.protect = manifest.images[name]?.protect ?? record.protect
            try store.save(record)
        case .noop:
            break
        }
    }

    // MARK: Networks

    var natTable: String { "tupp_\(installation)" }

    func network(_ change: Plan.ResourceChange) async throws {
        let name = change.address.name
        let host = try NetlinkSession.host()
        let observed = observation.state.resources[change.address]
        let owner = LinkOwner(installation: installation, role: .network, name: name).description
        if change.action == .delete || change.action == .replace {
            let record = record(change) ?? Record(kind: .network, name: name, status: .deleting)
            var deleting = record
            deleting.status = .deleting
            try store.save(deleting)
            if record.facts["external"] != "true", observed?.external != true {
                if case .string(let subnet)? = record.attributes["subnet"], let net = IPv4Network(subnet),
                   observation.natSubnets?.contains(net) == true {
                    try await removeMasquerade(net)
                }
                if let bridge = record.facts["bridge"] ?? observed?.attributes["bridge"].flatMap({ if case .string(let b) = $0 { b } else { nil } }) {
                    _ = try host.deleteLink(name: bridge)
                }
            }
            try store.remove(change.address)
            if change.action == .delete { return }
        }
        guard change.action != .noop, let network = manifest.networks[name] else { return }
        let gateway = IPv4Interface(address: network.gateway, prefixLength: network.subnet.prefixLength)
        if observed?.external == true && change.action != .replace {
            try store.save(Record(kind: .network, name: name, status: .ready, attributes: change.after ?? [:],
                                  facts: ["bridge": network.bridge, "external": "true"]))
            return
        }
        try store.save(Record(kind: .network, name: name, status: .creating, attributes: change.after ?? [:],
                              facts: ["bridge": network.bridge]))
        if try host.link(named: network.bridge) == nil {
            try host.createBridge(name: network.bridge, address: gateway, mtu: network.mtu, alias: owner)
            Checkpoint.pass("bridge \(network.bridge) created")
        } else {
            _ = try host.updateBridge(name: network.bridge, address: gateway, mtu: network.mtu)
            try host.setAlias(name: network.bridge, alias: owner)
            try host.setUp(name: network.bridge)
        }
        let natOn = observation.natSubnets?.contains(network.subnet) ?? false
        if network.nat && !natOn {
            try NAT.enableIPv4Forwarding()
            _ = try await NAT.ensureMasquerade(subnet: network.subnet, table: natTable)
        } else if !network.nat && natOn {
            try await removeMasquerade(network.subnet)
        }
        try store.save(Record(kind: .network, name: name, status: .ready, attributes: change.after ?? [:],
                              facts: ["bridge": network.bridge]))
    }

    /// Stops masquerading `subnet`; the table goes with its last rule, so nothing of
    /// tupp's stays in the host's rule set.
    func removeMasquerade(_ subnet: IPv4Network) async throws {
        _ = try await NAT.removeMasquerade(subnet: subnet, table: natTable)
        if try await NAT.masqueradedSubnets(table: natTable)?.isEmpty == true {
            _ = try await NAT.removeTable(natTable)
        }
    }

    // MARK: Containers

    func container(_ change: Plan.ResourceChange) throws {
        switch change.action {
        case .delete:
            try removeContainer(change.address.name)
        case .replace:
            try removeContainer(change.address.name)
            try createContainer(change)
        case .create:
            try createContainer(change)
        case .update:
            try updateContainer(change)
        case .noop:
            break
        }
    }

    var hostSession: NetlinkSession { get throws { try NetlinkSession.host() } }

    func directory(_ name: String) -> String { store.containerDirectory(name) }

    func hostVeth(_ name: String) -> String { LinkNames.hostVeth(installation: installation, container: name) }

    /// Stops the process, unplugs, deletes the snapshot, the runtime directory and the record.
    func removeContainer(_ name: String) throws {
        let address = ResourceAddress(.container, name)
        if var record = observation.records[address] {
            record.status = .deleting
            try store.save(record)
        }
        let timeout = observation.records[address].flatMap { r -> Double? in
            if case .string(let t)? = r.attributes["stop_timeout"] { return try? Units.parseDuration(t).get() }
            return nil
        }
        try runtime.stop(directory: directory(name), timeout: timeout)
        Checkpoint.pass("\(name) stopped")
        // The pair normally dies with the netns; a leftover host end (the netns was pinned) goes too.
        _ = try hostSession.deleteLink(name: hostVeth(name))
        if let root = poolRoot {
            let images = ImageStore(poolRoot: root)
            if try images.subvolume("containers/\(name)") != nil { try images.deleteSubvolume("containers/\(name)") }
        }
        try runtime.remove(directory: directory(name))
        try store.remove(address)
    }

    func createContainer(_ change: Plan.ResourceChange) throws {
        let name = change.address.name
        guard let container = manifest.containers[name] else { return }
        let storage = try declaredStorage()
        let images = ImageStore(poolRoot: storage.root)
        let veth = hostVeth(name)
        try store.save(Record(kind: .container, name: name, status: .creating, attributes: change.after ?? [:],
                              facts: ["hostVeth": veth], protect: container.protect))
        // Leftovers of an interrupted create: a stale supervisor, link or snapshot.
        try runtime.stop(directory: directory(name))
        _ = try hostSession.deleteLink(name: veth)
        if try images.subvolume("containers/\(name)") != nil { try images.deleteSubvolume("containers/\(name)") }
        if Files.exists(directory(name)) { try runtime.remove(directory: directory(name)) }

        let snapshot = try images.snapshot(image: container.image, container: name)
        Checkpoint.pass("snapshot containers/\(name) created")
        logger.debug("\(name): snapshot \(snapshot.uuid) of images/\(container.image)")
        let started = try start(container, rootfs: "\(storage.root)/containers/\(name)")
        logger.debug("\(name): supervisor pid \(started.shimPID), init pid \(started.initPID)")
        try store.save(Record(kind: .container, name: name, status: .ready, attributes: change.after ?? [:],
                              facts: facts(name, snapshot: snapshot.uuid, process: started), protect: container.protect))
    }

    func facts(_ name: String, snapshot: String?, process: ProcessObservation) -> [String: String] {
        var f = ["hostVeth": hostVeth(name), "initPID": String(process.initPID), "initStartTime": String(process.initStartTime),
                 "shimPID": String(process.shimPID)]
        if let snapshot { f["snapshot"] = snapshot }
        // The digest of the spec the supervisor runs, so a record names exactly what was started.
        if let spec = try? Files.read("\(directory(name))/spec") { f["spec"] = SavedPlan.sha256(spec) }
        return f
    }

    /// Starts the supervisor and command; the network is plugged in the sync window,
    /// before the command runs.
    func start(_ container: Container, rootfs: String) throws -> ProcessObservation {
        let config = ContainerConfig(container, rootfs: rootfs)
        return try runtime.start(config, directory: directory(container.name)) { starting in
            Checkpoint.pass("supervisor of \(container.name) started")
            guard let plug = plug(for: container, netnsPath: starting.netnsPath) else { return }
            try hostSession.plug(plug)
            logger.debug("\(container.name): \(plug.hostName) on \(plug.bridge), \(plug.interface) \(plug.address) via \(plug.gateway)")
            Checkpoint.pass("\(container.name) plugged into its network")
        }
    }

    func plug(for container: Container, netnsPath: String) -> ContainerPlug? {
        guard let attachment = container.network, let network = manifest.networks[attachment.attach],
              let address = observation.addresses[container.name] ?? attachment.address else { return nil }
        return ContainerPlug(netnsPath: netnsPath, hostName: hostVeth(container.name), bridge: network.bridge,
                             interface: attachment.interface, address: address, gateway: network.gateway,
                             mtu: network.mtu,
                             alias: LinkOwner(installation: installation, role: .container, name: container.name).description)
    }

    func updateContainer(_ change: Plan.ResourceChange) throws {
        let name = change.address.name
        guard let container = manifest.containers[name], var record = record(change) else { return }
        let storage = try declaredStorage()
        let rootfs = "\(storage.root)/containers/\(name)"
        var process = observation.processes[name] ?? runtime.observe(directory: directory(name))
        if change.effect == .restart {
            try runtime.stop(directory: directory(name), timeout: container.stopTimeout)
            _ = try hostSession.deleteLink(name: hostVeth(name))
            process = try start(container, rootfs: rootfs)
        } else {
            let config = ContainerConfig(container, rootfs: rootfs)
            try runtime.updateSettings(config, directory: directory(name))
            if let hostname = container.effectiveHostname,
               change.reasons.contains(where: { $0.path == "hostname" }) {
                try runtime.setHostname(hostname, for: process)
            }
            let networkChanged = change.reasons.contains { $0.path?.hasPrefix("network.") == true || ($0.path == nil && $0.effect == .inPlace) }
            if networkChanged {
                if let plug = plug(for: container, netnsPath: "/proc/\(process.shimPID)/ns/net") {
                    let repairs = try hostSession.ensurePlugged(plug)
                    logger.debug("\(name): network \(repairs.isEmpty ? "already as declared" : repairs.map(\.description).joined(separator: ", "))")
                } else {
                    _ = try hostSession.deleteLink(name: hostVeth(name))
                }
            }
        }
        record.attributes = change.after ?? [:]
        record.status = .ready
        record.protect = container.protect
        record.facts = facts(name, snapshot: record.facts["snapshot"], process: process)
        try store.save(record)
    }
}

/// Turns byte counts into "120 MiB (240 MiB/s)" at most ten times a second.
final class RateMeter: @unchecked Sendable {
    let start = Monotonic.nanoseconds()
    var last: UInt64 = 0
    private var started = false

    /// True on the first call only.
    func first() -> Bool {
        defer { started = true }
        return !started
    }

    func line(bytes: UInt64) -> String? {
        let now = Monotonic.nanoseconds()
        guard now - last > 100_000_000 else { return nil }
        last = now
        let seconds = Double(now - start) / 1e9
        let rate = seconds > 0 ? UInt64(Double(bytes) / seconds) : 0
        return "\(Units.formatSize(bytes)) (\(Units.formatSize(rate))/s)"
    }
}
