/// Linux capabilities by kernel number (include/uapi/linux/capability.h).
public struct Capability: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let number: Int
    public let name: String

    public static let all: [Capability] = [
        "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
        "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
        "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
        "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
        "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
        "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
    ].enumerated().map { Capability(number: $0.offset, name: $0.element) }

    /// containerd's minimal default set, as the namespaces issue specifies.
    public static let defaults: [Capability] = [
        "CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "SETGID", "SETUID", "SETPCAP", "NET_BIND_SERVICE", "KILL",
    ].map { named($0)! }

    /// "NET_RAW", "CAP_NET_RAW" or "net_raw".
    public static func named(_ text: String) -> Capability? {
        var name = text.uppercased()
        if name.hasPrefix("CAP_") { name.removeFirst(4) }
        return all.first { $0.name == name }
    }

    /// "CAP_NET_RAW".
    public var description: String { "CAP_\(name)" }

    public static func < (a: Capability, b: Capability) -> Bool { a.number < b.number }
}
