import TuppSystem

/// How far an import got; delivered to the caller's callback a few times a second.
public struct ImportProgress: Sendable, Equatable {
    /// Source bytes consumed so far (compressed bytes for a compressed archive).
    public var bytesRead: UInt64
    /// Total source bytes, when known up front.
    public var totalBytes: UInt64?
    /// Filesystem entries written so far.
    public var entries: Int
    public var elapsedSeconds: Double
    /// True on the last report.
    public var finished: Bool

    public var bytesPerSecond: Double { elapsedSeconds > 0 ? Double(bytesRead) / elapsedSeconds : 0 }
}

/// Rate-limits progress reports to one per 100 ms.
final class ProgressMeter {
    private let callback: ((ImportProgress) -> Void)?
    private let start = Monotonic.nanoseconds()
    private var lastReport: UInt64 = 0
    private var completedBytes: UInt64 = 0
    private(set) var bytesRead: UInt64 = 0
    private var entries = 0
    var totalBytes: UInt64?

    init(totalBytes: UInt64?, callback: ((ImportProgress) -> Void)?) {
        self.totalBytes = totalBytes
        self.callback = callback
    }

    var elapsedSeconds: Double { Double(Monotonic.nanoseconds() - start) / 1e9 }

    /// `bytes` counts within the current input; earlier inputs were added by `completeInput`.
    func update(bytes: UInt64, entries: Int) {
        bytesRead = completedBytes + bytes
        self.entries = entries
        guard let callback else { return }
        let now = Monotonic.nanoseconds()
        if now - lastReport < 100_000_000 { return }
        lastReport = now
        callback(snapshot(finished: false))
    }

    func completeInput(bytes: UInt64) {
        completedBytes += bytes
        bytesRead = completedBytes
    }

    func finish(entries: Int) {
        self.entries = entries
        callback?(snapshot(finished: true))
    }

    private func snapshot(finished: Bool) -> ImportProgress {
        ImportProgress(bytesRead: bytesRead, totalBytes: totalBytes, entries: entries,
                       elapsedSeconds: elapsedSeconds, finished: finished)
    }
}
