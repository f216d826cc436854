import TuppFacts
import TuppManifest
import TuppNetworking
import TuppPlan
import TuppSystem

/// The host's links as the network and container reconcilers change them. `NetlinkSession`
/// in production; a recording fake in the engine's unit tests.
protocol HostLinks: Sendable {
    func snapshot() throws(SystemError) -> NetworkSnapshot
    func link(named name: String) throws(SystemError) -> LinkInfo?
    func createBridge(name: String, address: IPv4Interface, mtu: Int?, alias: String, mac: MACAddress?) throws(SystemError)
    func updateBridge(name: String, address: IPv4Interface, mtu: Int?) throws(SystemError) -> Bool
    func setAlias(name: String, alias: String) throws(SystemError)
    func setUp(name: String) throws(SystemError)
    func deleteLink(name: String) throws(SystemError) -> Bool
}

extension NetlinkSession: HostLinks {}

/// The masquerade rules of tupp's nftables table.
protocol Masquerading: Sendable {
    func subnets(table: String) throws(SystemError) -> [IPv4Network]?
    func enable(_ subnet: IPv4Network, table: String) throws(SystemError)
    /// Removes the rule for `subnet`, and the table with its last rule: nothing of tupp's
    /// stays in the host's rule set.
    func disable(_ subnet: IPv4Network, table: String) throws(SystemError)
}

/// Masquerading through libnftables, with IPv4 forwarding switched on.
struct NFTablesMasquerading: Masquerading {
    func subnets(table: String) throws(SystemError) -> [IPv4Network]? {
        try NAT.masqueradedSubnets(table: table)
    }

    func enable(_ subnet: IPv4Network, table: String) throws(SystemError) {
        try NAT.enableIPv4Forwarding()
        Checkpoint.pass("IPv4 forwarding on")
        _ = try NAT.ensureMasquerade(subnet: subnet, table: table)
        Checkpoint.pass("masquerade of \(subnet) added")
    }

    func disable(_ subnet: IPv4Network, table: String) throws(SystemError) {
        _ = try NAT.removeMasquerade(subnet: subnet, table: table)
        Checkpoint.pass("masquerade of \(subnet) removed")
        if try NAT.masqueradedSubnets(table: table)?.isEmpty == true {
            _ = try NAT.removeTable(table)
        }
        Checkpoint.pass("nft table \(table) removed if empty")
    }
}

/// Networks: observed with one netlink dump per kind (links, addresses, routes) and the
/// NAT table; judged by `NetworkKind`; bridges created, changed and deleted through
/// netlink, masquerading through nftables.
struct NetworkReconciler: Reconciler {
    /// The host, for each call (a socket bound to the calling thread's namespace).
    var links: @Sendable () throws(SystemError) -> any HostLinks = { () throws(SystemError) in try NetlinkSession.host() }
    var masquerading: any Masquerading = NFTablesMasquerading()

    var kind: ResourceKind { .network }

    /// The installation's nftables table.
    static func natTable(installation: String) -> String { "tupp_\(installation)" }

    func observe(_ observation: inout Observation, _ context: ObserveContext) async {
        let records = observation.records(of: .network)
        var facts = NetworkFacts(host: nil)
        do {
            facts.host = try links().snapshot()
        } catch {
            facts.hostError = "\(error)"
        }
        if facts.host != nil, NetworkKind.usesNAT(declared: context.manifest.networks, records: records) {
            do {
                facts.natSubnets = try masquerading.subnets(table: Self.natTable(installation: context.installation)) ?? []
            } catch {
                facts.natError = "\(error)"
            }
        }
        observation.facts[NetworkFacts.self] = facts
        observation.merge(NetworkKind.interpret(declared: context.manifest.networks, records: records, facts: facts,
                                                installation: context.installation, destroying: context.destroying))
    }

    func apply(_ change: Plan.ResourceChange, _ context: ApplyContext) async throws {
        let name = change.address.name
        let host = try links()
        let observed = context.observation.state.resources[change.address]
        let natSubnets = context.observation.facts[NetworkFacts.self]?.natSubnets
        let table = Self.natTable(installation: context.installation)
        if change.action == .delete || change.action == .replace {
            let record = context.record(change.address) ?? Record(change.address, status: .deleting)
            var deleting = record
            deleting.status = .deleting
            try context.save(deleting)
            if !record.isExternal, observed?.external != true {
                // Also when the rule is already gone: a removal killed between the rule and
                // the table left an empty table to remove.
                if let subnet = record.attributes[NetworkAttribute.subnet]?.string.flatMap(IPv4Network.init),
                   natSubnets?.contains(subnet) == true || record.attributes[NetworkAttribute.nat] == .bool(true) {
                    try masquerading.disable(subnet, table: table)
                }
                if let bridge = record.bridgeName ?? observed?.attributes[NetworkAttribute.bridge]?.string {
                    _ = try host.deleteLink(name: bridge)
                    Checkpoint.pass("bridge \(bridge) deleted")
                }
            }
            try context.store.remove(change.address)
            if change.action == .delete { return }
        }
        guard change.action != .noop, let network = change.spec(NetworkSpec.self)?.network else { return }
        let owner = LinkOwner(installation: context.installation, role: .network, name: name).description
        let gateway = IPv4Interface(address: network.gateway, prefixLength: network.subnet.prefixLength)
        var record = Record(change.address, status: .creating, attributes: change.after ?? [:])
        record.bridgeName = network.bridge
        if observed?.external == true && change.action != .replace {
            record.status = .ready
            record.isExternal = true
            try context.save(record)
            return
        }
        try context.save(record)
        if try host.link(named: network.bridge) == nil {
            // Passes its own checkpoints: created, marked, addressed.
            try host.createBridge(name: network.bridge, address: gateway, mtu: network.mtu, alias: owner, mac: nil)
        } else {
            _ = try host.updateBridge(name: network.bridge, address: gateway, mtu: network.mtu)
            Checkpoint.pass("bridge \(network.bridge) up, sized and addressed")
            try host.setAlias(name: network.bridge, alias: owner)
            Checkpoint.pass("bridge \(network.bridge) marked")
            try host.setUp(name: network.bridge)
            Checkpoint.pass("bridge \(network.bridge) up")
        }
        let natOn = natSubnets?.contains(network.subnet) ?? false
        if network.nat && !natOn {
            try masquerading.enable(network.subnet, table: table)
        } else if !network.nat && natOn {
            try masquerading.disable(network.subnet, table: table)
        }
        record.status = .ready
        try context.save(record)
    }
}
