import TuppSystem

/// Linux capability names (capabilities(7)) and the container default set.
public enum Capabilities {
    /// containerd's default set: enough for a typical service running as root, nothing
    /// that administers the host (no SYS_ADMIN, NET_ADMIN, MKNOD, NET_RAW…).
    public static let defaults: [String] = [
        "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_SETGID", "CAP_SETUID",
        "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_KILL",
    ]

    /// Index = capability number (linux/capability.h).
    static let names: [String] = [
        "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
        "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
        "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
        "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
        "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
        "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
    ].map { "CAP_" + $0 }

    /// "CAP_NET_RAW" for "net_raw", "NET_RAW" or "CAP_NET_RAW"; nil when unknown.
    public static func canonical(_ name: String) -> String? {
        let upper = name.uppercased()
        let full = upper.hasPrefix("CAP_") ? upper : "CAP_" + upper
        return names.contains(full) ? full : nil
    }

    public static func isKnown(_ name: String) -> Bool { canonical(name) != nil }

    /// The capability number of a known name.
    public static func number(_ name: String) -> Int? { canonical(name).flatMap { names.firstIndex(of: $0) } }

    /// The defaults adjusted by a manifest's `capabilities: {add, drop}`. "ALL" in `drop`
    /// starts from nothing, "ALL" in `add` grants everything. Canonical names, sorted by number.
    public static func resolve(add: [String], drop: [String]) throws(SystemError) -> [String] {
        func canonicalize(_ list: [String], _ field: String) throws(SystemError) -> (all: Bool, names: Set<String>) {
            var result = Set<String>()
            var all = false
            for name in list {
                if name.uppercased() == "ALL" { all = true; continue }
                guard let known = canonical(name) else {
                    throw SystemError.failure("resolve capabilities", "\(field) \(name)", "unknown capability (known: \(names.joined(separator: ", ")))")
                }
                result.insert(known)
            }
            return (all, result)
        }
        let adding = try canonicalize(add, "add")
        let dropping = try canonicalize(drop, "drop")
        var set = dropping.all ? Set<String>() : Set(defaults).subtracting(dropping.names)
        set.formUnion(adding.all ? Set(names) : adding.names)
        return names.filter(set.contains)
    }
}
