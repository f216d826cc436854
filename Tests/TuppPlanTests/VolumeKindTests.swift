import Testing
import TuppBase
import TuppFacts
import TuppManifest
import TuppPlan
import TuppRender

// Volumes with plain values: how the pool's volumes are interpreted, and the plan's rules —
// never deleted implicitly, never replaced, never deleted under a container that stays,
// and the truth about data in every note. No root, no I/O.

/// The sample state with volume "data" (64MiB, 999:999, 0700) mounted by container c0 at
/// /var/lib/db.
func volumeManifest(containers: Int = 1) -> Manifest {
    var m = sampleManifest(containers: containers)
    m.volumes["data"] = Volume(name: "data", settings: VolumeSettings(size: 64 << 20, owner: VolumeOwner(uid: 999, gid: 999), mode: 0o700))
    if containers > 0 { m.containers["c0"]!.mounts = [Mount(kind: .volume, source: "data", target: "/var/lib/db")] }
    return m
}

private let data = ResourceAddress(.volume, "data")

private func subvolume(_ path: String, uuid: String, readOnly: Bool = false, created: Double = 0) -> SubvolumeInfo {
    SubvolumeInfo(path: path, id: 300, uuid: uuid, parentUUID: nil, readOnly: readOnly, generation: 9, createdAt: created)
}

/// A pool holding volume "data" as `volumeManifest` declares it, with usage and snapshots.
private func pool(owner: VolumeOwner = VolumeOwner(uid: 999, gid: 999), mode: UInt32 = 0o700, limit: UInt64? = 64 << 20,
                  quotas: QuotaStatus = QuotaStatus(enabled: true), uuid: String = "v1", present: Bool = true,
                  snapshots: [String] = [], leftovers: [VolumeLeftover] = []) -> VolumeContents {
    var c = VolumeContents()
    c.quotas = quotas
    if present {
        c.volumes["data"] = VolumeFacts(name: "data", subvolume: subvolume("volumes/data", uuid: uuid), owner: owner, mode: mode,
                                        usage: QgroupUsage(referenced: 3 << 20, exclusive: 1 << 20, limit: limit))
    }
    for (i, tag) in snapshots.enumerated() {
        c.snapshots["data", default: [:]][tag] = VolumeSnapshotFacts(volume: "data", tag: tag,
            subvolume: subvolume("volumes/.snapshots/data/\(tag)", uuid: "s\(i)", readOnly: true, created: Double(i)), usage: nil)
    }
    c.leftovers = leftovers
    return c
}

private func record(status: Record.Status = .ready, uuid: String = "v1") -> Record {
    var r = Record(data, status: status, attributes: VolumeKind.attributes(volumeManifest().volumes["data"]!.settings))
    r.volumeSubvolumeUUID = uuid
    return r
}

private func interpret(_ contents: VolumeContents?, record: Record? = record(), declared: Bool = true,
                       users: [String: [String]] = [:], destroying: Bool = false) -> KindObservation {
    VolumeKind.interpret(declared: declared ? volumeManifest().volumes : [:], records: record.map { ["data": $0] } ?? [:],
                         facts: VolumeKindFacts(contents: contents), users: users, destroying: destroying)
}

private func conditions(_ o: KindObservation) -> [VolumeCondition] {
    o[data]?.conditions.compactMap { $0 as? VolumeCondition } ?? []
}

@Suite struct VolumeKindTests {
    /// The desired volume alone.
    var volume: DesiredResource { desired(volumeManifest()).first { $0.address == data }! }

