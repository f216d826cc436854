import Glibc
import TuppFacts
import TuppManifest
import TuppSystem

/// The I/O side of published ports: reading tupp's port table and the host switches it
/// relies on, and applying `PortRuleChanges`. The judgement is in `PortRuleSet.desired`,
/// `PortRules.diff` and `PortConflicts`.
///
/// Everything works on the calling thread's network namespace: the host's from tupp's
/// ordinary threads, a test's "host" namespace from inside `NamespaceThread.run`.
public enum PublishedPorts {
    /// The table's rules and the switches of `bridges` (and of any bridge the table's
    /// rules name), as plain facts.
    public static func observe(table: String, bridges: [String] = []) throws(SystemError) -> PortRuleFacts {
        try NAT.checkTableName(table)
        let nft = try NFTables()
        var facts = PortRuleFacts(tableExists: false, forwarding: try NAT.isIPv4ForwardingEnabled())
        if let listing = try nft.listTable(table) {
            facts.tableExists = true
            facts.chainsIntact = chainsIntact(try NFTListing.chains(json: listing, table: table))
            facts.rules = try NFTListing.rules(json: listing, table: table).map {
                ObservedPortRule(handle: $0.handle, chain: $0.chain, rule: PortRule.parse($0))
            }
        }
        for bridge in Set(bridges + facts.guardedBridges) {
            if let value = try routeLocalnet(bridge) { facts.routeLocalnet[bridge] = value }
        }
        return facts
    }

    /// Applies `changes` to `table`: route_localnet is turned off before the guard rules
    /// go and on only after they are in; the rules change in one nft transaction.
    public static func apply(_ changes: PortRuleChanges, table: String) throws(SystemError) {
        try NAT.checkTableName(table)
        for bridge in changes.disableLocalnet { try setRouteLocalnet(bridge, false) }
        var commands: [NFTJSON] = []
        if changes.deleteTable {
            commands = [NFTCommands.deleteTable(table)]
        } else {
            // Chains are added only with their table: an existing base chain added again
            // becomes an update in the kernel's transaction, which made adding one port
            // several times slower (bench/README.md).
            if changes.recreateTable { commands.append(NFTCommands.deleteTable(table)) }
            if changes.createTable || changes.recreateTable {
                commands.append(NFTCommands.addTable(table))
                for chain in PortRule.chains {
                    commands.append(NFTCommands.addChain(table: table, chain.name, type: chain.type, hook: chain.hook,
                                                         priority: chain.priority))
                }
            }
            if !changes.recreateTable {
                commands += changes.delete.map { NFTCommands.deleteRule(table: table, chain: $0.chain, handle: $0.handle) }
            }
            commands += changes.add.map {
                NFTCommands.addRule(table: table, chain: $0.chain, expression: $0.expression, comment: $0.comment)
            }
        }
        if !commands.isEmpty { try NFTables().run(commands, describedAs: "table ip \(table)") }
        for bridge in changes.enableLocalnet { try setRouteLocalnet(bridge, true) }
        if changes.enableForwarding { try NAT.enableIPv4Forwarding() }
    }

    /// Observes, diffs and applies in one call: the table then holds exactly `desired`.
    /// Returns what was changed (empty when nothing was).
    @discardableResult
    public static func reconcile(_ desired: PortRuleSet, table: String) throws(SystemError) -> PortRuleChanges {
        let observed = try observe(table: table, bridges: desired.localnetBridges)
        let changes = PortRules.diff(desired: desired, observed: observed)
        if !changes.isEmpty { try apply(changes, table: table) }
        return changes
    }

    /// DNAT rules of other tupp installations' port tables (`tupp_*_ports` other than
    /// `ownTable`), for conflicts across installations.
    public static func otherInstallations(ownTable: String) throws(SystemError) -> [ForeignPortForward] {
        let nft = try NFTables()
        var found: [ForeignPortForward] = []
        for table in try nft.tableNames() where table != ownTable && table.hasPrefix("tupp_") && table.hasSuffix("_ports") {
            guard let listing = try nft.listTable(table) else { continue }  // deleted meanwhile
            for rule in try NFTListing.rules(json: listing, table: table) {
                if case .forward(let forward)? = PortRule.parse(rule) { found.append(ForeignPortForward(table: table, forward: forward)) }
            }
        }
        return found
    }

    /// Host sockets and other installations' rules that `claims` collide with, plus the
    /// claims' collisions among themselves: everything `PortConflicts` checks, observed in
    /// the calling thread's network namespace. `ownTable` is this installation's.
    public static func conflicts(for claims: [PortClaim], ownTable: String) throws(SystemError) -> [PortConflict] {
        guard !claims.isEmpty else { return [] }
        let clashing = try HostSockets.bound().filter { socket in
            claims.contains { PortConflicts.clash($0.publication, socket) }
        }
        var conflicts = PortConflicts.amongClaims(claims)
        conflicts += PortConflicts.withHostSockets(claims, sockets: clashing, owners: HostSockets.owners(of: Set(clashing.map(\.inode))))
        conflicts += PortConflicts.withOtherInstallations(claims, try otherInstallations(ownTable: ownTable))
        return conflicts
    }

    /// net.ipv4.conf.BRIDGE.route_localnet, or nil when the bridge does not exist.
    public static func routeLocalnet(_ bridge: String) throws(SystemError) -> Bool? {
        try checkLinkName(bridge)
        guard let text = try Files.readText(localnetPath(bridge), limit: 64) else { return nil }
        return text.trimmingCharacters() == "1"
    }

    public static func setRouteLocalnet(_ bridge: String, _ on: Bool) throws(SystemError) {
        try checkLinkName(bridge)
        let path = localnetPath(bridge)
        do {
            let fd = try FileDescriptor.open(path, O_WRONLY)
            try fd.writeAll(Array((on ? "1\n" : "0\n").utf8), describedAs: path)
        } catch where error.code == ENOENT {
            throw SystemError("set route_localnet of", bridge, errno: ENODEV,
                              detail: "the bridge does not exist; apply its network first")
        }
    }

    /// /proc/sys/net answers for the network namespace of the thread that opens it.
    static func localnetPath(_ bridge: String) -> String { "/proc/sys/net/ipv4/conf/\(bridge)/route_localnet" }

    static func checkLinkName(_ name: String) throws(SystemError) {
        if let problem = Names.interfaceProblem(name) {
            throw SystemError("check link name", "\"\(name)\"", errno: EINVAL, detail: "the name \(problem)")
        }
    }

    static func chainsIntact(_ chains: [String: NFTJSON]) -> Bool {
        guard chains.count == PortRule.chains.count else { return false }
        return PortRule.chains.allSatisfy { expected in
            guard let chain = chains[expected.name] else { return false }
            return chain["type"]?.string == expected.type && chain["hook"]?.string == expected.hook
                && chain["prio"]?.integer(in: -1000...1000) == expected.priority && chain["policy"]?.string == "accept"
        }
    }
}

/// A port another tupp installation on this host publishes.
public struct ForeignPortForward: Hashable, Sendable {
    public var table: String
    public var forward: PortForward

    public init(table: String, forward: PortForward) {
        self.table = table
        self.forward = forward
    }
}
