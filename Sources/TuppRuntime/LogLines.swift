import Glibc
import TuppFacts
import TuppSystem

/// Which part of a container's output `tupp logs` prints, and how.
public struct LogSelection: Sendable, Equatable {
    /// Only the last N lines (of what `since` leaves).
    public var tail: Int?
    /// Only lines written at or after this wall clock time.
    public var since: Double?
    /// Each line prefixed with when the supervisor wrote it (RFC 3339, UTC).
    public var timestamps: Bool

    public init(tail: Int? = nil, since: Double? = nil, timestamps: Bool = false) {
        self.tail = tail
        self.since = since
        self.timestamps = timestamps
    }

    /// Nothing selected: the log is copied byte for byte.
    public var isRaw: Bool { tail == nil && since == nil && !timestamps }
}

/// The container's output as lines with the time each was written: DIR/log with
/// DIR/log.times ("OFFSET SECONDS" per write, Sources/tupp-shim/log.c). Pure.
public enum LogLines {
    public struct Line: Equatable, Sendable {
        /// nil when no time was recorded for it (a log from an older supervisor).
        public var time: Double?
        /// The bytes, with their newline when the line is complete.
        public var bytes: [UInt8]

        public init(time: Double?, bytes: [UInt8]) {
            self.time = time
            self.bytes = bytes
        }
    }

    /// `times` as (offset, seconds), in file order.
    public static func parseTimes(_ text: String) -> [(offset: Int, time: Double)] {
        text.split(separator: "\n").compactMap { line in
            let parts = line.split(separator: " ")
            guard parts.count == 2, let offset = Int(parts[0]), let time = Double(parts[1]) else { return nil }
            return (offset, time)
        }
    }

    /// Splits one log file into lines; a line's time is that of the last write that began
    /// at or before its first byte.
    public static func lines(_ bytes: [UInt8], times: [(offset: Int, time: Double)]) -> [Line] {
        var out: [Line] = []
        var start = 0
        var timeIndex = -1
        while start < bytes.count {
            let end = bytes[start...].firstIndex(of: 10).map { $0 + 1 } ?? bytes.count
            while timeIndex + 1 < times.count && times[timeIndex + 1].offset <= start { timeIndex += 1 }
            out.append(Line(time: timeIndex >= 0 ? times[timeIndex].time : nil, bytes: Array(bytes[start..<end])))
            start = end
        }
        return out
    }

    /// The lines `selection` keeps, oldest first.
    public static func select(_ lines: [Line], _ selection: LogSelection) -> [Line] {
        var kept = lines
        if let since = selection.since { kept = kept.filter { ($0.time ?? 0) >= since } }
        if let tail = selection.tail { kept = Array(kept.suffix(max(0, tail))) }
        return kept
    }

    /// The bytes to print for `line`.
    public static func render(_ line: Line, timestamps: Bool) -> [UInt8] {
        guard timestamps else { return line.bytes }
        return Array((line.time.map(rfc3339) ?? "-").utf8) + [32] + line.bytes
    }

    /// "2026-11-30T10:21:04.123456Z".
    public static func rfc3339(_ seconds: Double) -> String {
        var whole = time_t(seconds.rounded(.down))
        let micros = Int(((seconds - Double(whole)) * 1_000_000).rounded())
        var parts = tm()
        gmtime_r(&whole, &parts)
        func pad(_ value: Int32, _ width: Int) -> String {
            let text = String(value)
            return String(repeating: "0", count: max(0, width - text.count)) + text
        }
        let fraction = String(min(micros, 999_999))
        return "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))T"
            + "\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2))."
            + String(repeating: "0", count: 6 - fraction.count) + fraction + "Z"
    }
}

extension Runtime {
    /// The output the supervisor kept (DIR/log.1, then DIR/log) as lines with their times.
    func logLines(directory: String) -> [LogLines.Line] {
        var out: [LogLines.Line] = []
        for name in ["log.1", "log"] {
            guard let bytes = (try? Files.read("\(directory)/\(name)")) ?? nil else { continue }
            let times = ((try? Files.readText("\(directory)/\(name).times", limit: 64 << 20)) ?? nil).map(LogLines.parseTimes) ?? []
            out += LogLines.lines(bytes, times: times)
        }
        return out
    }

    /// `tupp logs` with a selection: the lines kept, then with `follow` whatever the
    /// container writes next, each line with the time the supervisor noted for it, until
    /// the supervisor is gone.
    public func logs(directory: String, selection: LogSelection, follow: Bool, to output: Int32) throws {
        if selection.isRaw { return try logs(directory: directory, follow: follow, to: output) }
        let path = "\(directory)/log"
        // What is on disk now, and where the current file ends: following starts there.
        var current: FileDescriptor? = try? FileDescriptor.open(path, O_RDONLY)
        let end = current.map { Int(lseek($0.rawValue, 0, SEEK_END)) } ?? 0
        let lines = logLines(directory: directory)
        for line in LogLines.select(lines, selection) { try writeBytes(LogLines.render(line, timestamps: selection.timestamps), to: output) }
        guard follow else { return }
        var pending: [UInt8] = []
        var pendingOffset = end   // where `pending` begins in the current file
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            var read = 0
            if let fd = current {
                read = try Errno.check("read", path) { Glibc.read(fd.rawValue, &buffer, buffer.count) }
                if read > 0 { pending += buffer[..<read] }
            }
            if let last = pending.lastIndex(of: 10) {
                // The supervisor notes the time of a write before it appends it.
                let times = ((try? Files.readText("\(path).times", limit: 64 << 20)) ?? nil).map(LogLines.parseTimes) ?? []
                let shifted = times.map { (offset: $0.offset - pendingOffset, time: $0.time) }
                for line in LogLines.lines(Array(pending[...last]), times: shifted) {
                    try writeBytes(LogLines.render(line, timestamps: selection.timestamps), to: output)
                }
                pending = Array(pending[(last + 1)...])
                pendingOffset += last + 1
            }
            if read > 0 { continue }
            if let onDisk = try Files.status(path), current == nil || inodeOf(current!) != UInt64(onDisk.st_ino) {
                current = try FileDescriptor.open(path, O_RDONLY)
                pendingOffset = -pending.count   // a line cut by the rotation began in the old file
                continue
            }
            if !observe(directory: directory).isSupervised {
                if !pending.isEmpty { try writeBytes(LogLines.render(LogLines.Line(time: nil, bytes: pending), timestamps: false), to: output) }
                return
            }
            usleep(50_000)
        }
    }

    private func inodeOf(_ descriptor: FileDescriptor) -> UInt64? {
        var info = stat()
        return fstat(descriptor.rawValue, &info) == 0 ? UInt64(info.st_ino) : nil
    }

    func writeBytes(_ bytes: [UInt8], to output: Int32) throws(SystemError) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(output, $0.baseAddress! + offset, $0.count - offset) }
            if n < 0 {
                if errno == EINTR { continue }
                throw SystemError("write logs", "fd \(output)")
            }
            offset += n
        }
    }
}

extension ProcessObservation {
    /// True while a live supervisor looks after the container.
    public var isSupervised: Bool { [.starting, .running, .exiting, .restarting, .stopping].contains(state) }
}
