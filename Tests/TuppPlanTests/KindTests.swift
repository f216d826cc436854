import Testing
import TuppFacts
import TuppManifest
import TuppPlan

// Each kind's interpretation with plain values: what the host shows → drift, conditions
// and their effects, foreign objects, problems. No root, no I/O.

private let installation = "inst01"

private func pool(mounted: Bool = true, fileSize: UInt64? = 1 << 30, filesystem: UInt64? = 1 << 30, backed: Bool = true,
                  mode: UInt32 = 0o700, onBtrfs: Bool = true) -> PoolObservation {
    PoolObservation(rootExists: true, rootMode: mode, onBtrfs: onBtrfs, mounted: mounted, mountSource: mounted ? "/dev/loop7" : nil,
                    loopDevice: mounted ? "/dev/loop7" : nil, backingFile: mounted ? (backed ? "/pool.img" : "/other.img") : nil,
                    fileExists: fileSize != nil, fileSize: fileSize, filesystemSize: mounted ? filesystem : nil,
                    backedByDevice: mounted && backed)
}

private func subvolume(_ path: String, uuid: String, parent: String? = nil, readOnly: Bool = true) -> SubvolumeInfo {
    SubvolumeInfo(path: path, id: 256, uuid: uuid, parentUUID: parent, readOnly: readOnly, generation: 7, createdAt: 0)
}

private func conditions<C: ResourceCondition>(_ kind: KindObservation, _ address: ResourceAddress, _ type: C.Type) -> [C] {
    kind[address]?.conditions.compactMap { $0 as? C } ?? []
}

@Suite struct PoolKindTests {
    let storage = Storage(root: "/pool", device: .init(file: "/pool.img", size: 1 << 30))

    @Test func aMountedPoolAsDeclaredHasNothingToDo() {
        let o = PoolKind.interpret(PoolFacts(storage: storage, observation: pool()))
        #expect(o.problems.isEmpty && o.drift.isEmpty)
        #expect(o[PoolKind.address]?.attributes == PoolKind.attributes(storage))
        #expect(o[PoolKind.address]?.conditions.isEmpty == true)
    }

    @Test func anAbsentFileMeansCreate() {
        let o = PoolKind.interpret(PoolFacts(storage: storage, observation: pool(mounted: false, fileSize: nil)))
        #expect(o.resources.isEmpty)
    }

    @Test func aDestroyInterruptedAfterTheFileWentIsFinished() {
        let record = Record(PoolKind.address, status: .deleting, attributes: PoolKind.attributes(storage))
        let gone = pool(mounted: false, fileSize: nil)
        #expect(PoolKind.interpret(PoolFacts(storage: storage, observation: gone), record: record, destroying: true)[PoolKind.address] != nil)
        #expect(PoolKind.interpret(PoolFacts(storage: storage, observation: gone), record: record)[PoolKind.address] == nil,
                "apply creates it again")
    }

    @Test func unmountedShrunkAndOpenPoolsAreRepairedInPlace() {
        let o = PoolKind.interpret(PoolFacts(storage: storage, observation: pool(mounted: false)))
        #expect(conditions(o, PoolKind.address, PoolCondition.self) == [.notMounted(file: "/pool.img", root: "/pool")])
        let short = PoolKind.interpret(PoolFacts(storage: storage, observation: pool(filesystem: 1 << 29)))
        #expect(conditions(short, PoolKind.address, PoolCondition.self) == [.filesystemSmallerThanFile(filesystem: 1 << 29, file: 1 << 30)])
        let open = PoolKind.interpret(PoolFacts(storage: storage, observation: pool(mode: 0o755)))
        #expect(conditions(open, PoolKind.address, PoolCondition.self) == [.rootMode(root: "/pool", mode: 0o755)])
        #expect([o, short, open].allSatisfy { $0[PoolKind.address]!.conditions.allSatisfy { $0.effect == .inPlace } })
    }

    @Test func aPoolMountedFromAnotherFileIsAProblem() {
        let o = PoolKind.interpret(PoolFacts(storage: storage, observation: pool(backed: false)))
        #expect(o.problems.count == 1 && o.problems[0].contains("is mounted from /other.img, not /pool.img"))
    }

    @Test func aDirectoryNotOnBtrfsIsAProblem() {
        let plain = Storage(root: "/pool")
        let o = PoolKind.interpret(PoolFacts(storage: plain, observation: pool(onBtrfs: false)))
        #expect(o.problems.first?.contains("is not on btrfs") == true)
    }

    @Test func growthIsNeededWhenTheFileOrFilesystemIsShort() {
        #expect(!PoolKind.needsGrow(storage, pool()))
        #expect(PoolKind.needsGrow(Storage(root: "/pool", device: .init(file: "/pool.img", size: 2 << 30)), pool()))
        #expect(PoolKind.needsGrow(storage, pool(filesystem: (1 << 30) - PoolKind.growSlack - 1)))
        #expect(!PoolKind.needsGrow(storage, pool(filesystem: (1 << 30) - PoolKind.growSlack)))
    }
}

