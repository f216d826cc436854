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
}

/// One limit of `resources:`, named as in the manifest.
public enum LimitKind: String, CaseIterable, Sendable, Hashable {
    case memory, memorySwap, cpus, cpuWeight, pids, ioWeight
}
