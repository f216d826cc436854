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
    func trimmingSpaces() -> Substring {
        var s = Substring(self)
        while let c = s.first, c == " " || c == "\t" { s.removeFirst() }
        while let c = s.last, c == " " || c == "\t" { s.removeLast() }
        return s
    }
}

/// Mount options the runtime understands.
public enum MountOptions {
    /// Flag options for both kinds.
    public static let flags: Set<String> = ["ro", "rw", "nosuid", "suid", "nodev", "dev", "noexec", "exec",
                                            "noatime", "atime", "relatime", "nodiratime", "strictatime"]
    /// key=value options tmpfs accepts.
    public static let tmpfsKeys: Set<String> = ["size", "mode", "nr_inodes", "nr_blocks", "uid", "gid"]
    /// Bind-only flags: recursion and propagation.
    public static let bindFlags: Set<String> = ["rbind", "bind", "private", "rprivate", "slave", "rslave"]

    /// nil when `option` is valid for `kind`, else the reason.
    public static func problem(_ option: String, kind: Mount.Kind) -> String? {
        if flags.contains(option) { return nil }
        switch kind {
        case .bind:
            if bindFlags.contains(option) { return nil }
            return "unknown bind mount option \"\(option)\"; known: \((flags.union(bindFlags)).sorted().joined(separator: ", "))"
        case .tmpfs:
            let parts = option.split(separator: "=", maxSplits: 1)
            if parts.count == 2, tmpfsKeys.contains(String(parts[0])) {
                if parts[0] == "size" || parts[0] == "nr_blocks" || parts[0] == "nr_inodes", !isMemparse(parts[1]) {
                    return "tmpfs \(parts[0]) \"\(parts[1])\" is not a number with an optional k, m, g or % suffix (e.g. 64m)"
                }
                if parts[0] == "mode", !(parts[1].allSatisfy { ("0"..."7").contains($0) } && (1...4).contains(parts[1].count)) {
                    return "tmpfs mode \"\(parts[1])\" is not an octal mode such as 1777"
                }
                return nil
            }
            return "unknown tmpfs option \"\(option)\"; known: \(flags.sorted().joined(separator: ", ")), \(tmpfsKeys.sorted().map { $0 + "=…" }.joined(separator: ", "))"
        }
    }

    /// The kernel's memparse(): digits with an optional k/m/g/t/p/e suffix, or a percentage.
    static func isMemparse(_ text: Substring) -> Bool {
        var digits = text
        if let last = digits.last, "kKmMgGtTpPeE%".contains(last) { digits = digits.dropLast() }
        return !digits.isEmpty && digits.allSatisfy { $0.isASCII && $0.isNumber }
    }
}
