import FoundationEssentials
import Glibc
import Synchronization
import TuppBase
import TuppManifest
import TuppSystem

/// `seccomp:` of a container.
public enum SeccompPolicy: Sendable, Equatable {
    /// tupp's default profile (Profiles/seccomp-default.json): Moby's default allowlist,
    /// adjusted to the container's capabilities.
    case `default`
    /// No filter.
    case unconfined
    /// A profile in the Docker/OCI JSON format (`SeccompProfile.load(path:)`).
    case profile(SeccompProfile)

    /// The profile to resolve; nil for unconfined.
    public var profile: SeccompProfile? {
        switch self {
        case .default: SeccompProfile.builtin
        case .unconfined: nil
        case .profile(let profile): profile
        }
    }
}

/// A seccomp profile in Docker's JSON format, of which OCI's `linux.seccomp` is a subset:
/// a default action, architectures (a list, or Docker's `archMap` per native
/// architecture) and syscall rules, each with optional argument conditions and Docker's
/// `includes`/`excludes` (capabilities, architectures, minimum kernel).
public struct SeccompProfile: Sendable, Equatable, Decodable {
    public var defaultAction: String
    public var defaultErrnoRet: UInt32?
    public var architectures: [String]?
    public var archMap: [Architecture]?
    public var flags: [String]?
    public var listenerPath: String?
    public var syscalls: [Rule]?

    public struct Architecture: Sendable, Equatable, Decodable {
        public var architecture: String
        public var subArchitectures: [String]?
    }

    public struct Rule: Sendable, Equatable, Decodable {
        public var names: [String]?
        public var name: String?
        public var action: String
        public var errnoRet: UInt32?
        public var args: [Argument]?
        public var includes: Filter?
        public var excludes: Filter?
    }

    public struct Argument: Sendable, Equatable, Decodable {
        public var index: UInt32
        public var value: UInt64
        public var valueTwo: UInt64?
        public var op: String
    }

    public struct Filter: Sendable, Equatable, Decodable {
        public var caps: [String]?
        public var arches: [String]?
        public var minKernel: String?
    }

    /// tupp's default profile, embedded at build time from Profiles/seccomp-default.json.
    public static let builtin: SeccompProfile = {
        do {
            return try parse(PackageResources.seccomp_default_json, describedAs: "the builtin seccomp profile")
        } catch {
            fatalError("\(error)")  // the embedded file is checked by the unit tests
        }
    }()

    /// Filters of the builtin profile by capability set: the same few sets recur for
    /// every container an apply starts, and the conditions only look at them.
    private static let builtinFilters = Mutex<[String: SeccompFilter]>([:])

    /// The builtin profile resolved for `capabilities` on `host`, cached.
    static func builtinFilter(capabilities: [Capability], host: SeccompHost) throws(SystemError) -> SeccompFilter {
        let key = "\(host.architecture) \(host.kernel.0).\(host.kernel.1) " + Set(capabilities.map(\.number)).sorted().map(String.init).joined(separator: ",")
        if let filter = builtinFilters.withLock({ $0[key] }) { return filter }
        let filter = try builtin.resolve(capabilities: capabilities, host: host)
        builtinFilters.withLock { $0[key] = filter }
        return filter
    }

    /// Parses a profile; syntax and type errors name the file.
    public static func parse(_ bytes: [UInt8], describedAs source: String) throws(SystemError) -> SeccompProfile {
        do {
            return try JSONDecoder().decode(SeccompProfile.self, from: Data(bytes))
        } catch {
            throw SystemError.failure("read seccomp profile", source, "not a Docker/OCI seccomp profile: \(error)")
        }
    }

    public static func load(path: String) throws(SystemError) -> SeccompProfile {
        guard let bytes = try Files.read(path, limit: 4 << 20) else {
            throw SystemError("read seccomp profile", path, errno: ENOENT)
        }
        return try parse(bytes, describedAs: path)
    }

