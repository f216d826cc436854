import CNFTables
import TuppBase
import Glibc
import Synchronization
import TuppManifest
import TuppSystem

/// nftables through libnftables, in-process: nft's own parser and netlink code, JSON in
/// and out, one atomic transaction per `run`.
///
/// The context opens its netlink socket when it is made, and the socket stays in the
/// network namespace of the thread that made it. Make one on tupp's ordinary threads for
/// the host's rule set, or inside `NamespaceThread.run` for a namespace's. libnftables is
/// loaded on first use (CNFTables), so commands that never touch a rule set never map it.
public final class NFTables: @unchecked Sendable {
    private let context: OpaquePointer
    /// A context is not thread-safe, and its output buffer is shared by every command.
    private let lock = Mutex(())

    public init() throws(SystemError) {
        if let why = tupp_nftables_load() {
            throw SystemError.failure("load", "libnftables", String(cString: why))
        }
        guard let context = nft_ctx_new(UInt32(NFT_CTX_DEFAULT)) else {
            throw SystemError("create nftables context", "libnftables", errno: ENOMEM)
        }
        self.context = context
        // JSON output also makes nft_run_cmd_from_buffer read its input as JSON first.
        nft_ctx_output_set_flags(context, UInt32(NFT_CTX_OUTPUT_JSON | NFT_CTX_OUTPUT_HANDLE))
        _ = nft_ctx_buffer_output(context)
        _ = nft_ctx_buffer_error(context)
    }

    deinit { nft_ctx_free(context) }

    /// Runs `commands` (each a JSON command object such as `{"add": {"rule": …}}`) as one
    /// transaction: all or nothing. Returns what nft printed (the listing, for `list`
    /// commands), empty for changes. A failure carries nft's own message.
    @discardableResult
    public func run(_ commands: [NFTJSON], describedAs object: String) throws(SystemError) -> String {
        let document = NFTJSON.object(["nftables": .array(commands)]).serialized
        return try lock.withLock { _ throws(SystemError) -> String in
            let rc = nft_run_cmd_from_buffer(context, document)
            let output = nft_ctx_get_output_buffer(context).map { String(cString: $0) } ?? ""
            let error = nft_ctx_get_error_buffer(context).map { String(cString: $0) } ?? ""
            guard rc == 0 else {
                throw SystemError.failure("nftables: \(Self.verbs(commands))", object, Self.tidy(error))
            }
            return output
        }
    }

    /// The JSON listing of one table (`nft -j list table FAMILY NAME`), or nil when the
    /// table does not exist.
    public func listTable(family: String = "ip", _ name: String) throws(SystemError) -> String? {
        let command = NFTJSON.object(["list": ["table": ["family": .string(family), "name": .string(name)]]])
        do {
            return try run([command], describedAs: "table \(family) \(name)")
        } catch where error.detail?.contains("No such file or directory") == true {
            return nil
        }
    }

    /// The names of every table of `family`.
    public func tableNames(family: String = "ip") throws(SystemError) -> [String] {
        let listing = try run([["list": ["tables": ["family": .string(family)]]]], describedAs: "tables \(family)")
        return try NFTListing.objects(listing, describedAs: "tables \(family)").compactMap { entry in
            guard let table = entry["table"], table["family"]?.string == family else { return nil }
            return table["name"]?.string
        }
    }

    /// "add, delete" — the kinds of command in a batch, for error messages.
    static func verbs(_ commands: [NFTJSON]) -> String {
        var seen: [String] = []
        for command in commands {
            guard case .object(let members) = command else { continue }
            for key in members.keys.sorted() where !seen.contains(key) { seen.append(key) }
        }
        return seen.joined(separator: ", ")
    }

    /// nft's error text on one line: "internal:0:0-0: Error: X" becomes "X".
    static func tidy(_ error: String) -> String {
        let lines = error.split(separator: "\n").map { line -> String in
            var text = String(line)
            if let range = text.firstRange(of: "Error: ") { text = String(text[range.upperBound...]) }
            return text.trimmingCharacters()
        }.filter { !$0.isEmpty }
        return lines.isEmpty ? "nft failed without a message" : lines.joined(separator: "; ")
    }
}

