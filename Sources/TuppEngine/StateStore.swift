import TuppPlan
import TuppSystem

/// What tupp records about a resource it owns: the facts the kernel cannot tell (that tupp
/// created it, what it was built from) and the values it applied. Written atomically
/// *before* each side effect (status `creating` / `deleting`) and again after it, so a
/// crash at any instant leaves a record the next plan can reconcile.
public struct Record: Sendable, Equatable {
    public enum Status: String, Sendable {
        /// Intent recorded; the object may exist partially.
        case creating
        /// Created and recorded.
        case ready
        /// Removal started.
        case deleting
    }

    public var kind: ResourceKind
    public var name: String
    public var status: Status
    /// The attributes tupp applied (same paths as the plan's).
    public var attributes: [String: Value]
    /// Facts that identify the live object: subvolume UUID, link name, image digest, …
    public var facts: [String: String]
    public var protect: Bool
    /// Seconds since the epoch of the last change.
    public var updated: Double

    public init(kind: ResourceKind, name: String, status: Status, attributes: [String: Value] = [:],
                facts: [String: String] = [:], protect: Bool = false) {
        self.kind = kind
        self.name = name
        self.status = status
        self.attributes = attributes
        self.facts = facts
        self.protect = protect
        updated = wallClockSeconds()
    }

    public var address: ResourceAddress { ResourceAddress(kind, name) }

    /// The record as a JSON object with sorted keys.
    var json: JSON.Node {
        JSON.object([
            ("attributes", JSON.attributes(attributes)),
            ("facts", .object(facts.keys.sorted().map { ($0, .string(facts[$0]!)) })),
            ("kind", .string(kind.rawValue)),
            ("name", .string(name)),
            ("protect", .bool(protect)),
            ("status", .string(status.rawValue)),
            ("updated", .double(updated)),
        ])
    }

    init?(json: JSON.Node) {
        guard let kind = json["kind"]?.string.flatMap(ResourceKind.init(rawValue:)), let name = json["name"]?.string,
              let status = json["status"]?.string.flatMap(Status.init(rawValue:)),
              case .object(let attributes)? = json["attributes"] else { return nil }
        var values: [String: Value] = [:]
        for (key, node) in attributes {
            guard let value = Self.value(node) else { return nil }
            values[key] = value
        }
        var facts: [String: String] = [:]
        if case .object(let pairs)? = json["facts"] {
            for (key, node) in pairs { facts[key] = node.string }
        }
        self.init(kind: kind, name: name, status: status, attributes: values, facts: facts,
                  protect: json["protect"]?.bool ?? false)
        updated = json["updated"]?.double ?? 0
    }

    static func value(_ node: JSON.Node) -> Value? {
        switch node {
        case .string(let s): return .string(s)
        case .int(let i): return .int(i)
        case .bool(let b): return .bool(b)
        case .array(let items):
            let values = items.compactMap(value)
            return values.count == items.count ? .list(values) : nil
        default: return nil
        }
    }
}

/// The state directory:
///
///     STATE/lock                       flock: one apply at a time
///     STATE/records/KIND.NAME.json     one record per owned resource
///     STATE/containers/NAME/           the container's runtime directory (spec, state, logs)
///     STATE/cache/                     source digests, keyed by file identity
public struct StateStore: Sendable {
    public let directory: String

    public init(directory: String) {
        self.directory = directory.hasSuffix("/") && directory.count > 1 ? String(directory.dropLast()) : directory
    }

    public var recordsDirectory: String { "\(directory)/records" }
    public var cacheDirectory: String { "\(directory)/cache" }
    public var lockPath: String { "\(directory)/lock" }
    public func containerDirectory(_ name: String) -> String { "\(directory)/containers/\(name)" }

    /// Creates the layout (mode 0700: records name paths and addresses).
    public func prepare() throws {
        for dir in [directory, recordsDirectory, cacheDirectory, "\(directory)/containers"] {
            try Files.createDirectory(dir, mode: 0o700)
        }
    }

    /// A stable identifier of this installation, derived from the state directory's
    /// canonical path: two state dirs never share link names or ownership marks.
    public var installationID: String {
        StableHash(Paths.canonical(directory) ?? directory).base32(6)
    }

    func path(_ address: ResourceAddress) -> String { "\(recordsDirectory)/\(address.kind.rawValue).\(address.name).json" }

    public func load() throws -> [ResourceAddress: Record] {
        var out: [ResourceAddress: Record] = [:]
        for file in try Files.list(recordsDirectory) where file.hasSuffix(".json") && !file.hasPrefix(".") {
            let full = "\(recordsDirectory)/\(file)"
            guard let bytes = try Files.read(full) else { continue }
            guard let json = try? JSON.parse(bytes), let record = Record(json: json) else {
                throw SystemError.failure("read record", full, "not a tupp record; move it away to continue")
            }
            out[record.address] = record
        }
        return out
    }

    public func save(_ record: Record) throws {
        var record = record
        record.updated = wallClockSeconds()
        try Files.writeAtomically(path(record.address), Array(record.json.serialized().utf8) + [10])
        Checkpoint.pass("recorded \(record.address) \(record.status.rawValue)")
    }

    /// Removes half-written temporary files a killed writer left in records/. Only call
    /// with the host lock held: then no writer is running.
    public func removeStaleTemporaryFiles() throws {
        for file in try Files.list(recordsDirectory) where file.hasPrefix(".") && file.contains(".tmp.") {
            try Files.remove("\(recordsDirectory)/\(file)")
        }
    }

    public func remove(_ address: ResourceAddress) throws {
        try Files.remove(path(address))
        try Files.syncDirectory(recordsDirectory)
        Checkpoint.pass("removed the record of \(address)")
    }
}
