import TuppManifest

// Pure values and parsing for `network.ports`. This file imports only TuppManifest, so the
// manifest decoder can take it over as it is.

/// The transport protocol of a published port.
public enum TransportProtocol: String, Hashable, Sendable, CaseIterable, Comparable {
    case tcp, udp

    public static func < (a: TransportProtocol, b: TransportProtocol) -> Bool { a.rawValue < b.rawValue }
}

/// An inclusive range of ports in 1…65535; one port is a range of one.
public struct PortRange: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var lower: UInt16
    public var upper: UInt16

    public init(_ port: UInt16) {
        lower = port
        upper = port
    }

    /// `lower` ≤ `upper`, both ≥ 1.
    public init(_ lower: UInt16, _ upper: UInt16) {
        precondition(lower >= 1 && lower <= upper, "port range \(lower)-\(upper)")
        self.lower = lower
        self.upper = upper
    }

    public var count: Int { Int(upper) - Int(lower) + 1 }

    public func overlaps(_ other: PortRange) -> Bool { lower <= other.upper && other.lower <= upper }

    public func contains(_ port: UInt16) -> Bool { lower <= port && port <= upper }

    /// "8080" or "9000-9002".
    public var description: String { count == 1 ? String(lower) : "\(lower)-\(upper)" }

    /// "8080" or "9000-9002": decimal, 1…65535, no sign or leading zero, lower ≤ upper.
    public init?(_ text: some StringProtocol) {
        let bounds = String(text).split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false)
        guard let lower = Self.port(bounds[0]) else { return nil }
        guard bounds.count == 2 else {
            self.init(lower)
            return
        }
        guard let upper = Self.port(bounds[1]), lower <= upper else { return nil }
        self.init(lower, upper)
    }

    private static func port(_ text: Substring) -> UInt16? {
        guard !text.isEmpty, text.count <= 5, text.allSatisfy({ $0.isASCII && $0.isNumber }), text.first != "0",
              let value = Int(text), value <= 65535 else { return nil }
        return UInt16(value)
    }

    public static func < (a: PortRange, b: PortRange) -> Bool { (a.lower, a.upper) < (b.lower, b.upper) }
}

