import Glibc
import TuppManifest
import TuppSystem

/// Masquerading for bridge subnets, through libnftables (`NFTables`).
///
/// tupp keeps its rules in a table of its own (family ip), with one nat chain hooked at
/// postrouting and one rule per subnet:
///
///     table ip <table> {
///         chain postrouting {
///             type nat hook postrouting priority srcnat; policy accept;
///             ip saddr 172.17.0.0/16 ip daddr != 172.17.0.0/16 masquerade comment "tupp 172.17.0.0/16"
///         }
///     }
///
/// State is always read back from the kernel (the table's JSON listing), never assumed.
/// Every call works on the rule set of the calling thread's network namespace (a fresh
/// libnftables context each time). Forwarding (net.ipv4.ip_forward) is a separate,
/// per-namespace switch.
public enum NAT {
    /// The nft command line, for operators and tests reading tupp's rules; tupp itself
    /// talks to libnftables.
    public static let nftPath = "/usr/sbin/nft"
    static let chain = "postrouting"

    /// The subnets `table` masquerades, in rule order; nil when the table does not exist.
    public static func masqueradedSubnets(table: String) throws(SystemError) -> [IPv4Network]? {
        try checkTableName(table)
        guard let listing = try NFTables().listTable(table) else { return nil }
        return try NFTListing.masqueradedSubnets(json: listing, table: table, chain: chain)
    }

    /// Makes `table` masquerade `subnet` (creating the table and chain as needed).
    /// Returns false when the rule was already there.
    @discardableResult
    public static func ensureMasquerade(subnet: IPv4Network, table: String) throws(SystemError) -> Bool {
        try checkTableName(table)
        let nft = try NFTables()
        if let listing = try nft.listTable(table),
           try NFTListing.masqueradedSubnets(json: listing, table: table, chain: chain).contains(subnet) {
            return false
        }
        // `add` of an existing table or chain changes nothing; the batch is one transaction.
        try nft.run([
            NFTCommands.addTable(table),
            NFTCommands.addChain(table: table, chain, type: "nat", hook: "postrouting", priority: 100),
            NFTCommands.addRule(table: table, chain: chain, expression: masquerade(subnet), comment: "tupp \(subnet)"),
        ], describedAs: "table ip \(table)")
        return true
    }

    /// Deletes the masquerade rule(s) for `subnet`. Returns false when there were none.
    @discardableResult
    public static func removeMasquerade(subnet: IPv4Network, table: String) throws(SystemError) -> Bool {
        try checkTableName(table)
        let nft = try NFTables()
        guard let listing = try nft.listTable(table) else { return false }
        let handles = try NFTListing.masqueradeRuleHandles(json: listing, table: table, chain: chain, subnet: subnet)
        guard !handles.isEmpty else { return false }
        try nft.run(handles.map { NFTCommands.deleteRule(table: table, chain: chain, handle: $0) },
                    describedAs: "table ip \(table)")
        return true
    }

    /// Deletes the whole table. Returns false when it did not exist.
    @discardableResult
    public static func removeTable(_ table: String) throws(SystemError) -> Bool {
        try checkTableName(table)
        do {
            try NFTables().run([NFTCommands.deleteTable(table)], describedAs: "table ip \(table)")
            return true
        } catch where error.detail?.contains("No such file or directory") == true {
            return false
        }
    }

    /// net.ipv4.ip_forward of the calling thread's network namespace.
    public static func isIPv4ForwardingEnabled() throws(SystemError) -> Bool {
        guard let text = try Files.readText(forwardingPath, limit: 64) else {
            throw SystemError("read", forwardingPath, errno: ENOENT)
        }
        return text.trimmingCharacters() == "1"
    }

    /// Sets net.ipv4.ip_forward = 1 in the calling thread's network namespace (a host-wide
    /// switch when called from the host: every interface then forwards).
    public static func enableIPv4Forwarding() throws(SystemError) {
        let fd = try FileDescriptor.open(forwardingPath, O_WRONLY)
        try fd.writeAll(Array("1\n".utf8), describedAs: forwardingPath)
    }

    /// /proc/sys/net answers for the network namespace of the thread that opens it.
    static let forwardingPath = "/proc/sys/net/ipv4/ip_forward"

    /// nft identifiers tupp accepts: a letter, then letters, digits, '_' or '-'; ≤ 64 bytes.
    static func checkTableName(_ table: String) throws(SystemError) {
        let bytes = Array(table.utf8)
        let valid = !bytes.isEmpty && bytes.count <= 64 && Character(Unicode.Scalar(bytes[0])).isLetter && bytes.allSatisfy {
            ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x5a) || ($0 >= 0x61 && $0 <= 0x7a) || $0 == 0x5f || $0 == 0x2d
        }
        guard valid else {
            throw SystemError("check nft table name", "\"\(table)\"", errno: EINVAL,
                              detail: "use a letter followed by letters, digits, '_' or '-'")
        }
    }

    /// `ip saddr S ip daddr != S masquerade`.
    static func masquerade(_ subnet: IPv4Network) -> [NFTJSON] {
        [NFTCommands.match(.ipSource, subnet), NFTCommands.match(.ipDestination, subnet, "!="), ["masquerade": nil]]
    }

    /// The source subnet of a rule that masquerades and matches `ip saddr S`, or nil.
    /// Lenient on purpose: a hand-narrowed rule in tupp's table still counts as NAT for
    /// its subnet, as it always has.
    static func masqueradedSource(_ rule: NFTListing.Rule) -> IPv4Network? {
        guard rule.expr.contains(where: { $0["masquerade"] != nil }) else { return nil }
        for expression in rule.expr {
            guard let match = expression["match"], match["op"]?.string == "==",
                  match["left"] == NFTCommands.Field.ipSource.json, let right = match["right"] else { continue }
            return NFTCommands.network(right)
        }
        return nil
    }
}

extension NFTListing {
    static func masqueradedSubnets(json: String, table: String, chain: String) throws(SystemError) -> [IPv4Network] {
        try rules(json: json, table: table).filter { $0.chain == chain }.compactMap(NAT.masqueradedSource)
    }

    static func masqueradeRuleHandles(json: String, table: String, chain: String,
                                      subnet: IPv4Network) throws(SystemError) -> [Int] {
        try rules(json: json, table: table).filter { $0.chain == chain && NAT.masqueradedSource($0) == subnet }.map(\.handle)
    }
}
