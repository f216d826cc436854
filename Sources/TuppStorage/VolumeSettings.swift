import Glibc
import TuppSystem

// What a manifest declares about a volume (`volumes.NAME`), and how volumes and
// snapshots are named.

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
