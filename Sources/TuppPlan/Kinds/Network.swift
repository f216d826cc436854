import TuppFacts
import TuppManifest

/// A network's attributes: its bridge's name is its identity; everything else is
/// changed on the live bridge.
public enum NetworkAttribute {
    public static let bridge = AttributePath("bridge")
    public static let subnet = AttributePath("subnet")
    public static let gateway = AttributePath("gateway")
    public static let nat = AttributePath("nat")
    public static let mtu = AttributePath("mtu")

    public static let schema = AttributeSchema([
        AttributeRule(bridge, .replace),
        AttributeRule(subnet, .inPlace),
        AttributeRule(gateway, .inPlace),
        AttributeRule(nat, .inPlace),
        AttributeRule(mtu, .inPlace),
    ])
}

/// What the network reconciler applies.
public struct NetworkSpec: ResourceSpec, Equatable {
    public var network: Network

    public init(_ network: Network) { self.network = network }
}

/// Why a network needs work although its attributes match.
public enum NetworkCondition: ResourceCondition, Equatable {
    case bridgeDown(String)
    case ownershipMarkLost(String)

    public var effect: ChangeEffect { .inPlace }

    public var description: String {
        switch self {
        case .bridgeDown(let bridge): "bridge \(bridge) is down"
        case .ownershipMarkLost(let bridge): "bridge \(bridge) lost tupp's ownership mark (ifalias)"
        }
    }
}

extension Record {
    /// The bridge device of a network record.
    public var bridgeName: String? {
        get { facts["bridge"] }
        set { facts["bridge"] = newValue }
    }

    /// The network uses a bridge tupp did not create (docker0, say): never changed or deleted.
    public var isExternal: Bool {
        get { facts["external"] == "true" }
        set { facts["external"] = newValue ? "true" : nil }
    }
}

/// What the network reconciler read from the host.
public struct NetworkFacts: Sendable {
    /// The host's links, addresses and routes; nil when they could not be read.
    public var host: NetworkSnapshot?
    public var hostError: String?
    /// Subnets tupp masquerades (its nftables table); nil when no network uses NAT.
    public var natSubnets: [IPv4Network]?
    public var natError: String?

    public init(host: NetworkSnapshot?, hostError: String? = nil, natSubnets: [IPv4Network]? = nil, natError: String? = nil) {
        self.host = host
        self.hostError = hostError
        self.natSubnets = natSubnets
        self.natError = natError
    }
}

/// Networks: a bridge with the gateway address, optionally masqueraded. Pure.
public enum NetworkKind {
    public static func desired(_ network: Network) -> DesiredResource {
        DesiredResource(ResourceAddress(.network, network.name), attributes: attributes(network), spec: NetworkSpec(network))
    }

    public static func attributes(_ n: Network) -> Attributes {
        var a: Attributes = [
            NetworkAttribute.bridge: .string(n.bridge),
            NetworkAttribute.subnet: .string(n.subnet.description),
            NetworkAttribute.gateway: .string(n.gateway.description),
            NetworkAttribute.nat: .bool(n.nat),
        ]
        if let mtu = n.mtu { a[NetworkAttribute.mtu] = .int(Int64(mtu)) }
        return a
    }

    /// True when any declared or recorded network masquerades: only then is nftables read.
    public static func usesNAT(declared: [String: Network], records: [String: Record]) -> Bool {
        declared.values.contains(where: \.nat) || records.values.contains { $0.attributes[NetworkAttribute.nat] == .bool(true) }
    }