/// A JSON value, for writing nft commands and reading nft's free-form expression trees.
public enum NFTJSON: Hashable, Sendable, ExpressibleByStringLiteral, ExpressibleByIntegerLiteral,
                     ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral, ExpressibleByNilLiteral {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([NFTJSON])
    case object([String: NFTJSON])

    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int) { self = .number(Double(value)) }
    public init(arrayLiteral elements: NFTJSON...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, NFTJSON)...) {
        self = .object(Dictionary(elements, uniquingKeysWith: { _, last in last }))
    }
    public init(nilLiteral: ()) { self = .null }

    /// The value of a node of tupp's JSON codec (objects lose their order: nft's don't have one).
    public init(_ node: JSON.Node) {
        switch node {
        case .null: self = .null
        case .bool(let b): self = .bool(b)
        case .int(let i): self = .number(Double(i))
        case .double(let d): self = .number(d)
        case .string(let s): self = .string(s)
        case .array(let items): self = .array(items.map(NFTJSON.init))
        case .object(let pairs): self = .object(Dictionary(pairs.map { ($0.0, NFTJSON($0.1)) }, uniquingKeysWith: { _, last in last }))
        }
    }

    /// As a node of tupp's JSON codec, keys sorted.
    public var node: JSON.Node {
        switch self {
        case .null: .null
        case .bool(let b): .bool(b)
        case .number(let n): n.rounded() == n && abs(n) < 1e15 ? .int(Int64(n)) : .double(n)
        case .string(let s): .string(s)
        case .array(let items): .array(items.map(\.node))
        case .object(let members): .object(members.keys.sorted().map { ($0, members[$0]!.node) })
        }
    }

    public subscript(key: String) -> NFTJSON? {
        if case .object(let members) = self { return members[key] }
        return nil
    }

    public var string: String? {
        if case .string(let value) = self { return value }
        return nil
    }

    public var number: Double? {
        if case .number(let value) = self { return value }
        return nil
    }

    /// An integral number in `range`, or nil.
    public func integer(in range: ClosedRange<Int>) -> Int? {
        guard let number, number.rounded() == number, number >= Double(range.lowerBound),
              number <= Double(range.upperBound) else { return nil }
        return Int(number)
    }

    public var array: [NFTJSON]? {
        if case .array(let value) = self { return value }
        return nil
    }

    /// Compact JSON with sorted keys: the same value always serializes the same way.
    public var serialized: String { node.serialized() }
}

/// Reading `nft -j list …` output.
enum NFTListing {
    /// The entries of a listing (`{"table": …}`, `{"chain": …}`, `{"rule": …}`, …).
    static func objects(_ json: String, describedAs object: String) throws(SystemError) -> [NFTJSON] {
        let document: JSON.Node
        do {
            document = try JSON.parse(Array(json.utf8))
        } catch {
            throw SystemError.failure("parse nftables JSON for", object, "\(error)")
        }
        guard case .array(let entries)? = document["nftables"] else {
            throw SystemError.failure("parse nftables JSON for", object, "no \"nftables\" array")
        }
        return entries.map(NFTJSON.init)
    }

    /// One rule of a listing, as nft prints it.
    struct Rule: Equatable {
        var family: String
        var table: String
        var chain: String
        var handle: Int
        var comment: String?
        var expr: [NFTJSON]
    }

    /// Every rule of `table` (family ip) in `json`, in listing order.
    static func rules(json: String, table: String) throws(SystemError) -> [Rule] {
        try objects(json, describedAs: "table ip \(table)").compactMap { entry in
            guard let rule = entry["rule"], rule["family"]?.string == "ip", rule["table"]?.string == table,
                  let chain = rule["chain"]?.string, let handle = rule["handle"]?.integer(in: 0...Int(Int32.max)),
                  let expr = rule["expr"]?.array else { return nil }
            return Rule(family: "ip", table: table, chain: chain, handle: handle, comment: rule["comment"]?.string, expr: expr)
        }
    }

