import FoundationEssentials
import Glibc
import Subprocess
import SystemPackage
import TuppManifest
import TuppSystem

/// Masquerading for bridge subnets, through the `nft` command.
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
/// State is always read back from the kernel (`nft -j list table`), never assumed.
/// Forwarding (net.ipv4.ip_forward) is a separate, per-namespace switch.
public enum NAT {
    public static let nftPath = "/usr/sbin/nft"
    static let chain = "postrouting"

    /// The subnets `table` masquerades, in rule order; nil when the table does not exist.
    public static func masqueradedSubnets(table: String) async throws(SystemError) -> [IPv4Network]? {
        try checkTableName(table)
        let listing = try await nft(["-j", "list", "table", "ip", table], missingTableIsNil: true)
        guard let listing else { return nil }
        return try NFTListing.masqueradedSubnets(json: listing, table: table, chain: chain)
    }

    /// Makes `table` masquerade `subnet` (creating the table and chain as needed).
    /// Returns false when the rule was already there.
    @discardableResult
    public static func ensureMasquerade(subnet: IPv4Network, table: String) async throws(SystemError) -> Bool {
        if let present = try await masqueradedSubnets(table: table), present.contains(subnet) { return false }
        // `add` of an existing table or chain is a no-op in nft; the file is applied atomically.
        let script = """
            add table ip \(table)
            add chain ip \(table) \(chain) { type nat hook postrouting priority srcnat; policy accept; }
            add rule ip \(table) \(chain) ip saddr \(subnet) ip daddr != \(subnet) masquerade comment "tupp \(subnet)"

            """
        _ = try await nft(["-f", "-"], input: script)
        return true
    }

    /// Deletes the masquerade rule(s) for `subnet`. Returns false when there were none.
    @discardableResult
    public static func removeMasquerade(subnet: IPv4Network, table: String) async throws(SystemError) -> Bool {
        try checkTableName(table)
        guard let listing = try await nft(["-j", "list", "table", "ip", table], missingTableIsNil: true) else {
            return false
        }
        let handles = try NFTListing.masqueradeRuleHandles(json: listing, table: table, chain: chain, subnet: subnet)
        guard !handles.isEmpty else { return false }
        let script = handles.map { "delete rule ip \(table) \(chain) handle \($0)\n" }.joined()
        _ = try await nft(["-f", "-"], input: script)
        return true
    }

    /// Deletes the whole table. Returns false when it did not exist.
    @discardableResult
    public static func removeTable(_ table: String) async throws(SystemError) -> Bool {
        try checkTableName(table)
        return try await nft(["delete", "table", "ip", table], missingTableIsNil: true) != nil
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

    /// Runs nft; a failure carries nft's own message. With `missingTableIsNil`, "No such
    /// file or directory" (the table does not exist) returns nil instead of throwing.
    private static func nft(_ arguments: [String], input: String? = nil,
                            missingTableIsNil: Bool = false) async throws(SystemError) -> String? {
        let command = "nft " + arguments.joined(separator: " ")
        let result: ExecutionResult<Void, StringOutput<UTF8>, StringOutput<UTF8>>
        do {
            if let input {
                result = try await run(.path(.init(nftPath)), arguments: Arguments(arguments), input: .string(input),
                                       output: .string(limit: 16 << 20), error: .string(limit: 1 << 20))
            } else {
                result = try await run(.path(.init(nftPath)), arguments: Arguments(arguments),
                                       output: .string(limit: 16 << 20), error: .string(limit: 1 << 20))
            }
        } catch {
            throw SystemError.failure("run", command, "\(error)")
        }
        let stderr = result.standardError.trimmingCharacters()
        if result.terminationStatus.isSuccess { return result.standardOutput }
        if missingTableIsNil && stderr.contains("No such file or directory") { return nil }
        throw SystemError.failure("run", command, "\(result.terminationStatus): \(stderr)")
    }
}

/// Reading `nft -j list table` output.
enum NFTListing {
    struct Document: Decodable {
        var nftables: [Entry]
    }

    struct Entry: Decodable {
        var rule: Rule?
    }

    struct Rule: Decodable {
        var family: String
        var table: String
        var chain: String
        var handle: Int
        var expr: [JSONValue]
    }

    static func masqueradedSubnets(json: String, table: String, chain: String) throws(SystemError) -> [IPv4Network] {
        try rules(json: json, table: table, chain: chain).compactMap(masqueradedSource)
    }

    static func masqueradeRuleHandles(json: String, table: String, chain: String,
                                      subnet: IPv4Network) throws(SystemError) -> [Int] {
        try rules(json: json, table: table, chain: chain).filter { masqueradedSource($0) == subnet }.map(\.handle)
    }

    static func rules(json: String, table: String, chain: String) throws(SystemError) -> [Rule] {
        let document: Document
        do {
            document = try JSONDecoder().decode(Document.self, from: Data(json.utf8))
        } catch {
            throw SystemError.failure("parse nft JSON for table", table, "\(error)")
        }
        return document.nftables.compactMap(\.rule).filter { $0.family == "ip" && $0.table == table && $0.chain == chain }
    }

    /// The subnet of a rule shaped `ip saddr S … masquerade`, or nil.
    static func masqueradedSource(_ rule: Rule) -> IPv4Network? {
        guard rule.expr.contains(where: { $0["masquerade"] != nil }) else { return nil }
        for expression in rule.expr {
            guard let match = expression["match"], match["op"]?.string == "==",
                  match["left"]?["payload"]?["protocol"]?.string == "ip",
                  match["left"]?["payload"]?["field"]?.string == "saddr",
                  let right = match["right"] else { continue }
            if let prefix = right["prefix"], let addr = prefix["addr"]?.string.flatMap(IPv4Address.init),
               let length = prefix["len"]?.number {
                return IPv4Network(address: addr, prefixLength: Int(length))
            }
            if let single = right.string.flatMap(IPv4Address.init) {
                return IPv4Network(address: single, prefixLength: 32)
            }
        }
        return nil
    }
}

/// Any JSON value, for reading nft's free-form expression trees.
enum JSONValue: Decodable, Equatable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Double.self) {
            self = .number(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([JSONValue].self) {
            self = .array(value)
        } else {
            self = .object(try container.decode([String: JSONValue].self))
        }
    }

    subscript(key: String) -> JSONValue? {
        if case .object(let members) = self { return members[key] }
        return nil
    }

    var string: String? {
        if case .string(let value) = self { return value }
        return nil
    }

    var number: Double? {
        if case .number(let value) = self { return value }
        return nil
    }
}
