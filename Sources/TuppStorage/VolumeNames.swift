import Glibc
import TuppSystem

// How volumes and snapshots are named.

/// `NAME` or `NAME@TAG`: a volume, or one of its snapshots.
public struct VolumeReference: Sendable, Equatable, CustomStringConvertible {
    public var volume: String
    public var tag: String?

    public init(volume: String, tag: String? = nil) {
        self.volume = volume
        self.tag = tag
    }

    /// Splits at the first '@' and checks both parts.
    public static func parse(_ text: String) throws(SystemError) -> VolumeReference {
        guard let at = text.firstIndex(of: "@") else {
            try VolumeNames.validate(volume: text)
            return VolumeReference(volume: text)
        }
        let reference = VolumeReference(volume: String(text[..<at]), tag: String(text[text.index(after: at)...]))
        try VolumeNames.validate(volume: reference.volume)
        try VolumeNames.validate(tag: reference.tag!)
        return reference
    }

    public var description: String { tag.map { "\(volume)@\($0)" } ?? volume }
}

/// Volume names and snapshot tags are single path components. They never start with '.'
/// (volumes/.snapshots and volumes/.staging are tupp's) and hold no '@' (NAME@TAG).
public enum VolumeNames {
    public static func validate(volume name: String) throws(SystemError) {
        try check(name, kind: "volume name")
    }

    public static func validate(tag: String) throws(SystemError) {
        try check(tag, kind: "snapshot tag")
    }

    private static func check(_ text: String, kind: String) throws(SystemError) {
        let bytes = Array(text.utf8)
        guard !bytes.isEmpty, bytes.count <= 200, bytes.first != UInt8(ascii: "."),
              !bytes.contains(UInt8(ascii: "/")), !bytes.contains(UInt8(ascii: "@")), !bytes.contains(0) else {
            throw SystemError.failure("validate \(kind)", "'\(text)'",
                                      "must be 1–200 bytes, not start with '.', and contain no '/' or '@'")
        }
    }

    /// A tag from a UTC time: "20260131T120501Z" — sorts by time, valid as a tag.
    public static func timestampTag(secondsSinceEpoch seconds: Int) -> String {
        var time = time_t(seconds)
        var parts = tm()
        gmtime_r(&time, &parts)
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        return "\(parts.tm_year + 1900)\(two(parts.tm_mon + 1))\(two(parts.tm_mday))T\(two(parts.tm_hour))\(two(parts.tm_min))\(two(parts.tm_sec))Z"
    }
}
