import TuppManifest
import TuppSystem

extension ResourceLimits {
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
