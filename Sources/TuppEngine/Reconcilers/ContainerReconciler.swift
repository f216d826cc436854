import Logging
import TuppBase
import TuppFacts
import TuppManifest
import TuppNetworking
import TuppPlan
import TuppRuntime
import TuppStorage
import TuppSystem

/// Containers: observed through each supervisor's state file and /proc, the host veth in
/// the network reconciler's dump, one netlink snapshot per running container's netns and
/// the hostnames in their UTS namespaces; judged by `ContainerKind`; started, changed and
/// removed through `Runtime`, `ImageStore` and `NetlinkSession`.
struct ContainerReconciler: Reconciler {
    var kind: ResourceKind { .container }

    func observe(_ observation: inout Observation, _ context: ObserveContext) async {
        let records = observation.records(of: .container)
        let host = observation.facts[NetworkFacts.self]?.host
        let names = ContainerKind.names(declared: context.manifest.containers.keys, records: records.keys, host: host,
                                        installation: context.installation)
        var facts = ContainerFacts(contents: observation.facts[PoolFacts.self]?.contents, host: host, processes: [:])
        var t = Monotonic.nanoseconds()
        func lap(_ what: String) {
            context.logger.debug("  containers: \(what) in \((Monotonic.milliseconds(since: t) * 100).rounded() / 100) ms")
            t = Monotonic.nanoseconds()
        }
        // One pass over the supervisors, then one netns snapshot per running container.
        let processes = Lanes.map(names.count) { context.runtime.observe(directory: context.store.containerDirectory(names[$0])) }
        var netnsPaths: [(String, String)] = []
        for (name, process) in zip(names, processes) {
            facts.processes[name] = process
            if process.shimPID > 0, ![.absent, .exited, .stopped, .supervisorDied].contains(process.state),
               process.namespaces[.net] != nil {
                netnsPaths.append((name, "/proc/\(process.shimPID)/ns/net"))
            }
        }
        lap("\(names.count) supervisors")
        for (i, result) in NetlinkSession.snapshots(ofNamespaces: netnsPaths.map(\.1)).enumerated() {
            if case .success(let snapshot) = result { facts.namespaces[netnsPaths[i].0] = snapshot }
        }
        lap("\(netnsPaths.count) network namespaces")
        // Live hostnames, read inside each UTS namespace on one thread.
        let named = names.filter { facts.processes[$0]!.isRunning && records[$0]?.attributes[ContainerAttribute.hostname] != nil }
        for (name, hostname) in zip(named, context.runtime.hostnames(of: named.map { facts.processes[$0]! })) {
            if let hostname { facts.hostnames[name] = hostname }
        }
        lap("hostnames")
        // The name files tupp wrote: /etc/hosts by its stamp (read only when it changed), the
        // small resolv.conf whole.
        let running = names.filter { facts.processes[$0]!.isRunning }
        let nameFiles = Lanes.map(running.count) { i -> (stamp: String?, hosts: String?, resolv: String?) in
            let directory = context.store.containerDirectory(running[i])
            let hosts = ContainerNameFiles.hostsPath(runtimeDirectory: directory)
            let stamp = (try? ContainerNameFiles.stamp(hosts)) ?? nil
            let changed = stamp != nil && stamp != records[running[i]]?.hostsStamp
            return (stamp, changed ? (try? Files.readText(hosts, limit: 16 << 20)) ?? nil : nil,
                    (try? Files.readText(ContainerNameFiles.resolvConfPath(runtimeDirectory: directory), limit: 1 << 20)) ?? nil)
        }
        for (name, files) in zip(running, nameFiles) {
            facts.hostsStamps[name] = files.stamp
            facts.hostsFiles[name] = files.hosts
            facts.resolvFiles[name] = files.resolv
        }
        lap("name files")
        observeConfinement(context, records: records, processes: facts.processes, into: &facts, &observation)
        lap("cgroups and seccomp profiles")
        allocateUserNamespaces(context, records: records, processes: facts.processes, &observation)
        checkCgroupDelegation(context, &observation)
        if let resolvers = try? ResolvConf.readHost() {
            observation.desiredContext.hostResolvers = HostResolvers(host: resolvers.host, resolvedUpstream: resolvers.resolvedUpstream)
        }
        observation.facts[ContainerFacts.self] = facts
        observation.merge(ContainerKind.interpret(declared: Set(context.manifest.containers.keys), records: records, facts: facts,
                                                  images: observation.state, installation: context.installation))
        lap("judgement")
    }

