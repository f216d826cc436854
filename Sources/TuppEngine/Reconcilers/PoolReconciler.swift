import Glibc
import TuppFacts
import TuppManifest
import TuppPlan
import TuppStorage
import TuppSystem

/// The btrfs pool: observed through statfs, mountinfo and the loop device's sysfs entry;
/// judged by `PoolKind`; created, remounted, grown and torn down through `Pool`, whose
/// steps pass their own crash checkpoints.
struct PoolReconciler: Reconciler {
    var kind: ResourceKind { .pool }

    func observe(_ observation: inout Observation, _ context: ObserveContext) async {
        var facts = PoolFacts(storage: context.manifest.storage, observation: nil)
        if let storage = context.manifest.storage {
            let pool = Pool.observe(storage)
            facts.observation = pool
            if pool.mounted || (storage.device == nil && pool.onBtrfs) {
                do {
                    facts.contents = try ImageStore(poolRoot: storage.root).contents()
                } catch {
                    facts.contentsError = "\(error)"
                }
            }
        }
        observation.facts[PoolFacts.self] = facts
        observation.merge(PoolKind.interpret(facts, record: observation.records[PoolKind.address], destroying: context.destroying))
    }

    func apply(_ change: Plan.ResourceChange, _ context: ApplyContext) async throws {
        guard let storage = change.spec(PoolSpec.self)?.storage else {
            throw SystemError.failure("change", "\(change.address)", "the manifest declares no storage")
        }
        let address = change.address
        switch change.action {
        case .delete:
            try context.save(Record(address, status: .deleting, attributes: change.before ?? [:]))
            if storage.device != nil {
                try Pool.unmountAndDetach(storage)
                if context.options.includeStorage { try Pool.removeFile(storage) }
                // The mount point tupp made; left in place if anything else is in it.
                rmdir(storage.root)
                Checkpoint.pass("mount point removed")
            }
            try context.store.remove(address)
        case .create, .update, .replace:
            try context.save(Record(address, status: .creating, attributes: change.after ?? [:]))
            if change.action == .create {
                try await Pool.create(storage)
            } else {
                if storage.device != nil && !Pool.observe(storage).mounted {
                    // Not `mount`: a create killed between making the file and formatting
                    // it left a blank file, which `create` formats (and only a blank one).
                    try await Pool.create(storage)
                }
                if PoolKind.needsGrow(storage, Pool.observe(storage)) {
                    try Pool.grow(storage)
                }
                try Errno.check("chmod 0700", storage.root) { chmod(storage.root, 0o700) }
                Checkpoint.pass("root mode set")
            }
            try context.save(Record(address, status: .ready, attributes: change.after ?? [:]))
        case .noop:
            break
        }
    }
}
