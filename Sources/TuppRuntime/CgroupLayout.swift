import Glibc
import TuppManifest
import TuppSystem

/// The cgroup hierarchies of this host and what they can enforce.
///
/// cgroup v2 when the unified hierarchy has the memory and pids controllers (the normal
/// case on current distributions). Otherwise the v1 hierarchies, with runc's file names
/// and semantics: on a hybrid host the unified tree exists but its controllers are bound
/// to v1 hierarchies (memory, pids, cpu … under /sys/fs/cgroup/NAME). A host with neither
/// cannot run containers: membership in a cgroup is how tupp counts, kills and limits
/// every process of one.
public struct CgroupLayout: Sendable, Equatable {
    public enum Version: String, Sendable { case v1, v2 }

    /// One mounted hierarchy: where, and which controllers it manages.
    public struct Hierarchy: Sendable, Equatable {
        public var mountPoint: String
        public var controllers: Set<String>

        public init(mountPoint: String, controllers: Set<String>) {
            self.mountPoint = mountPoint
            self.controllers = controllers
        }
    }

    public var version: Version
    /// v2: the unified hierarchy. v1: every hierarchy with a controller tupp uses.
    public var hierarchies: [Hierarchy]
    /// Swap is accounted per cgroup (v1 memory.memsw.*; v2 unless booted with swapaccount=0).
    public var swapAccounting: Bool
    /// v1 has CFS bandwidth control (cpu.cfs_quota_us), which `cpus` needs.
    public var cpuQuota: Bool
    /// The file an I/O weight is written to — blkio.weight / blkio.bfq.weight (v1),
    /// io.weight / io.bfq.weight (v2) — or nil when no weight takes effect on this host.
    public var ioWeightFile: String?
    /// Why `ioWeightFile` is nil, for the planner's refusal.
    public var ioWeightMissing: String

    public init(version: Version, hierarchies: [Hierarchy], swapAccounting: Bool = false, cpuQuota: Bool = false,
                ioWeightFile: String? = nil, ioWeightMissing: String = "") {
        self.version = version
        self.hierarchies = hierarchies
        self.swapAccounting = swapAccounting
        self.cpuQuota = cpuQuota
        self.ioWeightFile = ioWeightFile
        self.ioWeightMissing = ioWeightMissing
    }

    /// The v1 controllers a container's cgroup joins; cpuset is left out (its cpus and
    /// mems must be filled before a task may join, and tupp sets no cpuset limit).
    public static let v1Controllers: Set<String> = ["memory", "pids", "cpu", "cpuacct", "blkio", "devices", "freezer"]

    /// Every controller the layout has.
    public var controllers: Set<String> { hierarchies.reduce(into: []) { $0.formUnion($1.controllers) } }

    // MARK: Choosing (pure)

    /// What `detect()` reads, as plain values.
    public struct Facts: Sendable, Equatable {
        public var mounts: [MountInfo]
        /// cgroup.controllers of the unified hierarchy's root, nil when it is not mounted.
        public var unifiedControllers: String?
        /// Files present in the v1 hierarchies' roots ("memory.memsw.limit_in_bytes", …).
        public var v1RootFiles: Set<String>
        /// The active I/O scheduler of each block device ("bfq", "mq-deadline", "none").
        public var schedulers: [String]
        /// /proc/cmdline.
        public var commandLine: String

        public init(mounts: [MountInfo], unifiedControllers: String?, v1RootFiles: Set<String>, schedulers: [String],
                    commandLine: String) {
            self.mounts = mounts
            self.unifiedControllers = unifiedControllers
            self.v1RootFiles = v1RootFiles
            self.schedulers = schedulers
            self.commandLine = commandLine
        }
    }

    /// The layout the facts describe; nil when no usable hierarchy is mounted.
    public static func choose(_ facts: Facts) -> CgroupLayout? {
        let unified = facts.mounts.first { $0.fsType == "cgroup2" }
        let unifiedControllers = Set((facts.unifiedControllers ?? "").split(whereSeparator: \.isWhitespace).map(String.init))
        let v1 = facts.mounts.filter { $0.fsType == "cgroup" }.compactMap { mount -> Hierarchy? in
            let controllers = Set(mount.superOptions).intersection(v1Controllers)
            return controllers.isEmpty ? nil : Hierarchy(mountPoint: mount.mountPoint, controllers: controllers)
        }
        let bfqInUse = facts.schedulers.contains("bfq")
        let noSwapAccounting = facts.commandLine.split(separator: " ").contains("swapaccount=0")
        if let unified, unifiedControllers.isSuperset(of: ["memory", "pids"]) || v1.isEmpty {
            let io = unifiedControllers.contains("io")
            return CgroupLayout(
                version: .v2, hierarchies: [Hierarchy(mountPoint: unified.mountPoint, controllers: unifiedControllers)],
                swapAccounting: unifiedControllers.contains("memory") && !noSwapAccounting,
                cpuQuota: unifiedControllers.contains("cpu"),
                ioWeightFile: io ? (bfqInUse ? "io.bfq.weight" : "io.weight") : nil,
                ioWeightMissing: io ? "" : "the io controller is not enabled in the unified hierarchy")
        }
        guard !v1.isEmpty else { return nil }
        let hasBlkio = v1.contains { $0.controllers.contains("blkio") }
        var ioFile: String?
        var ioMissing = ""
        if !hasBlkio {
            ioMissing = "the blkio hierarchy is not mounted"
        } else if facts.v1RootFiles.contains("blkio.weight") {
            ioFile = "blkio.weight"
        } else if facts.v1RootFiles.contains("blkio.bfq.io_service_bytes") && bfqInUse {
            ioFile = "blkio.bfq.weight"
        } else {
            ioMissing = "I/O weights need the BFQ I/O scheduler, and no block device uses it (/sys/block/*/queue/scheduler)"
        }
        return CgroupLayout(version: .v1, hierarchies: v1.sorted { $0.mountPoint < $1.mountPoint },
                            swapAccounting: facts.v1RootFiles.contains("memory.memsw.limit_in_bytes"),
                            cpuQuota: facts.v1RootFiles.contains("cpu.cfs_quota_us"),
                            ioWeightFile: ioFile, ioWeightMissing: ioMissing)
    }

