import Glibc
import TuppSystem

/// The samples of one benchmark row, in milliseconds, as bench/report.py reads them.
struct Series {
    /// Stable key, e.g. "snapshot.create.tupp"; bench/report.py maps it to a table row.
    let key: String
    var samples: [Double] = []

    init(_ key: String) { self.key = key }

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

/// Writes series as JSON lines `{"key": …, "samples_ms": […]}` to the --out file and a
/// one-line summary per series to stderr, so a run can be followed live.
struct SeriesWriter {
    let path: String

    func write(_ series: [Series]) throws {
        var text = (try Files.readText(path)) ?? ""
        for entry in series {
            let values = entry.samples.map { decimal($0, places: 4) }.joined(separator: ", ")
            text += "{\"key\": \"\(entry.key)\", \"samples_ms\": [\(values)]}\n"
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
