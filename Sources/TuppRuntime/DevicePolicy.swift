import CTuppSys
import Glibc
import Synchronization
import TuppManifest
import TuppSystem

/// One allowed device access, as the v1 devices controller writes it: "c 1:3 rwm",
/// "b *:* m", "a" (every device, every access).
public struct DeviceRule: Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable { case char = "c", block = "b", all = "a" }

    public var kind: Kind
    /// nil: any.
    public var major: UInt32?
    public var minor: UInt32?
    /// Subset of "rwm".
    public var access: String

    public init(_ kind: Kind, _ major: UInt32?, _ minor: UInt32?, _ access: String) {
        self.kind = kind
        self.major = major
        self.minor = minor
        self.access = access
    }

    public var description: String {
        if kind == .all { return "a" }
        return "\(kind.rawValue) \(major.map(String.init) ?? "*"):\(minor.map(String.init) ?? "*") \(access)"
    }
}

/// A device node to create in the container's /dev: the host's node, same numbers,
/// mode and owner.
public struct DeviceNode: Sendable, Equatable {
    public var path: String
    public var kind: DeviceRule.Kind
    public var major: UInt32
    public var minor: UInt32
    public var mode: UInt32
    public var uid: UInt32
    public var gid: UInt32
    public var permissions: String

    /// stat(2) of the host's node at `grant.path`.
    public static func host(_ grant: DeviceGrant) throws(SystemError) -> DeviceNode {
        var info = stat()
        try Errno.check("stat", "device \(grant.path) on the host") { stat(grant.path, &info) }
        let type = info.st_mode & S_IFMT
        guard type == S_IFCHR || type == S_IFBLK else {
            throw SystemError.failure("grant device", grant.path, "not a character or block device on the host")
        }
        let device = UInt64(info.st_rdev)
        // glibc's major()/minor() are macros: the encoding from <sys/sysmacros.h>.
        let major = UInt32(((device >> 32) & 0xffff_f000) | ((device >> 8) & 0xfff))
        let minor = UInt32(((device >> 12) & 0xffff_ff00) | (device & 0xff))
        return DeviceNode(path: grant.path, kind: type == S_IFCHR ? .char : .block, major: major, minor: minor,
                          mode: UInt32(info.st_mode & 0o7777), uid: info.st_uid, gid: info.st_gid,
                          permissions: grant.permissions)
    }

    public var rule: DeviceRule { DeviceRule(kind, major, minor, permissions) }
}

/// What a container may open and create below /dev: the nodes tupp makes there (null,
/// zero, full, random, urandom, tty, ptmx, pts/*) and the granted devices. mknod of any
/// node is allowed (as Docker does, with CAP_MKNOD) but opening one outside the list
/// fails with EPERM — so a node made for the host's disks or loop devices is useless.
public enum DevicePolicy {
    public static let defaults: [DeviceRule] = [
        DeviceRule(.char, nil, nil, "m"), DeviceRule(.block, nil, nil, "m"),
        DeviceRule(.char, 1, 3, "rwm"),   // null
        DeviceRule(.char, 1, 5, "rwm"),   // zero
        DeviceRule(.char, 1, 7, "rwm"),   // full
        DeviceRule(.char, 1, 8, "rwm"),   // random
        DeviceRule(.char, 1, 9, "rwm"),   // urandom
        DeviceRule(.char, 5, 0, "rwm"),   // tty
        DeviceRule(.char, 5, 2, "rwm"),   // ptmx
        DeviceRule(.char, 136, nil, "rwm"),  // pts/*
    ]

    /// The allowed accesses with `nodes` granted.
    public static func rules(granting nodes: [DeviceNode]) -> [DeviceRule] { defaults + nodes.map(\.rule) }

    /// v1: what to write, in order, to devices.deny and devices.allow.
    public static func v1Writes(_ rules: [DeviceRule]) -> [(file: String, value: String)] {
        [("devices.deny", "a")] + rules.map { ("devices.allow", $0.description) }
    }

    /// Loaded programs by rule list: loading (the kernel's verifier and JIT) is most of
    /// the cost, and one tupp process starts many containers with the same policy.
    private static let programs = Mutex<[String: FileDescriptor]>([:])

    /// v2: attaches a BPF_CGROUP_DEVICE program allowing exactly `rules` to the cgroup
    /// directory `path`.
    static func attachProgram(_ rules: [DeviceRule], to path: String) throws(SystemError) {
        let directory = try FileDescriptor.open(path, O_RDONLY | O_DIRECTORY)
        let program = try loadProgram(rules)
        try Errno.check("attach device policy (BPF_CGROUP_DEVICE)", path) {
            tupp_device_policy_attach(directory.rawValue, program.rawValue)
        }
    }

    private static func loadProgram(_ rules: [DeviceRule]) throws(SystemError) -> FileDescriptor {
        let key = rules.map(\.description).joined(separator: ";")
        if let loaded = programs.withLock({ $0[key] }) { return loaded }
        let converted = rules.map { rule in
            var access: UInt32 = 0
            if rule.access.contains("r") { access |= UInt32(TUPP_DEVICE_READ) }
            if rule.access.contains("w") { access |= UInt32(TUPP_DEVICE_WRITE) }
            if rule.access.contains("m") { access |= UInt32(TUPP_DEVICE_MKNOD) }
            let type: UInt32 = switch rule.kind {
            case .char: UInt32(TUPP_DEVICE_CHAR)
            case .block: UInt32(TUPP_DEVICE_BLOCK)
            case .all: 0
            }
            return tupp_device_rule(type: type, major: rule.major.map(Int64.init) ?? -1, minor: rule.minor.map(Int64.init) ?? -1,
                                    access: rule.kind == .all ? 7 : access)
        }
        var log = [CChar](repeating: 0, count: 4096)
        let fd = converted.withUnsafeBufferPointer { buffer in
            tupp_device_policy_load(buffer.baseAddress, buffer.count, &log, log.count)
        }
        if fd < 0 {
            let code = errno
            let text = String(decoding: log.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
            throw SystemError("load device policy (BPF_PROG_TYPE_CGROUP_DEVICE)", "\(rules.count) rules", errno: code,
                              detail: text.isEmpty ? nil : "verifier: \(text.suffix(300))")
        }
        let program = FileDescriptor(adopting: fd)
        programs.withLock { $0[key] = program }
        return program
    }
}