    /// The filter for a container with `capabilities` (its bounding set) on `host`:
    /// Docker's conditions evaluated, the architectures expanded, arguments split where
    /// libseccomp cannot AND two conditions on one argument (as runc does). Pure.
    public func resolve(capabilities: [Capability], host: SeccompHost) throws(SystemError) -> SeccompFilter {
        func refuse(_ why: String) -> SystemError { SystemError.failure("resolve seccomp profile", "for \(host.architecture)", why) }
        if let listenerPath, !listenerPath.isEmpty { throw refuse("listenerPath (SCMP_ACT_NOTIFY) is not supported") }
        if let flags, !flags.isEmpty { throw refuse("filter flags \(flags) are not supported") }
        if architectures?.isEmpty == false && archMap?.isEmpty == false {
            throw refuse("both architectures and archMap are given; use one")
        }
        let defaultAction = try SeccompAction(defaultAction, errno: defaultErrnoRet ?? UInt32(EPERM))
        var arches = (architectures ?? []).map(SeccompFilter.libseccompName)
        if let entry = archMap?.first(where: { SeccompFilter.libseccompName($0.architecture) == host.nativeArchitecture }) {
            arches = ([entry.architecture] + (entry.subArchitectures ?? [])).map(SeccompFilter.libseccompName)
        }
        let bounding = Set(capabilities.map(\.description))
        var rules: [SeccompRule] = []
        for rule in syscalls ?? [] {
            if rule.name != nil && rule.names?.isEmpty == false { throw refuse("a rule gives both name and names") }
            let names = rule.names ?? rule.name.map { [$0] } ?? []
            if let excludes = rule.excludes {
                if let arches = excludes.arches, arches.contains(host.architecture) { continue }
                if let caps = excludes.caps, caps.contains(where: bounding.contains) { continue }
                if let minimum = excludes.minKernel, try host.kernelAtLeast(minimum) { continue }
            }
            if let includes = rule.includes {
                if let arches = includes.arches, !arches.isEmpty, !arches.contains(host.architecture) { continue }
                if let caps = includes.caps, !caps.allSatisfy(bounding.contains) { continue }
                if let minimum = includes.minKernel, try !host.kernelAtLeast(minimum) { continue }
            }
            // A rule's ERRNO without errnoRet is EPERM (runc), not the default's errno.
            let action = try SeccompAction(rule.action, errno: rule.errnoRet ?? UInt32(EPERM))
            let conditions = try (rule.args ?? []).map { argument throws(SystemError) in try SeccompCondition(argument) }
            // Two conditions on one argument cannot be ANDed in one libseccomp rule; runc
            // then adds each as a rule of its own (so they are ORed). Same here.
            let indexes = conditions.map(\.index)
            let groups = Set(indexes).count == indexes.count ? [conditions] : conditions.map { [$0] }
            for name in names where !name.isEmpty {
                // A rule with the default's action adds nothing (libseccomp refuses it).
                if action == defaultAction { continue }
                for group in groups { rules.append(SeccompRule(action: action, syscall: name, conditions: group)) }
            }
        }
        return SeccompFilter(defaultAction: defaultAction, architectures: arches, rules: rules)
    }
}

/// The host facts a profile's conditions look at.
public struct SeccompHost: Sendable, Equatable {
    /// Docker's architecture names in `includes.arches`: "amd64", "arm64", "x86", "ppc64le" …
    public var architecture: String
    /// libseccomp's name of the native architecture: "x86_64", "aarch64" …
    public var nativeArchitecture: String
    /// Kernel version and major revision ("6.18.44-…" → 6, 18).
    public var kernel: (Int, Int)

    public init(architecture: String, nativeArchitecture: String, kernel: (Int, Int)) {
        self.architecture = architecture
        self.nativeArchitecture = nativeArchitecture
        self.kernel = kernel
    }

    public static func == (a: SeccompHost, b: SeccompHost) -> Bool {
        a.architecture == b.architecture && a.nativeArchitecture == b.nativeArchitecture && a.kernel == b.kernel
    }

    /// uname(2) of this host.
    public static var current: SeccompHost {
        var names = utsname()
        uname(&names)
        func text<T>(_ field: T) -> String {
            withUnsafeBytes(of: field) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
        }
        let machine = text(names.machine), release = text(names.release)
        let numbers = release.split(whereSeparator: { !$0.isNumber }).prefix(2).compactMap { Int($0) }
        let docker: [String: String] = ["x86_64": "amd64", "aarch64": "arm64", "i686": "x86", "i386": "x86", "armv7l": "arm",
                                        "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64", "loongarch64": "loong64"]
        return SeccompHost(architecture: docker[machine] ?? machine,
                           nativeArchitecture: machine == "i686" || machine == "i386" ? "x86" : machine,
                           kernel: (numbers.first ?? 0, numbers.count > 1 ? numbers[1] : 0))
    }

