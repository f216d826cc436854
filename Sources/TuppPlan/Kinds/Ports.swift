import TuppFacts
import TuppManifest

/// The installation's published ports: one nftables table holding every container's
/// publications, whatever project declared them. One attribute per publication.
public enum PortsAttribute {
    /// `publication.tcp/0.0.0.0:8080` = "web:80": the host side → the container and port.
    public static let publication = AttributePath("publication")

    public static let schema = AttributeSchema([
        AttributeRule(publication, .inPlace, family: true, optional: true),
    ])

    /// "tcp/0.0.0.0:8080", "udp/127.0.0.1:53", "tcp/0.0.0.0:9000-9002".
    public static func key(protocol: TransportProtocol, address: IPv4Address?, ports: PortRange) -> AttributePath {
        publication.child("\(`protocol`.rawValue)/\(address?.description ?? "0.0.0.0"):\(ports)")
    }
}

/// What the ports reconciler applies: the table's rules, exactly.
public struct PortsSpec: ResourceSpec, Equatable {
    public var rules: PortRuleSet

    public init(_ rules: PortRuleSet) { self.rules = rules }
}

/// A difference between the table and what it should hold, beyond publications: a
/// missing or foreign rule, route_localnet, the chains.
public struct PortsCondition: ResourceCondition, Equatable {
    /// One line of `PortRuleChanges.summary`.
    public var line: String

    public var effect: ChangeEffect { .inPlace }
    public var description: String { "port table: \(line)" }
}

/// What the ports reconciler read from the host.
public struct PortsFacts: Sendable {
    /// The table and the switches it relies on; nil when they could not be read.
    public var table: PortRuleFacts?
    public var error: String?
    /// Why publications cannot be made: a host process on the port, another
    /// installation's or another container's publication.
    public var conflicts: [String]

    public init(table: PortRuleFacts?, error: String? = nil, conflicts: [String] = []) {
        self.table = table
        self.error = error
        self.conflicts = conflicts
    }
}

/// A container the plan keeps without declaring it (another project's): its recorded
/// network, address and publications still count for the port table and /etc/hosts.
public struct KeptContainer: Sendable, Equatable {
    public var name: String
    public var network: String
    public var address: IPv4Interface
    public var bridge: String
    public var ports: [PortPublication]

    public init(name: String, network: String, address: IPv4Interface, bridge: String, ports: [PortPublication]) {
        self.name = name
        self.network = network
        self.address = address
        self.bridge = bridge
        self.ports = ports
    }

    /// The recorded container `record`, when it is attached to a network.
    public init?(_ record: Record) {
        guard let network = record.attributes[ContainerAttribute.networkAttach]?.string, let address = record.containerAddress,
              let bridge = record.attributes[ContainerAttribute.networkBridge]?.string else { return nil }
        let ports = (record.attributes[ContainerAttribute.networkPorts].flatMap { value -> [String]? in
            guard case .list(let items) = value else { return nil }
            return items.compactMap(\.string)
        } ?? []).compactMap { try? PortPublication.parse($0) }
        self.init(name: record.name, network: network, address: address, bridge: bridge, ports: ports)
    }
}

/// Published ports. Pure.
public enum PortsKind {
    public static let address = ResourceAddress(.ports, "published")

    /// Every publication of the installation: the declared containers' (with their
    /// allocated addresses) and the kept ones'.
    public static func published(_ manifest: Manifest, addresses: [String: IPv4Interface], kept: [KeptContainer]) -> [PublishedContainer] {
        var out: [PublishedContainer] = []
        for name in manifest.containers.keys.sorted() {
            let c = manifest.containers[name]!
            guard let attachment = c.network, !attachment.ports.isEmpty, let network = manifest.networks[attachment.attach],
                  let address = addresses[name] ?? attachment.address else { continue }
            out.append(PublishedContainer(name: name, address: address.address, bridge: network.bridge, subnet: network.subnet,
                                          ports: attachment.ports))
        }
        for k in kept where !k.ports.isEmpty && manifest.containers[k.name] == nil {
            out.append(PublishedContainer(name: k.name, address: k.address.address, bridge: k.bridge, subnet: k.address.network,
                                          ports: k.ports))
        }
        return out
    }

    /// The table's desired state; nil when nothing is published.
    public static func desired(_ containers: [PublishedContainer]) -> DesiredResource? {
        let rules = PortRuleSet.desired(containers)
        guard !rules.isEmpty else { return nil }
        var attributes: Attributes = [:]
        for c in containers {
            for p in c.ports {
                attributes[PortsAttribute.key(protocol: p.protocol, address: p.hostAddress, ports: p.hostPorts)] = .string("\(c.name):\(p.containerPorts)")
            }
        }
        return DesiredResource(address, attributes: attributes, spec: PortsSpec(rules))
    }

    /// The table as a resource: one attribute per publication its rules hold (read from the
    /// output chain, where every publication has its rule), and a condition for every other
    /// difference from `desired`.
    public static func interpret(desired: PortRuleSet, facts: PortsFacts, record: Record?) -> KindObservation {
        var out = KindObservation()
        out.problems += facts.conflicts
        guard let table = facts.table else {
            out.problems.append("ports.published: cannot read the nftables port table: \(facts.error ?? "unknown error")")
            return out
        }
        guard table.tableExists || record != nil else { return out }
        var resource = ObservedResource(address)
        var present = Set<PortRule>()
        for observed in table.rules {
            guard let rule = observed.rule else { continue }
            present.insert(rule)
            if case .forward(let f) = rule, f.chain == .output {
                let key = PortsAttribute.key(protocol: f.protocol, address: f.destination, ports: f.ports)
                resource.attributes[key] = .string("\(f.container):\(f.targetPort.map { String($0) } ?? f.ports.description)")
            }
        }
        let changes = PortRules.diff(desired: desired, observed: table)
        // Output-chain forwards are the publication attributes the planner compares;
        // everything else is a condition.
        for line in changes.summary {
            if line.hasPrefix("+ output:") || line.hasPrefix("- output:") { continue }
            resource.conditions.append(PortsCondition(line: line))
        }
        if let record, record.status == .ready {
            for (key, value) in record.attributes where key.isWithin(PortsAttribute.publication) && resource.attributes[key] == nil {
                resource.drift.append(Drift(address, "the rules publishing \(key.key(in: PortsAttribute.publication)!) (\(value)) were deleted outside tupp",
                                            path: key, recorded: value, observed: nil))
            }
            if !table.tableExists {
                resource.drift.append(Drift(address, "the nftables port table was deleted outside tupp"))
            }
        }
        out.fingerprints[address] = "\(table.rules.count) rules, \(table.tableExists ? "table present" : "no table")"
        out.resources.append(resource)
        return out
    }
}