@Suite struct ImageKindTests {
    let box = Image(name: "box", source: .busybox(path: "/bin/busybox"))
    let address = ResourceAddress(.image, "box")

    func record(uuid: String = "u1", status: Record.Status = .ready) -> Record {
        var r = Record(address, status: status, attributes: [ImageAttribute.source: .string(box.source.description)])
        r.imageSubvolumeUUID = uuid
        return r
    }

    func contents(_ images: [String: SubvolumeInfo] = [:], leftovers: [SubvolumeInfo] = []) -> PoolContents {
        var c = PoolContents()
        c.images = images
        c.leftovers = leftovers
        return c
    }

    @Test func theImportedSubvolumeIsTheRecordedOne() {
        let o = ImageKind.interpret(declared: ["box": box], records: ["box": record()],
                                    facts: ImageFacts(contents: contents(["box": subvolume("images/box", uuid: "u1")])))
        #expect(o[address]?.attributes == record().attributes && o[address]?.conditions.isEmpty == true && o.drift.isEmpty)
        #expect(o.fingerprints[address] == "subvolume u1 generation 7")
    }

    @Test func aSwappedOrWritableSubvolumeIsDriftAndReplaced() {
        let swapped = ImageKind.interpret(declared: ["box": box], records: ["box": record()],
                                          facts: ImageFacts(contents: contents(["box": subvolume("images/box", uuid: "u2", readOnly: false)])))
        #expect(conditions(swapped, address, ImageCondition.self) == [.notTheImportedSubvolume(name: "box"), .writable(name: "box")])
        #expect(swapped[address]!.drift.map(\.message) == ["images/box was replaced outside tupp (subvolume u1 → u2)", "images/box was made writable"])
        #expect(swapped[address]!.conditions.allSatisfy { $0.effect == .replace })
    }

    @Test func anUnfinishedImportIsReplaced() {
        let o = ImageKind.interpret(declared: ["box": box], records: ["box": record(status: .creating)],
                                    facts: ImageFacts(contents: contents(["box": subvolume("images/box", uuid: "u1")])))
        #expect(conditions(o, address, ImageCondition.self) == [.importUnfinished])
    }

    @Test func anInterruptedChangeInPlaceKeepsTheImage() {
        // Only `protect` and leftover cleanup change in place: the subvolume is the imported one.
        let mounted = ImageKind.interpret(declared: ["box": box], records: ["box": record(status: .updating)],
                                          facts: ImageFacts(contents: contents(["box": subvolume("images/box", uuid: "u1")])))
        #expect(conditions(mounted, address, ImageCondition.self).isEmpty)
        let unmounted = ImageKind.interpret(declared: ["box": box], records: ["box": record(status: .updating)], facts: ImageFacts(contents: nil))
        #expect(unmounted[address]?.attributes == record().attributes)
    }

    @Test func aDeletedImageIsDriftAndCreatedAgain() {
        let o = ImageKind.interpret(declared: ["box": box], records: ["box": record()], facts: ImageFacts(contents: contents()))
        #expect(o.resources.isEmpty)
        #expect(o.drift.map(\.message) == ["images/box was deleted outside tupp"])
    }

    @Test func leftoversOfAnImportAreCleanedInPlaceOrWithTheRemoval() {
        let leftover = subvolume("images/.import-box-ab12", uuid: "x")
        let declared = ImageKind.interpret(declared: ["box": box], records: ["box": record()],
                                           facts: ImageFacts(contents: contents(["box": subvolume("images/box", uuid: "u1")], leftovers: [leftover])))
        #expect(conditions(declared, address, ImageCondition.self) == [.leftoverImport(subvolume: ".import-box-ab12")])
        #expect(declared[address]!.conditions.allSatisfy { $0.effect == .inPlace })
        let orphan = ImageKind.interpret(declared: [:], records: [:], facts: ImageFacts(contents: contents(leftovers: [leftover])))
        #expect(orphan[address] != nil, "an undeclared leftover is shown so the plan removes it")
    }

