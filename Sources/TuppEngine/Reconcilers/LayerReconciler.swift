import TuppBase
import TuppFacts
import TuppManifest
import TuppPlan
import TuppStorage
import TuppSystem

/// Layers: read from the pool reconciler's listing (which images each is built for,
/// from the parent UUIDs btrfs keeps) and their recorded sizes; which to delete is
/// `LayerKind.removals`, once the images' changes are planned; deleted through
/// `LayerStore`, which checks again that no image uses the layer.
struct LayerReconciler: Reconciler {
    var kind: ResourceKind { .layer }

    func observe(_ observation: inout Observation, _ context: ObserveContext) async {
        guard let contents = observation.facts[PoolFacts.self]?.contents, let root = context.manifest.storage?.root else { return }
        let (layers, leftovers) = LayerStore.layers(in: contents)
        let sizes = layers.isEmpty ? [:] : LayerStore(poolRoot: root).sizes()
        observation.facts[LayerFacts.self] = LayerFacts(
            layers: layers.map { LayerFact(chainID: $0.chainID, images: $0.images, size: sizes[$0.chainID]) },
            leftovers: leftovers.map { Paths.basename($0.path) })
    }

    func apply(_ change: Plan.ResourceChange, _ context: ApplyContext) async throws {
        guard change.action == .delete, let spec = change.spec(LayerSpec.self) else { return }
        guard let root = context.poolRoot else {
            throw SystemError.failure("delete", "\(change.address)", "no pool is declared or recorded")
        }
        let store = LayerStore(poolRoot: root)
        if let chainID = spec.chainID {
            try store.delete(chainID)
            Checkpoint.pass("layer \(change.address.name) deleted")
        } else if let leftover = spec.leftover {
            try store.removeLeftover(leftover)
        }
    }
}
