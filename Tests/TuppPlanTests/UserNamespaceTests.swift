import Testing
import TuppFacts
import TuppManifest
import TuppPlan
import TuppRender

// `userns: auto` with plain values: the pool, the allocation, what a change does, what the
// kernel's live maps mean. No root, no I/O.

private let per = UserNamespaceSettings.idsPerContainer
private let defaultPool = UserNamespaceAllocator.Pool.choose(nil, subuid: [], subgid: [])

private func allocate(_ wanting: [String], held: [String: IDMapping] = [:], pool: UserNamespaceAllocator.Pool = defaultPool,
                      inUse: UserNamespaceAllocator.InUse = .init(), installation: String = "inst01") -> [String: IDMapping] {
    (try? UserNamespaceAllocator.allocate(wanting: wanting, held: held, pool: pool, inUse: inUse, installation: installation).get()) ?? [:]
}

private func hostRanges(_ m: [String: IDMapping]) -> [IDRange] { m.values.flatMap { $0.uids.map(\.hostRange) } }

@Suite struct UserNamespacePoolTests {
    @Test func theDefaultRangeSitsBelowTwoToTheThirtyFirstAboveNspawnAndUseradd() {
        let range = UserNamespaceAllocator.Pool.defaultRange
        #expect(defaultPool.origin == "tupp's default range")
        #expect(range.start == 1_879_048_192 && range.end == 0x7FFE_0000)
        #expect(range.end <= 1 << 31, "ps prints ids ≥ 2^31 as negative numbers")
        #expect(range.start > 1_879_048_191, "systemd-nspawn's container ranges end there")
        #expect(range.start > 600_100_000, "useradd's default SUB_UID_MAX")
        #expect(defaultPool.blocks == 4094)
    }

    @Test func tuppsSubordinateEntriesComeBeforeTheDefaultAndTheManifestBeforeBoth() {
        let subuid = SubordinateIDs.parse("alice:100000:65536\ntupp:200000:655360\n# comment\nbad line\ntupp:9:9\n")
        let subgid = SubordinateIDs.parse("tupp:300000:131072\n")
        #expect(subuid.map(\.user) == ["alice", "tupp", "tupp"])
        let fromFiles = UserNamespaceAllocator.Pool.choose(nil, subuid: subuid, subgid: subgid)
        #expect(fromFiles.uids == IDRange(start: 200_000, size: 655_360) && fromFiles.gids == IDRange(start: 300_000, size: 131_072))
        #expect(fromFiles.blocks == 2, "blocks both ranges hold")
        #expect(fromFiles.mapping(block: 1) == .block(uid: 200_000 + per, gid: 300_000 + per))
        // Only subuid: both files are needed.
        #expect(UserNamespaceAllocator.Pool.choose(nil, subuid: subuid, subgid: []) == defaultPool)
        let declared = UserNamespaceAllocator.Pool.choose(UserNamespaceSettings(range: IDRange(start: 5 * per, size: 3 * per)),
                                                          subuid: subuid, subgid: subgid)
        #expect(declared.uids == declared.gids && declared.origin == "userns.range" && declared.blocks == 3)
    }

    @Test func aMappingIsAPoolBlockOnlyWhenAlignedWholeAndPaired() {
        let pool = UserNamespaceAllocator.Pool(uids: IDRange(start: 10 * per, size: 4 * per), gids: IDRange(start: 20 * per, size: 4 * per), origin: "t")
        #expect(pool.block(of: pool.mapping(block: 3)) == 3)
        #expect(pool.block(of: .block(uid: 10 * per + 1, gid: 20 * per + 1)) == nil, "unaligned")
        #expect(pool.block(of: .block(uid: 11 * per, gid: 22 * per)) == nil, "uid and gid of different blocks")
        #expect(pool.block(of: .block(uid: 14 * per, gid: 24 * per)) == nil, "past the end")
        #expect(pool.block(of: .block(uid: 10 * per, gid: 20 * per, count: 1000)) == nil, "not 65536 ids")
    }
}

