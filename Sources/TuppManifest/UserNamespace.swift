/// `userns:` of a container and of `defaults`: whether container root is host root.
public enum UserNamespaceMode: String, Sendable, CaseIterable {
    /// No user namespace: uid 0 inside is uid 0 on the host (capabilities, seccomp and
    /// the cgroup are the fences).
    case host
    /// A user namespace with 65,536 host ids of its own, allocated from the installation's
    /// range; the rootfs and volumes are idmapped mounts, so nothing is chowned.
    case auto
}

/// A range of host ids: `size` ids from `start`.
public struct IDRange: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var start: UInt64
    public var size: UInt64

    public init(start: UInt64, size: UInt64) {
        self.start = start
        self.size = size
    }

    /// One past the last id.
    public var end: UInt64 { start + size }

    public func overlaps(_ other: IDRange) -> Bool { start < other.end && other.start < end }

    public func contains(_ other: IDRange) -> Bool { other.start >= start && other.end <= end }

    /// "1879048192-1879113727" (first and last id).
    public var description: String { size == 0 ? "\(start) (empty)" : "\(start)-\(end - 1)" }

    public static func < (a: IDRange, b: IDRange) -> Bool { (a.start, a.size) < (b.start, b.size) }

    /// The highest valid id is 4294967294: (uid_t) -1 means "unchanged" to chown and setuid.
    public static let idLimit: UInt64 = 4_294_967_295
}

/// The top-level `userns:` section: where `userns: auto` containers' ids come from.
public struct UserNamespaceSettings: Sendable, Equatable {
    /// The host ids tupp may give containers, for uids and gids alike; nil: `tupp`'s
    /// entries in /etc/subuid and /etc/subgid, else tupp's default range.
    public var range: IDRange?

    public init(range: IDRange? = nil) { self.range = range }

    /// Ids per container: the whole 16-bit range an image may use, nobody (65534) included.
    public static let idsPerContainer: UInt64 = 65_536
}

/// The top-level `defaults:` section: values every container gets unless it says otherwise.
public struct ContainerDefaults: Sendable, Equatable {
    public var userns: UserNamespaceMode?

    public init(userns: UserNamespaceMode? = nil) { self.userns = userns }
}
