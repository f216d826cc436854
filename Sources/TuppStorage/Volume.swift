import Glibc
import TuppSystem

// Volumes as plain values: what a manifest asks for, what the pool shows, and the pure
// judgement between the two. VolumeStore does the I/O.

/// Owner of a volume's root directory.
public struct VolumeOwner: Sendable, Equatable, Hashable, CustomStringConvertible {
    public var uid: UInt32
    public var gid: UInt32

    public init(uid: UInt32, gid: UInt32) {
        self.uid = uid
        self.gid = gid
    }

    public var description: String { "\(uid):\(gid)" }
}

/// What is declared about a volume (the manifest's `volumes.NAME`). Every field is
/// optional: what is not declared is neither set nor compared.
public struct VolumeSettings: Sendable, Equatable {
    /// Limit on the bytes the volume references (its qgroup's max_rfer).
    public var size: UInt64?
    public var owner: VolumeOwner?
    /// Permission bits of the root directory, e.g. 0o700.
    public var mode: UInt32?

    public init(size: UInt64? = nil, owner: VolumeOwner? = nil, mode: UInt32? = nil) {
        self.size = size
        self.owner = owner
        self.mode = mode
    }

    /// Root directory of a new volume that is not seeded and declares neither: like a
    /// Docker volume's.
    public static let defaultOwner = VolumeOwner(uid: 0, gid: 0)
    public static let defaultMode: UInt32 = 0o755
}

/// Where a new volume's first content comes from: what the image has at the mount target
/// (Docker's copy-up). Resolved inside the image, so a symlink there cannot lead out.
public struct VolumeSeed: Sendable, Equatable {
    /// An image of the same pool (images/IMAGE).
    public var image: String
    /// The mount target, an absolute path in the image.
    public var path: String

    public init(image: String, path: String) {
        self.image = image
        self.path = path
    }
}

/// A volume as the pool shows it.
public struct VolumeFacts: Sendable, Equatable {
    public var name: String
    public var subvolume: SubvolumeInfo
    public var owner: VolumeOwner
    /// Permission bits of the root directory.
    public var mode: UInt32
    /// Nil while quotas are off.
    public var usage: QgroupUsage?

    public init(name: String, subvolume: SubvolumeInfo, owner: VolumeOwner, mode: UInt32, usage: QgroupUsage?) {
        self.name = name
        self.subvolume = subvolume
        self.owner = owner
        self.mode = mode
        self.usage = usage
    }
}

/// A read-only snapshot volumes/.snapshots/VOLUME/TAG.
public struct VolumeSnapshotFacts: Sendable, Equatable {
    public var volume: String
    public var tag: String
    public var subvolume: SubvolumeInfo
    public var usage: QgroupUsage?

    public init(volume: String, tag: String, subvolume: SubvolumeInfo, usage: QgroupUsage?) {
        self.volume = volume
        self.tag = tag
        self.subvolume = subvolume
        self.usage = usage
    }
}

/// What an interrupted change left: a create's or an export's subvolume in
/// volumes/.staging, or a receive's unfinished (writable) subvolume in volumes/.snapshots/NAME.
public struct VolumeLeftover: Sendable, Equatable {
    public enum Kind: String, Sendable { case create, receive, export }
    public var kind: Kind
    /// The volume it was for.
    public var volume: String
    public var subvolume: SubvolumeInfo

    public init(kind: Kind, volume: String, subvolume: SubvolumeInfo) {
        self.kind = kind
        self.volume = volume
        self.subvolume = subvolume
    }
}

/// Everything about volumes in one pool, from one walk of its subvolumes and one of its
/// quota tree.
public struct VolumeContents: Sendable, Equatable {
    public var quotas: QuotaStatus = .disabled
    public var volumes: [String: VolumeFacts] = [:]
    /// Volume name → tag → snapshot. A volume that was deleted keeps its snapshots.
    public var snapshots: [String: [String: VolumeSnapshotFacts]] = [:]
    public var leftovers: [VolumeLeftover] = []
    /// Subvolumes below volumes/ that tupp did not make there (one a container created
    /// inside its volume, say); never touched.
    public var others: [SubvolumeInfo] = []

    public init() {}

    /// The snapshots of `volume`, oldest first.
    public func snapshots(of volume: String) -> [VolumeSnapshotFacts] {
        (snapshots[volume] ?? [:]).values.sorted { ($0.subvolume.createdAt, $0.tag) < ($1.subvolume.createdAt, $1.tag) }
    }
}