@Suite struct UserNamespaceAllocatorTests {
    @Test func rangesAreDisjointWholeBlocksOfThePool() {
        let names = (0..<50).map { "c\($0)" }
        let result = allocate(names)
        #expect(result.count == 50)
        let ranges = hostRanges(result)
        for (i, a) in ranges.enumerated() {
            #expect(defaultPool.uids.contains(a) && a.size == per && (a.start - defaultPool.uids.start) % per == 0)
            for b in ranges[(i + 1)...] { #expect(!a.overlaps(b)) }
        }
        #expect(result.values.allSatisfy { $0.uids.first?.inside == 0 && $0.uids == $0.gids })
    }

    @Test func theSameManifestGetsTheSameRangesInAnyOrderAndAfterDestroy() {
        let a = allocate(["web", "db", "cache"]), b = allocate(["cache", "web", "db"])
        #expect(a == b)
        // Another installation starts elsewhere.
        #expect(allocate(["web"], installation: "other")["web"] != a["web"])
    }

    @Test func aHeldRangeIsKeptEvenWhenItIsNotTheHashedSlot() {
        let held = defaultPool.mapping(block: 7)
        #expect(allocate(["web"], held: ["web": held])["web"] == held)
    }

    @Test func rangesHeldByOthersAreNeverGivenOut() {
        // "gone" left the manifest but its record (or process) still holds a range.
        let fresh = allocate(["web"])["web"]!
        let result = allocate(["web"], held: ["gone": fresh])
        #expect(result["web"] != fresh)
        #expect(!result["web"]!.uids[0].hostRange.overlaps(fresh.uids[0].hostRange))
    }

    @Test func idsInUseElsewhereAreSkippedAndAHeldRangeThatCollidesMoves() {
        let fresh = allocate(["web"])["web"]!
        let foreign = UserNamespaceAllocator.InUse(uids: [IDRange(start: fresh.uids[0].outside + 100, size: 10)])
        let moved = allocate(["web"], inUse: foreign)["web"]!
        #expect(moved != fresh)
        // Held but colliding (another installation took it): it moves, and the plan restarts it.
        #expect(allocate(["web"], held: ["web": fresh], inUse: foreign)["web"] == moved)
        // A held range outside the pool (userns.range changed) moves too.
        let outside = IDMapping.block(uid: 7 * per, gid: 7 * per)
        #expect(defaultPool.block(of: allocate(["web"], held: ["web": outside])["web"]!) != nil)
    }

    @Test func aFullPoolIsAnErrorNamingTheContainer() {
        let pool = UserNamespaceAllocator.Pool(uids: IDRange(start: per, size: 2 * per), gids: IDRange(start: per, size: 2 * per), origin: "userns.range")
        let result = UserNamespaceAllocator.allocate(wanting: ["a", "b", "c"], held: [:], pool: pool, inUse: .init(), installation: "i")
        guard case .failure(let e) = result else {
            Issue.record("three containers fit in two blocks")
            return
        }
        #expect(e.container == "c" && e.pool == pool)
    }
}

@Suite struct UserNamespaceKindTests {
    let mapping = IDMapping.block(uid: 1_879_048_192, gid: 1_879_048_192)
    let address = ResourceAddress(.container, "web")

    func container(_ userns: UserNamespaceMode? = nil) -> Container {
        Container(name: "web", image: "box", command: ["sleep", "1"], userns: userns)
    }

    func running(_ live: IDMapping?) -> ProcessObservation {
        ProcessObservation(state: .running, shimPID: 99, shimStartTime: 1, initPID: 100, initStartTime: 2, restarts: 0, startedAt: nil,
                           lastExit: nil, error: nil, namespaces: [:], userNamespace: live)
    }