    /// The host ids of every container with `userns: auto`: what each container holds now
    /// (its record, its live process), the pool (`userns.range`, tupp's /etc/subuid and
    /// /etc/subgid entries, the default), and — only when a container needs a new range —
    /// every other user namespace on the host and other users' subordinate ids.
    func allocateUserNamespaces(_ context: ObserveContext, records: [String: Record], processes: [String: ProcessObservation],
                                _ observation: inout Observation) {
        let wanting = context.manifest.containers.values.filter { context.manifest.userns(of: $0) == .auto }.map(\.name)
        var held: [String: IDMapping] = [:]
        for (name, record) in records { held[name] = record.heldUserNamespace }
        for (name, process) in processes { if let live = process.userNamespace { held[name] = live } }
        // A destroy plans deletions only: nothing to allocate.
        guard !wanting.isEmpty, !context.destroying else { return }
        let subordinate = UserNamespaces.subordinateIDs()
        let pool = UserNamespaceAllocator.Pool.choose(context.manifest.userNamespaces, subuid: subordinate.uids, subgid: subordinate.gids)
        var inUse = UserNamespaceAllocator.InUse(uids: subordinate.uids.filter { $0.user != "tupp" }.map(\.range),
                                                 gids: subordinate.gids.filter { $0.user != "tupp" }.map(\.range))
        if wanting.contains(where: { held[$0].flatMap(pool.block(of:)) == nil }) {
            // Our own containers' maps are in `held`; what else the host maps is in use.
            let own = Set(held.values.flatMap { $0.uids.map(\.hostRange) }), ownGIDs = Set(held.values.flatMap { $0.gids.map(\.hostRange) })
            let live = UserNamespaces.hostRangesInUse()
            inUse.uids += live.uids.filter { !own.contains($0) }
            inUse.gids += live.gids.filter { !ownGIDs.contains($0) }
        }
        switch UserNamespaceAllocator.allocate(wanting: wanting, held: held, pool: pool, inUse: inUse, installation: context.installation) {
        case .success(let mappings): observation.desiredContext.userNamespaces = mappings
        case .failure(let e):
            observation.state.problems.append("container.\(e.container): no free range of 65536 host ids left in \(e.pool) for userns: auto; widen userns.range or remove containers")
        }
    }

    /// `delegateCgroup` needs cgroup v2 (a v1 hierarchy cannot be delegated safely):
    /// refused at plan time on a v1 or hybrid host.
    func checkCgroupDelegation(_ context: ObserveContext, _ observation: inout Observation) {
        let delegating = context.manifest.containers.values.filter(\.delegateCgroup).map(\.name).sorted()
        guard !delegating.isEmpty, !context.destroying else { return }
        let layout = try? CgroupLayout.host()
        guard layout?.version != .v2 else { return }
        let why = layout.map { _ in "this host's cgroup controllers are on v1" } ?? "this host's cgroups cannot be read"
        for name in delegating {
            observation.state.problems.append("container.\(name): delegateCgroup needs cgroup v2; \(why) — remove delegateCgroup, or boot with cgroup v2 only (systemd.unified_cgroup_hierarchy=1)")
        }
    }