    /// "4.8" ≤ this kernel.
    func kernelAtLeast(_ version: String) throws(SystemError) -> Bool {
        let parts = version.split(separator: ".").map { Int($0) }
        guard parts.count == 2, let major = parts[0], let minor = parts[1] else {
            throw SystemError.failure("read seccomp profile", "minKernel \"\(version)\"", "expected \"<kernel>.<major>\"")
        }
        return kernel.0 > major || (kernel.0 == major && kernel.1 >= minor)
    }
}

/// What happens on a matching syscall.
public enum SeccompAction: Sendable, Equatable, CustomStringConvertible {
    case allow, errno(UInt32), trace(UInt32), trap, log, killThread, killProcess

    /// "SCMP_ACT_ERRNO" with its errno.
    init(_ text: String, errno: UInt32) throws(SystemError) {
        switch text {
        case "SCMP_ACT_ALLOW": self = .allow
        case "SCMP_ACT_ERRNO": self = .errno(errno)
        case "SCMP_ACT_TRACE": self = .trace(errno)
        case "SCMP_ACT_TRAP": self = .trap
        case "SCMP_ACT_LOG": self = .log
        case "SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD": self = .killThread
        case "SCMP_ACT_KILL_PROCESS": self = .killProcess
        default: throw SystemError.failure("read seccomp profile", "action \(text)", "unknown or unsupported (SCMP_ACT_NOTIFY needs a listener tupp does not run)")
        }
        if case .errno(let value) = self, value > 0xffff { throw SystemError.failure("read seccomp profile", "errnoRet \(value)", "above 65535") }
    }

    /// As the spec file writes it (Sources/tupp-shim/spec.c).
    public var description: String {
        switch self {
        case .allow: "allow"
        case .errno(let value): "errno:\(value)"
        case .trace(let value): "trace:\(value)"
        case .trap: "trap"
        case .log: "log"
        case .killThread: "kill-thread"
        case .killProcess: "kill-process"
        }
    }
}

/// One argument condition: argument `index` compared with `value` (for masked equality
/// `value` is the mask and `valueTwo` the expected result, as in OCI).
public struct SeccompCondition: Sendable, Equatable, CustomStringConvertible {
    public var index: UInt32
    public var op: String
    public var value: UInt64
    public var valueTwo: UInt64

    init(_ argument: SeccompProfile.Argument) throws(SystemError) {
        let ops = ["SCMP_CMP_NE": "ne", "SCMP_CMP_LT": "lt", "SCMP_CMP_LE": "le", "SCMP_CMP_EQ": "eq",
                   "SCMP_CMP_GE": "ge", "SCMP_CMP_GT": "gt", "SCMP_CMP_MASKED_EQ": "me"]
        guard let op = ops[argument.op] else { throw SystemError.failure("read seccomp profile", "op \(argument.op)", "unknown comparison") }
        guard argument.index < 6 else { throw SystemError.failure("read seccomp profile", "argument index \(argument.index)", "syscalls have 6 arguments (0…5)") }
        index = argument.index
        self.op = op
        value = argument.value
        valueTwo = argument.valueTwo ?? 0
    }

    public var description: String { "\(index) \(op) \(value) \(valueTwo)" }
}

public struct SeccompRule: Sendable, Equatable, CustomStringConvertible {
    public var action: SeccompAction
    public var syscall: String
    /// All must match (ANDed).
    public var conditions: [SeccompCondition]

    /// "ACTION SYSCALL [INDEX OP VALUE VALUE2]…", the spec file's seccomp-rule.
    public var description: String { ([action.description, syscall] + conditions.map(\.description)).joined(separator: " ") }
}

/// A resolved filter, what tupp-shim loads: the default action, the architectures
/// (libseccomp names; empty: the native one only) and the rules.
public struct SeccompFilter: Sendable, Equatable {
    public var defaultAction: SeccompAction
    public var architectures: [String]
    public var rules: [SeccompRule]

    /// A name for the compiled program of exactly this filter: tupp-shim keeps it in a
    /// cache file of this name, so that the same filter is compiled once.
    public var cacheName: String {
        var hash = StableHash("tupp-seccomp-1", defaultAction.description)
        for architecture in architectures { hash.combine(architecture) }
        for rule in rules { hash.combine(rule.description) }
        return "seccomp-\(hash.base32(13)).bpf"
    }

    /// "SCMP_ARCH_X86_64" → "x86_64" (seccomp_arch_resolve_name's spelling).
    static func libseccompName(_ architecture: String) -> String {
        var name = architecture.lowercased()
        if name.hasPrefix("scmp_arch_") { name.removeFirst("scmp_arch_".count) }
        return name
    }
}