    func interpret(record: Record, live: IDMapping?) -> KindObservation {
        var contents = PoolContents()
        contents.containers["web"] = SubvolumeInfo(path: "containers/web", id: 257, uuid: "snap", parentUUID: nil, readOnly: false,
                                                   generation: 1, createdAt: 0)
        let facts = ContainerFacts(contents: contents, host: NetworkSnapshot(links: []), processes: ["web": running(live)],
                                   hostsFiles: ["web": try! HostsFile.render(container: "web", hostname: "web", address: nil)],
                                   resolvFiles: ["web": try! ResolvConf.render(ResolverSettings(), container: "web")])
        return ContainerKind.interpret(declared: ["web"], records: ["web": record], facts: facts, images: ObservedState(), installation: "i")
    }

    func plan(_ desired: DesiredResource, _ observed: KindObservation) -> Plan.ResourceChange? {
        Planner.plan(desired: [desired], observed: ObservedState(observed.resources)).actionable.first
    }

    @Test func theContainersSettingWinsOverDefaultsAndHostIsTheDefault() {
        var m = Manifest()
        #expect(m.userns(of: container()) == .host)
        m.defaults.userns = .auto
        #expect(m.userns(of: container()) == .auto)
        #expect(m.userns(of: container(.host)) == .host)
    }

    @Test func autoShowsTheMapsAsProcShowsThemAndHostShowsNothing() {
        let auto = ContainerKind.desired(container(.auto), network: nil, address: nil, userNamespace: mapping)
        #expect(auto.attributes[ContainerAttribute.userns] == .string("auto"))
        #expect(auto.attributes[ContainerAttribute.usernsUIDMap] == .string("0 1879048192 65536"))
        #expect(auto.attributes[ContainerAttribute.usernsGIDMap] == .string("0 1879048192 65536"))
        #expect(auto.spec(ContainerSpec.self)?.userNamespace == mapping)
        #expect(ContainerKind.userNamespace(auto.attributes) == mapping, "read back from a record")
        // A container recorded before user namespaces existed has none of these: host adds nothing.
        let host = ContainerKind.desired(container(), network: nil, address: nil)
        #expect(host.attributes.keys.allSatisfy { !$0.name.hasPrefix("userns") })
        #expect(ContainerKind.userNamespace(host.attributes) == nil)
    }

    @Test func switchingOnRestartsTheProcessAndKeepsTheSnapshot() {
        let host = ContainerKind.desired(container(), network: nil, address: nil)
        let auto = ContainerKind.desired(container(.auto), network: nil, address: nil, userNamespace: mapping)
        let on = plan(auto, interpret(record: Record(address, status: .ready, attributes: host.attributes), live: nil))
        #expect(on?.action == .update && on?.effect == .restart)
        #expect(on?.changes(ContainerAttribute.userns) == true && on?.changes(ContainerAttribute.usernsUIDMap) == true)
        #expect(on?.notes.contains { $0.contains("discarded") } != true)
        let off = plan(host, interpret(record: Record(address, status: .ready, attributes: auto.attributes), live: mapping))
        #expect(off?.action == .update && off?.effect == .restart)
        // A moved range (userns.range changed) restarts too.
        let moved = ContainerKind.desired(container(.auto), network: nil, address: nil,
                                          userNamespace: .block(uid: 1_879_048_192 + per, gid: 1_879_048_192 + per))
        #expect(plan(moved, interpret(record: Record(address, status: .ready, attributes: auto.attributes), live: mapping))?.effect == .restart)
        // Rendered, the plan shows the range.
        let text = PlanText.render(Planner.plan(desired: [auto], observed: ObservedState()))
        #expect(text.contains("userns.uid_map") && text.contains("\"0 1879048192 65536\""), "\(text)")
    }

