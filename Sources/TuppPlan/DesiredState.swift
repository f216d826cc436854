import TuppManifest

/// What the desired state needs besides the manifest: values read from the host (source
/// digests) or judged from records (allocated addresses).
public struct DesiredContext: Sendable {
    /// The identity of each image's source ("sha256:…").
    public var imageDigests: [String: String]
    /// Every attached container's address, explicit or allocated (`AddressAllocator`).
    public var addresses: [String: IPv4Interface]

    public init(imageDigests: [String: String] = [:], addresses: [String: IPv4Interface] = [:]) {
        self.imageDigests = imageDigests
        self.addresses = addresses
    }
}

/// The manifest as resources, in dependency order; each kind's part is in Kinds/.
public enum DesiredState {
    public static func resources(_ manifest: Manifest, _ context: DesiredContext) -> [DesiredResource] {
        located(manifest, unlocated(manifest, context))
    }

    static func unlocated(_ manifest: Manifest, _ context: DesiredContext) -> [DesiredResource] {
        var out: [DesiredResource] = []
        if let storage = manifest.storage { out.append(PoolKind.desired(storage)) }
        let pool = manifest.storage.map { _ in PoolKind.address }
        for name in manifest.images.keys.sorted() {
            out.append(ImageKind.desired(manifest.images[name]!, digest: context.imageDigests[name], pool: pool))
        }
        let seeds = VolumeKind.seeds(manifest)
        for name in manifest.volumes.keys.sorted() {
            out.append(VolumeKind.desired(manifest.volumes[name]!, seed: seeds[name], pool: pool))
        }
        for name in manifest.networks.keys.sorted() {
            out.append(NetworkKind.desired(manifest.networks[name]!))
        }
        for name in manifest.containers.keys.sorted() {
            let c = manifest.containers[name]!
            out.append(ContainerKind.desired(c, network: c.network.flatMap { manifest.networks[$0.attach] },
                                             address: context.addresses[name]))
        }
        return out
    }

    /// Each resource with where the manifest declares it.
    static func located(_ manifest: Manifest, _ resources: [DesiredResource]) -> [DesiredResource] {
        resources.map { r in
            var r = r
            let path = r.address.kind == .pool ? "storage" : "\(r.address.kind.rawValue)s.\(r.address.name)"
            r.location = manifest.sources[path].map { "\($0.file):\($0.mark)" }
            return r
        }
    }
}