    @Test func aSubvolumeWithoutRecordIsForeign() {
        let o = ImageKind.interpret(declared: ["box": box], records: [:],
                                    facts: ImageFacts(contents: contents(["box": subvolume("images/box", uuid: "u9")])))
        #expect(o[address]?.owned == false)
    }

    @Test func withoutAMountedPoolTheRecordsAreAllThereIs() {
        let o = ImageKind.interpret(declared: ["box": box], records: ["box": record()], facts: ImageFacts(contents: nil))
        #expect(o[address]?.attributes == record().attributes && o[address]?.conditions.isEmpty == true)
    }

    @Test func aRemovalInterruptedAfterTheDeleteIsFinishedByDestroy() {
        let o = ImageKind.interpret(declared: ["box": box], records: ["box": record(status: .deleting)],
                                    facts: ImageFacts(contents: contents()), destroying: true)
        #expect(o[address] != nil)
        #expect(ImageKind.interpret(declared: ["box": box], records: ["box": record(status: .deleting)],
                                    facts: ImageFacts(contents: contents()))[address] == nil, "apply creates it again")
    }

    @Test func anUnreadableSourceIsAProblem() {
        let o = ImageKind.interpret(declared: ["box": box], records: [:], facts: ImageFacts(contents: contents(), sourceErrors: ["box": "ENOENT"]))
        #expect(o.problems == ["image.box: cannot read its source busybox: /bin/busybox: ENOENT"])
    }
}

@Suite struct NetworkKindTests {
    let net = Network(name: "br0", bridge: "tupp0", subnet: IPv4Network("10.9.0.0/24")!)
    let address = ResourceAddress(.network, "br0")
    var owner: String { LinkOwner(installation: installation, role: .network, name: "br0").alias }

    func host(alias: String?, up: Bool = true, kind: String = "bridge", address: String? = "10.9.0.1/24",
              routes: [RouteInfo] = []) -> NetworkSnapshot {
        NetworkSnapshot(links: [LinkInfo(index: 5, name: "tupp0", kind: kind, isUp: up, alias: alias)],
                        addresses: address.map { [AddressInfo(linkIndex: 5, interface: IPv4Interface($0)!)] } ?? [],
                        routes: routes)
    }

    func record(gateway: String = "10.9.0.1") -> Record {
        var attributes = NetworkKind.attributes(net)
        attributes[NetworkAttribute.gateway] = .string(gateway)
        var r = Record(address, status: .ready, attributes: attributes)
        r.bridgeName = "tupp0"
        return r
    }

    @Test func aMarkedBridgeAsDeclaredHasNothingToDo() {
        let o = NetworkKind.interpret(declared: ["br0": net], records: ["br0": record()], facts: NetworkFacts(host: host(alias: owner)),
                                      installation: installation)
        #expect(o[address]?.attributes == NetworkKind.attributes(net))
        #expect(o[address]?.conditions.isEmpty == true && o.problems.isEmpty && o.drift.isEmpty)
    }

    @Test func aChangedAddressIsDriftRepairedInPlace() {
        let o = NetworkKind.interpret(declared: ["br0": net], records: ["br0": record()],
                                      facts: NetworkFacts(host: host(alias: owner, address: "10.9.0.9/24")), installation: installation)
        #expect(o[address]?.drift.first?.path == NetworkAttribute.gateway)
        let plan = Planner.plan(desired: [NetworkKind.desired(net)], observed: ObservedState(o.resources))
        #expect(plan.actionable.first?.action == .update && plan.actionable.first?.effect == .inPlace)
    }

    @Test func aDownOrUnmarkedBridgeIsRepairedInPlace() {
        let o = NetworkKind.interpret(declared: ["br0": net], records: ["br0": record()],
                                      facts: NetworkFacts(host: host(alias: "hand-made", up: false)), installation: installation)
        #expect(conditions(o, address, NetworkCondition.self) == [.bridgeDown("tupp0"), .ownershipMarkLost("tupp0")])
    }

