import FoundationEssentials
import Logging
import TuppManifest
import TuppNetworking
import TuppPlan
import TuppRuntime
import TuppStorage
import TuppSystem

/// Everything one plan saw on the live host, plus what the executor needs to act on it.
public struct Observation: Sendable {
    public var state = ObservedState()
    public var records: [ResourceAddress: Record] = [:]
    public var pool: PoolObservation?
    public var contents: PoolContents?
    public var host: NetworkSnapshot?
    public var processes: [String: ProcessObservation] = [:]
    /// Each container's network namespace as seen from inside.
    public var namespaces: [String: NetworkSnapshot] = [:]
    /// Identity of each declared image's source ("sha256:…").
    public var imageDigests: [String: String] = [:]
    /// Every attached container's address, explicit or allocated.
    public var addresses: [String: IPv4Interface] = [:]
    /// A short description of each observed object's identity; a saved plan is stale
    /// when any of these differ at apply time.
    public var fingerprints: [ResourceAddress: String] = [:]
    /// NAT tables' masqueraded subnets, when any network uses NAT.
    public var natSubnets: [IPv4Network]?
}

/// Reads the live host: the pool through statfs/mountinfo, subvolumes through one
/// libbtrfsutil iteration, links/addresses/routes through one netlink dump per kind,
/// containers through their supervisor's state and /proc, each container's netns through
/// a socket opened inside it. Records fill in only what the kernel cannot tell.
struct Observer {
    let store: StateStore
    let runtime: Runtime
    let installation: String
    let logger: Logger
    /// Destroying: a subnet overlapping a host route no longer matters.
    var destroying = false

    func observe(_ manifest: Manifest) async -> Observation {
        var o = Observation()
        var problems: [String] = []
        var t = Monotonic.nanoseconds()
        do {
            o.records = try store.load()
        } catch {
            problems.append("\(error)")
        }
        func lap(_ what: String) {
            logger.debug("observed \(what) in \((Monotonic.milliseconds(since: t) * 100).rounded() / 100) ms")
            t = Monotonic.nanoseconds()
        }
        lap("\(o.records.count) records")
        observePool(manifest, &o, &problems)
        lap("the pool (\(o.contents.map { "\($0.images.count) images, \($0.containers.count) snapshots" } ?? "not mounted"))")
        observeImages(manifest, &o, &problems)
        lap("\(manifest.images.count) image sources")
        await observeNetworks(manifest, &o, &problems)
        lap("the host network (\(o.host?.links.count ?? 0) links)")
        observeContainers(manifest, &o, &problems)
        lap("\(o.processes.count) containers (\(o.namespaces.count) network namespaces)")
        o.state.problems += problems
        return o
    }

    // MARK: Pool

    func observePool(_ manifest: Manifest, _ o: inout Observation, _ problems: inout [String]) {
        let address = ResourceAddress(.pool, "main")
        guard let storage = manifest.storage else { return }
        let pool = Pool.observe(storage)
        o.pool = pool
        var resource = ObservedResource(address)
        resource.attributes["root"] = .string(storage.root)
        if let device = storage.device {
            guard pool.fileExists else { return }   // absent: created by apply
            resource.attributes["device.file"] = .string(device.file)
            if let size = pool.fileSize { resource.attributes["device.size"] = .int(Int64(size)) }
            if pool.mounted {
                if !pool.isBacked(by: device) {
                    problems.append("pool.main: \(storage.root) is mounted from \(pool.backingFile ?? pool.mountSource ?? "another device"), not \(device.file); unmount it or change storage.root")
                }
            } else {
                resource.conditions.append(.init("\(device.file) is not mounted at \(storage.root)", effect: .inPlace))
            }
            if let size = pool.fileSize, let fs = pool.filesystemSize, pool.mounted, fs + (64 << 20) < size {
                resource.conditions.append(.init("the filesystem spans \(Units.formatSize(fs)) of the \(Units.formatSize(size)) file", effect: .inPlace))
            }
        } else {
            guard pool.rootExists else { return }
            if !pool.onBtrfs {
                problems.append("pool.main: \(storage.root) is not on btrfs; mount a btrfs filesystem there or add storage.device to back it with a loop file")
            }
        }
        if pool.rootExists, let mode = pool.rootMode, mode != 0o700, pool.onBtrfs {
            resource.conditions.append(.init("\(storage.root) has mode \(String(mode, radix: 8)); tupp keeps it 0700", effect: .inPlace))
        }
        o.fingerprints[address] = "mounted from \(pool.mountSource ?? "nothing"), file \(pool.fileSize.map(Units.formatSize) ?? "absent"), filesystem \(pool.filesystemSize.map(Units.formatSize) ?? "unknown")"
        o.state.resources[address] = resource
        if pool.mounted || (storage.device == nil && pool.onBtrfs) {
            do {
                o.contents = try ImageStore(poolRoot: storage.root).contents()
            } catch {
                problems.append("pool.main: cannot list subvolumes: \(error)")
            }
        }
    }

