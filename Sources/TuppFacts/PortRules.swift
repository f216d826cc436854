import TuppManifest

// The rules of tupp's published-ports table as values, what the kernel holds of them, and
// the diff between the two. Pure: TuppNetworking encodes them for libnftables
// (PortRuleEncoding.swift); the planner judges drift with them.

/// A container whose ports are published, with what the rule set needs to know of it.
public struct PublishedContainer: Hashable, Sendable {
    public var name: String
    public var address: IPv4Address
    /// The host bridge the container is attached to, and that bridge's subnet.
    public var bridge: String
    public var subnet: IPv4Network
    public var ports: [PortPublication]

    public init(name: String, address: IPv4Address, bridge: String, subnet: IPv4Network, ports: [PortPublication]) {
        self.name = name
        self.address = address
        self.bridge = bridge
        self.subnet = subnet
        self.ports = ports
    }
}

/// The nat hooks a published port is translated in.
public enum PortChain: String, Hashable, Sendable, Comparable, CaseIterable {
    /// Connections arriving from other machines and from containers.
    case prerouting
    /// Connections the host itself opens, to its own addresses and to loopback.
    case output

    public static func < (a: PortChain, b: PortChain) -> Bool { a.rawValue > b.rawValue }  // prerouting first
}

/// One DNAT rule: connections to `destination`:`ports` go to `target`.
public struct PortForward: Hashable, Sendable, Comparable {
    public var chain: PortChain
    /// nil: any address of the host (`fib daddr type local`).
    public var destination: IPv4Address?
    public var `protocol`: TransportProtocol
    public var ports: PortRange
    public var target: IPv4Address
    /// nil keeps the destination port (a range published on the same ports).
    public var targetPort: UInt16?
    /// The container it publishes; written into the rule's comment.
    public var container: String

    public init(chain: PortChain, destination: IPv4Address?, protocol: TransportProtocol, ports: PortRange,
                target: IPv4Address, targetPort: UInt16?, container: String) {
        self.chain = chain
        self.destination = destination
        self.protocol = `protocol`
        self.ports = ports
        self.target = target
        self.targetPort = targetPort
        self.container = container
    }

    public static func < (a: PortForward, b: PortForward) -> Bool {
        (a.chain, a.protocol, a.ports, a.destination?.value ?? 0, a.container)
            < (b.chain, b.protocol, b.ports, b.destination?.value ?? 0, b.container)
    }
}

/// Which address of a packet a guard rule checks.
public enum PacketAddress: String, Hashable, Sendable {
    case source, destination
}

/// One rule of tupp's published-ports table.
///
///     table ip tupp_<installation>_ports {
///         chain prerouting {      # type nat hook prerouting priority dstnat
///             fib daddr type local tcp dport 8080 dnat to 10.0.0.3:80 comment "tupp container web"
///             ip daddr 192.0.2.9 udp dport 9000-9002 dnat to 10.0.0.3 comment "tupp container dns"
///         }
///         chain output {          # type nat hook output priority -100
///             fib daddr type local tcp dport 8080 dnat to 10.0.0.3:80 comment "tupp container web"
///         }
///         chain postrouting {     # type nat hook postrouting priority srcnat
///             ip saddr 10.0.0.0/24 ip daddr 10.0.0.0/24 ct status dnat masquerade
///             oifname "tupp0" ip saddr 127.0.0.0/8 masquerade
///         }
///         chain localnet_guard {  # type filter hook prerouting priority raw
///             iifname "tupp0" ip saddr 127.0.0.0/8 drop
///             iifname "tupp0" ip daddr 127.0.0.0/8 drop
///         }
///     }
///
/// Loopback: a connection from the host to 127.0.0.1:PORT is translated in the output
/// hook and then routed out of the bridge with source 127.0.0.1. The kernel routes
/// 127.0.0.0/8 off the loopback device only where `route_localnet` is on, so tupp turns it
/// on for exactly the bridges that carry a loopback-published port (systemd-nspawn's bug
/// #6106 is skipping this), masquerades that source to the bridge's address, and drops
/// 127.0.0.0/8 arriving from those bridges: with route_localnet on, a container could
/// otherwise reach services the host binds to loopback (CVE-2020-8558).
public enum PortRule: Hashable, Sendable, Comparable, CustomStringConvertible {
    case forward(PortForward)
    /// A container reaching a published port of its own network (hairpin): without
    /// masquerading, the server would answer it directly, from an address it never called.
    case hairpin(subnet: IPv4Network)
    /// The host's loopback source, rewritten to the bridge's address on the way out.
    case loopbackSource(bridge: String)
    /// 127.0.0.0/8 arriving from a bridge with route_localnet on, dropped.
    case localnetGuard(bridge: String, PacketAddress)