/// One entry of a container's `network.ports`: connections to the host's address and
/// ports go to the container's ports.
///
/// Short forms (Compose's): `"8080:80"`, `"127.0.0.1:5432:5432"`, `"53:53/udp"`,
/// `"9000-9002:9000-9002"`. Long form: `{ host: "0.0.0.0:8080", container: 80, protocol: tcp }`.
/// `description` is the canonical short form, with the host address always written.
public struct PortPublication: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// nil: every address of the host (written 0.0.0.0).
    public var hostAddress: IPv4Address?
    public var hostPorts: PortRange
    /// As many ports as `hostPorts`, mapped in order.
    public var containerPorts: PortRange
    public var `protocol`: TransportProtocol

    public init(hostAddress: IPv4Address? = nil, hostPorts: PortRange, containerPorts: PortRange,
                protocol: TransportProtocol = .tcp) {
        precondition(hostPorts.count == containerPorts.count, "\(hostPorts) and \(containerPorts) differ in length")
        self.hostAddress = hostAddress
        self.hostPorts = hostPorts
        self.containerPorts = containerPorts
        self.protocol = `protocol`
    }

    /// A short form: `[ADDRESS:]HOSTPORTS:CONTAINERPORTS[/PROTOCOL]`.
    public static func parse(_ text: String) throws(PortSyntaxError) -> PortPublication {
        var rest = Substring(text)
        var proto = TransportProtocol.tcp
        if let slash = rest.lastIndex(of: "/") {
            proto = try protocolNamed(String(rest[rest.index(after: slash)...]), in: text)
            rest = rest[..<slash]
        }
        if rest.hasPrefix("[") { throw PortSyntaxError(text, "IPv6 host addresses are not supported (tupp's networks are IPv4)") }
        let parts = rest.split(separator: ":", omittingEmptySubsequences: false)
        switch parts.count {
        case 1:
            throw PortSyntaxError(text, "give the host port too, as in \"8080:\(rest)\" (tupp does not pick host ports)")
        case 2:
            return try make(address: nil, host: parts[0], container: parts[1], proto, in: text)
        case 3:
            return try make(address: try address(parts[0], in: text), host: parts[1], container: parts[2], proto, in: text)
        default:
            throw PortSyntaxError(text, "expected [ADDRESS:]HOSTPORT:CONTAINERPORT[/tcp|udp]")
        }
    }

    /// The long form: `host` is `[ADDRESS:]PORTS` ("0.0.0.0:8080", "8080"), `container`
    /// the container's ports ("80", "9000-9002"), `protocol` tcp (default) or udp.
    public static func parse(host: String, container: String, protocol name: String? = nil) throws(PortSyntaxError) -> PortPublication {
        let proto = try name.map { name throws(PortSyntaxError) in try protocolNamed(name, in: "protocol: \(name)") } ?? .tcp
        let parts = host.split(separator: ":", omittingEmptySubsequences: false)
        if host.hasPrefix("[") { throw PortSyntaxError(host, "IPv6 host addresses are not supported (tupp's networks are IPv4)") }
        switch parts.count {
        case 1: return try make(address: nil, host: parts[0], container: Substring(container), proto, in: host)
        case 2: return try make(address: try address(parts[0], in: host), host: parts[1], container: Substring(container), proto, in: host)
        default: throw PortSyntaxError(host, "expected [ADDRESS:]PORT for host")
        }
    }

    /// The long form with the container port as a YAML integer.
    public static func parse(host: String, container: Int, protocol name: String? = nil) throws(PortSyntaxError) -> PortPublication {
        try parse(host: host, container: String(container), protocol: name)
    }

    private static func protocolNamed(_ name: String, in text: String) throws(PortSyntaxError) -> TransportProtocol {
        guard let proto = TransportProtocol(rawValue: name) else {
            throw PortSyntaxError(text, "protocol must be tcp or udp, not \"\(name)\"")
        }
        return proto
    }

    private static func address(_ text: Substring, in whole: String) throws(PortSyntaxError) -> IPv4Address? {
        guard let address = IPv4Address(text) else {
            throw PortSyntaxError(whole, "\"\(text)\" is not an IPv4 address (four decimal octets)")
        }
        if address.value == 0 { return nil }
        if address.value >> 28 == 0xe || address.value == UInt32.max {
            throw PortSyntaxError(whole, "\(address) is not a unicast address")
        }
        return address
    }

    private static func make(address: IPv4Address?, host: Substring, container: Substring,
                             _ proto: TransportProtocol, in text: String) throws(PortSyntaxError) -> PortPublication {
        if host.isEmpty {
            throw PortSyntaxError(text, "give the host port, as in \"8080:\(container)\" (tupp does not pick host ports)")
        }
        guard let hostPorts = PortRange(host) else {
            throw PortSyntaxError(text, "host port \"\(host)\" must be a port (1-65535) or a range such as 9000-9002")
        }
        guard let containerPorts = PortRange(container) else {
            throw PortSyntaxError(text, "container port \"\(container)\" must be a port (1-65535) or a range such as 9000-9002")
        }
        guard hostPorts.count == containerPorts.count else {
            throw PortSyntaxError(text, "host ports \(hostPorts) and container ports \(containerPorts) must be as many (\(hostPorts.count) ≠ \(containerPorts.count))")
        }
        return PortPublication(hostAddress: address, hostPorts: hostPorts, containerPorts: containerPorts, protocol: proto)
    }

    /// Only the host itself can reach it (127.0.0.0/8).
    public var isLoopbackOnly: Bool { hostAddress.map { $0.value >> 24 == 127 } ?? false }

    /// The host reaches it through a loopback address (127.0.0.1 is one of "every address").
    public var coversLoopback: Bool { hostAddress == nil || isLoopbackOnly }

    /// Both would take the same connections: same protocol, overlapping host ports, and
    /// the same host address or one of them on every address.
    public func overlaps(_ other: PortPublication) -> Bool {
        guard `protocol` == other.protocol, hostPorts.overlaps(other.hostPorts) else { return false }
        guard let mine = hostAddress, let theirs = other.hostAddress else { return true }
        return mine == theirs
    }

    /// "0.0.0.0:8080:80/tcp".
    public var description: String {
        "\(hostAddress?.description ?? "0.0.0.0"):\(hostPorts):\(containerPorts)/\(`protocol`.rawValue)"
    }

    public static func < (a: PortPublication, b: PortPublication) -> Bool {
        (a.protocol, a.hostPorts, a.hostAddress?.value ?? 0, a.containerPorts)
            < (b.protocol, b.hostPorts, b.hostAddress?.value ?? 0, b.containerPorts)
    }
}

/// A `network.ports` entry that cannot be published, and why. The manifest decoder adds
/// where it stands (file:line:col).
public struct PortSyntaxError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The entry as written.
    public var text: String
    public var reason: String

    public init(_ text: String, _ reason: String) {
        self.text = text
        self.reason = reason
    }

    public var description: String { "invalid port \"\(text)\": \(reason)" }
}