    @Test func theLiveMapsAreTheTruthAndAnotherMapIsDrift() {
        let auto = ContainerKind.desired(container(.auto), network: nil, address: nil, userNamespace: mapping)
        let record = Record(address, status: .ready, attributes: auto.attributes)
        let same = interpret(record: record, live: mapping)
        #expect(same[address]?.drift.isEmpty == true && plan(auto, same) == nil)
        // Running without its user namespace (started by hand, by an older tupp): drift, restart.
        let none = interpret(record: record, live: nil)
        #expect(none[address]?.drift.map(\.message) == ["its process runs in the host's user namespace, not uid_map 0 1879048192 65536 as recorded"])
        #expect(none[address]?.attributes[ContainerAttribute.userns] == nil)
        #expect(plan(auto, none)?.effect == .restart)
        let other = interpret(record: record, live: .block(uid: 5 * per, gid: 5 * per))
        #expect(other[address]?.attributes[ContainerAttribute.usernsUIDMap] == .string("0 327680 65536"))
        #expect(plan(auto, other)?.effect == .restart)
    }

    /// A restart into a user namespace records the range with its intent: a crash before
    /// `ready` leaves the record holding the new range (its attributes still the old ones),
    /// and the allocator keeps that block for this container — not only while its process
    /// can be observed as the container's.
    @Test func aRestartUnderWayHoldsTheRangeItStartsWith() {
        let host = ContainerKind.desired(container(), network: nil, address: nil)
        var record = Record(address, status: .updating, attributes: host.attributes)
        #expect(record.heldUserNamespace == nil)
        record.startingUserNamespace = mapping
        #expect(record.heldUserNamespace == mapping, "the new range, though the attributes are the old ones")
        #expect(allocate(["web"], held: ["web": record.heldUserNamespace!]) == ["web": mapping])
        // Done: the record is ready with the new attributes, the fact goes with the others.
        record.attributes = ContainerKind.desired(container(.auto), network: nil, address: nil, userNamespace: mapping).attributes
        record.setContainerFacts(hostVeth: "v", snapshot: "s", process: nil, specDigest: nil)
        #expect(record.startingUserNamespace == nil && record.heldUserNamespace == mapping)
    }

    @Test func delegatingTheCgroupRestartsAndIsShownOnlyWhenOn() {
        let plain = ContainerKind.desired(container(), network: nil, address: nil)
        #expect(plain.attributes[ContainerAttribute.delegateCgroup] == nil)
        var c = container(.auto)
        c.delegateCgroup = true
        let delegated = ContainerKind.desired(c, network: nil, address: nil, userNamespace: mapping)
        #expect(delegated.attributes[ContainerAttribute.delegateCgroup] == .bool(true))
        #expect(delegated.spec(ContainerSpec.self)?.delegateCgroup == true)
        let record = Record(address, status: .ready, attributes: ContainerKind.desired(container(.auto), network: nil, address: nil,
                                                                                       userNamespace: mapping).attributes)
        let change = plan(delegated, interpret(record: record, live: mapping))
        #expect(change?.effect == .restart && change?.changes(ContainerAttribute.delegateCgroup) == true)
    }

    @Test func mapsParseFromProcAndFromTheirRendering() {
        let proc = "         0 1879048192      65536\n      1000     100000          1\n"
        let lines = IDMapping.parse(procMap: proc)
        #expect(lines == [IDMapLine(inside: 0, outside: 1_879_048_192, count: 65536), IDMapLine(inside: 1000, outside: 100_000, count: 1)])
        #expect(IDMapping.parse(rendered: IDMapping.render(lines!)) == lines)
        #expect(IDMapping.parse(procMap: "0 1 x\n") == nil && IDMapping.parse(rendered: "") == nil)
        let host = IDMapping.parse(procMap: "         0          0 4294967295\n")!
        #expect(IDMapping(uids: host, gids: host).isIdentity)
        let m = IDMapping(uids: lines!, gids: lines!)
        #expect(m.hostUID(0) == 1_879_048_192 && m.hostUID(65535) == 1_879_113_727 && m.hostUID(65536) == nil && m.hostUID(1000) == 1_879_049_192)
    }
}
