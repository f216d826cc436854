import TuppBase

/// A layer's attributes, shown when it is deleted. Layers are made by image pulls (an
/// image's change says which it fetches), so a plan only ever deletes them.
public enum LayerAttribute {
    /// "sha256:…": the OCI ChainID, naming the layer with every layer below it.
    public static let chainID = AttributePath("chain_id")
    /// Bytes of the layer's own content (its uncompressed tar): what deleting it frees.
    public static let size = AttributePath("size")
    /// The images built on it before this plan.
    public static let usedBy = AttributePath("used_by")

    public static let schema = AttributeSchema([
        AttributeRule(chainID, .replace),
        AttributeRule(size, .replace, optional: true),
        AttributeRule(usedBy, .replace, optional: true),
    ])
}

/// One layer in the pool's layer store (`ROOT/layers/<hex of its chain ID>`).
public struct LayerFact: Sendable, Equatable {
    public var chainID: String
    /// Images whose rootfs is built on it (directly or through layers above it).
    public var images: [String]
    /// Bytes of its own content; nil for a layer whose size was not recorded.
    public var size: UInt64?

    public init(chainID: String, images: [String], size: UInt64? = nil) {
        self.chainID = chainID
        self.images = images
        self.size = size
    }
}

/// What the layer reconciler read from the pool.
public struct LayerFacts: Sendable, Equatable {
    public var layers: [LayerFact]
    /// Temporary subvolumes of layer imports that did not finish (their names in layers/).
    public var leftovers: [String]

    public init(layers: [LayerFact] = [], leftovers: [String] = []) {
        self.layers = layers
        self.leftovers = leftovers
    }
}

/// What the layer reconciler deletes.
public struct LayerSpec: ResourceSpec, Equatable {
    /// The layer, or nil for a leftover of an interrupted import.
    public var chainID: String?
    /// The leftover's name in layers/.
    public var leftover: String?

    public init(chainID: String? = nil, leftover: String? = nil) {
        self.chainID = chainID
        self.leftover = leftover
    }
}

/// Layers: deleted once no image uses them. Pure.
public enum LayerKind {
    /// The layers to delete after `plan`'s image changes: those no image uses now or once
    /// the images this plan destroys or replaces are gone — unless an image the plan
    /// creates or replaces is built on them (`incoming`: the chain IDs of each such
    /// image's new content, from its config). When any of those is not known (its
    /// registry did not answer), no layer is deleted: the next plan knows more. Leftovers
    /// of interrupted layer imports are always deleted. Nothing when the plan deletes the
    /// pool, with which the layers go.
    public static func removals(_ plan: Plan, layers: LayerFacts, incoming: [String: [String]]) -> [Plan.ResourceChange] {
        var out = layers.leftovers.sorted().map { name in
            Plan.ResourceChange(address: ResourceAddress(.layer, name), action: .delete, before: [:], after: nil,
                                notes: ["an interrupted layer import left layers/\(name)"], spec: LayerSpec(leftover: name))
        }
        let images = plan.changes.filter { $0.address.kind == .image }
        if plan.changes.contains(where: { $0.address.kind == .pool && $0.action == .delete }) { return [] }
        let gone = Set(images.filter { $0.action == .delete || $0.action == .replace }.map(\.address.name))
        let arriving = images.filter { $0.action == .create || $0.action == .replace }.map(\.address.name)
        guard arriving.allSatisfy({ incoming[$0] != nil }) else { return out }
        let kept = Set(arriving.flatMap { incoming[$0]! })
        let names = addressNames(layers.layers.map(\.chainID))
        for layer in layers.layers.sorted(by: { $0.chainID < $1.chainID })
        where Set(layer.images).isSubset(of: gone) && !kept.contains(layer.chainID) {
            var before: Attributes = [LayerAttribute.chainID: .string(layer.chainID)]
            if let size = layer.size { before[LayerAttribute.size] = .int(Int64(clamping: size)) }
            if !layer.images.isEmpty { before[LayerAttribute.usedBy] = .strings(layer.images) }
            out.append(Plan.ResourceChange(address: ResourceAddress(.layer, names[layer.chainID]!), action: .delete, before: before,
                                           after: nil, notes: [note(layer, plan: plan)], spec: LayerSpec(chainID: layer.chainID)))
        }
        return out
    }

    static func note(_ layer: LayerFact, plan: Plan) -> String {
        let freed = layer.size.map { "; frees \(Units.formatSize($0))" } ?? ""
        guard !layer.images.isEmpty else { return "no image uses it\(freed)" }
        let how = layer.images.map { name in
            let action = plan.changes.first { $0.address == ResourceAddress(.image, name) }?.action
            return "image.\(name) is \(action == .replace ? "replaced by one not built on it" : "destroyed")"
        }
        return "no image uses it once \(how.joined(separator: " and "))\(freed)"
    }

    /// Short names for the plan: the first 12 hex digits of each chain ID, as Docker
    /// shows layers, longer where two would share them.
    public static func addressNames(_ chainIDs: [String]) -> [String: String] {
        let hexes = chainIDs.map { $0.hasPrefix("sha256:") ? String($0.dropFirst(7)) : $0 }
        var out: [String: String] = [:]
        for (chainID, hex) in zip(chainIDs, hexes) {
            var length = min(12, hex.count)
            while length < hex.count && hexes.contains(where: { $0 != hex && $0.hasPrefix(hex.prefix(length)) }) { length += 1 }
            out[chainID] = String(hex.prefix(length))
        }
        return out
    }

    /// Places the removals after the plan's last image change (the pulls that may still
    /// use a layer, the deletions that free them), else before everything that is not a
    /// deletion: they run once no image they were built for remains.
    public static func insert(_ removals: [Plan.ResourceChange], into plan: inout Plan) {
        guard !removals.isEmpty else { return }
        let index: Int
        if let last = plan.changes.lastIndex(where: { $0.address.kind == .image }) {
            index = last + 1
        } else {
            index = plan.changes.firstIndex { $0.action != .delete } ?? plan.changes.count
        }
        plan.changes.insert(contentsOf: removals, at: index)
    }
}
