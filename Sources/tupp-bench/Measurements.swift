import Glibc
import TuppSystem

/// The samples of one benchmark row, in milliseconds, as bench/report.py reads them.
struct Series {
    /// Stable key, e.g. "snapshot.create.tupp"; bench/report.py maps it to a table row.
    let key: String
    var samples: [Double] = []
    /// Page faults (minor + major) and CPU time (user + system, ms) per sample, where a row
    /// records them (`time(usageOf:_:)`).
    var faults: [Double] = []
    var cpu: [Double] = []

    init(_ key: String) { self.key = key }

    /// Runs `body` once and records its wall-clock time, and the page faults and CPU time
    /// that getrusage(`who`) counts meanwhile: RUSAGE_SELF for work in this process (all
    /// its threads), RUSAGE_CHILDREN for commands it spawned and waited for.
    mutating func time<T>(usageOf who: __rusage_who, _ body: () throws -> T) rethrows -> T {
        let before = Usage(who)
        let result = try time(body)
        record(Usage(who) - before)
        return result
    }

    mutating func time<T>(usageOf who: __rusage_who, _ body: () async throws -> T) async rethrows -> T {
        let before = Usage(who)
        let result = try await time(body)
        record(Usage(who) - before)
        return result
    }

    /// Adds `other`'s samples (one round of the same row).
    mutating func append(_ other: Series) {
        samples += other.samples
        faults += other.faults
        cpu += other.cpu
    }

    private mutating func record(_ usage: Usage) {
        faults.append(Double(usage.faults))
        cpu.append(usage.cpuMilliseconds)
    }

    /// Runs `body` once and records its wall-clock time.
    @discardableResult
    mutating func time<T>(_ body: () throws -> T) rethrows -> T {
        let start = Monotonic.nanoseconds()
        let result = try body()
        samples.append(Monotonic.milliseconds(since: start))
        return result
    }

    mutating func time<T>(_ body: () async throws -> T) async rethrows -> T {
        let start = Monotonic.nanoseconds()
        let result = try await body()
        samples.append(Monotonic.milliseconds(since: start))
        return result
    }

    var median: Double {
        let sorted = samples.sorted()
        guard !sorted.isEmpty else { return .nan }
        let middle = sorted.count / 2
        return sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
    }
}

/// What getrusage counts, as far as a benchmark row reports it.
struct Usage {
    var faults: Int
    var cpuMilliseconds: Double

    init(faults: Int, cpuMilliseconds: Double) {
        self.faults = faults
        self.cpuMilliseconds = cpuMilliseconds
    }

    init(_ who: __rusage_who) {
        var usage = rusage()
        getrusage(who.rawValue, &usage)
        func ms(_ t: timeval) -> Double { Double(t.tv_sec) * 1000 + Double(t.tv_usec) / 1000 }
        self.init(faults: usage.ru_minflt + usage.ru_majflt, cpuMilliseconds: ms(usage.ru_utime) + ms(usage.ru_stime))
    }

    static func - (after: Usage, before: Usage) -> Usage {
        Usage(faults: after.faults - before.faults, cpuMilliseconds: after.cpuMilliseconds - before.cpuMilliseconds)
    }
}

/// Writes series as JSON lines `{"key": …, "samples_ms": […]}` to the --out file and a
/// one-line summary per series to stderr, so a run can be followed live.
struct SeriesWriter {
    let path: String

    func write(_ series: [Series]) throws {
        var text = (try Files.readText(path)) ?? ""
        for entry in series {
            let values = entry.samples.map { decimal($0, places: 4) }.joined(separator: ", ")
            var extra = ""
            if !entry.faults.isEmpty {
                // Every sample's faults; the mean CPU time, the statistic bench/report.py shows for hyperfine rows.
                let faults = entry.faults.map { String(Int($0)) }.joined(separator: ", ")
                extra = ", \"faults\": [\(faults)], \"cpu_ms\": \(decimal(entry.cpu.reduce(0, +) / Double(entry.cpu.count), places: 3))"
            }
            text += "{\"key\": \"\(entry.key)\", \"samples_ms\": [\(values)]\(extra)}\n"
            let line = "tupp-bench: \(entry.key): median \(decimal(entry.median, places: 3)) ms (n=\(entry.samples.count))\n"
            _ = line.withCString { Glibc.write(2, $0, strlen($0)) }
        }
        try Files.writeAtomically(path, text: text, mode: 0o644)
    }
}

/// Prints progress to stderr (stdout stays free).
func progress(_ message: String) {
    let line = "tupp-bench: \(message)\n"
    _ = line.withCString { Glibc.write(2, $0, strlen($0)) }
}

/// `value` rounded to `places` decimals, without Foundation's String(format:).
func decimal(_ value: Double, places: Int) -> String {
    guard value.isFinite else { return "null" }
    var scale = 1.0
    for _ in 0..<places { scale *= 10 }
    let scaled = Int64((abs(value) * scale).rounded())
    let whole = scaled / Int64(scale), fraction = String(scaled % Int64(scale))
    let padded = String(repeating: "0", count: places - fraction.count) + fraction
    return (value < 0 && scaled != 0 ? "-" : "") + "\(whole)." + padded
}
