import TuppManifest

/// One line of /etc/hosts: an address and the names it answers to.
public struct HostsEntry: Hashable, Sendable {
    public var address: IPv4Address
    public var names: [String]

    public init(_ address: IPv4Address, _ names: [String]) {
        self.address = address
        self.names = names
    }
}

/// A container's /etc/hosts. Pure.
public enum HostsFile {
    /// The file for `container`: the localhost lines, its own names (`hostname`, then the
    /// container's name when it differs) on `address` (127.0.1.1 without one, as Debian
    /// does), the manifest's `hosts:` extras, then every other container on its network by
    /// name. Lookups take the first line that names a host, so the user's extras win over
    /// a peer of the same name. Extras and peers are sorted by name: the same inputs
    /// always give the same bytes, and an unchanged file is not rewritten.
    public static func render(container: String, hostname: String?, address: IPv4Address?,
                              extras: [String: IPv4Address] = [:],
                              peers: [String: IPv4Address] = [:]) throws(HostsNameError) -> String {
        var own = [hostname ?? container]
        if container != own[0] { own.append(container) }
        for name in own + extras.keys + peers.keys {
            if let problem = nameProblem(name) { throw HostsNameError(name: name, problem: problem) }
        }
        var lines = [
            "# /etc/hosts of container \(container), written by tupp: edits are overwritten.",
            "127.0.0.1\tlocalhost",
            "::1\tlocalhost ip6-localhost ip6-loopback",
            "fe00::\tip6-localnet",
            "ff00::\tip6-mcastprefix",
            "ff02::1\tip6-allnodes",
            "ff02::2\tip6-allrouters",
        ]
        lines.append("\(address ?? IPv4Address(0x7f00_0101))\t\(own.joined(separator: " "))")
        for name in extras.keys.sorted() { lines.append("\(extras[name]!)\t\(name)") }
        for name in peers.keys.sorted() where name != container { lines.append("\(peers[name]!)\t\(name)") }
        return lines.joined(separator: "\n") + "\n"
    }

    /// Why `name` cannot stand in /etc/hosts, or nil: dot-separated labels of letters,
    /// digits, '-' and '_' (common in service names), at most 253 bytes.
    public static func nameProblem(_ name: String) -> String? {
        if name.isEmpty { return "is empty" }
        if name.utf8.count > 253 { return "is longer than 253 bytes" }
        for label in name.split(separator: ".", omittingEmptySubsequences: false) {
            if label.isEmpty { return "has an empty label (\"..\" or a leading/trailing dot)" }
            if label.utf8.count > 63 { return "has a label longer than 63 characters" }
            if !label.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }) {
                return "may contain only letters, digits, '-', '_' and '.'"
            }
            if label.hasPrefix("-") || label.hasSuffix("-") { return "has a label starting or ending with '-'" }
        }
        return nil
    }
}

/// A name that cannot be written into /etc/hosts.
public struct HostsNameError: Error, Hashable, Sendable, CustomStringConvertible {
    public var name: String
    public var problem: String

    public var description: String { "host name \"\(name)\" \(problem)" }
}
