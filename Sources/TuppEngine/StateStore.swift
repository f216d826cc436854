import TuppBase
import TuppPlan
import TuppSystem

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

    /// Creates the layout (mode 0700: records name paths and addresses). Only apply and
    /// destroy do: a plan writes nothing.
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

    /// The record's previous version, kept so that saving it frees no inode (`Files.replace`).
    func previousPath(_ address: ResourceAddress) -> String {
        "\(recordsDirectory)/.\(address.kind.rawValue).\(address.name).json.previous"
    }

    public func load() throws -> [ResourceAddress: Record] {
        let paths = try Files.list(recordsDirectory).filter { $0.hasSuffix(".json") && !$0.hasPrefix(".") }.sorted()
            .map { "\(recordsDirectory)/\($0)" }
        // Read and parsed on every core: a plan of 1,000 containers reads 1,000 records.
        let read = Lanes.map(paths.count) { i in
            Result { () throws(SystemError) -> Record? in
                guard let bytes = try Files.read(paths[i]) else { return nil }
                guard let json = try? JSON.parse(bytes), let record = Record(json: json) else {
                    throw SystemError.failure("read record", paths[i], "not a tupp record; move it away to continue")
                }
                return record
            }
        }
        var out: [ResourceAddress: Record] = [:]
        for result in read {
            if let record = try result.get() { out[record.address] = record }
        }
        return out
    }

    public func save(_ record: Record) throws {
        var record = record
        record.updated = wallClockSeconds()
        try Files.createDirectory(recordsDirectory, mode: 0o700)
        try Files.replace(path(record.address), Array(record.json.serialized().utf8) + [10],
                          keepingPreviousIn: previousPath(record.address))
        Checkpoint.pass("recorded \(record.status.rawValue)", resource: "\(record.address)")
    }

    /// Removes half-written temporary files a killed writer left in records/, and previous
    /// versions of records that are gone. Only call with the host lock held: then no
    /// writer is running.
    public func removeStaleTemporaryFiles() throws {
        let files = try Files.list(recordsDirectory)
        let records = Set(files.filter { !$0.hasPrefix(".") })
        for file in files where file.hasPrefix(".") {
            let orphan = file.hasSuffix(".json.previous") && !records.contains(String(file.dropFirst().dropLast(".previous".count)))
            if file.contains(".tmp.") || orphan { try Files.remove("\(recordsDirectory)/\(file)") }
        }
    }

    public func remove(_ address: ResourceAddress) throws {
        // The previous version first: a crash in between leaves the record, which the next
        // run removes again.
        try Files.remove(previousPath(address))
        try Files.remove(path(address))
        try Files.syncDirectory(recordsDirectory)
        Checkpoint.pass("record removed", resource: "\(address)")
    }
}
