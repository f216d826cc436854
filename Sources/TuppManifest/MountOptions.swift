import TuppBase

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
        case .volume:
            // A volume is one subvolume: nothing below it to recurse into or propagate.
            return "unknown volume mount option \"\(option)\"; known: \(flags.sorted().joined(separator: ", "))"
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