    /// Seccomp profile files (digest, and that they parse), limits the host cannot
    /// enforce, and cgroup limit files changed by hand.
    func observeConfinement(_ context: ObserveContext, records: [String: Record], processes: [String: ProcessObservation],
                            into facts: inout ContainerFacts, _ observation: inout Observation) {
        for (name, c) in context.manifest.containers.sorted(by: { $0.key < $1.key }) {
            if case .profile(let path) = c.confinement.seccomp, observation.desiredContext.seccompDigests[path] == nil {
                do {
                    guard let bytes = try Files.read(path, limit: 1 << 22) else {
                        throw SystemError.failure("read seccomp profile", path, "no such file")
                    }
                    _ = try SeccompProfile.parse(bytes, describedAs: path)
                    observation.desiredContext.seccompDigests[path] = SavedPlan.sha256(bytes)
                } catch {
                    observation.state.problems.append("container.\(name): seccomp profile \(path): \(error)")
                }
            }
        }
        let limited = context.manifest.containers.filter { !$0.value.confinement.resources.declared.isEmpty }
        // Running containers with limits: their limit files, read back (the others have none to drift).
        let enforced = records.compactMap { name, record -> (String, ResourceLimits)? in
            let limits = ContainerKind.resourceLimits(record.attributes)
            return processes[name]?.isRunning == true && !limits.declared.isEmpty ? (name, limits) : nil
        }
        // Without limits, declared or enforced, the host's cgroup layout is not read (it is
        // mountinfo, every v1 controller's root and every block device's scheduler).
        guard !limited.isEmpty || !enforced.isEmpty else { return }
        let layout: CgroupLayout
        do {
            layout = try CgroupLayout.host()
        } catch {
            if !limited.isEmpty { observation.state.problems.append("cannot enforce resources: \(error)") }
            return
        }
        if !context.destroying {
            for (name, c) in limited.sorted(by: { $0.key < $1.key }) {
                for refusal in layout.refusals(for: c.confinement.resources) {
                    observation.state.problems.append("container.\(name): \(refusal) on this host; remove the limit or enable the controller")
                }
            }
        }
        for (name, limits) in enforced {
            guard let drift = context.runtime.limitDrift(directory: context.store.containerDirectory(name), expecting: limits,
                                                         layout: layout) else { continue }
            facts.limitDrift[name] = drift.map(\.description)
        }
    }

    func apply(_ change: Plan.ResourceChange, _ context: ApplyContext) async throws {
        let run = Run(context: context)
        switch change.action {
        case .delete:
            try run.remove(change.address.name)
        case .replace:
            try run.remove(change.address.name)
            try run.create(change)
        case .create:
            try run.create(change)
        case .update:
            try run.update(change)
        case .noop:
            break
        }
    }

    /// One change's work, with the context at hand.
    struct Run {
        let context: ApplyContext

        var store: StateStore { context.store }
        var runtime: Runtime { context.runtime }
        var host: NetlinkSession { get throws { try NetlinkSession.host() } }

        func directory(_ name: String) -> String { store.containerDirectory(name) }

        func hostVeth(_ name: String) -> String { LinkNames.hostVeth(installation: context.installation, container: name) }

        /// Stops the process, unplugs, deletes the snapshot, the runtime directory and the record.
        func remove(_ name: String) throws {
            let address = ResourceAddress(.container, name)
            if var record = context.record(address) {
                record.status = .deleting
                try context.save(record)
            }
            // nil: the stop timeout the supervisor was started with (its spec file).
            try runtime.stop(directory: directory(name), timeout: nil)
            Checkpoint.pass("stopped")
            // The pair dies with the netns (in a batch with the others stopped now); a host
            // end left behind (the netns was pinned) is deleted.
            try host.deleteLinkAfterItsNamespace(name: hostVeth(name))
            Checkpoint.pass("host veth deleted")
            if let root = context.poolRoot {
                let images = ImageStore(poolRoot: root)
                if try images.subvolume("containers/\(name)") != nil {
                    try images.deleteSubvolume("containers/\(name)")
                }
                Checkpoint.pass("snapshot deleted")
            }
            try runtime.remove(directory: directory(name))
            Checkpoint.pass("runtime directory removed")
            try store.remove(address)
        }

        /// The planned spec and attributes; when the image's config was not known at plan
        /// time (its registry was not asked or did not answer), completed from the config of
        /// the image as pulled now.
        func planned(_ change: Plan.ResourceChange, root: String) throws -> (ContainerSpec, Attributes)? {
            guard let spec = change.spec(ContainerSpec.self) else { return nil }
            guard spec.awaitingImageConfig != nil else { return (spec, change.after ?? [:]) }
            let resolved = spec.resolved(with: try ImageStore(poolRoot: root).metadata(of: spec.image)?.config)
            if let problem = resolved.problem { throw SystemError.failure("start", "container.\(spec.name)", problem) }
            return (resolved, ContainerKind.attributes(resolved))
        }

