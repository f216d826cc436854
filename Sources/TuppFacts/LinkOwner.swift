import TuppBase

/// The ownership marker tupp writes into a link's alias (IFLA_IFALIAS).
///
/// The alias survives in the kernel for as long as the link does, so the planner can tell
/// tupp's bridges and veths from foreign ones (docker0, a user's br0) by reading a link
/// dump alone, and tell two installations' links apart:
///
///     tupp:k3v9qz2a:container:web
///     tupp:k3v9qz2a:network:br0
public struct LinkOwner: Hashable, Sendable, CustomStringConvertible {
    public enum Role: String, Sendable {
        case network
        case container
    }

    /// base32 of a hash of the installation's identity (e.g. its state directory).
    public var installationTag: String
    public var role: Role
    /// The manifest name of the network or container.
    public var name: String

    public init(installation: String, role: Role, name: String) {
        installationTag = Self.tag(forInstallation: installation)
        self.role = role
        self.name = name
    }

    /// Parses an alias; nil for anything tupp did not write.
    public init?(alias: String) {
        let parts = alias.split(separator: ":", maxSplits: 3, omittingEmptySubsequences: false)
        guard parts.count == 4, parts[0] == "tupp", parts[1].count == 8,
              let role = Role(rawValue: String(parts[2])), !parts[3].isEmpty else { return nil }
        installationTag = String(parts[1])
        self.role = role
        name = String(parts[3])
    }

    /// The kernel caps aliases at IFALIASZ - 1 (255) bytes.
    public var alias: String { "tupp:\(installationTag):\(role.rawValue):\(name)" }
    public var description: String { alias }

    /// True when this marker was written by the installation identified by `installation`.
    public func belongs(toInstallation installation: String) -> Bool {
        installationTag == Self.tag(forInstallation: installation)
    }

    public static func tag(forInstallation installation: String) -> String {
        StableHash("tupp-installation", installation).base32(8)
    }
}
