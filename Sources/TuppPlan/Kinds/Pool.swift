import TuppBase
import TuppFacts
import TuppManifest

/// The pool's attributes. A pool is grown or remounted in place, never replaced: a
/// changed root or device file is refused by `PoolKind.check` instead.
public enum PoolAttribute {
    public static let root = AttributePath("root")
    public static let deviceFile = AttributePath("device.file")
    public static let deviceSize = AttributePath("device.size")

    public static let schema = AttributeSchema([
        AttributeRule(root, .replace),
        AttributeRule(deviceFile, .replace),
        AttributeRule(deviceSize, .inPlace),
    ])
}

/// What the pool reconciler applies: the manifest's storage.
public struct PoolSpec: ResourceSpec, Equatable {
    public var storage: Storage

    public init(_ storage: Storage) { self.storage = storage }
}

/// Why a pool needs work although its attributes match.
public enum PoolCondition: ResourceCondition, Equatable {
    case notMounted(file: String, root: String)
    /// A grow interrupted between growing the file and the filesystem.
    case filesystemSmallerThanFile(filesystem: UInt64, file: UInt64)
    case rootMode(root: String, mode: UInt32)

    public var effect: ChangeEffect { .inPlace }

    public var description: String {
        switch self {
        case .notMounted(let file, let root): "\(file) is not mounted at \(root)"
        case .filesystemSmallerThanFile(let fs, let file): "the filesystem spans \(Units.formatSize(fs)) of the \(Units.formatSize(file)) file"
        case .rootMode(let root, let mode): "\(root) has mode \(String(mode, radix: 8)); tupp keeps it 0700"
        }
    }
}

/// What the pool reconciler read from the host.
public struct PoolFacts: Sendable {
    /// The declared storage, when the manifest has one.
    public var storage: Storage?
    /// The pool's mount, file and filesystem; nil without declared storage.
    public var observation: PoolObservation?
    /// Its subvolumes, when the pool is mounted and listable (images and containers need
    /// them); nil otherwise.
    public var contents: PoolContents?
    public var contentsError: String?

    public init(storage: Storage?, observation: PoolObservation?, contents: PoolContents? = nil, contentsError: String? = nil) {
        self.storage = storage
        self.observation = observation
        self.contents = contents
        self.contentsError = contentsError
    }
}

/// The btrfs pool: desired attributes, interpretation of what the host shows, and the
/// planner's pool rules. Pure.
public enum PoolKind {
    /// There is one pool per installation.
    public static let address = ResourceAddress(.pool, "main")

    /// How much smaller than its file a filesystem may be before tupp grows it: btrfs
    /// rounds its device size down, so a freshly grown pool is a little short of its file.
    public static let growSlack: UInt64 = 64 << 20

    public static func desired(_ storage: Storage) -> DesiredResource {
        DesiredResource(address, attributes: attributes(storage), spec: PoolSpec(storage))
    }

    public static func attributes(_ storage: Storage) -> Attributes {
        var a: Attributes = [PoolAttribute.root: .string(storage.root)]
        if let device = storage.device {
            a[PoolAttribute.deviceFile] = .string(device.file)
            a[PoolAttribute.deviceSize] = .int(Int64(device.size))
        }
        return a
    }

    /// True when the file is smaller than declared, or the filesystem smaller than its
    /// file (a grow interrupted between the two).
    public static func needsGrow(_ storage: Storage, _ pool: PoolObservation) -> Bool {
        guard let device = storage.device, let size = pool.fileSize else { return false }
        return device.size > size || (pool.filesystemSize ?? size) + growSlack < size
    }

