import TuppManifest

/// How each attribute of each kind is applied when it changes (MANIFEST.md, "Semantics").
public enum AttributeEffects {
    public static func effect(_ kind: ResourceKind, _ path: String) -> ChangeEffect {
        switch kind {
        case .container:
            switch path {
            case "image", "namespaces": return .replace
            case "hostname", "restart", "stop_timeout", "protect": return .inPlace
            default:
                return path.hasPrefix("network.") ? .inPlace : .restart
            }
        case .image:
            return path == "protect" ? .inPlace : .replace
        case .network:
            return path == "bridge" ? .replace : .inPlace
        case .pool:
            return path == "device.size" ? .inPlace : .replace
        }
    }
}

/// The manifest as resources with attributes, ready to diff.
public enum DesiredState {
    /// `imageDigests`: the identity of each image's source ("sha256:…"), computed by the
    /// caller (it reads files). `addresses`: every attached container's address, explicit
    /// or allocated (`AddressAllocator`).
    public static func resources(_ manifest: Manifest, imageDigests: [String: String],
                                 addresses: [String: IPv4Interface]) -> [DesiredResource] {
        var out: [DesiredResource] = []
        if let storage = manifest.storage {
            out.append(DesiredResource(ResourceAddress(.pool, "main"), attributes: poolAttributes(storage)))
        }
        let pool = manifest.storage.map { _ in [ResourceAddress(.pool, "main")] } ?? []
        for name in manifest.images.keys.sorted() {
            let image = manifest.images[name]!
            var attributes: [String: Value] = ["source": .string(image.source.description)]
            if let digest = imageDigests[name] { attributes["digest"] = .string(digest) }
            out.append(DesiredResource(ResourceAddress(.image, name), attributes: attributes, dependencies: pool, protect: image.protect))
        }
        for name in manifest.networks.keys.sorted() {
            out.append(DesiredResource(ResourceAddress(.network, name), attributes: networkAttributes(manifest.networks[name]!)))
        }
        for name in manifest.containers.keys.sorted() {
            let c = manifest.containers[name]!
            var deps = [ResourceAddress(.image, c.image)]
            var network: Network?
            if let attachment = c.network {
                deps.append(ResourceAddress(.network, attachment.attach))
                network = manifest.networks[attachment.attach]
            }
            out.append(DesiredResource(ResourceAddress(.container, name),
                                       attributes: containerAttributes(c, network: network, address: addresses[name]),
                                       dependencies: deps, protect: c.protect))
        }
        return out
    }

    public static func poolAttributes(_ storage: Storage) -> [String: Value] {
        var a: [String: Value] = ["root": .string(storage.root)]
        if let device = storage.device {
            a["device.file"] = .string(device.file)
            a["device.size"] = .int(Int64(device.size))
        }
        return a
    }

    public static func networkAttributes(_ n: Network) -> [String: Value] {
        var a: [String: Value] = [
            "bridge": .string(n.bridge),
            "subnet": .string(n.subnet.description),
            "gateway": .string(n.gateway.description),
            "nat": .bool(n.nat),
        ]
        if let mtu = n.mtu { a["mtu"] = .int(Int64(mtu)) }
        return a
    }

    public static func containerAttributes(_ c: Container, network: Network?, address: IPv4Interface?) -> [String: Value] {
        var a: [String: Value] = [
            "image": .string(c.image),
            "namespaces": .strings(c.namespaces.sorted().map(\.rawValue)),
            "command": .strings(c.command),
            "workdir": .string(c.workdir),
            "restart": .string(c.restart.rawValue),
            "capabilities": .strings(c.effectiveCapabilities.map(\.name)),
            "stop_timeout": .string(Units.formatDuration(c.stopTimeout)),
        ]
        if let hostname = c.effectiveHostname { a["hostname"] = .string(hostname) }
        if !c.mounts.isEmpty { a["mounts"] = .strings(c.mounts.map(describe)) }
        for (key, value) in c.env { a["env.\(key)"] = .string(value) }
        if let attachment = c.network, let network {
            a["network.attach"] = .string(attachment.attach)
            a["network.bridge"] = .string(network.bridge)
            a["network.interface"] = .string(attachment.interface)
            a["network.gateway"] = .string(network.gateway.description)
            if let address = address ?? attachment.address { a["network.address"] = .string(address.description) }
        }
        return a
    }