    @Test func aForeignBridgeWithTheAddressIsUsedNeverChanged() {
        let o = NetworkKind.interpret(declared: ["br0": net], records: [:], facts: NetworkFacts(host: host(alias: nil)),
                                      installation: installation)
        #expect(o[address]?.external == true)
        #expect(o[address]?.attributes == NetworkKind.attributes(net))
        let other = NetworkKind.interpret(declared: ["br0": net], records: [:], facts: NetworkFacts(host: host(alias: nil, address: "192.0.2.1/24")),
                                          installation: installation)
        #expect(other.resources.isEmpty)
        #expect(other.problems.first?.contains("exists, was not created by tupp and has 192.0.2.1/24") == true)
    }

    @Test func aDeletedBridgeIsDriftAndCreatedAgain() {
        let o = NetworkKind.interpret(declared: ["br0": net], records: ["br0": record()], facts: NetworkFacts(host: NetworkSnapshot()),
                                      installation: installation)
        #expect(o.resources.isEmpty && o.drift.map(\.message) == ["bridge tupp0 was deleted outside tupp"])
    }

    @Test func aMarkedBridgeWithoutRecordIsAnOrphan() {
        let o = NetworkKind.interpret(declared: [:], records: [:], facts: NetworkFacts(host: host(alias: owner)), installation: installation)
        #expect(o[address]?.owned == true)
    }

    @Test func anotherInstallationsBridgeIsNotOurs() {
        let theirs = LinkOwner(installation: "other", role: .network, name: "br0").alias
        let o = NetworkKind.interpret(declared: [:], records: [:], facts: NetworkFacts(host: host(alias: theirs)), installation: installation)
        #expect(o.resources.isEmpty)
    }

    @Test func aSubnetOverlappingAHostRouteIsRefusedUnlessDestroying() {
        let uplink = RouteInfo(destination: IPv4Network("10.9.0.0/16")!, linkIndex: 2)
        let snapshot = NetworkSnapshot(links: [LinkInfo(index: 2, name: "eth0")], routes: [uplink])
        let o = NetworkKind.interpret(declared: ["br0": net], records: [:], facts: NetworkFacts(host: snapshot), installation: installation)
        #expect(o.problems.first?.contains("overlaps the host route 10.9.0.0/16 dev eth0") == true)
        #expect(NetworkKind.interpret(declared: ["br0": net], records: [:], facts: NetworkFacts(host: snapshot), installation: installation,
                                      destroying: true).problems.isEmpty)
    }

    @Test func natIsReadFromTheMasqueradedSubnets() {
        var nat = net
        nat.nat = true
        let on = NetworkKind.interpret(declared: ["br0": nat], records: ["br0": record()],
                                       facts: NetworkFacts(host: host(alias: owner), natSubnets: [net.subnet]), installation: installation)
        #expect(on[address]?.attributes[NetworkAttribute.nat] == .bool(true))
        let off = NetworkKind.interpret(declared: ["br0": nat], records: ["br0": record()],
                                        facts: NetworkFacts(host: host(alias: owner), natSubnets: []), installation: installation)
        #expect(off[address]?.attributes[NetworkAttribute.nat] == .bool(false))
        #expect(NetworkKind.usesNAT(declared: ["br0": nat], records: [:]))
        #expect(!NetworkKind.usesNAT(declared: ["br0": net], records: [:]))
    }

    @Test func unreadableHostIsAProblem() {
        let o = NetworkKind.interpret(declared: ["br0": net], records: [:], facts: NetworkFacts(host: nil, hostError: "EPERM"),
                                      installation: installation)
        #expect(o.problems == ["cannot read the host's links and routes: EPERM"])
    }
}

@Suite struct ContainerKindTests {
    let net = Network(name: "br0", bridge: "tupp0", subnet: IPv4Network("10.9.0.0/24")!)
    let container = Container(name: "web", image: "box", network: .init(attach: "br0", address: IPv4Interface("10.9.0.10/24")),
                              command: ["sleep", "1"])
    let address = ResourceAddress(.container, "web")
    var veth: String { LinkNames.hostVeth(installation: installation, container: "web") }

    var spec: ContainerSpec { ContainerSpec(container, network: net, address: nil) }

    func record(status: Record.Status = .ready) -> Record {
        Record(address, status: status, attributes: ContainerKind.attributes(spec))
    }