    /// The live pool as a resource (nothing without declared storage). `record` and
    /// `destroying`: a destroy interrupted after deleting the image file left its record,
    /// which is shown so that the next destroy finishes.
    public static func interpret(_ facts: PoolFacts, record: Record? = nil, destroying: Bool = false) -> KindObservation {
        var out = KindObservation()
        if let error = facts.contentsError { out.problems.append("pool.main: cannot list subvolumes: \(error)") }
        guard let storage = facts.storage, let pool = facts.observation else { return out }
        var resource = ObservedResource(address)
        resource.attributes[PoolAttribute.root] = .string(storage.root)
        if let device = storage.device {
            guard pool.fileExists else {
                // Absent: created by apply, or — its record left by an interrupted destroy — removed.
                if destroying, let record { out.resources.append(ObservedResource(address, attributes: record.attributes)) }
                return out
            }
            resource.attributes[PoolAttribute.deviceFile] = .string(device.file)
            if let size = pool.fileSize { resource.attributes[PoolAttribute.deviceSize] = .int(Int64(size)) }
            if pool.mounted {
                if !pool.backedByDevice {
                    out.problems.append("pool.main: \(storage.root) is mounted from \(pool.backingFile ?? pool.mountSource ?? "another device"), not \(device.file); unmount it or change storage.root")
                }
            } else {
                resource.conditions.append(PoolCondition.notMounted(file: device.file, root: storage.root))
            }
            if let size = pool.fileSize, let fs = pool.filesystemSize, pool.mounted, fs + growSlack < size {
                resource.conditions.append(PoolCondition.filesystemSmallerThanFile(filesystem: fs, file: size))
            }
        } else {
            guard pool.rootExists else { return out }
            if !pool.onBtrfs {
                out.problems.append("pool.main: \(storage.root) is not on btrfs; mount a btrfs filesystem there or add storage.device to back it with a loop file")
            }
        }
        if pool.rootExists, let mode = pool.rootMode, mode != 0o700, pool.onBtrfs {
            resource.conditions.append(PoolCondition.rootMode(root: storage.root, mode: mode))
        }
        out.fingerprints[address] = "mounted from \(pool.mountSource ?? "nothing"), file \(pool.fileSize.map(Units.formatSize) ?? "absent"), filesystem \(pool.filesystemSize.map(Units.formatSize) ?? "unknown")"
        out.resources.append(resource)
        return out
    }

    /// The planner's pool rules: moving the pool would abandon it and shrinking could lose
    /// data, so both are refused; everything else is done in place.
    static func check(_ change: inout Plan.ResourceChange, errors: inout [String]) {
        for reason in change.reasons {
            switch reason.path {
            case PoolAttribute.root?, PoolAttribute.deviceFile?:
                if let before = reason.before {
                    errors.append("pool.\(change.address.name): changing storage.\(reason.path!) (\(before) → \(reason.after.map(\.description) ?? "none")) would abandon the existing pool; run `tupp destroy --include-storage` with the old manifest first")
                }
            case PoolAttribute.deviceSize?:
                if case .int(let old)? = reason.before, case .int(let new)? = reason.after, new < old {
                    errors.append("pool.\(change.address.name): shrinking storage.device.size from \(old) to \(new) bytes is refused (btrfs data could be lost); grow it or keep the size")
                }
            default: break
            }
        }
        change.reasons = change.reasons.map { r in
            var r = r
            if r.effect == .replace { r.effect = .inPlace }
            return r
        }
    }

    /// What destroy does to the pool: unmount a loop-backed pool (and delete its file with
    /// --include-storage); a pool on an existing btrfs filesystem is left as it is.
    static func teardown(_ o: ObservedResource, includeStorage: Bool) -> Plan.ResourceChange {
        var change = Plan.ResourceChange(address: o.address, action: .delete, before: o.attributes, after: nil)
        if let file = o.attributes[PoolAttribute.deviceFile]?.string {
            change.notes.append(includeStorage ? "unmounted, and \(file) is deleted with all its data"
                                               : "unmounted; \(file) and its data are kept (add --include-storage to delete it)")
        } else {
            change.notes.append("tupp's directories are left on the existing btrfs filesystem")
            if !includeStorage { change.action = .noop }
        }
        return change
    }
}