        func create(_ change: Plan.ResourceChange) throws {
            guard let root = context.poolRoot, let (spec, attributes) = try planned(change, root: root) else { return }
            let name = spec.name
            let images = ImageStore(poolRoot: root)
            let veth = hostVeth(name)
            var record = Record(change.address, status: .creating, attributes: attributes, protect: spec.protect)
            record.setContainerFacts(hostVeth: veth, snapshot: nil, process: nil, specDigest: nil)
            try context.save(record)
            // Leftovers of an interrupted create: a stale supervisor, link or snapshot.
            try runtime.stop(directory: directory(name))
            _ = try host.deleteLink(name: veth)
            if try images.subvolume("containers/\(name)") != nil { try images.deleteSubvolume("containers/\(name)") }
            if Files.exists(directory(name)) { try runtime.remove(directory: directory(name)) }
            Checkpoint.pass("leftovers of an earlier start cleared")

            let snapshot = try images.snapshot(image: spec.image, container: name)
            Checkpoint.pass("snapshot created")
            try writeNameFiles(spec)
            Checkpoint.pass("name files written")
            context.logger.debug("\(name): snapshot \(snapshot.uuid) of images/\(spec.image)")
            let started = try start(spec, rootfs: "\(root)/containers/\(name)")
            context.logger.debug("\(name): supervisor pid \(started.shimPID), init pid \(started.initPID)")
            record.status = .ready
            record.setContainerFacts(hostVeth: veth, snapshot: snapshot.uuid, process: started, specDigest: specDigest(name))
            record.hostsStamp = try hostsStamp(name)
            try context.save(record)
        }

        /// The digest of the spec the supervisor runs, so a record names exactly what was started.
        func specDigest(_ name: String) -> String? {
            (try? Files.read("\(directory(name))/spec")).flatMap { $0 }.map(SavedPlan.sha256)
        }

        /// /etc/hosts and /etc/resolv.conf in the container's runtime directory, bind-mounted
        /// read-only at start and rewritten in place (same inode) when they change. True when
        /// a file changed.
        @discardableResult
        func writeNameFiles(_ spec: ContainerSpec) throws -> Bool {
            let dir = directory(spec.name)
            try Files.createDirectory(dir, mode: 0o700)
            let hosts = try HostsFile.render(container: spec.name, hostname: spec.hostname, address: spec.network?.address.address,
                                             extras: spec.names.extraHosts, peers: spec.names.members.lines)
            let resolv = try ResolvConf.render(spec.names.resolver, container: spec.name)
            let wroteHosts = try ContainerNameFiles.write(ContainerNameFiles.hostsPath(runtimeDirectory: dir), hosts)
            let wroteResolv = try ContainerNameFiles.write(ContainerNameFiles.resolvConfPath(runtimeDirectory: dir), resolv)
            return wroteHosts || wroteResolv
        }

        /// The stamp of the /etc/hosts just written, for the record: the next plan reads the
        /// file back only when it changed.
        func hostsStamp(_ name: String) throws -> String? {
            try ContainerNameFiles.stamp(ContainerNameFiles.hostsPath(runtimeDirectory: directory(name)))
        }

        /// The runtime's view of a planned container: its spec, rooted at its snapshot, with
        /// its name files mounted.
        func config(_ spec: ContainerSpec, rootfs: String) throws -> ContainerConfig {
            var config = try ContainerConfig(spec, rootfs: rootfs, installation: context.installation)
            config.mounts = ContainerNameFiles.mounts(runtimeDirectory: directory(spec.name))
                .filter { file in !spec.mounts.contains { $0.target == file.target } } + config.mounts
            return config
        }

        /// Starts the supervisor and command; the network is plugged in the sync window,
        /// before the command runs. Until the command starts, a crash takes the supervisor,
        /// its namespaces and the veth pair born in them along (the supervisor reads EOF).
        func start(_ spec: ContainerSpec, rootfs: String) throws -> ProcessObservation {
            let started = try runtime.start(try config(spec, rootfs: rootfs), directory: directory(spec.name)) { starting in
                Checkpoint.pass("supervisor started")
                guard let plug = plug(for: spec, netnsPath: starting.netnsPath) else { return }
                // Passes a checkpoint after each step.
                try host.plug(plug)
                context.logger.debug("\(spec.name): \(plug.hostName) on \(plug.bridge), \(plug.interface) \(plug.address) via \(plug.gateway)")
            }
            Checkpoint.pass("command started")
            return started
        }

