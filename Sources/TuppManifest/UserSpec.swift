/// `user:` of a container (and `tupp exec -u`): NAME | UID, optionally :GROUP | :GID, as
/// Docker's --user. Names are looked up in the container's own /etc/passwd and
/// /etc/group, never the host's.
public struct UserSpec: Sendable, Equatable, CustomStringConvertible {
    public var user: String
    public var group: String?

    /// nil for an empty user or group, or more than one ':'.
    public init?(_ text: String) {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        guard (1...2).contains(parts.count), !parts[0].isEmpty, parts.count == 1 || !parts[1].isEmpty,
              !text.utf8.contains(0), !text.contains("\n") else { return nil }
        user = parts[0]
        group = parts.count == 2 ? parts[1] : nil
    }

    /// uid 0, the default when neither the manifest nor the image names a user.
    public static let root = UserSpec("0")!

    public var description: String { group.map { "\(user):\($0)" } ?? user }
}
