import TuppManifest

// What observation returns about volumes and quotas: plain values, no I/O.

/// A subvolume's qgroup as the quota tree holds it at the last transaction commit.
public struct QgroupUsage: Sendable, Equatable {
    /// Bytes of every extent the subvolume references, shared with snapshots or not.
    public var referenced: UInt64
    /// Bytes only this subvolume references: what deleting it would free.
    public var exclusive: UInt64
    /// The limit on `referenced`; nil when none is set.
    public var limit: UInt64?

    public init(referenced: UInt64, exclusive: UInt64, limit: UInt64?) {
        self.referenced = referenced
        self.exclusive = exclusive
        self.limit = limit
    }
}

/// Whether the pool keeps qgroups, and whether their numbers can be trusted.
public struct QuotaStatus: Sendable, Equatable {
    public var enabled: Bool
    /// A rescan is running: usage is still being counted.
    public var rescanning: Bool
    /// The kernel says the numbers are off (an interrupted rescan, an old kernel's
    /// accounting gap); a rescan repairs them. Limits are still enforced.
    public var inconsistent: Bool

    public init(enabled: Bool, rescanning: Bool = false, inconsistent: Bool = false) {
        self.enabled = enabled
        self.rescanning = rescanning
        self.inconsistent = inconsistent
    }

    public static let disabled = QuotaStatus(enabled: false)
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