    // MARK: Images

    func observeImages(_ manifest: Manifest, _ o: inout Observation, _ problems: inout [String]) {
        let storeForDigest = ImageStore(poolRoot: manifest.storage?.root ?? "/")
        for (name, image) in manifest.images {
            do {
                o.imageDigests[name] = try storeForDigest.identify(ImageSource(image.source), cacheDirectory: store.cacheDirectory)
            } catch {
                problems.append("image.\(name): cannot read its source \(image.source): \(error)")
            }
        }
        var names = Set(manifest.images.keys)
        names.formUnion(o.records.keys.filter { $0.kind == .image }.map(\.name))
        if let contents = o.contents {
            names.formUnion(contents.images.keys)
            names.formUnion(contents.leftovers.compactMap(leftoverImageName))
        }
        for name in names.sorted() {
            let address = ResourceAddress(.image, name)
            let record = o.records[address]
            let declared = manifest.images[name] != nil
            guard let contents = o.contents else {
                // Pool not mounted: the records are all there is; mounting comes first.
                if let record, record.status == .ready {
                    o.state.resources[address] = ObservedResource(address, attributes: record.attributes, protect: record.protect)
                }
                continue
            }
            let leftovers = contents.leftovers.filter { leftoverImageName($0) == name }
            let cleanup = leftovers.map {
                ObservedResource.Condition("an interrupted import left images/\(Paths.basename($0.path)); it is removed", effect: .inPlace)
            }
            if let subvolume = contents.images[name] {
                guard let record else {
                    o.state.resources[address] = ObservedResource(address, owned: false)
                    continue
                }
                var resource = ObservedResource(address, attributes: record.attributes, conditions: cleanup, protect: record.protect)
                if record.status != .ready {
                    resource.conditions.append(.init("an earlier import did not finish", effect: .replace))
                } else if let uuid = record.facts["uuid"], uuid != subvolume.uuid {
                    resource.drift.append(Drift(address, "images/\(name) was replaced outside tupp (subvolume \(uuid) → \(subvolume.uuid))"))
                    resource.conditions.append(.init("images/\(name) is not the subvolume tupp imported", effect: .replace))
                }
                if !subvolume.readOnly {
                    resource.drift.append(Drift(address, "images/\(name) was made writable"))
                    resource.conditions.append(.init("images/\(name) is writable; images are read-only", effect: .replace))
                }
                o.fingerprints[address] = "subvolume \(subvolume.uuid) generation \(subvolume.generation)"
                o.state.resources[address] = resource
                continue
            }
            if let record, record.status == .ready {
                o.state.drift.append(Drift(address, "images/\(name) was deleted outside tupp"))
            }
            if declared {
                // Absent for the planner, which creates it; the executor clears leftovers first.
                o.state.drift += leftovers.map { Drift(address, "an interrupted import left images/\(Paths.basename($0.path))") }
            } else if record != nil || !leftovers.isEmpty {
                // Not declared: the planner deletes it, which removes leftovers and the record.
                o.state.resources[address] = ObservedResource(address, attributes: record?.attributes ?? [:],
                                                              conditions: cleanup, protect: record?.protect ?? false)
            }
        }
    }

    // MARK: Networks

