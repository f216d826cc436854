import TuppBase
import TuppFacts
import TuppManifest

/// A volume's attributes. The declared settings are changed in place; nothing replaces a
/// volume (that would discard its data). The observed-only attributes (usage, snapshots,
/// users) are shown in the plan and never compared.
public enum VolumeAttribute {
    /// The qgroup limit: optional, so a limit nobody declares (set by hand) is removed.
    public static let size = AttributePath("size")
    /// "UID:GID" of the root directory; compared only when declared.
    public static let owner = AttributePath("owner")
    /// "0700": permission bits of the root directory; compared only when declared.
    public static let mode = AttributePath("mode")
    /// Bytes the volume references, shared with its snapshots or not (while quotas are on).
    public static let referenced = AttributePath("usage.referenced")
    /// Bytes only the volume references: what deleting it frees (while quotas are on).
    public static let exclusive = AttributePath("usage.exclusive")
    /// Tags of its read-only snapshots, oldest first.
    public static let snapshots = AttributePath("snapshots")
    /// Containers whose records mount it.
    public static let users = AttributePath("users")
    /// Not an attribute: the path of drift about the data itself (the volume was deleted).
    public static let content = AttributePath("content")

    public static let schema = AttributeSchema([
        AttributeRule(size, .inPlace, optional: true),
        AttributeRule(owner, .inPlace),
        AttributeRule(mode, .inPlace),
        AttributeRule(referenced, .inPlace),
        AttributeRule(exclusive, .inPlace),
        AttributeRule(snapshots, .inPlace),
        AttributeRule(users, .inPlace),
    ])
}

/// What the volume reconciler applies.
public struct VolumeSpec: ResourceSpec, Equatable {
    public var volume: Volume
    /// What seeds the volume on its first creation: the image content at the target of the
    /// first container (by name) that mounts it. Never used for a volume that existed.
    public var seed: VolumeSeed?

    public init(_ volume: Volume, seed: VolumeSeed?) {
        self.volume = volume
        self.seed = seed
    }
}

/// Why a volume needs work although its attributes match. Every one is repaired in place:
/// a volume is never replaced.
public enum VolumeCondition: ResourceCondition, Equatable {
    /// The create finished (the volume is in place) but its record was not written.
    case createUnfinished
    /// A removal (--prune-volumes) stopped before the delete, and the volume is declared
    /// again: it stays, and its record says so.
    case removalInterrupted
    /// volumes/NAME is another subvolume than the one recorded (restored by hand, say):
    /// it is adopted as it is.
    case notTheRecordedSubvolume(recorded: String, observed: String)
    /// What an interrupted create, import or export left; removed.
    case leftover(path: String)
    /// The quota numbers are off and limits may not be enforced: a rescan repairs them.
    case quotasInconsistent
    /// Quotas are on but no volume has a size any more (`QuotaPolicy`): they are turned off.
    case quotasUnneeded
    /// Recorded, but volumes/NAME is gone (only on volumes that are not created again):
    /// nothing is left but the record.
    case missing(String)

    public var effect: ChangeEffect { .inPlace }

    public var description: String {
        switch self {
        case .createUnfinished: "an earlier apply created it but did not record it"
        case .removalInterrupted: "an earlier removal stopped before deleting it; declared again, it stays"
        case .notTheRecordedSubvolume(let recorded, let observed): "its subvolume is \(observed), not \(recorded) as recorded: adopted as it is"
        case .leftover(let path): "an interrupted change left \(path); it is removed"
        case .quotasInconsistent: "the pool's quota numbers are inconsistent (limits may not hold): they are counted again"
        case .quotasUnneeded: "quotas are on but no volume has a size: they are turned off (they slow every write)"
        case .missing(let name): "volumes/\(name) is gone"
        }
    }
}

