import FoundationEssentials
import TuppPlan
import TuppSystem

/// What tupp records about a resource it owns: the facts the kernel cannot tell (that tupp
/// created it, what it was built from) and the values it applied. Written atomically
/// *before* each side effect (status `creating` / `deleting`) and again after it, so a
/// crash at any instant leaves a record the next plan can reconcile.
public struct Record: Codable, Sendable, Equatable {
    public enum Status: String, Codable, Sendable {
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
    public var attributes: [String: RecordValue]
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
        self.attributes = attributes.mapValues(RecordValue.init)
        self.facts = facts
        self.protect = protect
        updated = wallClockSeconds()
    }

    public var address: ResourceAddress { ResourceAddress(kind, name) }
    public var values: [String: Value] { attributes.mapValues(\.value) }
}

/// `Value` in a JSON-friendly shape.
public enum RecordValue: Codable, Sendable, Equatable {
    case string(String), int(Int64), bool(Bool), list([RecordValue])

    init(_ v: Value) {
        switch v {
        case .string(let s): self = .string(s)
        case .int(let i): self = .int(i)
        case .bool(let b): self = .bool(b)
        case .list(let l): self = .list(l.map(RecordValue.init))
        }
    }

    var value: Value {
        switch self {
        case .string(let s): .string(s)
        case .int(let i): .int(i)
        case .bool(let b): .bool(b)
        case .list(let l): .list(l.map(\.value))
        }
    }

    public init(from decoder: any Decoder) throws {
        // Most values are strings: try that first (each failed attempt throws, which is slow).
        let c = try decoder.singleValueContainer()
        if let s = try? c.decode(String.self) { self = .string(s) }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let i = try? c.decode(Int64.self) { self = .int(i) }
        else { self = .list(try c.decode([RecordValue].self)) }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .string(let s): try c.encode(s)
        case .int(let i): try c.encode(i)
        case .bool(let b): try c.encode(b)
        case .list(let l): try c.encode(l)
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
            do {
                let record = try JSONDecoder().decode(Record.self, from: Data(bytes))
                out[record.address] = record
            } catch {
                throw SystemError.failure("read record", full, "not a tupp record (\(error)); move it away to continue")
            }
        }
        return out
    }

    public func save(_ record: Record) throws {
        var record = record
        record.updated = wallClockSeconds()
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let data = try encoder.encode(record)
        try Files.writeAtomically(path(record.address), Array(data) + [10])
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
