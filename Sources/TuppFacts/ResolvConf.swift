import TuppManifest

/// The settings of a resolv.conf that tupp reads or writes.
public struct ResolverSettings: Hashable, Sendable {
    /// As written: IPv4 or IPv6 text.
    public var nameservers: [String]
    public var search: [String]
    public var options: [String]

    public init(nameservers: [String] = [], search: [String] = [], options: [String] = []) {
        self.nameservers = nameservers
        self.search = search
        self.options = options
    }
}

/// A container's /etc/resolv.conf: the manifest's `dns`, `dnsSearch`, `dnsOptions`, or
/// else the host's. Parsing, choosing and rendering are pure; `readHost` is the I/O.
public enum ResolvConf {
    /// Where systemd-resolved writes the servers its 127.0.0.53 stub forwards to.
    public static let resolvedUpstreamPath = "/run/systemd/resolve/resolv.conf"
    public static let hostPath = "/etc/resolv.conf"

    /// The nameserver, search (and its older spelling, domain) and options lines of a
    /// resolv.conf; comments and other keywords are ignored, as libc does. The last search
    /// or domain line wins, as in glibc.
    public static func parse(_ text: String) -> ResolverSettings {
        var settings = ResolverSettings()
        for line in text.split(whereSeparator: \.isNewline) {
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            guard let keyword = words.first, !keyword.hasPrefix("#"), !keyword.hasPrefix(";") else { continue }
            let values = Array(words.dropFirst().prefix { !$0.hasPrefix("#") && !$0.hasPrefix(";") })
            switch keyword {
            case "nameserver": if let server = values.first { settings.nameservers.append(server) }
            case "search", "domain": settings.search = values
            case "options": settings.options += values
            default: break
            }
        }
        return settings
    }

    /// What the container gets, and warnings for the plan.
    ///
    /// Each of `dns`, `search` and `options` that is given replaces the host's. The host's
    /// servers are taken with loopback addresses (127.0.0.53, 127.0.0.1, ::1 — stubs the
    /// container cannot reach in its own network namespace) replaced by the upstream
    /// servers systemd-resolved lists in `resolvedUpstream`, or left out with a warning
    /// when there is no such file. IPv6 servers are left out too: tupp's networks are IPv4.
    public static func forContainer(dns: [IPv4Address]?, search: [String]?, options: [String]?,
                                    host: ResolverSettings, resolvedUpstream: ResolverSettings?) -> (settings: ResolverSettings, warnings: [String]) {
        var warnings: [String] = []
        var servers: [String] = []
        if let dns {
            servers = dns.map(\.description)
        } else {
            for server in host.nameservers {
                if let address = IPv4Address(server), address.value >> 24 != 127 {
                    servers.append(server)
                } else if isLoopback(server) {
                    let upstream = (resolvedUpstream?.nameservers ?? []).filter { IPv4Address($0).map { $0.value >> 24 != 127 } ?? false }
                    if upstream.isEmpty {
                        warnings.append("the host's resolver \(server) is a loopback address the container cannot reach, and \(resolvedUpstreamPath) names no upstream server: left out")
                    }
                    servers += upstream
                }
            }
        }
        var seen = Set<String>()
        servers = servers.filter { seen.insert($0).inserted }
        if servers.isEmpty {
            warnings.append("the container has no DNS server: set dns in the manifest")
        } else if servers.count > 3 {
            warnings.append("the container's resolver uses only the first 3 of its \(servers.count) DNS servers")
        }
        let settings = ResolverSettings(nameservers: servers, search: search ?? host.search, options: options ?? host.options)
        return (settings, warnings)
    }

    static func isLoopback(_ server: String) -> Bool {
        if let address = IPv4Address(server) { return address.value >> 24 == 127 }
        return server == "::1" || server == "0:0:0:0:0:0:0:1"
    }

    /// The file's text. Every value must be one word of printable ASCII (the manifest
    /// checks `dnsSearch` and `dnsOptions`; the host's file is read word by word).
    public static func render(_ settings: ResolverSettings, container: String) throws(ResolverValueError) -> String {
        for value in settings.nameservers + settings.search + settings.options {
            guard !value.isEmpty, value.allSatisfy({ $0.isASCII && $0.asciiValue! > 32 && $0.asciiValue! < 127 }) else {
                throw ResolverValueError(value: value)
            }
        }
        var lines = ["# /etc/resolv.conf of container \(container), written by tupp: edits are overwritten."]
        lines += settings.nameservers.map { "nameserver \($0)" }
        if !settings.search.isEmpty { lines.append("search " + settings.search.joined(separator: " ")) }
        if !settings.options.isEmpty { lines.append("options " + settings.options.joined(separator: " ")) }
        return lines.joined(separator: "\n") + "\n"
    }
}

/// A resolver value that cannot be written as one word of resolv.conf.
public struct ResolverValueError: Error, Hashable, Sendable, CustomStringConvertible {
    public var value: String

    public var description: String { "resolver value \"\(value)\" must be one word of printable ASCII" }
}
