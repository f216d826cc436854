import Glibc
import Logging
import TuppBase
import TuppFacts
import TuppManifest
import TuppPlan
import TuppStorage
import TuppSystem

/// Volumes: read from the pool reconciler's walk of the subvolumes, one stat per volume
/// and one read of the quota tree (`VolumeStore.contents(from:)`); judged by `VolumeKind`;
/// created (seeded on the first creation only), changed in place and deleted through
/// `VolumeStore`. Nothing here replaces a volume.
struct VolumeReconciler: Reconciler {
    var kind: ResourceKind { .volume }

    /// What apply needs from the manifest to keep quotas on only while some volume has a
    /// size (`QuotaPolicy`).
    struct DeclaredSizes: Sendable {
        var sizes: [String: UInt64?]
        /// The pool's filesystem is tupp's (a loop file): quotas tupp did not turn on are not
        /// on such a pool.
        var poolIsTupps: Bool
    }

    func observe(_ observation: inout Observation, _ context: ObserveContext) async {
        var facts = VolumeKindFacts(contents: nil, poolIsTupps: context.manifest.storage?.device != nil)
        if let pool = observation.facts[PoolFacts.self], let root = pool.storage?.root, let contents = pool.contents {
            do {
                facts.contents = try VolumeStore(poolRoot: root).contents(from: contents)
            } catch {
                facts.contentsError = "\(error)"
            }
        }
        observation.facts[VolumeKindFacts.self] = facts
        observation.facts[DeclaredSizes.self] = DeclaredSizes(sizes: context.manifest.volumes.mapValues(\.settings.size),
                                                              poolIsTupps: context.manifest.storage?.device != nil)
        let users = VolumeKind.users(containerRecords: observation.records(of: .container))
        observation.merge(VolumeKind.interpret(declared: context.manifest.volumes, records: observation.records(of: .volume),
                                               facts: facts, users: users, destroying: context.destroying))
    }

    func apply(_ change: Plan.ResourceChange, _ context: ApplyContext) async throws {
        let name = change.address.name
        guard let root = context.poolRoot else {
            throw SystemError.failure("change", "\(change.address)", "no pool is declared or recorded")
        }
        let volumes = VolumeStore(poolRoot: root)
        let checkpoint: VolumeStore.Checkpoint = { Checkpoint.pass($0) }
        // Read again under the lock: what an interrupted change left, and the volume as it is now.
        let current: VolumeContents
        do {
            current = try volumes.contents()
        } catch {
            guard change.action == .delete else { throw error }
            try forget(change, root: root, unreadable: error, context)
            return
        }
        let leftovers = current.leftovers.filter { $0.volume == name }
        switch change.action {
        case .delete:
            var record = context.record(change.address) ?? Record(change.address, status: .deleting)
            record.status = .deleting
            try context.save(record)
            // Refused (EBUSY, naming the namespace) while anything still mounts it.
            if current.volumes[name] != nil { try volumes.delete(name, checkpoint: checkpoint) }
            for leftover in leftovers { try volumes.removeLeftover(leftover, checkpoint: checkpoint) }
            // Before the record goes: a crash in between leaves a deletion the next plan finishes.
            if !context.options.destroy { try settleQuotas(volumes, context, checkpoint: checkpoint) }
            try context.store.remove(change.address)
        case .create:
            guard let spec = change.spec(VolumeSpec.self) else { return }
            let previous = context.record(change.address)
            var record = Record(change.address, status: .creating, attributes: change.after ?? [:], protect: spec.volume.protect)
            record.volumeExisted = previous?.volumeExisted ?? false
            try context.save(record)
            for leftover in leftovers { try volumes.removeLeftover(leftover, checkpoint: checkpoint) }
            // Seeded on the first creation only: a volume that existed and was lost comes back empty.
            let created = try volumes.create(name, settings: spec.volume.settings, seed: record.volumeExisted ? nil : spec.seed,
                                             checkpoint: checkpoint)
            for warning in created.warnings { context.progress("warning: \(warning)") }
            if case .copied(let entries, let bytes) = created.seed {
                context.logger.debug("\(change.address): seeded with \(entries) entries, \(Units.formatSize(bytes))")
            }
            record.status = .ready
            record.volumeExisted = true
            record.volumeSubvolumeUUID = created.subvolume.uuid
            try context.save(record)
        case .update:
            guard let spec = change.spec(VolumeSpec.self) else { return }
            guard let live = current.volumes[name] else {
                throw SystemError("change volume", "\(root)/volumes/\(name)", errno: ENOENT, detail: "it disappeared since the plan; plan again")
            }
            // Intent first: the values this change sets.
            var record = context.record(change.address) ?? Record(change.address, status: .ready)
            record.status = .ready
            record.attributes = change.after ?? [:]
            record.protect = spec.volume.protect
            record.volumeExisted = true
            record.volumeSubvolumeUUID = live.subvolume.uuid
            try context.save(record)
            for leftover in leftovers { try volumes.removeLeftover(leftover, checkpoint: checkpoint) }
            if change.conditions(VolumeCondition.self).contains(.quotasInconsistent), current.quotas.inconsistent {
                try volumes.rescanQuotas(checkpoint: checkpoint)
            }
            // What differs now, whether declared anew or changed by hand; the limit first, so
            // that a raised one makes room for the rest.
            let differences = spec.volume.settings.differences(from: live, quotas: current.quotas)
            for case .size(_, let bytes) in differences { try volumes.setLimit(name, bytes: bytes, checkpoint: checkpoint) }
            var owner: VolumeOwner?, mode: UInt32?
            for difference in differences {
                if case .owner(_, let declared) = difference { owner = declared }
                if case .mode(_, let declared) = difference { mode = declared }
            }
            if owner != nil || mode != nil {
                try setOwnerAndMode(volumes, name, owner: owner, mode: mode, limit: spec.volume.settings.size, checkpoint: checkpoint)
            }
            try settleQuotas(volumes, context, checkpoint: checkpoint)
        case .replace:
            throw SystemError.failure("replace", "\(change.address)", "tupp never replaces a volume (its data would be lost)")
        case .noop:
            break
        }
    }