    @Test func aVolumeAsDeclaredHasNothingToDoAndShowsWhatItHolds() {
        let o = interpret(pool(snapshots: ["t1", "t2"]), users: ["data": ["c0"]])
        #expect(o.problems.isEmpty && o.drift.isEmpty && conditions(o).isEmpty)
        #expect(o[data]?.attributes == [
            VolumeAttribute.size: .int(64 << 20), VolumeAttribute.owner: .string("999:999"), VolumeAttribute.mode: .string("0700"),
            VolumeAttribute.referenced: .int(3 << 20), VolumeAttribute.exclusive: .int(1 << 20),
            VolumeAttribute.snapshots: .strings(["t1", "t2"]), VolumeAttribute.users: .strings(["c0"]),
        ])
        #expect(o.fingerprints[data] == "subvolume v1", "usage moves with every write; only the identity pins a saved plan")
        #expect(!Planner.plan(desired: [volume], observed: ObservedState(o.resources)).hasChanges)
    }

    @Test func ownerModeAndLimitChangedByHandAreDriftRepairedInPlace() {
        let o = interpret(pool(owner: VolumeOwner(uid: 0, gid: 0), mode: 0o777, limit: 2 << 20))
        #expect(o[data]!.drift.map(\.message) == [
            "owner changed outside tupp (\"999:999\" → \"0:0\")",
            "mode changed outside tupp (\"0700\" → \"0777\")",
            "qgroup limit changed outside tupp (64MiB → 2MiB)",
        ])
        let plan = Planner.plan(desired: [volume], observed: ObservedState(o.resources))
        let change = try! #require(plan.actionable.first)
        #expect(change.action == .update && change.effect == .inPlace)
        #expect([VolumeAttribute.owner, VolumeAttribute.mode, VolumeAttribute.size].allSatisfy(change.changes))
        #expect(PlanText.render(plan).contains("~ size  = 2097152 (2MiB) -> 67108864 (64MiB)"), "\(PlanText.render(plan))")

        // Quotas turned off by hand: the limit no longer holds; setting it turns them on again.
        let off = interpret(pool(quotas: .disabled))
        #expect(off[data]!.drift.map(\.message) == ["quotas were turned off outside tupp: its limit of 64MiB no longer holds"])
        #expect(Planner.plan(desired: [volume], observed: ObservedState(off.resources)).actionable.first?.changes(VolumeAttribute.size) == true)
    }

    @Test func aLimitNobodyDeclaresIsRemovedButUndeclaredOwnerAndModeAreLeftAlone() {
        var m = volumeManifest()
        m.volumes["data"]!.settings = VolumeSettings()
        let bare = desired(m).first { $0.address == data }!
        var r = record()
        r.attributes = [:]
        let o = interpret(pool(owner: VolumeOwner(uid: 5, gid: 5), mode: 0o755, limit: 8 << 20), record: r)
        let change = try! #require(Planner.plan(desired: [bare], observed: ObservedState(o.resources)).actionable.first)
        #expect(change.reasons.map(\.path) == [VolumeAttribute.size])
        #expect(change.reasons.first?.after == nil)
    }

    @Test func theFirstCreationIsSeededFromTheFirstContainerThatMountsIt() {
        var m = volumeManifest(containers: 2)
        m.containers["c1"]!.mounts = [Mount(kind: .volume, source: "data", target: "/srv/data", readonly: true)]
        m.containers["c0"]!.image = "other"
        m.images["other"] = Image(name: "other", source: .busybox(path: "/bin/busybox"))
        #expect(VolumeKind.seeds(m) == ["data": VolumeSeed(image: "other", path: "/var/lib/db")])

        let plan = Planner.plan(desired: desired(volumeManifest()), observed: ObservedState())
        #expect(plan.changes.map(\.address.description) == ["pool.main", "image.box", "volume.data", "network.br0", "container.c0"])
        let create = try! #require(plan.changes.first { $0.address == data })
        #expect(create.notes == ["seeded once from what image box holds at /var/lib/db (owners and modes kept); never again"])
        #expect(desired(volumeManifest()).first { $0.address.kind == .container }?.dependencies.contains(data) == true)
    }

    @Test func aVolumeDeletedByHandIsShownLoudlyAndCreatedEmpty() {
        let o = interpret(pool(present: false))
        #expect(o.resources.isEmpty)
        #expect(o.drift.map(\.message) == ["missing — will be created EMPTY (volumes/data was deleted outside tupp, with its data)"])
        // Everything else as it was: the volume is created empty, its container restarts to mount it.
        let d = desired(volumeManifest())
        var observed = matching(d)
        observed.resources[data] = nil
        observed.drift = o.drift
        let plan = Planner.plan(desired: d, observed: observed)
        let create = try! #require(plan.actionable.first { $0.address == data })
        #expect(create.action == .create && create.notes.first?.hasPrefix("created EMPTY") == true, "\(create.notes)")
        let container = try! #require(plan.actionable.first { $0.address.kind == .container })
        #expect(container.action == .update && container.effect == .restart)
        #expect(container.reasons.map(\.message) == ["volume.data is created"])
        let text = PlanText.render(plan)
        #expect(text.hasPrefix("Changed outside tupp:\n  ~ volume.data: missing — will be created EMPTY"), "\(text)")
        // A re-create that was interrupted still comes back empty.
        var interrupted = record(status: .creating)
        interrupted.volumeExisted = true
        #expect(interpret(pool(present: false), record: interrupted).drift.first?.path == VolumeAttribute.content)
        #expect(interpret(pool(present: false), record: Record(data, status: .creating)).drift.isEmpty, "never created: seeded")
    }

    @Test func interruptedChangesAreFinishedInPlaceNeverByAReplacement() {
        let leftover = VolumeLeftover(kind: .create, volume: "data", subvolume: subvolume("volumes/.staging/create-data-ab12", uuid: "x"))
        let o = interpret(pool(leftovers: [leftover]), record: record(status: .creating))
        #expect(conditions(o) == [.leftover(path: "volumes/.staging/create-data-ab12"), .createUnfinished])
        let change = try! #require(Planner.plan(desired: [volume], observed: ObservedState(o.resources)).actionable.first)
        #expect(change.action == .update && change.effect == .inPlace)

        // A removal that stopped before the delete, then declared again: kept, recorded.
        let back = interpret(pool(), record: record(status: .deleting))
        #expect(conditions(back) == [.removalInterrupted])
        #expect(Planner.plan(desired: [volume], observed: ObservedState(back.resources)).actionable.first?.action == .update)
        #expect(conditions(interpret(pool(), record: record(status: .deleting), declared: false)).isEmpty)

        // Swapped by hand (a backup restored with btrfs receive, say): adopted as it is.
        let swapped = interpret(pool(uuid: "v2"))
        #expect(conditions(swapped) == [.notTheRecordedSubvolume(recorded: "v1", observed: "v2")])
        #expect(swapped[data]!.drift.first?.message.contains("replaced outside tupp (subvolume v1 → v2)") == true)
        #expect(Planner.plan(desired: [volume], observed: ObservedState(swapped.resources)).actionable.first?.action == .update)

        // Whatever a record of another tupp version holds, a volume is not replaced.
        var odd = interpret(pool())[data]!
        odd.attributes[AttributePath("from-the-future")] = .string("x")
        var futureVolume = volume
        futureVolume.attributes[AttributePath("from-the-future")] = .string("y")
        let future = Planner.plan(desired: [futureVolume], observed: ObservedState([odd]))
        #expect(future.actionable.first?.action == .update, "\(future.actionable)")
    }

    @Test func inconsistentQuotasAreCountedAgainForVolumesWithASize() {
        let o = interpret(pool(quotas: QuotaStatus(enabled: true, inconsistent: true)))
        #expect(conditions(o) == [.quotasInconsistent])
        #expect(conditions(interpret(pool(quotas: QuotaStatus(enabled: true, rescanning: true, inconsistent: true)))).isEmpty,
                "a rescan is under way")
    }

    @Test func quotasNoVolumeNeedsAreTurnedOffOnTuppsOwnPool() {
        var r = record()
        r.attributes[VolumeAttribute.size] = nil
        let bare = ["data": Volume(name: "data")]
        func judge(limit: UInt64?, poolIsTupps: Bool = true) -> [VolumeCondition] {
            VolumeKind.interpret(declared: bare, records: ["data": r], facts: VolumeKindFacts(contents: pool(limit: limit), poolIsTupps: poolIsTupps))[data]!
                .conditions.compactMap { $0 as? VolumeCondition }
        }
        #expect(judge(limit: nil) == [.quotasUnneeded])
        #expect(judge(limit: nil, poolIsTupps: false).isEmpty, "quotas on a filesystem tupp did not make are not its to turn off")
        #expect(conditions(interpret(pool())).isEmpty, "a declared size needs them")
    }

    @Test func aSubvolumeWithoutRecordIsForeignAndAnUnmountedPoolShowsRecords() {
        let foreign = interpret(pool(), record: nil)
        #expect(foreign[data]?.owned == false)
        #expect(Planner.plan(desired: [volume], observed: ObservedState(foreign.resources)).errors
            == ["volume.data exists on the host but was not created by tupp; remove it or choose another name"])
        let unmounted = interpret(nil)
        #expect(unmounted[data]?.attributes == record().attributes && conditions(unmounted).isEmpty)
    }

    // MARK: Lifetime

    /// The sample state with c0 gone, and the volume as the pool shows it (used by c0).
    func orphaned(snapshots: [String] = []) -> (desired: [DesiredResource], observed: ObservedState) {
        var observed = matching(desired(volumeManifest()))
        observed.resources[data] = interpret(pool(snapshots: snapshots), declared: false, users: ["data": ["c0"]])[data]
        return (desired(sampleManifest(containers: 0)), observed)
    }

    @Test func aVolumeThatLeftTheManifestIsKeptUnlessPruned() {
        let (d, o) = orphaned(snapshots: ["t1"])
        let kept = Planner.plan(desired: d, observed: o)
        #expect(kept.actionable.map(\.address.description) == ["container.c0"])
        #expect(kept.warnings == ["volume.data: kept (not declared; data retained, 3MiB referenced, 1MiB only in it); apply --prune-volumes deletes it"])
        #expect(PlanText.render(kept).contains("Warning: volume.data: kept (not declared; data retained"))

        let pruned = Planner.plan(desired: d, observed: o, options: PlanOptions(pruneVolumes: true))
        #expect(pruned.errors.isEmpty && pruned.warnings.isEmpty)
        #expect(pruned.actionable.map(\.address.description) == ["container.c0", "volume.data"], "its user goes first")
        let delete = pruned.actionable[1]
        #expect(delete.notes == ["not in manifest", "its data is deleted (3MiB referenced, 1MiB only in it)",
                                 "its snapshots t1 are kept (volumes/.snapshots/data)"])
        let text = PlanText.render(pruned)
        #expect(text.contains("# volume.data will be destroyed (not in manifest)") && text.contains("! its data is deleted"), "\(text)")

        // --no-prune keeps it too; protect: true keeps it even with --prune-volumes.
        #expect(Planner.plan(desired: d, observed: o, options: PlanOptions(prune: false, pruneVolumes: true)).actionable.allSatisfy { $0.address != data })
        var protected = o
        protected.resources[data]!.protect = true
        let refused = Planner.plan(desired: d, observed: protected, options: PlanOptions(pruneVolumes: true))
        #expect(!refused.actionable.contains { $0.address == data } && refused.warnings.contains { $0.contains("volume.data is not in the manifest but protected") })
    }

    @Test func aVolumeAContainerStillMountsIsNeverDeleted() {
        // c0 left the manifest too but is protected: it stays, and so must its volume.
        var m = volumeManifest()
        m.containers["c0"]!.protect = true
        var observed = matching(desired(m))
        observed.resources[data] = interpret(pool(), declared: false, users: ["data": ["c0"]])[data]
        let plan = Planner.plan(desired: desired(sampleManifest(containers: 0)), observed: observed, options: PlanOptions(pruneVolumes: true))
        #expect(plan.errors == ["volume.data cannot be deleted: container c0 mounts it and is not removed by this plan; remove the mount (or the container) first"])

        // A container that stays but no longer mounts it is restarted first, then the volume goes.
        var without = volumeManifest()
        without.volumes = [:]
        without.containers["c0"]!.mounts = []
        var before = matching(desired(volumeManifest()))
        before.resources[data] = observed.resources[data]
        let moved = Planner.plan(desired: desired(without), observed: before, options: PlanOptions(pruneVolumes: true))
        #expect(moved.errors.isEmpty)
        #expect(moved.actionable.map(\.address.description) == ["container.c0", "volume.data"])
        #expect(moved.actionable[0].effect == .restart && moved.actionable[1].action == .delete)
    }

    @Test func aVolumeWithNothingLeftIsForgottenWithoutAFlag() {
        let o = interpret(pool(present: false), declared: false)
        #expect(o.drift.map(\.message) == ["volumes/data was deleted outside tupp, with its data"])
        let plan = Planner.plan(desired: [], observed: ObservedState(o.resources))
        #expect(plan.actionable.first?.action == .delete)
        #expect(plan.actionable.first?.notes == ["not in manifest", "volumes/data is gone already: only its record is removed"])
    }

    @Test func destroyKeepsVolumesUnlessTheyAreIncluded() {
        let d = desired(volumeManifest())
        var o = matching(d)
        o.resources[data] = interpret(pool(), users: ["data": ["c0"]])[data]
        let kept = Planner.plan(desired: d, observed: o, options: PlanOptions(destroy: true))
        #expect(kept.errors.isEmpty && !kept.actionable.contains { $0.address == data })
        #expect(kept.warnings == ["volume.data is kept with its data, 3MiB referenced, 1MiB only in it (destroy --include-volumes deletes it)"])

        // The pool's file holds the volume: deleting it would delete the volume implicitly.
        let file = Planner.plan(desired: d, observed: o, options: PlanOptions(destroy: true, includeStorage: true))
        #expect(file.errors.count == 1 && file.errors[0].hasPrefix("pool.main: --include-storage would delete volume.data with the pool's file"))

        let all = Planner.plan(desired: d, observed: o, options: PlanOptions(destroy: true, includeStorage: true, includeVolumes: true))
        #expect(all.errors.isEmpty)
        #expect(all.actionable.map(\.address.description) == ["container.c0", "network.br0", "image.box", "volume.data", "pool.main"])

        // A second destroy, once the containers are gone: nothing mounts it any more.
        var after = o
        after.resources[ResourceAddress(.container, "c0")] = nil
        #expect(Planner.plan(desired: d, observed: after, options: PlanOptions(destroy: true, includeVolumes: true)).errors.isEmpty)

        // A volume whose subvolume is gone is forgotten by any destroy.
        let gone = interpret(pool(present: false), destroying: true)
        o.resources[data] = gone[data]
        #expect(Planner.plan(desired: d, observed: o, options: PlanOptions(destroy: true)).actionable.contains { $0.address == data })
    }

    @Test func aVolumeSharedByTwoProjectsStaysWhileEitherDeclaresIt() {
        var o = matching(desired(volumeManifest()))
        o.resources[data] = interpret(pool())[data]
        o.resources[data]!.projects = ["seed": "seed.yaml:3:3", "web": "web.yaml:5:3"]
        let plan = Planner.plan(desired: desired(sampleManifest(containers: 0)), observed: o,
                                options: PlanOptions(project: "web", pruneVolumes: true))
        let change = try! #require(plan.actionable.first { $0.address == data })
        #expect(change.isMembershipOnly && change.projects == ["seed": "seed.yaml:3:3"])
        #expect(change.notes == ["kept: also declared by project seed"])

        // Declared by a second project, identically: it joins.
        var joined = volume
        joined.location = "web.yaml:5:3"
        o.resources[data]!.projects = ["seed": "seed.yaml:3:3"]
        let join = Planner.plan(desired: [joined], observed: o, options: PlanOptions(project: "web"))
        #expect(join.actionable.first { $0.address == data }?.reasons.first?.membership == .joined("web", alsoBy: ["seed"]))
    }

    // MARK: Containers and their data

    @Test func aReplacementSaysWhichDataIsKeptAndWhichIsLost() {
        var m = volumeManifest()
        m.containers["c0"]!.mounts += [Mount(kind: .bind, source: "/host/srv", target: "/srv"), Mount(kind: .tmpfs, target: "/tmp")]
        let d = desired(m)
        var o = matching(d)
        o.resources[ResourceAddress(.container, "c0")]!.attributes[ContainerAttribute.image] = .string("old")
        let plan = Planner.plan(desired: d, observed: o)
        let change = try! #require(plan.actionable.first)
        #expect(change.action == .replace)
        #expect(change.notes == [
            "the writable snapshot containers/c0 is discarded: changes made inside the container outside /var/lib/db and /srv are lost",
            "kept: volume data (at /var/lib/db), bind mount /host/srv (at /srv)",
        ])
        // Without volumes or binds, everything written inside is lost, as before.
        let plain = desired(sampleManifest(containers: 1))
        var p = matching(plain)
        p.resources[ResourceAddress(.container, "c0")]!.attributes[ContainerAttribute.image] = .string("old")
        #expect(Planner.plan(desired: plain, observed: p).actionable.first?.notes
            == ["the writable snapshot containers/c0 is discarded: changes made inside the container are lost"])
    }

    @Test func mountDescriptionsReadBack() {
        let mounts = [Mount(kind: .volume, source: "data", target: "/var/lib/db", readonly: true),
                      Mount(kind: .bind, source: "/srv/my data", target: "/data", options: ["nosuid"]),
                      Mount(kind: .tmpfs, target: "/tmp", options: ["size=64m"])]
        for mount in mounts {
            let text = ContainerKind.describe(mount)
            let back = try! #require(ContainerKind.parseMount(text), "\(text)")
            #expect(back.kind == mount.kind && back.source == mount.source && back.target == mount.target && back.readonly == mount.readonly, "\(text)")
        }
        #expect(ContainerKind.describe(mounts[0]) == "volume data → /var/lib/db (ro)")
        #expect(ContainerKind.parseMount("nonsense") == nil && ContainerKind.parseMount("bind /a") == nil)
        let records = ["web": Record(ResourceAddress(.container, "web"), status: .ready,
                                     attributes: [ContainerAttribute.mounts: .strings(mounts.map(ContainerKind.describe))]),
                       "api": Record(ResourceAddress(.container, "api"), status: .ready,
                                     attributes: [ContainerAttribute.mounts: .strings(["volume data → /a", "volume logs → /b"])])]
        #expect(VolumeKind.users(containerRecords: records) == ["data": ["api", "web"], "logs": ["api"]])
    }

    // MARK: Differences between settings and the live volume

    static func facts(owner: VolumeOwner = VolumeOwner(uid: 0, gid: 0), mode: UInt32 = 0o755, limit: UInt64? = nil) -> VolumeFacts {
        VolumeFacts(name: "data",
                    subvolume: SubvolumeInfo(path: "volumes/data", id: 260, uuid: "u", parentUUID: nil, readOnly: false,
                                             generation: 9, createdAt: 0),
                    owner: owner, mode: mode, usage: QgroupUsage(referenced: 16384, exclusive: 16384, limit: limit))
    }
    @Test func onlyDeclaredAttributesDiffer() {
        let on = QuotaStatus(enabled: true)
        #expect(VolumeSettings().differences(from: Self.facts(owner: VolumeOwner(uid: 5, gid: 6), mode: 0o700), quotas: .disabled).isEmpty)
        let declared = VolumeSettings(size: 1 << 30, owner: VolumeOwner(uid: 999, gid: 999), mode: 0o700)
        #expect(declared.differences(from: Self.facts(), quotas: on) == [
            .owner(observed: VolumeOwner(uid: 0, gid: 0), declared: VolumeOwner(uid: 999, gid: 999)),
            .mode(observed: 0o755, declared: 0o700),
            .size(observed: nil, declared: 1 << 30),
        ])
        #expect(declared.differences(from: Self.facts(owner: VolumeOwner(uid: 999, gid: 999), mode: 0o700, limit: 1 << 30), quotas: on).isEmpty)
    }

    @Test func sizeDriftIsRepairedBothWays() {
        let on = QuotaStatus(enabled: true)
        // A limit changed by hand.
        #expect(VolumeSettings(size: 100).differences(from: Self.facts(limit: 50), quotas: on) == [.size(observed: 50, declared: 100)])
        // A limit nobody declares any more.
        #expect(VolumeSettings().differences(from: Self.facts(limit: 50), quotas: on) == [.size(observed: 50, declared: nil)])
        // Quotas off: a declared size differs (applying it turns them on); no size, nothing.
        #expect(VolumeSettings(size: 100).differences(from: Self.facts(limit: 50), quotas: .disabled) == [.size(observed: nil, declared: 100)])
        #expect(VolumeSettings().differences(from: Self.facts(limit: 50), quotas: .disabled).isEmpty)
    }

    @Test func quotasAreOnOnlyWhileSomeVolumeHasASize() {
        let on = QuotaStatus(enabled: true)
        #expect(QuotaPolicy.action(declaredSizes: [nil, 5], status: .disabled, poolFilesystemIsTupps: true) == .enable)
        #expect(QuotaPolicy.action(declaredSizes: [nil, 5], status: on, poolFilesystemIsTupps: true) == nil)
        #expect(QuotaPolicy.action(declaredSizes: [nil], status: on, poolFilesystemIsTupps: true) == .disable)
        #expect(QuotaPolicy.action(declaredSizes: [], status: on, poolFilesystemIsTupps: false) == nil)
        #expect(QuotaPolicy.action(declaredSizes: [nil], status: .disabled, poolFilesystemIsTupps: true) == nil)
    }

}