/// One attribute of a volume that differs from its settings; each is changed in place.
public enum VolumeDifference: Sendable, Equatable {
    case owner(observed: VolumeOwner, declared: VolumeOwner)
    case mode(observed: UInt32, declared: UInt32)
    /// `observed` is the qgroup's limit (nil: none, or quotas off).
    case size(observed: UInt64?, declared: UInt64?)
}

extension VolumeSettings {
    /// What differs between these settings and the volume as observed. Size is compared
    /// whenever quotas are on (an undeclared size means no limit, so a limit set by hand is
    /// removed); with quotas off only a declared size differs, and applying it turns them on.
    public func differences(from facts: VolumeFacts, quotas: QuotaStatus) -> [VolumeDifference] {
        var result: [VolumeDifference] = []
        if let owner, owner != facts.owner { result.append(.owner(observed: facts.owner, declared: owner)) }
        if let mode, mode != facts.mode { result.append(.mode(observed: facts.mode, declared: mode)) }
        let limit = quotas.enabled ? facts.usage?.limit : nil
        if size != limit, quotas.enabled || size != nil {
            result.append(.size(observed: limit, declared: size))
        }
        return result
    }
}

/// Whether the pool should keep quotas on: only while some volume declares a size (qgroups
/// slow every write, snapshot and delete). Quotas tupp did not turn on — on a pool whose
/// filesystem is not tupp's (`storage` without a device) — are left alone.
public enum QuotaPolicy {
    public enum Action: Sendable, Equatable { case enable, disable }

    public static func action(declaredSizes: [UInt64?], status: QuotaStatus, poolFilesystemIsTupps: Bool) -> Action? {
        let wanted = declaredSizes.contains { $0 != nil }
        if wanted && !status.enabled { return .enable }
        if !wanted && status.enabled && poolFilesystemIsTupps { return .disable }
        return nil
    }
}

/// `NAME` or `NAME@TAG`: a volume, or one of its snapshots.
public struct VolumeReference: Sendable, Equatable, CustomStringConvertible {
    public var volume: String
    public var tag: String?

    public init(volume: String, tag: String? = nil) {
        self.volume = volume
        self.tag = tag
    }

    /// Splits at the first '@' and checks both parts.
    public static func parse(_ text: String) throws(SystemError) -> VolumeReference {
        guard let at = text.firstIndex(of: "@") else {
            try VolumeNames.validate(volume: text)
            return VolumeReference(volume: text)
        }
        let reference = VolumeReference(volume: String(text[..<at]), tag: String(text[text.index(after: at)...]))
        try VolumeNames.validate(volume: reference.volume)
        try VolumeNames.validate(tag: reference.tag!)
        return reference
    }

    public var description: String { tag.map { "\(volume)@\($0)" } ?? volume }
}

/// Volume names and snapshot tags are single path components. They never start with '.'
/// (volumes/.snapshots and volumes/.staging are tupp's) and hold no '@' (NAME@TAG).
public enum VolumeNames {
    public static func validate(volume name: String) throws(SystemError) {
        try check(name, kind: "volume name")
    }

    public static func validate(tag: String) throws(SystemError) {
        try check(tag, kind: "snapshot tag")
    }

    private static func check(_ text: String, kind: String) throws(SystemError) {
        let bytes = Array(text.utf8)
        guard !bytes.isEmpty, bytes.count <= 200, bytes.first != UInt8(ascii: "."),
              !bytes.contains(UInt8(ascii: "/")), !bytes.contains(UInt8(ascii: "@")), !bytes.contains(0) else {
            throw SystemError.failure("validate \(kind)", "'\(text)'",
                                      "must be 1–200 bytes, not start with '.', and contain no '/' or '@'")
        }
    }

    /// A tag from a UTC time: "20260131T120501Z" — sorts by time, valid as a tag.
    public static func timestampTag(secondsSinceEpoch seconds: Int) -> String {
        var time = time_t(seconds)
        var parts = tm()
        gmtime_r(&time, &parts)
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        return "\(parts.tm_year + 1900)\(two(parts.tm_mon + 1))\(two(parts.tm_mday))T\(two(parts.tm_hour))\(two(parts.tm_min))\(two(parts.tm_sec))Z"
    }
}