    func observeNetworks(_ manifest: Manifest, _ o: inout Observation, _ problems: inout [String]) async {
        let recorded = o.records.values.filter { $0.kind == .network }
        let usesNAT = manifest.networks.values.contains(where: \.nat) || recorded.contains { $0.attributes["nat"] == .bool(true) }
        do {
            o.host = try NetlinkSession.host().snapshot()
        } catch {
            problems.append("cannot read the host's links and routes: \(error)")
            return
        }
        let host = o.host!
        if usesNAT {
            do { o.natSubnets = try await NAT.masqueradedSubnets(table: natTable) ?? [] } catch {
                problems.append("cannot read the nftables rule set: \(error)")
            }
        }
        var names = Set(manifest.networks.keys)
        names.formUnion(recorded.map(\.name))
        // Bridges carrying this installation's mark whose record is gone (a crash between
        // creating and recording cannot happen — intent is recorded first — but a deleted
        // state file can).
        for link in host.links {
            if let owner = link.owner, owner.belongs(toInstallation: installation), owner.role == .network { names.insert(owner.name) }
        }
        var ownedBridgeIndices: Set<Int> = []
        for name in names.sorted() {
            let address = ResourceAddress(.network, name)
            let record = o.records[address]
            let declared = manifest.networks[name]
            let bridgeName = declared?.bridge ?? record?.facts["bridge"]
                ?? host.links.first { $0.owner == LinkOwner(installation: installation, role: .network, name: name) }?.name
            guard let bridgeName, let link = host.link(named: bridgeName) else {
                if let record, record.status == .ready {
                    o.state.drift.append(Drift(address, "bridge \(record.facts["bridge"] ?? "?") was deleted outside tupp"))
                }
                if declared == nil, record != nil {
                    o.state.resources[address] = ObservedResource(address, attributes: record!.attributes)
                }
                continue
            }
            let mine = link.owner?.belongs(toInstallation: installation) == true && link.owner?.name == name
            let addresses = host.addresses(onLink: link.index)
            var attributes: [String: Value] = ["bridge": .string(link.name)]
            let primary = declared.flatMap { d in addresses.first { $0.address == d.gateway } } ?? addresses.first
            if let primary {
                attributes["subnet"] = .string(primary.network.description)
                attributes["gateway"] = .string(primary.address.description)
            }
            if declared?.mtu != nil { attributes["mtu"] = .int(Int64(link.mtu)) }
            if let subnet = primary?.network {
                attributes["nat"] = .bool(o.natSubnets?.contains(subnet) ?? false)
            } else {
                attributes["nat"] = .bool(false)
            }
            o.fingerprints[address] = "link #\(link.index) \(link.mac?.description ?? "no MAC") \(addresses.isEmpty ? "no address" : addresses.map(\.description).joined(separator: ","))"
            // Ours: marked with this installation's alias, or recorded as created by us (an
            // alias changed by hand is then drift, repaired by the update).
            let ours = mine || (record != nil && record!.facts["external"] != "true")
            if ours {
                ownedBridgeIndices.insert(link.index)
                var resource = ObservedResource(address, attributes: attributes)
                if link.kind != "bridge" {
                    problems.append("network.\(name): \(link.name) is a \(link.kind ?? "non-bridge") link, not a bridge")
                }
                if !link.isUp { resource.conditions.append(.init("bridge \(link.name) is down", effect: .inPlace)) }
                if !mine { resource.conditions.append(.init("bridge \(link.name) lost tupp's ownership mark (ifalias)", effect: .inPlace)) }
                if let record, record.status == .ready, let was = record.attributes["gateway"], attributes["gateway"] != was {
                    resource.drift.append(Drift(address, "bridge \(link.name) address changed outside tupp (\(was) → \(attributes["gateway"].map(\.description) ?? "none"))",
                                                path: "gateway", recorded: was, observed: attributes["gateway"]))
                }
                o.state.resources[address] = resource
            } else if let d = declared, addresses.contains(IPv4Interface(address: d.gateway, prefixLength: d.subnet.prefixLength)) {
                // A bridge tupp did not create (docker0, say) whose address matches: used, never changed.
                ownedBridgeIndices.insert(link.index)
                var same = DesiredState.networkAttributes(d)
                same["bridge"] = .string(link.name)
                if d.nat { same["nat"] = attributes["nat"] }
                o.state.resources[address] = ObservedResource(address, attributes: same, external: true)
            } else {
                let have = addresses.isEmpty ? "no address" : addresses.map(\.description).joined(separator: ", ")
                problems.append("network.\(name): bridge \(link.name) exists, was not created by tupp and has \(have)\(declared.map { ", not \($0.gateway)/\($0.subnet.prefixLength)" } ?? ""); tupp will not change it — choose another bridge name or give it that address")
            }
        }
        // A subnet must not overlap a host route tupp does not own (the uplink, DNS, VPNs…).
        for (name, network) in manifest.networks.sorted(by: { $0.key < $1.key }) where !destroying {
            for route in RouteConflicts.conflicting(subnet: network.subnet, in: host, ignoringLinks: ownedBridgeIndices) {
                problems.append("network.\(name): subnet \(network.subnet) overlaps the host route \(RouteConflicts.describe(route, in: host)); choose a subnet that overlaps no host route")
            }
        }
    }

