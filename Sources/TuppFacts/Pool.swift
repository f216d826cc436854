import TuppManifest

/// What the host shows about a pool right now; the planner diffs it against the manifest's `Storage`.
public struct PoolObservation: Sendable, Equatable {
    public var rootExists: Bool
    /// Permission bits of the root directory (e.g. 0o700), nil when it does not exist.
    public var rootMode: UInt32?
    /// statfs(2) on the root says btrfs.
    public var onBtrfs: Bool
    /// A filesystem is mounted exactly at the root (mountinfo).
    public var mounted: Bool
    /// The mount's source, e.g. "/dev/loop3".
    public var mountSource: String?
    /// "/dev/loopN" when the mount at the root comes from a loop device.
    public var loopDevice: String?
    /// The file behind that loop device (/sys/block/loopN/loop/backing_file).
    public var backingFile: String?
    /// Whether the configured device file exists (false without a device).
    public var fileExists: Bool
    public var fileSize: UInt64?
    /// Bytes the mounted btrfs spans (sum of its devices' sizes), nil when not mounted.
    public var filesystemSize: UInt64?

    /// The mounted loop device is backed by the configured device file.
    public var backedByDevice: Bool

    public init(rootExists: Bool, rootMode: UInt32?, onBtrfs: Bool, mounted: Bool, mountSource: String?, loopDevice: String?,
                backingFile: String?, fileExists: Bool, fileSize: UInt64?, filesystemSize: UInt64?, backedByDevice: Bool) {
        self.rootExists = rootExists
        self.rootMode = rootMode
        self.onBtrfs = onBtrfs
        self.mounted = mounted
        self.mountSource = mountSource
        self.loopDevice = loopDevice
        self.backingFile = backingFile
        self.fileExists = fileExists
        self.fileSize = fileSize
        self.filesystemSize = filesystemSize
        self.backedByDevice = backedByDevice
    }
}

/// A btrfs subvolume as libbtrfsutil reports it.
public struct SubvolumeInfo: Sendable, Equatable, Hashable {
    /// Path relative to the pool root, e.g. "images/box" or "containers/web".
    public var path: String
    /// Subvolume id, unique within the filesystem.
    public var id: UInt64
    /// UUID in the 8-4-4-4-12 form `btrfs subvolume show` prints.
    public var uuid: String
    /// UUID of the subvolume this one is a snapshot of; nil when it is not a snapshot.
    public var parentUUID: String?
    public var readOnly: Bool
    /// Transaction id of the subvolume root: changes whenever the subvolume changes.
    public var generation: UInt64
    /// Creation time, seconds since the epoch.
    public var createdAt: Double
    /// Transaction id at creation (otransid). Equal to `generation` while nothing was
    /// written to the subvolume after the transaction that made it.
    public var createdGeneration: UInt64
    /// For a subvolume made by `btrfs receive`: the UUID of the subvolume that was sent,
    /// which is how an incremental stream finds its parent. Nil otherwise.
    public var receivedUUID: String?

    public init(path: String, id: UInt64, uuid: String, parentUUID: String?, readOnly: Bool,
                generation: UInt64, createdAt: Double, createdGeneration: UInt64 = 0, receivedUUID: String? = nil) {
        self.path = path
        self.id = id
        self.uuid = uuid
        self.parentUUID = parentUUID
        self.readOnly = readOnly
        self.generation = generation
        self.createdAt = createdAt
        self.createdGeneration = createdGeneration
        self.receivedUUID = receivedUUID
    }
}

/// Everything in the pool, from one pass over the filesystem's subvolumes.
public struct PoolContents: Sendable, Equatable {
    /// images/NAME → its subvolume.
    public var images: [String: SubvolumeInfo] = [:]
    /// containers/NAME → its subvolume.
    public var containers: [String: SubvolumeInfo] = [:]
    /// images/.import-* — temporary subvolumes of imports that were interrupted.
    public var leftovers: [SubvolumeInfo] = []
    /// Every subvolume below volumes/ (volumes, their snapshots, staging), for
    /// `VolumeStore.contents(from:)` to interpret.
    public var volumeArea: [SubvolumeInfo] = []
    /// Every subvolume below layers/ (layers, interrupted layer imports), for
    /// `LayerStore` to interpret.
    public var layerArea: [SubvolumeInfo] = []
    /// Any other subvolume below the pool root, e.g. one a container made inside itself.
    public var others: [SubvolumeInfo] = []

    public init() {}

    /// Temporary subvolumes of imports are images/.import-NAME-RANDOM.
    public static let importPrefix = ".import-"

    /// The image an interrupted import in `leftover` was for.
    public static func importedImageName(_ leftover: SubvolumeInfo) -> String? {
        let base = leftover.path.split(separator: "/").last.map(String.init) ?? leftover.path
        guard base.hasPrefix(importPrefix), let dash = base.lastIndex(of: "-") else { return nil }
        let name = base[base.index(base.startIndex, offsetBy: importPrefix.count)..<dash]
        return name.isEmpty ? nil : String(name)
    }
}