    func running(pid: Int32 = 100, state: ContainerState = .running, restarts: Int = 0) -> ProcessObservation {
        ProcessObservation(state: state, shimPID: 99, shimStartTime: 1, initPID: state == .running ? pid : 0, initStartTime: 2,
                           restarts: restarts, startedAt: nil, lastExit: nil, error: nil, namespaces: [:])
    }

    func facts(process: ProcessObservation? = nil, snapshotParent: String = "img-uuid", imageUUID: String = "img-uuid",
               vethUp: Bool = true, veth: Bool = true, inside: String? = "10.9.0.10/24", eth0Up: Bool = true,
               hostname: String? = "web") -> ContainerFacts {
        var contents = PoolContents()
        contents.images["box"] = subvolume("images/box", uuid: imageUUID)
        contents.containers["web"] = subvolume("containers/web", uuid: "snap", parent: snapshotParent, readOnly: false)
        let bridge = LinkInfo(index: 5, name: "tupp0", kind: "bridge", isUp: true)
        var links = [bridge]
        if veth {
            links.append(LinkInfo(index: 9, name: self.veth, kind: "veth", masterIndex: 5, isUp: vethUp,
                                  alias: LinkOwner(installation: installation, role: .container, name: "web").alias))
        }
        let insideSnapshot = NetworkSnapshot(
            links: [LinkInfo(index: 2, name: "eth0", kind: "veth", isUp: eth0Up)],
            addresses: inside.map { [AddressInfo(linkIndex: 2, interface: IPv4Interface($0)!)] } ?? [],
            routes: [RouteInfo(destination: IPv4Network("0.0.0.0/0")!, gateway: net.gateway, linkIndex: 2)])
        let hosts = try! HostsFile.render(container: "web", hostname: "web", address: spec.network?.address.address)
        let resolv = try! ResolvConf.render(spec.names.resolver, container: "web")
        return ContainerFacts(contents: contents, host: NetworkSnapshot(links: links), processes: ["web": process ?? running()],
                              namespaces: ["web": insideSnapshot], hostnames: hostname.map { ["web": $0] } ?? [:],
                              hostsFiles: ["web": hosts], resolvFiles: ["web": resolv])
    }

    func interpret(_ facts: ContainerFacts, record: Record? = nil, images: ObservedState = ObservedState()) -> KindObservation {
        ContainerKind.interpret(declared: ["web"], records: ["web": record ?? self.record()], facts: facts, images: images,
                                installation: installation)
    }

    /// The plan for this one container against what `o` shows.
    func plan(_ o: KindObservation) -> Plan.ResourceChange? {
        Planner.plan(desired: [ContainerKind.desired(container, network: net, address: nil)], observed: ObservedState(o.resources)).actionable.first
    }

    @Test func aRunningContainerAsRecordedHasNothingToDo() {
        let o = interpret(facts())
        #expect(o.drift.isEmpty && o[address]?.drift.isEmpty == true && o[address]?.conditions.isEmpty == true)
        #expect(plan(o) == nil)
    }

    @Test func aRestartByItsOwnSupervisorIsNotDrift() {
        // The record was written when tupp started pid 100; the supervisor restarted it since.
        var started = record()
        started.setContainerFacts(hostVeth: veth, snapshot: "snap", process: running(pid: 100), specDigest: nil)
        let o = interpret(facts(process: running(pid: 4242, restarts: 3)), record: started)
        #expect(o[address]?.drift.isEmpty == true)
        #expect(plan(o) == nil)
    }

    @Test func aChangedHostnameIsDriftRepairedInPlace() {
        let o = interpret(facts(hostname: "hacked"))
        #expect(o[address]?.drift.first?.path == ContainerAttribute.hostname)
        let change = plan(o)
        #expect(change?.action == .update && change?.effect == .inPlace && change?.changes(ContainerAttribute.hostname) == true)
    }

    @Test func aChangedAddressInsideIsDriftRepairedInPlace() {
        let o = interpret(facts(inside: "10.9.0.99/24"))
        #expect(o[address]?.drift.first?.message == "address inside changed outside tupp (\"10.9.0.10/24\" → \"10.9.0.99/24\")")
        let change = plan(o)
        #expect(change?.action == .update && change?.effect == .inPlace && change?.changes(ContainerAttribute.networkAddress) == true)
    }