        func plug(for spec: ContainerSpec, netnsPath: String) -> ContainerPlug? {
            guard let n = spec.network else { return nil }
            return ContainerPlug(netnsPath: netnsPath, hostName: hostVeth(spec.name), bridge: n.bridge,
                                 interface: n.interface, address: n.address, gateway: n.gateway, mtu: n.mtu,
                                 alias: LinkOwner(installation: context.installation, role: .container, name: spec.name).description)
        }

        /// A restart (stop, start on the same snapshot) or a change in place (limits,
        /// settings, name files, hostname, network). The record says `updating` first, with
        /// the attributes from before: an interrupted update shows in the next plan and is
        /// done again in full.
        func update(_ change: Plan.ResourceChange) throws {
            guard var record = context.record(change.address), let root = context.poolRoot,
                  let (spec, attributes) = try planned(change, root: root) else { return }
            let name = spec.name
            let rootfs = "\(root)/containers/\(name)"
            record.status = .updating
            // The range the new process gets is this container's from now on, before it starts.
            record.startingUserNamespace = change.after.flatMap(ContainerKind.userNamespace)
            try context.save(record)
            let unfinished = change.conditions(ContainerCondition.self).contains(.updateUnfinished)
            var process = context.observation.facts[ContainerFacts.self]?.processes[name] ?? runtime.observe(directory: directory(name))
            if record.stoppedOnPurpose && !process.isRunning {
                // `tupp stop` under unless-stopped: the changes wait in the spec for `tupp start`.
                try writeNameFiles(spec)
                try runtime.updateSettings(config(spec, rootfs: rootfs), directory: directory(name))
                Checkpoint.pass("settings of the stopped \(name) rewritten")
            } else if change.effect == .restart {
                try runtime.stop(directory: directory(name), timeout: spec.stopTimeout)
                Checkpoint.pass("stopped for the restart")
                try host.deleteLinkAfterItsNamespace(name: hostVeth(name))
                Checkpoint.pass("host veth deleted")
                try writeNameFiles(spec)
                Checkpoint.pass("name files written")
                process = try start(spec, rootfs: rootfs)
            } else {
                let config = try config(spec, rootfs: rootfs)
                if change.changes(ContainerAttribute.resources) || change.conditions(ContainerCondition.self).contains(where: {
                    if case .limitChanged = $0 { true } else { false }
                }) {
                    let update = try runtime.updateResources(config, directory: directory(name))
                    Checkpoint.pass("limits written")
                    guard update.refused.isEmpty else {
                        throw SystemError.failure("change the limits of", "container \(name)",
                                                  update.refused.map(\.description).joined(separator: "; ") + " — not forced; free the memory or stop the container first")
                    }
                }
                try runtime.updateSettings(config, directory: directory(name))
                Checkpoint.pass("settings rewritten")
                if change.changes(ContainerAttribute.dns) || change.changes(ContainerAttribute.hosts) || change.changes(ContainerAttribute.peers)
                    || unfinished {
                    try writeNameFiles(spec)
                    Checkpoint.pass("name files rewritten")
                }
                if let hostname = spec.hostname, change.changes(ContainerAttribute.hostname) || unfinished, process.isRunning {
                    try runtime.setHostname(hostname, for: process)
                }
                Checkpoint.pass("hostname set")
                let replug = change.changes(ContainerAttribute.network)
                    || change.conditions(ContainerCondition.self).contains(where: \.needsReplug)
                    || change.reasons.contains { $0.dependency?.kind == .network }
                if replug && process.isSupervised {
                    // Passes a checkpoint after each repair.
                    if let plug = plug(for: spec, netnsPath: "/proc/\(process.shimPID)/ns/net") {
                        let repairs = try host.ensurePlugged(plug)
                        context.logger.debug("\(name): network \(repairs.isEmpty ? "already as declared" : repairs.map(\.description).joined(separator: ", "))")
                    } else {
                        _ = try host.deleteLink(name: hostVeth(name))
                        Checkpoint.pass("host veth deleted")
                    }
                }
            }
            record.attributes = attributes
            record.status = .ready
            record.protect = spec.protect
            record.setContainerFacts(hostVeth: hostVeth(name), snapshot: record.containerSnapshotUUID, process: process,
                                     specDigest: specDigest(name))
            record.hostsStamp = try hostsStamp(name)
            try context.save(record)
        }
    }
}
