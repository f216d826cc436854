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
        try render(container: container, hostname: hostname, address: address, extras: extras, peers: PeerLines(peers))
    }

    /// The same, with the peers' lines made once for all the containers of a network.
    public static func render(container: String, hostname: String?, address: IPv4Address?,
                              extras: [String: IPv4Address], peers: PeerLines) throws(HostsNameError) -> String {
        var own = [hostname ?? container]
        if container != own[0] { own.append(container) }
        for name in own + extras.keys {
            if let problem = nameProblem(name) { throw HostsNameError(name: name, problem: problem) }
        }
        if let problem = peers.problem { throw problem }
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
        lines += extraLines(extras)
        lines.append(peersMarker)
        lines += peers.lines(except: container)
        return lines.joined(separator: "\n") + "\n"
    }

    /// Every container of a network as /etc/hosts lines, sorted by name, each name checked:
    /// every one of its containers' files lists all the others, so a network of N
    /// containers would otherwise sort, format and check N names N times.
    public struct PeerLines: Sendable {
        let entries: [(name: String, line: String)]
        /// The first name that cannot stand in /etc/hosts.
        public let problem: HostsNameError?

        public init(_ peers: [String: IPv4Address]) {
            entries = peers.keys.sorted().map { ($0, "\(peers[$0]!)\t\($0)") }
            problem = entries.lazy.compactMap { entry in nameProblem(entry.name).map { HostsNameError(name: entry.name, problem: $0) } }.first
        }

        /// The lines of all but `container`.
        public func lines(except container: String) -> [String] {
            entries.compactMap { $0.name == container ? nil : $0.line }
        }
    }

    /// Separates the extras from the other containers, so both can be read back.
    static let peersMarker = "# the other containers of its network:"

    /// The manifest's `hosts:` lines, sorted by name.
    public static func extraLines(_ extras: [String: IPv4Address]) -> [String] {
        extras.keys.sorted().map { "\(extras[$0]!)\t\($0)" }
    }

    /// "NAME ADDRESS" for each of `lines` ("ADDRESS<tab>NAME"): how a plan shows them.
    public static func display(_ lines: [String]) -> [String] {
        lines.map { line in
            let parts = line.split(separator: "\t")
            return parts.count == 2 ? "\(parts[1]) \(parts[0])" : line
        }
    }

    /// The lines again from `display`'s form.
    public static func lines(fromDisplay items: [String]) -> [String] {
        items.map { item in
            let parts = item.split(separator: " ")
            return parts.count == 2 ? "\(parts[1])\t\(parts[0])" : item
        }
    }

    /// Lines of `extraLines`/`peerLines` as name → address again.
    public static func entries(_ lines: [String]) -> [String: IPv4Address] {
        var out: [String: IPv4Address] = [:]
        for line in lines {
            let parts = line.split(separator: "\t")
            if parts.count == 2, let address = IPv4Address(String(parts[0])) { out[String(parts[1])] = address }
        }
        return out
    }

    /// The extras and the peers of a file `render` wrote; nil when the text is not one.
    public static func parse(_ text: String) -> (extras: [String], peers: [String])? {
        let lines = text.split(separator: "\n").map(String.init)
        guard let marker = lines.firstIndex(of: peersMarker), marker >= 8, lines[1] == "127.0.0.1\tlocalhost" else { return nil }
        // The comment, six localhost lines and the container's own line come first.
        return (Array(lines[8..<marker]), Array(lines[(marker + 1)...]))
    }

    /// Why `name` cannot stand in /etc/hosts, or nil (`Names.hostsEntryProblem`).
    public static func nameProblem(_ name: String) -> String? { Names.hostsEntryProblem(name) }
}

/// A name that cannot be written into /etc/hosts.
public struct HostsNameError: Error, Hashable, Sendable, CustomStringConvertible {
    public var name: String
    public var problem: String

    public var description: String { "host name \"\(name)\" \(problem)" }
}