    @Test func aMissingOrDownVethIsReplugged() {
        let missing = interpret(facts(veth: false))
        #expect(conditions(missing, address, ContainerCondition.self) == [.hostVethMissing(veth)])
        #expect(missing[address]?.drift.first?.message == "host veth \(veth) was deleted outside tupp")
        let down = interpret(facts(vethUp: false, eth0Up: false))
        #expect(conditions(down, address, ContainerCondition.self) == [.hostVethDown(veth), .interfaceDown("eth0")])
        for o in [missing, down] {
            let change = plan(o)
            #expect(change?.action == .update && change?.effect == .inPlace)
            #expect(change?.conditions(ContainerCondition.self).allSatisfy(\.needsReplug) == true)
        }
    }

    @Test func aStoppedProcessIsRestarted() {
        var exited = running(state: .exited)
        exited.lastExit = ExitRecord(status: .signal(9), at: 0)
        let o = interpret(facts(process: exited))
        #expect(conditions(o, address, ContainerCondition.self) == [.notRunning(why: "process not running (killed by signal 9)")])
        #expect(plan(o)?.action == .update && plan(o)?.effect == .restart)
        let died = interpret(facts(process: running(state: .supervisorDied)))
        #expect(conditions(died, address, ContainerCondition.self) == [.notRunning(why: "process not running (its supervisor died)")])
        #expect(conditions(interpret(facts(process: running(state: .stopping))), address, ContainerCondition.self) == [.stopping])
    }

    @Test func aSnapshotOfAnOlderImageOrNoSnapshotIsReplaced() {
        let older = interpret(facts(snapshotParent: "old-uuid"))
        #expect(conditions(older, address, ContainerCondition.self) == [.snapshotOfOlderImage(image: "box")])
        #expect(plan(older)?.action == .replace)
        #expect(plan(older)?.notes.contains { $0.contains("containers/web is discarded") } == true)
        // Not flagged twice when the image itself is being replaced.
        let replacing = ObservedState([ObservedResource(ResourceAddress(.image, "box"), conditions: [ImageCondition.writable(name: "box")])])
        #expect(conditions(interpret(facts(snapshotParent: "old-uuid"), images: replacing), address, ContainerCondition.self).isEmpty)

        var noSnapshot = facts()
        noSnapshot.contents?.containers = [:]
        let gone = interpret(noSnapshot)
        #expect(conditions(gone, address, ContainerCondition.self) == [.snapshotMissing(container: "web")])
        #expect(gone[address]?.drift.first?.message == "its snapshot containers/web was deleted outside tupp")
    }

    @Test func anUnfinishedCreateIsReplaced() {
        let o = interpret(facts(), record: record(status: .creating))
        #expect(conditions(o, address, ContainerCondition.self).first == .createUnfinished)
        #expect(plan(o)?.action == .replace)
    }

    @Test func anInterruptedUpdateIsDoneAgainInPlace() {
        // The record keeps the attributes from before the change: with the manifest unchanged
        // since, only the condition says that the host may be half-way.
        let o = interpret(facts(), record: record(status: .updating))
        #expect(conditions(o, address, ContainerCondition.self) == [.updateUnfinished])
        let change = plan(o)
        #expect(change?.action == .update && change?.effect == .inPlace)
        #expect(change?.conditions(ContainerCondition.self).allSatisfy(\.needsReplug) == true)
        // Interrupted between stopping and starting: restarted, on the same snapshot.
        var stopped = running(state: .stopped)
        stopped.lastExit = ExitRecord(status: .signal(15), at: 0)
        let restart = plan(interpret(facts(process: stopped), record: record(status: .updating)))
        #expect(restart?.action == .update && restart?.effect == .restart)
    }

    @Test func leftoversWithoutRecordAreRemoved() {
        let undeclared = ContainerKind.interpret(declared: [], records: [:], facts: facts(), images: ObservedState(), installation: installation)
        #expect(undeclared[address]?.owned == false, "a snapshot without record is foreign")
        var noSnapshot = facts()
        noSnapshot.contents?.containers = [:]
        let leftovers = ContainerKind.interpret(declared: [], records: [:], facts: noSnapshot, images: ObservedState(), installation: installation)
        #expect(conditions(leftovers, address, ContainerCondition.self) == [.leftovers])
        let declared = ContainerKind.interpret(declared: ["web"], records: [:], facts: noSnapshot, images: ObservedState(), installation: installation)
        #expect(declared.resources.isEmpty && declared.drift.count == 1, "cleared before it is created")
    }