extension Record {
    /// The UUID of the volume's subvolume when tupp created or imported it (volume records).
    public var volumeSubvolumeUUID: String? {
        get { facts["uuid"] }
        set { facts["uuid"] = newValue }
    }

    /// The volume was created (or imported) once: if it has to be made again, it starts
    /// EMPTY — seeding is for a first creation only. Kept through an interrupted re-create.
    public var volumeExisted: Bool {
        get { facts["existed"] == "true" || (kind == .volume && status == .ready) }
        set { facts["existed"] = newValue ? "true" : nil }
    }
}

/// What the volume reconciler read from the host.
public struct VolumeKindFacts: Sendable {
    /// The pool's volumes, snapshots, leftovers and quotas; nil while the pool is not
    /// mounted (its records are then all there is — mounting comes first).
    public var contents: VolumeContents?
    public var contentsError: String?
    /// The pool's filesystem is tupp's (a loop file): quotas on it are tupp's to turn off.
    public var poolIsTupps: Bool

    public init(contents: VolumeContents?, contentsError: String? = nil, poolIsTupps: Bool = true) {
        self.contents = contents
        self.contentsError = contentsError
        self.poolIsTupps = poolIsTupps
    }
}

/// Volumes: subvolumes volumes/NAME of the pool, with optional qgroup limits. Pure.
public enum VolumeKind {
    public static func desired(_ volume: Volume, seed: VolumeSeed?, pool: ResourceAddress?) -> DesiredResource {
        DesiredResource(ResourceAddress(.volume, volume.name), attributes: attributes(volume.settings),
                        dependencies: pool.map { [$0] } ?? [], protect: volume.protect, spec: VolumeSpec(volume, seed: seed))
    }

    public static func attributes(_ settings: VolumeSettings) -> Attributes {
        var a: Attributes = [:]
        if let size = settings.size { a[VolumeAttribute.size] = .int(Int64(size)) }
        if let owner = settings.owner { a[VolumeAttribute.owner] = .string(owner.description) }
        if let mode = settings.mode { a[VolumeAttribute.mode] = .string(VolumeSettings.formatMode(mode)) }
        return a
    }

    /// The seed of each declared volume: the image and target of the first container, by
    /// name, that mounts it.
    public static func seeds(_ manifest: Manifest) -> [String: VolumeSeed] {
        var seeds: [String: VolumeSeed] = [:]
        for name in manifest.containers.keys.sorted() {
            let container = manifest.containers[name]!
            for mount in container.mounts where mount.kind == .volume {
                guard let volume = mount.source, seeds[volume] == nil else { continue }
                seeds[volume] = VolumeSeed(image: container.image, path: mount.target)
            }
        }
        return seeds
    }

    /// Which containers' records mount each volume.
    public static func users(containerRecords: [String: Record]) -> [String: [String]] {
        var users: [String: [String]] = [:]
        for name in containerRecords.keys.sorted() {
            for mount in ContainerKind.recordedMounts(containerRecords[name]!.attributes) where mount.kind == .volume {
                if let volume = mount.source, users[volume]?.last != name { users[volume, default: []].append(name) }
            }
        }
        return users
    }

