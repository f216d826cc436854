/// A volume: data that outlives containers and images (`volumes.NAME`). A btrfs subvolume
/// of the pool, mounted into containers with `{ type: volume, source: NAME, target: PATH }`;
/// never deleted implicitly.
public struct Volume: Sendable, Equatable {
    public var name: String
    public var settings: VolumeSettings
    /// Never deleted, even with `--prune-volumes` or `destroy --include-volumes`, until the
    /// flag is removed in a separate apply.
    public var protect: Bool

    public init(name: String, settings: VolumeSettings = VolumeSettings(), protect: Bool = false) {
        self.name = name
        self.settings = settings
        self.protect = protect
    }
}

/// What is declared about a volume's subvolume. Every field is optional: what is not
/// declared is neither set nor compared — except the size: no size means no limit.
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

    /// "0700": permission bits as the manifest writes them.
    public static func formatMode(_ mode: UInt32) -> String {
        let digits = String(mode, radix: 8)
        return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
    }

    /// 3 or 4 octal digits ("700", "0700", "2770") → the bits; nil otherwise.
    public static func parseMode(_ text: String) -> UInt32? {
        guard (3...4).contains(text.count), text.allSatisfy({ ("0"..."7").contains($0) }) else { return nil }
        return UInt32(text, radix: 8)
    }
}

/// Owner of a volume's root directory: "UID:GID".
public struct VolumeOwner: Sendable, Equatable, Hashable, CustomStringConvertible {
    public var uid: UInt32
    public var gid: UInt32

    public init(uid: UInt32, gid: UInt32) {
        self.uid = uid
        self.gid = gid
    }

    /// "999:999" → the owner; nil for anything else (names are not resolved: the host's
    /// user database is not the container's).
    public init?(_ text: String) {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, let uid = Self.id(parts[0]), let gid = Self.id(parts[1]) else { return nil }
        self.init(uid: uid, gid: gid)
    }

    /// A decimal id below 2^32 - 1 (which is the kernel's "no id").
    private static func id(_ text: Substring) -> UInt32? {
        guard !text.isEmpty, text.count <= 10, text.allSatisfy({ $0.isASCII && $0.isNumber }),
              let value = UInt64(text), value < UInt64(UInt32.max) else { return nil }
        return UInt32(value)
    }

    public var description: String { "\(uid):\(gid)" }
}

/// Where a new volume's first content comes from: what an image has at a mount target
/// (Docker's copy-up). Derived from the manifest: the first container, by name, that
/// mounts the volume. Used on the volume's first creation only, never again.
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