    var natTable: String { "tupp_\(installation)" }

    // MARK: Containers

    func observeContainers(_ manifest: Manifest, _ o: inout Observation, _ problems: inout [String]) {
        var names = Set(manifest.containers.keys)
        names.formUnion(o.records.keys.filter { $0.kind == .container }.map(\.name))
        // Host veths marked as this installation's whose container is unknown.
        for link in o.host?.links ?? [] {
            if let owner = link.owner, owner.belongs(toInstallation: installation), owner.role == .container { names.insert(owner.name) }
        }
        // Allocate addresses first: recorded ones stay put.
        var recordedAddresses: [String: IPv4Interface] = [:]
        for (address, record) in o.records where address.kind == .container {
            if case .string(let text)? = record.attributes["network.address"], let iface = IPv4Interface(text) {
                recordedAddresses[address.name] = iface
            }
        }
        switch AddressAllocator.allocate(manifest, recorded: recordedAddresses) {
        case .success(let map): o.addresses = map
        case .failure(let e):
            problems.append("network.\(e.network): no free address left for container \(e.container); use a larger subnet")
        }

        // One pass over the supervisors, then one netns snapshot per running container.
        var netnsPaths: [(String, String)] = []
        for name in names.sorted() {
            let process = runtime.observe(directory: store.containerDirectory(name))
            o.processes[name] = process
            if process.shimPID > 0, process.state != .absent, process.state != .exited, process.state != .stopped,
               process.state != .supervisorDied, process.namespaces[.net] != nil {
                netnsPaths.append((name, "/proc/\(process.shimPID)/ns/net"))
            }
        }
        for (i, result) in NetlinkSession.snapshots(ofNamespaces: netnsPaths.map(\.1)).enumerated() {
            if case .success(let snapshot) = result { o.namespaces[netnsPaths[i].0] = snapshot }
        }
        // Live hostnames, read inside each UTS namespace on one thread.
        let named = names.sorted().filter { o.processes[$0]!.isRunning && o.records[ResourceAddress(.container, $0)]?.attributes["hostname"] != nil }
        let liveHostnames = Dictionary(uniqueKeysWithValues: zip(named, runtime.hostnames(of: named.map { o.processes[$0]! })))

        for name in names.sorted() {
            let address = ResourceAddress(.container, name)
            let record = o.records[address]
            let process = o.processes[name]!
            let snapshot = o.contents?.containers[name]
            let hostVeth = LinkNames.hostVeth(installation: installation, container: name)
            let vethLink = o.host?.link(named: hostVeth)
            guard let record else {
                if snapshot != nil {
                    o.state.resources[address] = ObservedResource(address, owned: false)
                } else if vethLink != nil || process.state != .absent {
                    // Leftovers without a record: delete them (or clear them before creating).
                    var leftover = ObservedResource(address)
                    leftover.conditions.append(.init("leftovers of an earlier container are removed", effect: .replace))
                    if manifest.containers[name] == nil { o.state.resources[address] = leftover }
                    else { o.state.drift.append(Drift(address, "leftovers of an earlier container (\(vethLink?.name ?? "supervisor")) are removed before it is created")) }
                }
                continue
            }
            var resource = ObservedResource(address, attributes: record.attributes, protect: record.protect)
            if record.status == .creating {
                resource.conditions.append(.init("an earlier apply did not finish creating it", effect: .replace))
            }
            if o.contents != nil && snapshot == nil {
                if record.status == .ready { resource.drift.append(Drift(address, "its snapshot containers/\(name) was deleted outside tupp")) }
                resource.conditions.append(.init("snapshot containers/\(name) is missing", effect: .replace))
            }
            if let snapshot, let image = record.attributes["image"], case .string(let imageName) = image,
               let current = o.contents?.images[imageName], snapshot.parentUUID != current.uuid,
               o.state.resources[ResourceAddress(.image, imageName)]?.conditions.isEmpty ?? true {
                resource.conditions.append(.init("snapshot of an older image (images/\(imageName) was replaced)", effect: .replace))
            }

            // The process: pid + start time, never a recycled pid.
            switch process.state {
            case .running, .starting, .restarting, .exiting:
                if let recordedPID = record.facts["initPID"].flatMap(Int32.init), process.initPID != 0, recordedPID != process.initPID {
                    resource.drift.append(Drift(address, "restarted by its supervisor (pid \(recordedPID) → \(process.initPID), \(process.restarts) restart\(process.restarts == 1 ? "" : "s"))"))
                }
            case .stopping:
                resource.conditions.append(.init("process is stopping", effect: .restart))
            case .exited, .stopped, .absent, .supervisorDied:
                let why: String
                if let exit = process.lastExit { why = "process not running (\(exit.status))" }
                else if process.state == .supervisorDied { why = "process not running (its supervisor died)" }
                else { why = "process not running" }
                if record.status == .ready { resource.drift.append(Drift(address, why)) }
                resource.conditions.append(.init(why, effect: .restart))
            }
            if process.initPID != 0 {
                o.fingerprints[address] = "init pid \(process.initPID) (start \(process.initStartTime)), snapshot \(snapshot?.uuid ?? "absent"), host veth \(vethLink.map { "#\($0.index)" } ?? "absent")"
            }

            // Live hostname, read inside the UTS namespace.
            if process.isRunning, record.attributes["hostname"] != nil {
                if let live = liveHostnames[name] ?? nil {
                    let recorded = record.attributes["hostname"]!
                    if .string(live) != recorded {
                        resource.drift.append(Drift(address, "hostname changed outside tupp (\(recorded) → \"\(live)\")", path: "hostname",
                                                    recorded: recorded, observed: .string(live)))
                    }
                    resource.attributes["hostname"] = .string(live)
                }
            }

            // Live network: the host end on the bridge, the address and route inside.
            if process.isRunning, case .string(let interface)? = record.attributes["network.interface"] {
                if let link = vethLink {
                    let master = link.masterIndex.flatMap { o.host?.link(index: $0)?.name }
                    resource.attributes["network.bridge"] = master.map(Value.string)
                    if master == nil { resource.drift.append(Drift(address, "host veth \(hostVeth) was detached from its bridge")) }
                    if !link.isUp { resource.conditions.append(.init("host veth \(hostVeth) is down", effect: .inPlace)) }
                } else {
                    resource.drift.append(Drift(address, "host veth \(hostVeth) was deleted outside tupp"))
                    resource.conditions.append(.init("host veth \(hostVeth) is missing", effect: .inPlace))
                }
                if let inside = o.namespaces[name] {
                    if let peer = inside.link(named: interface) {
                        let addrs = inside.addresses(onLink: peer.index)
                        resource.attributes["network.address"] = addrs.first.map { .string($0.description) }
                        resource.attributes["network.gateway"] = inside.defaultRoute?.gateway.map { .string($0.description) }
                        if !peer.isUp { resource.conditions.append(.init("\(interface) is down inside the container", effect: .inPlace)) }
                    } else {
                        resource.attributes["network.address"] = nil
                        resource.attributes["network.gateway"] = nil
                    }
                    let recordedAddress = record.attributes["network.address"]
                    if record.status == .ready, resource.attributes["network.address"] != recordedAddress {
                        resource.drift.append(Drift(address, "address inside changed outside tupp (\(recordedAddress?.description ?? "none") → \(resource.attributes["network.address"]?.description ?? "none"))"))
                    }
                }
            }
            o.state.resources[address] = resource
        }
    }

    func leftoverImageName(_ info: SubvolumeInfo) -> String? {
        // images/.import-NAME-RANDOM
        let base = Paths.basename(info.path)
        guard base.hasPrefix(".import-"), let dash = base.lastIndex(of: "-") else { return nil }
        let name = base[base.index(base.startIndex, offsetBy: 8)..<dash]
        return name.isEmpty ? nil : String(name)
    }
}
