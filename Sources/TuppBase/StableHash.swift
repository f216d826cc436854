/// FNV-1a, 64 bit: a stable, dependency-free hash for deterministic names (interface
/// names, MAC suffixes, address allocation). Not for security — for that, use SHA-256.
public struct StableHash {
    public private(set) var value: UInt64 = 0xcbf2_9ce4_8422_2325

    public init() {}

    public init(_ parts: String...) {
        for part in parts { combine(part) }
    }

    public mutating func combine(_ text: String) {
        value = Self.fnv1a(text, from: value)
        // A separator so ("ab","c") and ("a","bc") differ.
        value ^= 0xff
        value = value &* 0x0000_0100_0000_01b3
    }

    /// FNV-1a of `text` alone (no separator), continuing from `basis`.
    public static func fnv1a(_ text: String, from basis: UInt64 = 0xcbf2_9ce4_8422_2325) -> UInt64 {
        var h = basis
        for byte in text.utf8 {
            h ^= UInt64(byte)
            h = h &* 0x0000_0100_0000_01b3
        }
        return h
    }

    /// Lowercase base-32 (a–z, 2–7) digits of the hash, `count` ≤ 12: safe in link names.
    public func base32(_ count: Int) -> String {
        let alphabet = Array("abcdefghijklmnopqrstuvwxyz234567")
        var v = value
        var out = ""
        for _ in 0..<min(count, 12) {
            out.append(alphabet[Int(v & 31)])
            v >>= 5
        }
        return out
    }
}
