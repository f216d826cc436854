import TuppFacts
import TuppManifest

/// What the desired state needs besides the manifest: values read from the host (source
/// digests) or judged from records (allocated addresses).
public struct DesiredContext: Sendable {
    /// The identity of each image's source ("sha256:…").
    public var imageDigests: [String: String]
    /// What each image gives its containers (its config), by image name; an image not
    /// listed has none, or an unknown one when its source carries a config.
    public var imageDefaults: [String: ImageDefaults] = [:]
    /// The chain IDs of each image's planned content, bottom to top, when known (layered
    /// images: from the config); what the layers kept for a pull are.
    public var imageLayers: [String: [String]] = [:]
    /// Every attached container's address, explicit or allocated (`AddressAllocator`).
    public var addresses: [String: IPv4Interface]
    /// Containers the plan keeps without declaring them (other projects'): their names on
    /// shared networks and their published ports still count.
    public var kept: [KeptContainer]
    /// The host's resolv.conf and systemd-resolved's upstream servers, the default of every
    /// container's /etc/resolv.conf; nil when unreadable.
    public var hostResolvers: HostResolvers?
    /// Planning a destroy: installation-wide resources keep only what the kept containers need.
    public var destroying: Bool
    /// The content digest of each seccomp profile file the manifest names.
    public var seccompDigests: [String: String] = [:]
    /// The maps of each container with `userns: auto` (`UserNamespaceAllocator`).
    public var userNamespaces: [String: IDMapping] = [:]

    public init(imageDigests: [String: String] = [:], imageDefaults: [String: ImageDefaults] = [:], imageLayers: [String: [String]] = [:],
                addresses: [String: IPv4Interface] = [:], kept: [KeptContainer] = [], hostResolvers: HostResolvers? = nil,
                destroying: Bool = false) {
        self.imageDigests = imageDigests
        self.imageDefaults = imageDefaults
        self.imageLayers = imageLayers
        self.addresses = addresses
        self.kept = kept
        self.hostResolvers = hostResolvers
        self.destroying = destroying
    }
}

/// The host's resolver settings, as read.
public struct HostResolvers: Sendable, Equatable {
    public var host: ResolverSettings
    /// /run/systemd/resolve/resolv.conf, when present.
    public var resolvedUpstream: ResolverSettings?

    public init(host: ResolverSettings, resolvedUpstream: ResolverSettings?) {
        self.host = host
        self.resolvedUpstream = resolvedUpstream
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
        let peers = peersByNetwork(manifest, context)
        let resolvers = context.hostResolvers ?? HostResolvers(host: ResolverSettings(), resolvedUpstream: nil)
        for name in manifest.containers.keys.sorted() {
            let c = manifest.containers[name]!
            let names = NameSettings(c, members: c.network.flatMap { peers[$0.attach] } ?? NetworkMembers(), resolvers: resolvers)
            let defaults = context.imageDefaults[c.image] ?? (manifest.images[c.image]?.source.carriesConfig == true ? .unknown : .none)
            var digest: String?
            if case .profile(let path) = c.confinement.seccomp { digest = context.seccompDigests[path] }
            out.append(ContainerKind.desired(c, network: c.network.flatMap { manifest.networks[$0.attach] },
                                             address: context.addresses[name], names: names, seccompDigest: digest, image: defaults,
                                             userNamespace: context.userNamespaces[name]))
        }
        let publishing = context.destroying ? Manifest() : manifest
        if let ports = PortsKind.desired(PortsKind.published(publishing, addresses: context.addresses, kept: context.kept)) {
            out.append(ports)
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

    /// Everyone on a network knows the others by name: the declared containers and the
    /// kept ones, network → name → address.
    static func peersByNetwork(_ manifest: Manifest, _ context: DesiredContext) -> [String: NetworkMembers] {
        var peers: [String: NetworkMembers] = [:]
        if !context.destroying {
            for (name, c) in manifest.containers {
                if let attachment = c.network, let address = context.addresses[name] ?? attachment.address {
                    peers[attachment.attach, default: NetworkMembers()].insert(name, address.address)
                }
            }
        }
        for k in context.kept where context.destroying || manifest.containers[k.name] == nil {
            peers[k.network, default: NetworkMembers()].insert(k.name, k.address.address)
        }
        return peers
    }

    /// Kept containers (other projects') whose /etc/hosts must change because this plan
    /// adds, removes or moves a container on their network: name → their network's members.
    public static func neighbourPeers(_ manifest: Manifest, _ context: DesiredContext, records: [String: Record]) -> [String: NetworkMembers] {
        let peers = peersByNetwork(manifest, context)
        var out: [String: NetworkMembers] = [:]
        for k in context.kept where manifest.containers[k.name] == nil {
            let members = peers[k.network] ?? NetworkMembers()
            if records[k.name]?.attributes[ContainerAttribute.peers] != members.summary(except: k.name) { out[k.name] = members }
        }
        return out
    }
}