    @Test func changesAreJudgedByTheSchema() {
        #expect(ContainerAttribute.schema.effect(of: ContainerAttribute.image) == .replace)
        #expect(ContainerAttribute.schema.effect(of: ContainerAttribute.namespaces) == .replace)
        #expect(ContainerAttribute.schema.effect(of: ContainerAttribute.env.child("TERM")) == .restart)
        #expect(ContainerAttribute.schema.effect(of: ContainerAttribute.command) == .restart)
        #expect(ContainerAttribute.schema.effect(of: ContainerAttribute.networkAddress) == .inPlace)
        #expect(ContainerAttribute.schema.effect(of: ContainerAttribute.stopTimeout) == .inPlace)
        #expect(ContainerAttribute.schema.effect(of: AttributePath("unknown")) == .replace)
        #expect(ContainerAttribute.schema.isOptional(ContainerAttribute.env.child("X")))
        #expect(!ContainerAttribute.schema.isOptional(ContainerAttribute.image))
    }

    @Test func theSpecCarriesEveryDefault() {
        let s = spec
        #expect(s.hostname == "web")
        #expect(s.capabilities == Capability.defaults.sorted())
        #expect(s.stopTimeout == 10)
        #expect(s.network?.gateway == net.gateway && s.network?.bridge == "tupp0" && s.network?.interface == "eth0")
        var shared = container
        shared.namespaces = [.mount, .pid]
        #expect(ContainerSpec(shared, network: net, address: nil).hostname == nil)
    }
}

@Suite struct PortsKindTests {
    let web = PublishedContainer(name: "web", address: IPv4Address("10.9.0.10")!, bridge: "tupp0",
                                 subnet: IPv4Network("10.9.0.0/24")!, ports: [try! PortPublication.parse("8080:80")])

    /// The table as the kernel would list it when it holds `rules` exactly.
    func table(_ rules: [PortRule], localnet: [String: Bool] = [:]) -> PortRuleFacts {
        PortRuleFacts(tableExists: true, rules: rules.enumerated().map { ObservedPortRule(handle: $0.offset + 1, chain: $0.element.chain, rule: $0.element) },
                      routeLocalnet: localnet, forwarding: true)
    }

    var desired: PortRuleSet { PortRuleSet.desired([web]) }

    @Test func aTableAsDeclaredHasNothingToDo() {
        let o = PortsKind.interpret(desired: desired, facts: PortsFacts(table: table(desired.rules, localnet: ["tupp0": true])), record: nil)
        let d = PortsKind.desired([web])!
        #expect(o[PortsKind.address]?.attributes == d.attributes)
        #expect(o[PortsKind.address]?.conditions.isEmpty == true)
        #expect(Planner.plan(desired: [d], observed: ObservedState(o.resources)).actionable.isEmpty)
    }

    @Test func aDeletedRuleIsDriftRepairedInPlace() {
        var record = Record(PortsKind.address, status: .ready, attributes: PortsKind.desired([web])!.attributes)
        record.status = .ready
        // Both DNAT rules gone: the publication's attribute disappears, and it was recorded.
        let kept = desired.rules.filter { if case .forward = $0 { false } else { true } }
        let o = PortsKind.interpret(desired: desired, facts: PortsFacts(table: table(kept)), record: record)
        #expect(o[PortsKind.address]?.drift.first?.message.contains("were deleted outside tupp") == true)
        let change = Planner.plan(desired: [PortsKind.desired([web])!], observed: ObservedState(o.resources)).actionable.first
        #expect(change?.action == .update && change?.effect == .inPlace)
        // Only the prerouting rule gone: a condition (the output rule still shows the publication).
        let noPrerouting = desired.rules.filter { if case .forward(let f) = $0 { f.chain == .output } else { true } }
        let partial = PortsKind.interpret(desired: desired, facts: PortsFacts(table: table(noPrerouting)), record: record)
        #expect(partial[PortsKind.address]?.conditions.contains { $0.description.hasPrefix("port table: + prerouting:") } == true)
    }

    @Test func aForeignRuleInTheTableIsRemoved() {
        var observed = table(desired.rules)
        observed.rules.append(ObservedPortRule(handle: 99, chain: "prerouting", rule: nil))
        let o = PortsKind.interpret(desired: desired, facts: PortsFacts(table: observed), record: nil)
        #expect(o[PortsKind.address]?.conditions.contains { $0.description.contains("a rule tupp did not write") } == true)
    }

