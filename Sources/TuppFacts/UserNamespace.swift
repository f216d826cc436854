import TuppManifest

/// One line of /proc/PID/uid_map or gid_map: `count` ids from `inside` are host ids from
/// `outside`.
public struct IDMapLine: Sendable, Hashable, CustomStringConvertible {
    public var inside: UInt64
    public var outside: UInt64
    public var count: UInt64

    public init(inside: UInt64, outside: UInt64, count: UInt64) {
        self.inside = inside
        self.outside = outside
        self.count = count
    }

    /// The host ids it covers.
    public var hostRange: IDRange { IDRange(start: outside, size: count) }

    /// "0 1879048192 65536", the kernel's columns with single spaces.
    public var description: String { "\(inside) \(outside) \(count)" }

    /// "0 1879048192 65536" (any whitespace between the three numbers).
    public init?(_ text: some StringProtocol) {
        let fields = text.split(whereSeparator: { $0 == " " || $0 == "\t" }).compactMap { UInt64($0) }
        guard fields.count == 3, fields[2] > 0 else { return nil }
        self.init(inside: fields[0], outside: fields[1], count: fields[2])
    }
}

/// A user namespace's uid and gid maps, as the kernel shows them.
public struct IDMapping: Sendable, Hashable, CustomStringConvertible {
    public var uids: [IDMapLine]
    public var gids: [IDMapLine]

    public init(uids: [IDMapLine], gids: [IDMapLine]) {
        self.uids = uids
        self.gids = gids
    }

    /// Container ids 0…count-1 from `uid` and `gid` on the host: what tupp gives a container.
    public static func block(uid: UInt64, gid: UInt64, count: UInt64 = UserNamespaceSettings.idsPerContainer) -> IDMapping {
        IDMapping(uids: [IDMapLine(inside: 0, outside: uid, count: count)], gids: [IDMapLine(inside: 0, outside: gid, count: count)])
    }

    /// The host's own namespace: every id is itself.
    public var isIdentity: Bool {
        uids == [IDMapLine(inside: 0, outside: 0, count: IDRange.idLimit)] && gids == [IDMapLine(inside: 0, outside: 0, count: IDRange.idLimit)]
    }

    /// The host uid of `inside`, nil when it is not mapped.
    public func hostUID(_ inside: UInt64) -> UInt64? { Self.outside(inside, uids) }
    public func hostGID(_ inside: UInt64) -> UInt64? { Self.outside(inside, gids) }

    static func outside(_ inside: UInt64, _ lines: [IDMapLine]) -> UInt64? {
        lines.first { inside >= $0.inside && inside - $0.inside < $0.count }.map { $0.outside + inside - $0.inside }
    }

    /// The map's lines as the plan and status show them: "0 1879048192 65536".
    public static func render(_ lines: [IDMapLine]) -> String { lines.map(\.description).joined(separator: ", ") }

    /// The lines `render` wrote; nil when one does not parse.
    public static func parse(rendered text: String) -> [IDMapLine]? {
        let lines = text.split(separator: ",").map { IDMapLine($0.trimmedWhitespace()) }
        return lines.contains(nil) || lines.isEmpty ? nil : lines.compactMap { $0 }
    }

    /// /proc/PID/uid_map (or gid_map) text; nil when a line does not parse.
    public static func parse(procMap text: String) -> [IDMapLine]? {
        let lines = text.split(separator: "\n").filter { !$0.allSatisfy(\.isWhitespace) }.map { IDMapLine($0) }
        return lines.contains(nil) ? nil : lines.compactMap { $0 }
    }

    public var description: String { "uid \(Self.render(uids)); gid \(Self.render(gids))" }
}

/// /etc/subuid and /etc/subgid: "NAME:START:COUNT" lines, each a range of host ids
/// delegated to a user (shadow-utils' newuidmap, podman, LXD read the same files).
public enum SubordinateIDs {
    public struct Entry: Sendable, Equatable {
        public var user: String
        public var range: IDRange
    }

    /// Every well-formed entry, in file order; comments, blank and malformed lines are skipped.
    public static func parse(_ text: String) -> [Entry] {
        text.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: ":", omittingEmptySubsequences: false)
            guard fields.count == 3, !fields[0].hasPrefix("#"), !fields[0].isEmpty,
                  let start = UInt64(fields[1]), let count = UInt64(fields[2]), count > 0 else { return nil }
            return Entry(user: String(fields[0]), range: IDRange(start: start, size: count))
        }
    }
}

extension StringProtocol {
    fileprivate func trimmedWhitespace() -> String {
        String(drop(while: \.isWhitespace).reversed().drop(while: \.isWhitespace).reversed())
    }
}