    /// `destroying`: what is gone stays gone, so a recorded volume that is missing is shown
    /// for the plan to forget instead of being created EMPTY.
    public static func interpret(declared: [String: Volume], records: [String: Record], facts: VolumeKindFacts,
                                 users: [String: [String]] = [:], destroying: Bool = false) -> KindObservation {
        var out = KindObservation()
        if let error = facts.contentsError { out.problems.append("cannot read the pool's volumes: \(error)") }
        var names = Set(declared.keys).union(records.keys)
        if let contents = facts.contents { names.formUnion(contents.leftovers.map(\.volume)) }
        let quotasUnneeded = facts.contents.map { contents in
            let kept = contents.volumes.values.filter { declared[$0.name] == nil }.map { $0.usage?.limit }
            return QuotaPolicy.action(declaredSizes: declared.values.map(\.settings.size) + kept, status: contents.quotas,
                                      poolFilesystemIsTupps: facts.poolIsTupps) == .disable
        } ?? false
        for name in names.sorted() {
            let address = ResourceAddress(.volume, name)
            let record = records[name]
            guard let contents = facts.contents else {
                if let record, record.status == .ready {
                    out.resources.append(ObservedResource(address, attributes: record.attributes, protect: record.protect))
                }
                continue
            }
            let leftovers = contents.leftovers.filter { $0.volume == name }.map { VolumeCondition.leftover(path: $0.subvolume.path) }
            let snapshots = contents.snapshots(of: name).map(\.tag)
            guard let volume = contents.volumes[name] else {
                if let record, record.volumeExisted, declared[name] != nil, !destroying {
                    // Absent for the planner, which creates it — empty: seeding is for first creations.
                    out.drift.append(Drift(address, "missing — will be created EMPTY (volumes/\(name) was deleted outside tupp, with its data)",
                                           path: VolumeAttribute.content))
                } else if let record, record.status == .ready {
                    out.drift.append(Drift(address, "volumes/\(name) was deleted outside tupp, with its data", path: VolumeAttribute.content))
                }
                if declared[name] != nil && !destroying {
                    out.drift += leftovers.map { Drift(address, $0.description) }
                } else if record != nil || !leftovers.isEmpty {
                    // Nothing to keep: the plan forgets the record and removes the leftovers.
                    var attributes = record?.attributes ?? [:]
                    if !snapshots.isEmpty { attributes[VolumeAttribute.snapshots] = .strings(snapshots) }
                    out.resources.append(ObservedResource(address, attributes: attributes,
                                                          conditions: [VolumeCondition.missing(name)] + leftovers,
                                                          protect: record?.protect ?? false))
                }
                continue
            }
            guard let record else {
                out.resources.append(ObservedResource(address, owned: false))
                continue
            }
            var resource = ObservedResource(address, attributes: observedAttributes(volume, quotas: contents.quotas,
                                                                                    snapshots: snapshots, users: users[name] ?? []),
                                            conditions: leftovers, protect: record.protect)
            if record.status == .creating { resource.conditions.append(VolumeCondition.createUnfinished) }
            if record.status == .deleting && declared[name] != nil { resource.conditions.append(VolumeCondition.removalInterrupted) }
            if let uuid = record.volumeSubvolumeUUID, uuid != volume.subvolume.uuid, record.status == .ready {
                resource.drift.append(Drift(address, "volumes/\(name) was replaced outside tupp (subvolume \(uuid) → \(volume.subvolume.uuid)); its content is kept as it is"))
                resource.conditions.append(VolumeCondition.notTheRecordedSubvolume(recorded: uuid, observed: volume.subvolume.uuid))
            }
            if let recorded = record.attributes[VolumeAttribute.owner], record.status == .ready,
               resource.attributes[VolumeAttribute.owner] != recorded {
                resource.drift.append(Drift(address, "owner changed outside tupp (\(recorded) → \(resource.attributes[VolumeAttribute.owner]!))",
                                            path: VolumeAttribute.owner, recorded: recorded, observed: resource.attributes[VolumeAttribute.owner]))
            }
            if let recorded = record.attributes[VolumeAttribute.mode], record.status == .ready,
               resource.attributes[VolumeAttribute.mode] != recorded {
                resource.drift.append(Drift(address, "mode changed outside tupp (\(recorded) → \(resource.attributes[VolumeAttribute.mode]!))",
                                            path: VolumeAttribute.mode, recorded: recorded, observed: resource.attributes[VolumeAttribute.mode]))
            }
            let recordedSize = record.attributes[VolumeAttribute.size]
            if record.status == .ready, recordedSize != resource.attributes[VolumeAttribute.size] {
                func show(_ v: Value?) -> String { v.map { if case .int(let b) = $0 { Units.formatSize(UInt64(b)) } else { "\($0)" } } ?? "none" }
                let message = contents.quotas.enabled
                    ? "qgroup limit changed outside tupp (\(show(recordedSize)) → \(show(resource.attributes[VolumeAttribute.size])))"
                    : "quotas were turned off outside tupp: its limit of \(show(recordedSize)) no longer holds"
                resource.drift.append(Drift(address, message, path: VolumeAttribute.size, recorded: recordedSize,
                                            observed: resource.attributes[VolumeAttribute.size]))
            }
            if contents.quotas.inconsistent && !contents.quotas.rescanning && declared[name]?.settings.size != nil {
                resource.conditions.append(VolumeCondition.quotasInconsistent)
            }
            if quotasUnneeded && declared[name] != nil { resource.conditions.append(VolumeCondition.quotasUnneeded) }
            out.fingerprints[address] = "subvolume \(volume.subvolume.uuid)"
            out.resources.append(resource)
        }
        return out
    }