    /// The limits of `limits` this host cannot enforce, each with the reason. The planner
    /// refuses a manifest that declares one: a limit is never silently ignored.
    public func refusals(for limits: ResourceLimits) -> [ResourceRefusal] {
        let has = controllers
        return limits.declared.compactMap { kind -> ResourceRefusal? in
            func missing(_ controller: String) -> ResourceRefusal? {
                has.contains(controller) ? nil : ResourceRefusal(kind: kind, reason: "the \(controller) controller is not available (cgroup \(version.rawValue))")
            }
            switch kind {
            case .memory: return missing("memory")
            case .memorySwap:
                return missing("memory") ?? (swapAccounting ? nil : ResourceRefusal(kind: kind, reason: "this host does not account swap per cgroup (memory.memsw / memory.swap files missing)"))
            case .cpus:
                return missing("cpu") ?? (cpuQuota ? nil : ResourceRefusal(kind: kind, reason: "the kernel has no CFS bandwidth control (cpu.cfs_quota_us)"))
            case .cpuWeight: return missing("cpu")
            case .pids: return missing("pids")
            case .ioWeight:
                return ioWeightFile == nil ? ResourceRefusal(kind: kind, reason: ioWeightMissing) : nil
            }
        }
    }

    // MARK: Reading the host

    /// This host's layout, read once per process: hierarchies do not change under a
    /// running tupp.
    public static func host() throws(SystemError) -> CgroupLayout {
        try hostResult.get()
    }

    private static let hostResult: Result<CgroupLayout, SystemError> = Result { () throws(SystemError) -> CgroupLayout in
        guard let layout = choose(try readFacts()) else {
            throw .failure("find cgroups", "/proc/self/mountinfo", "no cgroup hierarchy is mounted; mount cgroup2 on /sys/fs/cgroup")
        }
        return layout
    }

    /// The facts `choose` needs, from /proc and /sys.
    public static func readFacts() throws(SystemError) -> Facts {
        let mounts = try MountInfo.read()
        let unified = mounts.first { $0.fsType == "cgroup2" }
        let controllers = try unified.flatMap { mount throws(SystemError) in try Files.readText("\(mount.mountPoint)/cgroup.controllers") }
        var rootFiles: Set<String> = []
        for mount in mounts where mount.fsType == "cgroup" && !Set(mount.superOptions).isDisjoint(with: v1Controllers) {
            rootFiles.formUnion((try? Files.list(mount.mountPoint)) ?? [])
        }
        var schedulers: [String] = []
        for device in (try? Files.list("/sys/block")) ?? [] {
            guard let text = try? Files.readText("/sys/block/\(device)/queue/scheduler"),
                  let open = text.firstIndex(of: "["), let close = text.firstIndex(of: "]"), open < close else { continue }
            schedulers.append(String(text[text.index(after: open)..<close]))
        }
        return Facts(mounts: mounts, unifiedControllers: controllers, v1RootFiles: rootFiles, schedulers: schedulers,
                     commandLine: (try? Files.readText("/proc/cmdline")) ?? "")
    }

    /// The unified hierarchy mounted at `mountPoint`, used as cgroup v2 whatever else the
    /// host has: the v2 code path on a hybrid host (whose unified tree has no controllers:
    /// membership, cgroup.kill, cgroup.freeze and device programs work, limits do not).
    public static func unified(at mountPoint: String) throws(SystemError) -> CgroupLayout {
        guard let text = try Files.readText("\(mountPoint)/cgroup.controllers") else {
            throw SystemError.failure("read", "\(mountPoint)/cgroup.controllers", "not a cgroup2 mount")
        }
        let controllers = Set(text.split(whereSeparator: \.isWhitespace).map(String.init))
        return CgroupLayout(version: .v2, hierarchies: [Hierarchy(mountPoint: mountPoint, controllers: controllers)],
                            swapAccounting: controllers.contains("memory"), cpuQuota: controllers.contains("cpu"),
                            ioWeightFile: controllers.contains("io") ? "io.weight" : nil,
                            ioWeightMissing: "the io controller is not enabled in the unified hierarchy")
    }
}

/// A declared limit this host cannot enforce.
public struct ResourceRefusal: Sendable, Equatable, CustomStringConvertible {
    public var kind: LimitKind
    public var reason: String

    public var description: String { "resources.\(kind.rawValue): \(reason)" }
}
