import TuppManifest

/// The cgroup files behind `resources:`, as plain values: what to write for a set of
/// limits, how a file's text reads back, and where the two differ (drift). No I/O.
///
/// v1 follows runc's files (memory.limit_in_bytes, memory.memsw.limit_in_bytes,
/// cpu.cfs_quota_us/cpu.cfs_period_us, cpu.shares, pids.max, blkio weight); v2 the
/// kernel's cgroup-v2.rst (memory.max, memory.swap.max, cpu.max, cpu.weight, pids.max,
/// io.weight). Weights are given in v2 units (1…10000, default 100) and scaled to v1's
/// ranges as systemd does, so the default weight stays the default on both.
public enum CgroupFiles {
    /// One file's value for a limit. `value` is what is written; reading the file back
    /// gives the same after `normalize`.
    public struct Setting: Sendable, Equatable, CustomStringConvertible {
        public var kind: LimitKind
        public var file: String
        public var value: String

        public init(_ kind: LimitKind, _ file: String, _ value: String) {
            self.kind = kind
            self.file = file
            self.value = value
        }

        public var description: String { "\(file)=\(value)" }
    }

    public static let cfsPeriod = 100_000
    static let pageSize = 4096

    /// The files and values that enforce `limits` on `layout` — every limit the layout
    /// can enforce, unset ones at their unlimited or default value, so that one list
    /// both applies a change and reads as the expected state. Memory comes before swap;
    /// `orderMemory` puts them in a writable order against the current values.
    public static func settings(for limits: ResourceLimits, on layout: CgroupLayout) -> [Setting] {
        let has = layout.controllers
        var out: [Setting] = []
        let memory = limits.memory.map(pageAligned)
        // Docker's default: as much swap as memory, where swap is accounted.
        let total = limits.memorySwap.map(pageAligned) ?? memory.map { 2 * $0 }
        switch layout.version {
        case .v1:
            if has.contains("memory") {
                out.append(Setting(.memory, "memory.limit_in_bytes", memory.map(String.init) ?? "-1"))
                if layout.swapAccounting {
                    out.append(Setting(.memorySwap, "memory.memsw.limit_in_bytes", total.map(String.init) ?? "-1"))
                }
            }
            if has.contains("cpu") {
                if layout.cpuQuota {
                    out.append(Setting(.cpus, "cpu.cfs_period_us", String(cfsPeriod)))
                    out.append(Setting(.cpus, "cpu.cfs_quota_us", limits.cpus.map { String(quota($0)) } ?? "-1"))
                }
                out.append(Setting(.cpuWeight, "cpu.shares", String(shares(forWeight: limits.cpuWeight ?? 100))))
            }
            if has.contains("pids") { out.append(Setting(.pids, "pids.max", limits.pids.map(String.init) ?? "max")) }
            if let file = layout.ioWeightFile {
                let weight = limits.ioWeight ?? 100
                out.append(Setting(.ioWeight, file, String(file == "blkio.weight" ? blkioWeight(forWeight: weight) : bfqWeight(forWeight: weight))))
            }
        case .v2:
            if has.contains("memory") {
                out.append(Setting(.memory, "memory.max", memory.map(String.init) ?? "max"))
                if layout.swapAccounting {
                    var swap: Int?
                    if let total, let memory { swap = total - memory }
                    out.append(Setting(.memorySwap, "memory.swap.max", swap.map(String.init) ?? "max"))
                }
            }
            if has.contains("cpu") {
                out.append(Setting(.cpus, "cpu.max", "\(limits.cpus.map { String(quota($0)) } ?? "max") \(cfsPeriod)"))
                out.append(Setting(.cpuWeight, "cpu.weight", String(limits.cpuWeight ?? 100)))
            }
            if has.contains("pids") { out.append(Setting(.pids, "pids.max", limits.pids.map(String.init) ?? "max")) }
            if let file = layout.ioWeightFile {
                let weight = limits.ioWeight ?? 100
                out.append(Setting(.ioWeight, file, file == "io.bfq.weight" ? String(bfqWeight(forWeight: weight)) : "default \(weight)"))
            }
        }
        return out
    }

