import TuppManifest
import TuppBase

/// Names and hardware addresses tupp gives to the links it creates.
///
/// Host-side names must be deterministic (the next `apply` finds the link again without
/// a record), short enough for the kernel (IFNAMSIZ 16, so at most 15 bytes), and
/// recognisable as tupp's, so the planner can list orphans without touching foreign links.
public enum LinkNames {
    /// Every host-side veth tupp creates starts with this ("tupp veth").
    public static let hostVethPrefix = "tv"

    /// Base-32 digits after the prefix: 12 digits are 60 bits of FNV-1a.
    static let hostVethDigits = 12

    /// The kernel's limit: IFNAMSIZ (16) including the terminating NUL.
    public static let maximumLength = 15

    /// The host end of a container's veth pair: "tv" + 12 base-32 digits of a hash of the
    /// installation (e.g. the state directory) and the container's name. 14 bytes.
    ///
    /// Two installations with different identities give different names (a 60-bit hash:
    /// a collision needs ~10⁹ containers), and the same pair always gives the same name.
    public static func hostVeth(installation: String, container: String) -> String {
        hostVethPrefix + StableHash("tupp-host-veth", installation, container).base32(hostVethDigits)
    }

    /// True when `name` has the exact shape of `hostVeth(installation:container:)`.
    /// Shape alone does not prove ownership; the link's alias does (see `LinkOwnership`).
    public static func looksLikeHostVeth(_ name: String) -> Bool {
        guard name.hasPrefix(hostVethPrefix) else { return false }
        let digits = name.utf8.dropFirst(hostVethPrefix.utf8.count)
        return digits.count == hostVethDigits && digits.allSatisfy { byte in
            (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "2")...UInt8(ascii: "7")).contains(byte)
        }
    }

    /// The kernel's `dev_valid_name` (net/core/dev.c): 1–15 bytes, not "." or "..",
    /// no '/', ':' or whitespace. Also rejects '%', which the kernel would treat as a
    /// template ("eth%d") and replace with a number, and NUL.
    public static func isValid(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard !bytes.isEmpty, bytes.count <= maximumLength, name != ".", name != ".." else { return false }
        // isspace() in the C locale: space, \t \n \v \f \r.
        let forbidden: Set<UInt8> = [0, UInt8(ascii: "/"), UInt8(ascii: ":"), UInt8(ascii: "%"),
                                     0x20, 0x09, 0x0a, 0x0b, 0x0c, 0x0d]
        return !bytes.contains { forbidden.contains($0) }
    }

    /// A stable hardware address for an interface holding `address`: 02:74 followed by
    /// the four octets. 0x02 in the first octet marks it locally administered and unicast.
    /// Deriving it from the IP keeps neighbours' ARP caches valid across restarts.
    public static func mac(for address: IPv4Address) -> MACAddress {
        let o = address.octets
        return MACAddress(bytes: [0x02, 0x74, o[0], o[1], o[2], o[3]])!
    }
}

/// An Ethernet (EUI-48) hardware address.
public struct MACAddress: Hashable, Sendable, CustomStringConvertible {
    public let bytes: [UInt8]

    /// Exactly six bytes.
    public init?(bytes: [UInt8]) {
        guard bytes.count == 6 else { return nil }
        self.bytes = bytes
    }

    /// "02:74:0a:d5:00:02" (case-insensitive, colon-separated, two digits per byte).
    public init?(_ text: some StringProtocol) {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 6 else { return nil }
        var bytes: [UInt8] = []
        for part in parts {
            guard part.count == 2, let byte = UInt8(part, radix: 16) else { return nil }
            bytes.append(byte)
        }
        self.bytes = bytes
    }

    /// Locally administered (bit 1 of the first octet), as opposed to vendor-assigned.
    public var isLocallyAdministered: Bool { bytes[0] & 0x02 != 0 }
    /// Unicast (bit 0 of the first octet clear).
    public var isUnicast: Bool { bytes[0] & 0x01 == 0 }

    public var description: String {
        bytes.map { byte in
            let hex = String(byte, radix: 16)
            return hex.count == 1 ? "0" + hex : hex
        }.joined(separator: ":")
    }
}