    /// The live volume as attributes: its limit, owner and mode, and what is only shown.
    static func observedAttributes(_ volume: VolumeFacts, quotas: QuotaStatus, snapshots: [String], users: [String]) -> Attributes {
        var a: Attributes = [
            VolumeAttribute.owner: .string(volume.owner.description),
            VolumeAttribute.mode: .string(VolumeSettings.formatMode(volume.mode)),
        ]
        if quotas.enabled, let usage = volume.usage {
            if let limit = usage.limit { a[VolumeAttribute.size] = .int(Int64(clamping: limit)) }
            a[VolumeAttribute.referenced] = .int(Int64(clamping: usage.referenced))
            a[VolumeAttribute.exclusive] = .int(Int64(clamping: usage.exclusive))
        }
        if !snapshots.isEmpty { a[VolumeAttribute.snapshots] = .strings(snapshots) }
        if !users.isEmpty { a[VolumeAttribute.users] = .strings(users) }
        return a
    }

    /// True unless only a record (and leftovers) remain of it: deleting such a volume loses
    /// nothing, so no flag is needed.
    public static func holdsData(_ o: ObservedResource) -> Bool {
        !o.conditions.contains { ($0 as? VolumeCondition).map { if case .missing = $0 { true } else { false } } ?? false }
    }

    // MARK: - Planner rules

    /// The planner's volume rules for one declared volume: nothing replaces a volume, and a
    /// creation says what the volume will hold.
    static func judge(_ change: inout Plan.ResourceChange, drift: [Drift]) {
        change.reasons = change.reasons.map { r in
            var r = r
            if r.effect == .replace { r.effect = .inPlace }   // attributes of another tupp version: in place, never a replacement
            return r
        }
        guard change.action == .create else { return }
        if drift.contains(where: { $0.address == change.address && $0.path == VolumeAttribute.content }) {
            change.notes.append("created EMPTY: the data volumes/\(change.address.name) held is gone; to restore a backup instead, run tupp volume import \(change.address.name) < FILE before applying")
        } else if let seed = change.spec(VolumeSpec.self)?.seed {
            change.notes.append("seeded once from what image \(seed.image) holds at \(seed.path) (owners and modes kept); never again")
        }
    }

    /// The warning for a volume the plan keeps: it left the manifest, or destroy does not
    /// include volumes.
    static func keptNote(_ o: ObservedResource, destroying: Bool) -> String {
        let held = usage(o).map { ", \($0)" } ?? ""
        return destroying
            ? "\(o.address) is kept with its data\(held) (destroy --include-volumes deletes it)"
            : "\(o.address): kept (not declared; data retained\(held)); apply --prune-volumes deletes it"
    }