    /// Chains of the table: name, type, hook, priority.
    public static let chains: [(name: String, type: String, hook: String, priority: Int)] = [
        ("prerouting", "nat", "prerouting", -100),
        ("output", "nat", "output", -100),
        ("postrouting", "nat", "postrouting", 100),
        ("localnet_guard", "filter", "prerouting", -300),
    ]

    public static let commentPrefix = "tupp container "
    public static let loopback = IPv4Network(address: IPv4Address(0x7f00_0000), prefixLength: 8)

    public var chain: String {
        switch self {
        case .forward(let forward): forward.chain.rawValue
        case .hairpin, .loopbackSource: "postrouting"
        case .localnetGuard: "localnet_guard"
        }
    }

    /// The rule in nft's own words, e.g.
    /// `prerouting: fib daddr type local tcp dport 8080 dnat to 10.0.0.3:80 (container web)`.
    public var description: String {
        switch self {
        case .forward(let f):
            let destination = f.destination.map { "ip daddr \($0)" } ?? "fib daddr type local"
            let to = f.targetPort.map { "\(f.target):\($0)" } ?? f.target.description
            return "\(f.chain.rawValue): \(destination) \(f.protocol.rawValue) dport \(f.ports) dnat to \(to) (container \(f.container))"
        case .hairpin(let subnet):
            return "postrouting: ip saddr \(subnet) ip daddr \(subnet) ct status dnat masquerade"
        case .loopbackSource(let bridge):
            return "postrouting: oifname \"\(bridge)\" ip saddr 127.0.0.0/8 masquerade"
        case .localnetGuard(let bridge, let which):
            return "localnet_guard: iifname \"\(bridge)\" ip \(which == .source ? "saddr" : "daddr") 127.0.0.0/8 drop"
        }
    }

    private var order: (Int, String, Int) {
        switch self {
        case .forward: (0, "", 0)
        case .hairpin(let subnet): (1, subnet.description, 0)
        case .loopbackSource(let bridge): (2, bridge, 0)
        case .localnetGuard(let bridge, let which): (3, bridge, which == .source ? 0 : 1)
        }
    }

    public static func < (a: PortRule, b: PortRule) -> Bool {
        if case .forward(let x) = a, case .forward(let y) = b { return x < y }
        return a.order < b.order
    }
}

/// The rules tupp's port table should hold, and the host settings they rely on.
public struct PortRuleSet: Hashable, Sendable {
    /// Sorted, without duplicates.
    public var rules: [PortRule]
    /// Bridges whose route_localnet must be on (sorted).
    public var localnetBridges: [String]
    /// True when a published port takes connections from other machines or containers,
    /// which the host must forward (net.ipv4.ip_forward).
    public var needsForwarding: Bool

    public var isEmpty: Bool { rules.isEmpty }

    /// The rules for `containers`' publications. Pure; conflicts are checked apart
    /// (`PortConflicts`), and overlapping publications here simply yield both rules.
    ///
    /// Per publication: a DNAT in prerouting (unless it is loopback-only: other machines
    /// cannot address the host's loopback) and one in output (the host itself). A range
    /// published on the same ports is one rule that keeps the port; a range moved to other
    /// ports is one rule per port.
    public static func desired(_ containers: [PublishedContainer]) -> PortRuleSet {
        var rules = Set<PortRule>()
        var localnet = Set<String>()
        var forwarding = false
        for container in containers {
            for publication in container.ports {
                let chains: [PortChain] = publication.isLoopbackOnly ? [.output] : [.prerouting, .output]
                var pairs: [(PortRange, UInt16?)] = []
                if publication.hostPorts.count == 1 {
                    pairs = [(publication.hostPorts, publication.containerPorts.lower)]
                } else if publication.hostPorts == publication.containerPorts {
                    pairs = [(publication.hostPorts, nil)]
                } else {
                    for offset in 0..<UInt16(publication.hostPorts.count) {
                        pairs.append((PortRange(publication.hostPorts.lower + offset), publication.containerPorts.lower + offset))
                    }
                }
                for chain in chains {
                    for (ports, targetPort) in pairs {
                        rules.insert(.forward(PortForward(chain: chain, destination: publication.hostAddress,
                                                          protocol: publication.protocol, ports: ports,
                                                          target: container.address, targetPort: targetPort,
                                                          container: container.name)))
                    }
                }
                if !publication.isLoopbackOnly {
                    forwarding = true
                    rules.insert(.hairpin(subnet: container.subnet))
                }
                if publication.coversLoopback {
                    localnet.insert(container.bridge)
                }
            }
        }
        for bridge in localnet {
            rules.insert(.loopbackSource(bridge: bridge))
            rules.insert(.localnetGuard(bridge: bridge, .source))
            rules.insert(.localnetGuard(bridge: bridge, .destination))
        }
        return PortRuleSet(rules: rules.sorted(), localnetBridges: localnet.sorted(), needsForwarding: forwarding)
    }
}