    /// The chains of `table` (family ip) in `json`, by name.
    static func chains(json: String, table: String) throws(SystemError) -> [String: NFTJSON] {
        var found: [String: NFTJSON] = [:]
        for entry in try objects(json, describedAs: "table ip \(table)") {
            guard let chain = entry["chain"], chain["table"]?.string == table, let name = chain["name"]?.string else { continue }
            found[name] = chain
        }
        return found
    }
}

/// Builders for the nft JSON commands and expressions tupp writes (family ip). The same
/// builders describe what a rule must look like when read back, so a listing is compared
/// with them exactly.
enum NFTCommands {
    static func addTable(_ table: String) -> NFTJSON {
        ["add": ["table": ["family": "ip", "name": .string(table)]]]
    }

    static func deleteTable(_ table: String) -> NFTJSON {
        ["delete": ["table": ["family": "ip", "name": .string(table)]]]
    }

    /// A base chain with policy accept.
    static func addChain(table: String, _ chain: String, type: String, hook: String, priority: Int) -> NFTJSON {
        ["add": ["chain": ["family": "ip", "table": .string(table), "name": .string(chain), "type": .string(type),
                           "hook": .string(hook), "prio": .number(Double(priority)), "policy": "accept"]]]
    }

    static func addRule(table: String, chain: String, expression: [NFTJSON], comment: String?) -> NFTJSON {
        var rule: [String: NFTJSON] = ["family": "ip", "table": .string(table), "chain": .string(chain),
                                       "expr": .array(expression)]
        if let comment { rule["comment"] = .string(comment) }
        return ["add": ["rule": .object(rule)]]
    }

    static func deleteRule(table: String, chain: String, handle: Int) -> NFTJSON {
        ["delete": ["rule": ["family": "ip", "table": .string(table), "chain": .string(chain),
                             "handle": .number(Double(handle))]]]
    }

    /// What a match compares.
    enum Field {
        case ipSource, ipDestination, inputInterface, outputInterface
        /// `tcp dport`, `udp dport`.
        case destinationPort(String)
        /// `fib daddr type`: the kind of route the destination address has ("local").
        case destinationType
        case conntrackStatus

        var json: NFTJSON {
            switch self {
            case .ipSource: ["payload": ["protocol": "ip", "field": "saddr"]]
            case .ipDestination: ["payload": ["protocol": "ip", "field": "daddr"]]
            case .inputInterface: ["meta": ["key": "iifname"]]
            case .outputInterface: ["meta": ["key": "oifname"]]
            case .destinationPort(let proto): ["payload": ["protocol": .string(proto), "field": "dport"]]
            case .destinationType: ["fib": ["result": "type", "flags": ["daddr"]]]
            case .conntrackStatus: ["ct": ["key": "status"]]
            }
        }
    }

    static func match(_ field: Field, _ right: NFTJSON, _ op: String = "==") -> NFTJSON {
        ["match": ["op": .string(op), "left": field.json, "right": right]]
    }

    /// A prefix the way nft prints one: a /32 as a plain address.
    static func match(_ field: Field, _ network: IPv4Network, _ op: String = "==") -> NFTJSON {
        match(field, self.network(network), op)
    }

    static func network(_ network: IPv4Network) -> NFTJSON {
        network.prefixLength == 32 ? .string(network.network.description)
            : ["prefix": ["addr": .string(network.network.description), "len": .number(Double(network.prefixLength))]]
    }

    /// The inverse of `network(_:)`.
    static func network(_ json: NFTJSON) -> IPv4Network? {
        if let single = json.string.flatMap(IPv4Address.init) { return IPv4Network(address: single, prefixLength: 32) }
        guard let prefix = json["prefix"], let address = prefix["addr"]?.string.flatMap(IPv4Address.init),
              let length = prefix["len"]?.integer(in: 0...32) else { return nil }
        let network = IPv4Network(address: address, prefixLength: length)
        return network.network == address ? network : nil
    }
}