    @Test func conflictsAndUnreadableTablesAreProblems() {
        let o = PortsKind.interpret(desired: desired, facts: PortsFacts(table: PortRuleFacts(tableExists: false), conflicts: ["port taken"]),
                                    record: nil)
        #expect(o.problems == ["port taken"])
        let broken = PortsKind.interpret(desired: desired, facts: PortsFacts(table: nil, error: "EPERM"), record: nil)
        #expect(broken.problems.first?.contains("cannot read the nftables port table: EPERM") == true)
    }

    @Test func keptContainersPublicationsCount() {
        var m = Manifest()
        m.networks["n"] = Network(name: "n", bridge: "b0", subnet: IPv4Network("10.9.0.0/24")!)
        let kept = KeptContainer(name: "other", network: "n", address: IPv4Interface("10.9.0.7/24")!, bridge: "b0",
                                 ports: [try! PortPublication.parse("9090:90")])
        let published = PortsKind.published(m, addresses: [:], kept: [kept])
        #expect(published.map(\.name) == ["other"])
        #expect(PortsKind.desired(published)?.attributes[PortsAttribute.key(protocol: .tcp, address: nil, ports: PortRange(9090))] == .string("other:90"))
        #expect(PortsKind.desired(PortsKind.published(m, addresses: [:], kept: [])) == nil, "nothing published: no table")
    }
}

@Suite struct ContainerNameFilesTests {
    @Test func namesFilesAreReadBackAndRepaired() {
        var hosts = HostsFile.parse(try! HostsFile.render(container: "a", hostname: nil, address: nil,
                                                         extras: ["x.internal": IPv4Address("192.0.2.1")!],
                                                         peers: ["b": IPv4Address("10.0.0.2")!]))
        #expect(hosts?.extras == ["192.0.2.1\tx.internal"] && hosts?.peers == ["10.0.0.2\tb"])
        hosts = HostsFile.parse("127.0.0.1 localhost\n")
        #expect(hosts == nil, "a file tupp did not write is not read as one")
        #expect(HostsFile.display(["10.0.0.2\tb"]) == ["b 10.0.0.2"])
        #expect(HostsFile.lines(fromDisplay: ["b 10.0.0.2"]) == ["10.0.0.2\tb"])
    }

    @Test func aLargeNetworkIsSummarizedByCountAndDigest() {
        var members = NetworkMembers()
        for n in 0..<20 { members.insert("c\(n)", IPv4Address(0x0a09_0000 | UInt32(n + 2))) }
        guard case .string(let text) = members.summary(except: "c0") else { Issue.record("not summarized"); return }
        #expect(text.hasPrefix("19 containers ("))
        var moved = members
        moved.insert("c5", IPv4Address("10.9.9.9")!)
        #expect(moved.summary(except: "c0") != members.summary(except: "c0"), "a readdressed peer changes the digest")
        #expect(members.summary(except: "c0") != members.summary(except: "c1"), "each sees the others")
        #expect(NetworkMembers(members.addresses) == members)
    }

    @Test func peersFollowEveryContainerOfTheNetworkAcrossProjects() {
        var m = Manifest()
        m.networks["n"] = Network(name: "n", bridge: "b0", subnet: IPv4Network("10.9.0.0/24")!)
        m.containers["a"] = Container(name: "a", image: "i", network: .init(attach: "n", address: IPv4Interface("10.9.0.2/24")), command: ["x"])
        let kept = KeptContainer(name: "z", network: "n", address: IPv4Interface("10.9.0.9/24")!, bridge: "b0", ports: [])
        let context = DesiredContext(kept: [kept])
        let a = DesiredState.resources(m, context).first { $0.address == ResourceAddress(.container, "a") }
        #expect(a?.attributes[ContainerAttribute.peers] == .strings(["z 10.9.0.9"]))
        // z (another project's) learns about a: its record still lists nobody.
        var record = Record(ResourceAddress(.container, "z"), status: .ready)
        record.attributes[ContainerAttribute.peers] = .strings([])
        let neighbours = DesiredState.neighbourPeers(m, context, records: ["z": record])
        #expect(neighbours.keys.sorted() == ["z"] && neighbours["z"]?.summary(except: "z") == .strings(["a 10.9.0.2"]))
        record.attributes[ContainerAttribute.peers] = .strings(["a 10.9.0.2"])
        #expect(DesiredState.neighbourPeers(m, context, records: ["z": record]).isEmpty)
    }
}