    /// The deletion of a volume in a pool that cannot be read — not mounted, after a destroy
    /// that kept the volume: only its record can go, and only when the pool's file goes too.
    func forget(_ change: Plan.ResourceChange, root: String, unreadable: any Error, _ context: ApplyContext) throws {
        guard context.options.destroy && context.options.includeStorage else {
            throw SystemError.failure("delete volume", "\(root)/volumes/\(change.address.name)",
                                      "the pool cannot be read (\(unreadable)); if it is not mounted, run tupp apply to mount it, then delete the volume again")
        }
        var record = context.record(change.address) ?? Record(change.address, status: .deleting)
        record.status = .deleting
        try context.save(record)
        try context.store.remove(change.address)
    }

    /// chown/chmod of the volume's root. On a volume at its limit even that fails (EDQUOT:
    /// the metadata change is charged to the volume), so the limit is lifted for the change
    /// and set again right after; a crash in between leaves a difference the next plan shows.
    func setOwnerAndMode(_ volumes: VolumeStore, _ name: String, owner: VolumeOwner?, mode: UInt32?, limit: UInt64?,
                         checkpoint: @escaping VolumeStore.Checkpoint) throws {
        do {
            try volumes.setOwnerAndMode(name, owner: owner, mode: mode, checkpoint: checkpoint)
        } catch let error as SystemError where error.code == EDQUOT && limit != nil {
            try volumes.setLimit(name, bytes: nil, checkpoint: checkpoint)
            try volumes.setOwnerAndMode(name, owner: owner, mode: mode, checkpoint: checkpoint)
            try volumes.setLimit(name, bytes: limit, checkpoint: checkpoint)
        }
    }

    /// Turns quotas off once no volume has a size any more: declared ones by the manifest,
    /// undeclared ones (kept with their data) by their live limit.
    func settleQuotas(_ volumes: VolumeStore, _ context: ApplyContext, checkpoint: VolumeStore.Checkpoint) throws {
        guard let declared = context.observation.facts[DeclaredSizes.self] else { return }
        let now = try volumes.contents()
        let kept = now.volumes.values.filter { declared.sizes[$0.name] == nil }.map { $0.usage?.limit }
        let action = QuotaPolicy.action(declaredSizes: Array(declared.sizes.values) + kept, status: now.quotas,
                                        poolFilesystemIsTupps: declared.poolIsTupps)
        if action == .disable { try volumes.disableQuotas(checkpoint: checkpoint) }
    }
}
