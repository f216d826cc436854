import TuppSystem

/// `resources:` of a container: limits enforced through its cgroup, in the manifest's units.
/// nil leaves a limit unset (the kernel's default: unlimited, weight 100).
public struct ResourceLimits: Sendable, Equatable {
    /// Bytes of memory (cgroup v1 memory.limit_in_bytes, v2 memory.max).
    public var memory: Int?
    /// Bytes of memory plus swap, as Docker's --memory-swap (v1 memory.memsw.limit_in_bytes,
    /// v2 memory.swap.max = memorySwap − memory). nil with `memory` set: as much swap as
    /// memory (Docker's default), where the host accounts swap.
    public var memorySwap: Int?
    /// CPUs: 0.5 is half of one CPU's time (v1 cpu.cfs_quota_us / cpu.cfs_period_us, v2 cpu.max).
    public var cpus: Double?
    /// Relative CPU weight 1…10000, default 100 (v2 cpu.weight; v1 cpu.shares, converted).
    public var cpuWeight: Int?
    /// Most processes (and threads) at once (pids.max).
    public var pids: Int?
    /// Relative I/O weight 1…10000, default 100 (v2 io.weight; v1 blkio weight, converted).
    public var ioWeight: Int?

    public init(memory: Int? = nil, memorySwap: Int? = nil, cpus: Double? = nil, cpuWeight: Int? = nil,
                pids: Int? = nil, ioWeight: Int? = nil) {
        self.memory = memory
        self.memorySwap = memorySwap
        self.cpus = cpus
        self.cpuWeight = cpuWeight
        self.pids = pids
        self.ioWeight = ioWeight
    }

    /// The limits that are set, in a fixed order.
    public var declared: [LimitKind] {
        LimitKind.allCases.filter { kind in
            switch kind {
            case .memory: memory != nil
            case .memorySwap: memorySwap != nil
            case .cpus: cpus != nil
            case .cpuWeight: cpuWeight != nil
            case .pids: pids != nil
            case .ioWeight: ioWeight != nil
            }
        }
    }

    /// Rejects values no kernel accepts, with the field named.
    public func validate(container: String) throws(SystemError) {
        func refuse(_ field: LimitKind, _ why: String) -> SystemError {
            SystemError.failure("validate container", "\(container).resources.\(field.rawValue)", why)
        }
        if let memory, memory < 1 << 20 { throw refuse(.memory, "must be at least 1 MiB, got \(memory) bytes") }
        if let memorySwap {
            guard let memory else { throw refuse(.memorySwap, "needs memory: it is memory plus swap") }
            guard memorySwap >= memory else { throw refuse(.memorySwap, "must be at least memory (\(memory) bytes), got \(memorySwap)") }
        }
        if let cpus, !(cpus >= 0.01 && cpus <= 1024) { throw refuse(.cpus, "must be between 0.01 and 1024, got \(cpus)") }
        if let cpuWeight, !(1...10000).contains(cpuWeight) { throw refuse(.cpuWeight, "must be 1…10000, got \(cpuWeight)") }
        if let pids, pids < 1 { throw refuse(.pids, "must be at least 1, got \(pids)") }
        if let ioWeight, !(1...10000).contains(ioWeight) { throw refuse(.ioWeight, "must be 1…10000, got \(ioWeight)") }
    }
}

/// One limit of `resources:`, named as in the manifest.
public enum LimitKind: String, CaseIterable, Sendable, Hashable {
    case memory, memorySwap, cpus, cpuWeight, pids, ioWeight
}

/// What a container uses now, read from its cgroup.
public struct ResourceUsage: Sendable, Equatable {
    /// Bytes charged to the cgroup (v1 memory.usage_in_bytes, v2 memory.current); nil
    /// without the memory controller.
    public var memory: Int?
    /// Processes and threads (pids.current); nil without the pids controller.
    public var pids: Int?
    /// CPU time of every process, in nanoseconds (v1 cpuacct.usage, v2 cpu.stat usage_usec).
    public var cpuNanoseconds: UInt64?

    public init(memory: Int? = nil, pids: Int? = nil, cpuNanoseconds: UInt64? = nil) {
        self.memory = memory
        self.pids = pids
        self.cpuNanoseconds = cpuNanoseconds
    }
}
