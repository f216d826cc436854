import TuppBase
import TuppFacts
import TuppSystem

/// DIR/health as the supervisor writes it (Sources/tupp-shim/health.c): the verdict, the
/// failures in a row and the last results, oldest first.
public struct HealthReport: Sendable, Equatable {
    public struct Result: Sendable, Equatable {
        /// Wall clock, seconds since the epoch.
        public var start: Double
        public var end: Double
        /// nil: the check timed out and was killed.
        public var exitCode: Int?
        /// What it printed (at most 4 KiB).
        public var output: String

        public init(start: Double, end: Double, exitCode: Int?, output: String) {
            self.start = start
            self.end = end
            self.exitCode = exitCode
            self.output = output
        }
    }

    public var status: HealthStatus
    public var failingStreak: Int
    public var log: [Result]

    public init(status: HealthStatus, failingStreak: Int, log: [Result]) {
        self.status = status
        self.failingStreak = failingStreak
        self.log = log
    }

    public static func parse(_ bytes: [UInt8]) -> HealthReport? {
        guard let json = try? JSON.parse(bytes), let status = json["status"]?.string.flatMap(HealthStatus.init) else { return nil }
        var log: [Result] = []
        if case .array(let items)? = json["log"] {
            for item in items {
                let code = item["exit_code"]?.int.map(Int.init)
                log.append(Result(start: item["start"]?.double ?? 0, end: item["end"]?.double ?? 0,
                                  exitCode: code.flatMap { $0 < 0 ? nil : $0 }, output: item["output"]?.string ?? ""))
            }
        }
        return HealthReport(status: status, failingStreak: Int(json["failing_streak"]?.int ?? 0), log: log)
    }

    /// "exit code 1: connection refused", the last result in one line.
    public var lastOutcome: String? {
        guard let last = log.last else { return nil }
        let output = last.output.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters() }.filter { !$0.isEmpty }
            .joined(separator: " / ")
        let head = last.exitCode.map { "exit code \($0)" } ?? "timed out"
        return output.isEmpty ? head : "\(head): \(output.count > 300 ? String(output.prefix(300)) + "…" : output)"
    }
}

extension Substring {
    fileprivate func trimmingCharacters() -> String {
        var s = self
        while let f = s.first, f == " " || f == "\t" { s.removeFirst() }
        while let l = s.last, l == " " || l == "\t" || l == "\r" { s.removeLast() }
        return String(s)
    }
}

extension Runtime {
    /// The health check's last results; nil without a health check (or before the first
    /// start).
    public func health(directory: String) -> HealthReport? {
        guard let bytes = (try? Files.read("\(directory)/health", limit: 1 << 20)) ?? nil else { return nil }
        return HealthReport.parse(bytes)
    }
}