    /// v1 refuses a memory limit above the memory+swap limit (EINVAL), so the two are
    /// written in the order that keeps memory ≤ memory+swap at every step: swap first
    /// when the new memory limit exceeds the current memory+swap limit.
    public static func orderMemory(_ settings: [Setting], currentSwapLimit: Int?) -> [Setting] {
        guard let memory = settings.first(where: { $0.file == "memory.limit_in_bytes" }),
              let swap = settings.first(where: { $0.file == "memory.memsw.limit_in_bytes" }) else { return settings }
        let newMemory = Int(memory.value).flatMap { $0 < 0 ? nil : $0 } ?? Int.max
        let swapFirst = newMemory > (currentSwapLimit ?? Int.max) || memory.value == "-1"
        let rest = settings.filter { $0.file != memory.file && $0.file != swap.file }
        return (swapFirst ? [swap, memory] : [memory, swap]) + rest
    }

    /// A file's text in the form `settings` writes: "max" for every spelling of no limit
    /// (v1 reads back -1 as a page-aligned 2^63-1), the default weight without "default".
    public static func normalize(file: String, text: String) -> String {
        let value = text.split(separator: "\n").first.map { String($0).trimmingSpaces } ?? ""
        switch file {
        case "memory.limit_in_bytes", "memory.memsw.limit_in_bytes", "memory.max", "memory.swap.max":
            if value == "max" || value == "-1" { return "max" }
            if let bytes = Int64(value), bytes >= 1 << 62 { return "max" }
            return value
        case "cpu.cfs_quota_us":
            return value == "-1" ? "max" : value
        case "io.weight", "io.bfq.weight":
            // "default 100" (then per-device lines): the default weight is the one tupp sets.
            let words = value.split(separator: " ")
            return words.first == "default" && words.count == 2 ? String(words[1]) : value
        default:
            return value
        }
    }

    /// A limit whose file reads differently from what tupp wrote: changed by hand (drift).
    public struct Drift: Sendable, Equatable, CustomStringConvertible {
        public var kind: LimitKind
        public var file: String
        public var expected: String
        public var actual: String

        public var description: String { "resources.\(kind.rawValue): \(file) is \(actual), expected \(expected)" }
    }

    /// Compares the expected settings with what the files read (file name → text). A
    /// file that could not be read is drift too (actual "missing").
    public static func drift(expected: [Setting], observed: [String: String]) -> [Drift] {
        expected.compactMap { setting in
            let want = normalize(file: setting.file, text: setting.value)
            let have = observed[setting.file].map { normalize(file: setting.file, text: $0) } ?? "missing"
            return want == have ? nil : Drift(kind: setting.kind, file: setting.file, expected: want, actual: have)
        }
    }

    // MARK: Usage and events

    /// memory.current, memory.usage_in_bytes, pids.current, cpuacct.usage: one number.
    public static func number(_ text: String) -> Int? { Int(text.trimmingSpaces) }

    /// The value of KEY in a flat-keyed file ("KEY VALUE" lines: memory.events, cpu.stat,
    /// memory.oom_control, pids.events).
    public static func field(_ key: String, in text: String) -> Int? {
        for line in text.split(separator: "\n") {
            let words = line.split(separator: " ")
            if words.count == 2, words[0] == key { return Int(words[1]) }
        }
        return nil
    }

    // MARK: Conversions

    static func pageAligned(_ bytes: Int) -> Int { bytes / pageSize * pageSize }

    /// CPUs → CFS quota per period (µs); never below the kernel's 1 ms minimum.
    static func quota(_ cpus: Double) -> Int { max(1000, Int((cpus * Double(cfsPeriod)).rounded())) }

    /// systemd's cgroup_cpu_weight_to_shares: weight 100 ↔ 1024 shares, proportional.
    static func shares(forWeight weight: Int) -> Int { min(262_144, max(2, weight * 1024 / 100)) }

    /// systemd's cgroup_weight_io_to_blkio: weight 100 ↔ blkio.weight 500, within 10…1000.
    static func blkioWeight(forWeight weight: Int) -> Int { min(1000, max(10, weight * 500 / 100)) }

    /// systemd's BFQ_WEIGHT: 1…100…10000 onto BFQ's 1…100…1000, piecewise linear.
    static func bfqWeight(forWeight weight: Int) -> Int {
        weight <= 100 ? 100 - (100 - 1) * (100 - weight) / (100 - 1) : 100 + (1000 - 100) * (weight - 100) / (10000 - 100)
    }
}

extension String {
    var trimmingSpaces: String {
        var s = Substring(self)
        while let first = s.first, first.isWhitespace { s.removeFirst() }
        while let last = s.last, last.isWhitespace { s.removeLast() }
        return String(s)
    }
}