    /// `destroying`: a subnet overlapping a host route no longer matters.
    public static func interpret(declared: [String: Network], records: [String: Record], facts: NetworkFacts,
                                 installation: String, destroying: Bool = false) -> KindObservation {
        var out = KindObservation()
        if let error = facts.natError { out.problems.append("cannot read the nftables rule set: \(error)") }
        guard let host = facts.host else {
            out.problems.append("cannot read the host's links and routes: \(facts.hostError ?? "unknown error")")
            return out
        }
        var names = Set(declared.keys).union(records.keys)
        // Bridges carrying this installation's mark whose record is gone (a crash between
        // creating and recording cannot happen — intent is recorded first — but a deleted
        // state file can).
        for link in host.links {
            if let owner = link.owner, owner.belongs(toInstallation: installation), owner.role == .network { names.insert(owner.name) }
        }
        var ownedBridgeIndices: Set<Int> = []
        for name in names.sorted() {
            let address = ResourceAddress(.network, name)
            let record = records[name]
            let network = declared[name]
            let bridgeName = network?.bridge ?? record?.bridgeName
                ?? host.links.first { $0.owner == LinkOwner(installation: installation, role: .network, name: name) }?.name
            guard let bridgeName, let link = host.link(named: bridgeName) else {
                if let record, record.status == .ready {
                    out.drift.append(Drift(address, "bridge \(record.bridgeName ?? "?") was deleted outside tupp"))
                }
                // Not to be created again (left the manifest, or a destroy): the record alone
                // is shown, so the plan deletes it — also one a crashed removal left behind.
                if network == nil || destroying, let record {
                    out.resources.append(ObservedResource(address, attributes: record.attributes))
                }
                continue
            }
            let mine = link.owner?.belongs(toInstallation: installation) == true && link.owner?.name == name
            let addresses = host.addresses(onLink: link.index)
            var attributes: Attributes = [NetworkAttribute.bridge: .string(link.name)]
            let primary = network.flatMap { d in addresses.first { $0.address == d.gateway } } ?? addresses.first
            if let primary {
                attributes[NetworkAttribute.subnet] = .string(primary.network.description)
                attributes[NetworkAttribute.gateway] = .string(primary.address.description)
            }
            if network?.mtu != nil { attributes[NetworkAttribute.mtu] = .int(Int64(link.mtu)) }
            attributes[NetworkAttribute.nat] = .bool(primary.map { facts.natSubnets?.contains($0.network) ?? false } ?? false)
            out.fingerprints[address] = "link #\(link.index) \(link.mac?.description ?? "no MAC") \(addresses.isEmpty ? "no address" : addresses.map(\.description).joined(separator: ","))"
            // Ours: marked with this installation's alias, or recorded as created by us (an
            // alias changed by hand is then drift, repaired by the update).
            let ours = mine || (record != nil && !record!.isExternal)
            if ours {
                ownedBridgeIndices.insert(link.index)
                var resource = ObservedResource(address, attributes: attributes)
                if link.kind != "bridge" {
                    out.problems.append("network.\(name): \(link.name) is a \(link.kind ?? "non-bridge") link, not a bridge")
                }
                if !link.isUp { resource.conditions.append(NetworkCondition.bridgeDown(link.name)) }
                if !mine { resource.conditions.append(NetworkCondition.ownershipMarkLost(link.name)) }
                if let record, record.status == .ready, let was = record.attributes[NetworkAttribute.gateway],
                   attributes[NetworkAttribute.gateway] != was {
                    resource.drift.append(Drift(address, "bridge \(link.name) address changed outside tupp (\(was) → \(attributes[NetworkAttribute.gateway].map(\.description) ?? "none"))",
                                                path: NetworkAttribute.gateway, recorded: was, observed: attributes[NetworkAttribute.gateway]))
                }
                out.resources.append(resource)
            } else if let network, addresses.contains(IPv4Interface(address: network.gateway, prefixLength: network.subnet.prefixLength)) {
                // A bridge tupp did not create (docker0, say) whose address matches: used, never changed.
                ownedBridgeIndices.insert(link.index)
                var same = Self.attributes(network)
                same[NetworkAttribute.bridge] = .string(link.name)
                if network.nat { same[NetworkAttribute.nat] = attributes[NetworkAttribute.nat] }
                out.resources.append(ObservedResource(address, attributes: same, external: true))
            } else {
                let have = addresses.isEmpty ? "no address" : addresses.map(\.description).joined(separator: ", ")
                out.problems.append("network.\(name): bridge \(link.name) exists, was not created by tupp and has \(have)\(network.map { ", not \($0.gateway)/\($0.subnet.prefixLength)" } ?? ""); tupp will not change it — choose another bridge name or give it that address")
            }
        }
        // A subnet must not overlap a host route tupp does not own (the uplink, DNS, VPNs…).
        for (name, network) in declared.sorted(by: { $0.key < $1.key }) where !destroying {
            for route in RouteConflicts.conflicting(subnet: network.subnet, in: host, ignoringLinks: ownedBridgeIndices) {
                out.problems.append("network.\(name): subnet \(network.subnet) overlaps the host route \(RouteConflicts.describe(route, in: host)); choose a subnet that overlaps no host route")
            }
        }
        return out
    }
}