/// A rule found in tupp's port table.
public struct ObservedPortRule: Hashable, Sendable, CustomStringConvertible {
    public var handle: Int
    public var chain: String
    /// nil: a rule tupp does not write (added by hand, or by an older tupp); it is removed.
    public var rule: PortRule?

    public init(handle: Int, chain: String, rule: PortRule?) {
        self.handle = handle
        self.chain = chain
        self.rule = rule
    }

    public var description: String { rule?.description ?? "\(chain): a rule tupp did not write (handle \(handle))" }
}

/// What the kernel holds for tupp's port table (plain facts, read by `PublishedPorts.observe`).
public struct PortRuleFacts: Hashable, Sendable {
    public var tableExists: Bool
    /// Every chain is there with its type, hook and priority, and there is no other chain.
    public var chainsIntact: Bool
    public var rules: [ObservedPortRule]
    /// route_localnet of the bridges asked about and of those the table's rules name;
    /// a bridge that does not exist is absent.
    public var routeLocalnet: [String: Bool]
    public var forwarding: Bool

    public init(tableExists: Bool, chainsIntact: Bool = true, rules: [ObservedPortRule] = [],
                routeLocalnet: [String: Bool] = [:], forwarding: Bool = false) {
        self.tableExists = tableExists
        self.chainsIntact = chainsIntact
        self.rules = rules
        self.routeLocalnet = routeLocalnet
        self.forwarding = forwarding
    }

    /// Bridges whose route_localnet tupp turned on: those its guard rules name.
    public var guardedBridges: [String] {
        Set(rules.compactMap { observed -> String? in
            if case .localnetGuard(let bridge, _)? = observed.rule { return bridge }
            return nil
        }).sorted()
    }
}

/// What to change so that the port table and the host's switches match a `PortRuleSet`.
public struct PortRuleChanges: Hashable, Sendable {
    /// The table does not exist yet: make it and its chains.
    public var createTable = false
    /// Delete the table and build it anew (a chain is missing, altered, or foreign).
    public var recreateTable = false
    public var add: [PortRule] = []
    public var delete: [ObservedPortRule] = []
    /// The table goes with its last rule.
    public var deleteTable = false
    public var enableLocalnet: [String] = []
    public var disableLocalnet: [String] = []
    public var enableForwarding = false

    public init() {}

    public var isEmpty: Bool {
        !createTable && !recreateTable && add.isEmpty && delete.isEmpty && !deleteTable && enableLocalnet.isEmpty
            && disableLocalnet.isEmpty && !enableForwarding
    }

    /// One line per change, for plans and logs: "+ …", "- …", "~ …".
    public var summary: [String] {
        var lines: [String] = []
        if createTable { lines.append("+ table") }
        if recreateTable { lines.append("~ table rebuilt: its chains were changed outside tupp") }
        lines += delete.map { "- \($0)" }
        lines += add.map { "+ \($0)" }
        if deleteTable { lines.append("- table (its last rule is gone)") }
        lines += disableLocalnet.map { "~ net.ipv4.conf.\($0).route_localnet = 0" }
        lines += enableLocalnet.map { "~ net.ipv4.conf.\($0).route_localnet = 1" }
        if enableForwarding { lines.append("~ net.ipv4.ip_forward = 1") }
        return lines
    }
}

public enum PortRules {
    /// The changes that turn `observed` into `desired`. Pure.
    ///
    /// Rules are matched as values: a desired rule present (once) is kept, a missing one
    /// added; every other rule in the table — a duplicate, one tupp no longer wants, one
    /// edited by hand or unknown — is deleted by its handle. Nothing is restarted: the
    /// table changes in one transaction.
    public static func diff(desired: PortRuleSet, observed: PortRuleFacts) -> PortRuleChanges {
        var changes = PortRuleChanges()
        let guarded = observed.guardedBridges
        changes.disableLocalnet = guarded.filter {
            !desired.localnetBridges.contains($0) && observed.routeLocalnet[$0] == true
        }
        changes.enableLocalnet = desired.localnetBridges.filter { observed.routeLocalnet[$0] != true }
        changes.enableForwarding = desired.needsForwarding && !observed.forwarding

        if desired.isEmpty {
            changes.deleteTable = observed.tableExists
            return changes
        }
        if observed.tableExists && !observed.chainsIntact {
            changes.recreateTable = true
            changes.add = desired.rules
            return changes
        }
        changes.createTable = !observed.tableExists
        var wanted = desired.rules
        for rule in observed.rules {
            if let known = rule.rule, let index = wanted.firstIndex(of: known) {
                wanted.remove(at: index)
            } else {
                changes.delete.append(rule)
            }
        }
        changes.add = wanted
        return changes
    }

    /// The table holding an installation's published ports, beside its NAT table.
    public static func tableName(installation: String) -> String { "tupp_\(installation)_ports" }
}