    /// What deleting the volume discards, and what stays.
    static func deletionNotes(_ o: ObservedResource) -> [String] {
        guard holdsData(o) else { return ["volumes/\(o.address.name) is gone already: only its record is removed"] }
        var notes = ["its data is deleted\(usage(o).map { " (\($0))" } ?? "")"]
        if case .list(let tags)? = o.attributes[VolumeAttribute.snapshots], !tags.isEmpty {
            notes.append("its snapshots \(tags.compactMap(\.string).joined(separator: ", ")) are kept (volumes/.snapshots/\(o.address.name))")
        }
        return notes
    }

    /// "1.2GiB referenced, 800MiB exclusive", when quotas count it.
    static func usage(_ o: ObservedResource) -> String? {
        guard case .int(let referenced)? = o.attributes[VolumeAttribute.referenced],
              case .int(let exclusive)? = o.attributes[VolumeAttribute.exclusive] else { return nil }
        return "\(Units.formatSize(UInt64(referenced))) referenced, \(Units.formatSize(UInt64(exclusive))) only in it"
    }

    /// The containers that still mount `volume` once the plan is applied: declared ones
    /// that mount it (none when destroying: they go, or are gone), and recorded users the
    /// plan leaves (protected, --no-prune, another project's). Containers it deletes do not
    /// count.
    static func usersAfter(_ volume: ResourceAddress, desired: [DesiredResource], observed: ObservedState,
                           changes: [ResourceAddress: Plan.ResourceChange], destroying: Bool) -> [String] {
        var users: Set<String> = []
        for d in desired where !destroying && d.address.kind == .container && d.dependencies.contains(volume)
            && changes[d.address]?.action != .delete {
            users.insert(d.address.name)
        }
        let declared = Set(desired.map(\.address))
        if case .list(let names)? = observed.resources[volume]?.attributes[VolumeAttribute.users] {
            for name in names.compactMap(\.string) {
                let container = ResourceAddress(.container, name)
                if !declared.contains(container), observed.resources[container] != nil, changes[container]?.action != .delete {
                    users.insert(name)
                }
            }
        }
        return users.sorted()
    }
}

// MARK: - Differences between settings and the live volume

/// One attribute of a volume that differs from its settings; each is changed in place.
public enum VolumeDifference: Sendable, Equatable {
    case owner(observed: VolumeOwner, declared: VolumeOwner)
    case mode(observed: UInt32, declared: UInt32)
    /// `observed` is the qgroup's limit (nil: none, or quotas off).
    case size(observed: UInt64?, declared: UInt64?)
}

extension VolumeSettings {
    /// What differs between these settings and the volume as observed. Size is compared
    /// whenever quotas are on (an undeclared size means no limit, so a limit set by hand is
    /// removed); with quotas off only a declared size differs, and applying it turns them on.
    public func differences(from facts: VolumeFacts, quotas: QuotaStatus) -> [VolumeDifference] {
        var result: [VolumeDifference] = []
        if let owner, owner != facts.owner { result.append(.owner(observed: facts.owner, declared: owner)) }
        if let mode, mode != facts.mode { result.append(.mode(observed: facts.mode, declared: mode)) }
        let limit = quotas.enabled ? facts.usage?.limit : nil
        if size != limit, quotas.enabled || size != nil {
            result.append(.size(observed: limit, declared: size))
        }
        return result
    }
}

/// Whether the pool should keep quotas on: only while some volume declares a size (qgroups
/// slow every write, snapshot and delete). Quotas tupp did not turn on — on a pool whose
/// filesystem is not tupp's (`storage` without a device) — are left alone.
public enum QuotaPolicy {
    public enum Action: Sendable, Equatable { case enable, disable }

    public static func action(declaredSizes: [UInt64?], status: QuotaStatus, poolFilesystemIsTupps: Bool) -> Action? {
        let wanted = declaredSizes.contains { $0 != nil }
        if wanted && !status.enabled { return .enable }
        if !wanted && status.enabled && poolFilesystemIsTupps { return .disable }
        return nil
    }
}