    /// "tmpfs /tmp (size=64m)", "bind /srv/data → /data (ro)".
    public static func describe(_ m: Mount) -> String {
        var options = m.options
        if m.readonly && !options.contains("ro") { options.append("ro") }
        let suffix = options.isEmpty ? "" : " (\(options.joined(separator: ",")))"
        switch m.kind {
        case .tmpfs: return "tmpfs \(m.target)\(suffix)"
        case .bind: return "bind \(m.source ?? "?") → \(m.target)\(suffix)"
        }
    }
}

/// Addresses for containers that do not declare one: deterministic and stable.
///
/// A container keeps the address it was given while it exists (`recorded`). A new one
/// starts at a slot derived from a hash of its name and takes the first free address
/// from there, so the same manifest yields the same addresses after destroy + apply,
/// whatever order containers were added in.
public enum AddressAllocator {
    public struct Exhausted: Error, Equatable, Sendable {
        public var network: String
        public var container: String
    }

    public static func allocate(_ manifest: Manifest, recorded: [String: IPv4Interface]) -> Result<[String: IPv4Interface], Exhausted> {
        var result: [String: IPv4Interface] = [:]
        var taken: [String: Set<UInt32>] = [:]   // by network
        var pending: [(container: String, network: Network)] = []
        for name in manifest.containers.keys.sorted() {
            guard let attachment = manifest.containers[name]!.network,
                  let network = manifest.networks[attachment.attach] else { continue }
            if let explicit = attachment.address {
                result[name] = explicit
                taken[network.name, default: reserved(network)].insert(explicit.address.value)
            } else {
                pending.append((name, network))
            }
        }
        // Recorded addresses first, so existing containers never move.
        var fresh: [(container: String, network: Network)] = []
        for item in pending {
            var set = taken[item.network.name, default: reserved(item.network)]
            if let old = recorded[item.container], old.prefixLength == item.network.subnet.prefixLength,
               item.network.subnet.contains(old.address), !set.contains(old.address.value) {
                result[item.container] = old
                set.insert(old.address.value)
            } else {
                fresh.append(item)
            }
            taken[item.network.name] = set
        }
        for item in fresh {
            var set = taken[item.network.name, default: reserved(item.network)]
            let subnet = item.network.subnet
            let hosts = subnet.size - 2
            guard hosts > 0 else { return .failure(Exhausted(network: item.network.name, container: item.container)) }
            let start = StableName.hash(item.container) % hosts
            var found: IPv4Address?
            var offset: UInt64 = 0
            while offset < hosts {
                let candidate = IPv4Address(subnet.network.value &+ 1 &+ UInt32((start + offset) % hosts))
                if !set.contains(candidate.value) { found = candidate; break }
                offset += 1
            }
            guard let address = found else { return .failure(Exhausted(network: item.network.name, container: item.container)) }
            set.insert(address.value)
            taken[item.network.name] = set
            result[item.container] = IPv4Interface(address: address, prefixLength: subnet.prefixLength)
        }
        return .success(result)
    }

    static func reserved(_ network: Network) -> Set<UInt32> {
        [network.subnet.network.value, network.subnet.broadcast.value, network.gateway.value]
    }
}

/// FNV-1a of a name (the planner imports no system module, so it carries its own).
enum StableName {
    static func hash(_ text: String) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in text.utf8 {
            h ^= UInt64(b)
            h = h &* 0x0000_0100_0000_01b3
        }
        return h
    }
}
