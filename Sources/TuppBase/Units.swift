/// Sizes ("2GiB") and durations ("10s") as the manifest writes them.
public enum Units {
    public struct Problem: Error, Equatable, Sendable {
        public var message: String
    }

    /// Bytes from "2GiB", "512MiB", "1G" (binary, as mkfs.btrfs reads it), "2GB"
    /// (decimal) or a plain number of bytes.
    public static func parseSize(_ text: String) -> Result<UInt64, Problem> {
        let trimmed = text.trimmingSpaces()
        let digits = trimmed.prefix { $0.isASCII && ($0.isNumber || $0 == ".") }
        let unit = trimmed.dropFirst(digits.count).trimmingSpaces()
        let multipliers: [String: Double] = [
            "": 1, "B": 1,
            "K": 1024, "KiB": 1024, "KB": 1e3, "k": 1024,
            "M": Double(1 << 20), "MiB": Double(1 << 20), "MB": 1e6,
            "G": Double(1 << 30), "GiB": Double(1 << 30), "GB": 1e9,
            "T": Double(UInt64(1) << 40), "TiB": Double(UInt64(1) << 40), "TB": 1e12,
        ]
        guard !digits.isEmpty, let number = Double(digits), let multiplier = multipliers[String(unit)] else {
            return .failure(Problem(message: "size \"\(text)\" is not a size such as 2GiB, 512MiB or 1073741824"))
        }
        let bytes = number * multiplier
        guard bytes >= 1, bytes < Double(UInt64(1) << 62) else {
            return .failure(Problem(message: "size \"\(text)\" is out of range"))
        }
        return .success(UInt64(bytes))
    }

    /// Seconds from "10s", "500ms", "1m", "1m30s" or a plain number of seconds.
    public static func parseDuration(_ text: String) -> Result<Double, Problem> {
        let bad = Problem(message: "duration \"\(text)\" is not a duration such as 10s, 500ms or 1m30s")
        let trimmed = text.trimmingSpaces()
        if let plain = Double(trimmed) {
            return plain >= 0 && plain.isFinite ? .success(plain) : .failure(bad)
        }
        var total = 0.0
        var rest = Substring(trimmed)
        guard !rest.isEmpty else { return .failure(bad) }
        while !rest.isEmpty {
            let digits = rest.prefix { $0.isASCII && ($0.isNumber || $0 == ".") }
            rest = rest.dropFirst(digits.count)
            let unit = rest.prefix { $0.isLetter }
            rest = rest.dropFirst(unit.count)
            guard let value = Double(digits) else { return .failure(bad) }
            switch unit {
            case "ms": total += value / 1000
            case "s": total += value
            case "m": total += value * 60
            case "h": total += value * 3600
            default: return .failure(bad)
            }
        }
        guard total.isFinite, total <= 24 * 3600 else {
            return .failure(Problem(message: "duration \"\(text)\" is longer than 24h"))
        }
        return .success(total)
    }

    /// "2GiB", "512MiB", "1.5GiB" for display.
    public static func formatSize(_ bytes: UInt64) -> String {
        let units: [(UInt64, String)] = [(1 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")]
        for (size, name) in units where bytes >= size {
            if bytes % size == 0 { return "\(bytes / size)\(name)" }
            let value = Double(bytes) / Double(size)
            return "\((value * 10).rounded() / 10)\(name)"
        }
        return "\(bytes)B"
    }

    /// "10s", "1.5s", "500ms".
    public static func formatDuration(_ seconds: Double) -> String {
        if seconds < 1 && seconds > 0 { return "\(Int((seconds * 1000).rounded()))ms" }
        if seconds == seconds.rounded() { return "\(Int(seconds))s" }
        return "\(seconds)s"
    }
}

extension StringProtocol {
    public func trimmingSpaces() -> Substring {
        var s = Substring(self)
        while let c = s.first, c == " " || c == "\t" { s.removeFirst() }
        while let c = s.last, c == " " || c == "\t" { s.removeLast() }
        return s
    }
}
