/// An IPv4 address. Parsing is strict dotted-quad: four decimal octets, no leading
/// zeros (which some tools read as octal), nothing else.
public struct IPv4Address: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var value: UInt32

    public init(_ value: UInt32) { self.value = value }

    public init?(_ text: some StringProtocol) {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var v: UInt32 = 0
        for part in parts {
            guard !part.isEmpty, part.count <= 3, part.allSatisfy({ $0.isASCII && $0.isNumber }),
                  !(part.count > 1 && part.first == "0"), let octet = UInt32(part), octet <= 255
            else { return nil }
            v = v << 8 | octet
        }
        value = v
    }

    public var octets: [UInt8] {
        [UInt8(value >> 24), UInt8(value >> 16 & 0xff), UInt8(value >> 8 & 0xff), UInt8(value & 0xff)]
    }

    public var description: String { octets.map(String.init).joined(separator: ".") }

    public static func < (a: IPv4Address, b: IPv4Address) -> Bool { a.value < b.value }
}

/// An IPv4 prefix such as 172.17.0.0/16. The host bits of `network` are zero.
public struct IPv4Network: Hashable, Sendable, CustomStringConvertible {
    public var network: IPv4Address
    public var prefixLength: Int

    /// "172.17.0.0/16". Host bits must be zero (`172.17.0.1/16` is an interface
    /// address, not a network — see `IPv4Interface`).
    public init?(_ text: some StringProtocol) {
        guard let iface = IPv4Interface(text), iface.address == iface.network.network else { return nil }
        self = iface.network
    }

    public init(address: IPv4Address, prefixLength: Int) {
        self.prefixLength = prefixLength
        self.network = IPv4Address(address.value & IPv4Network.mask(prefixLength))
    }

    static func mask(_ length: Int) -> UInt32 {
        length == 0 ? 0 : UInt32.max << UInt32(32 - length)
    }

    public var mask: UInt32 { Self.mask(prefixLength) }
    public var broadcast: IPv4Address { IPv4Address(network.value | ~mask) }
    /// Number of addresses in the prefix, 2^(32-length).
    public var size: UInt64 { UInt64(1) << UInt64(32 - prefixLength) }
    /// The first usable host address (network + 1), the conventional gateway.
    public var firstHost: IPv4Address { IPv4Address(network.value &+ 1) }

    public func contains(_ address: IPv4Address) -> Bool { address.value & mask == network.value }

    public func overlaps(_ other: IPv4Network) -> Bool {
        let shorter = min(prefixLength, other.prefixLength)
        let m = Self.mask(shorter)
        return network.value & m == other.network.value & m
    }

    public var description: String { "\(network)/\(prefixLength)" }
}

/// An address with its prefix length, as configured on an interface: 172.17.0.3/16.
public struct IPv4Interface: Hashable, Sendable, CustomStringConvertible {
    public var address: IPv4Address
    public var prefixLength: Int

    public init(address: IPv4Address, prefixLength: Int) {
        self.address = address
        self.prefixLength = prefixLength
    }

    public init?(_ text: some StringProtocol) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let address = IPv4Address(parts[0]),
              !parts[1].isEmpty, parts[1].count <= 2, parts[1].allSatisfy({ $0.isASCII && $0.isNumber }),
              !(parts[1].count > 1 && parts[1].first == "0"),
              let length = Int(parts[1]), (0...32).contains(length) else { return nil }
        self.address = address
        prefixLength = length
    }

    public var network: IPv4Network { IPv4Network(address: address, prefixLength: prefixLength) }

    public var description: String { "\(address)/\(prefixLength)" }
}
