import Glibc

/// What /proc/PID/stat says about a process (proc(5)).
public struct ProcessStat: Equatable, Sendable {
    public var pid: Int32
    /// One of R S D Z T t X I …; "Z" is a zombie that has exited but not been reaped.
    public var state: Character
    public var parentPID: Int32
    /// Field 22: start time in clock ticks since boot. With the pid it identifies a
    /// process uniquely — a recycled pid has a different start time.
    public var startTime: UInt64

    /// nil when the process does not exist. Parsed from bytes: it runs for every
    /// container on every plan.
    public static func read(_ pid: Int32) -> ProcessStat? {
        let fd = open("/proc/\(pid)/stat", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 1024)
        let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
        guard n > 0 else { return nil }
        return parse(buffer[..<n], pid: pid)
    }

    public static func parse(_ text: String, pid: Int32) -> ProcessStat? {
        parse(Array(text.utf8)[...], pid: pid)
    }

    static func parse(_ bytes: ArraySlice<UInt8>, pid: Int32) -> ProcessStat? {
        // The command name (field 2) may hold spaces and parentheses: split after the last ')'.
        guard let close = bytes.lastIndex(of: UInt8(ascii: ")")) else { return nil }
        var fields: [ArraySlice<UInt8>] = []
        var start = close + 1
        for i in (close + 1)..<bytes.endIndex where bytes[i] == UInt8(ascii: " ") || bytes[i] == UInt8(ascii: "\n") {
            if i > start { fields.append(bytes[start..<i]) }
            start = i + 1
            if fields.count == 20 { break }
        }
        // fields[0] is field 3 (state); field 22 is fields[19].
        guard fields.count == 20, let state = fields[0].first, let ppid = number(fields[1]),
              let startTime = number(fields[19]) else { return nil }
        return ProcessStat(pid: pid, state: Character(UnicodeScalar(state)), parentPID: Int32(ppid), startTime: startTime)
    }

    static func number(_ digits: ArraySlice<UInt8>) -> UInt64? {
        guard !digits.isEmpty else { return nil }
        var value: UInt64 = 0
        for d in digits {
            guard d >= 48 && d <= 57 else { return nil }
            value = value &* 10 &+ UInt64(d - 48)
        }
        return value
    }

    /// True when a process with this pid and start time exists and is not a zombie.
    public static func isAlive(pid: Int32, startTime: UInt64) -> Bool {
        guard pid > 0, let stat = read(pid) else { return false }
        return stat.startTime == startTime && stat.state != "Z" && stat.state != "X"
    }

    /// Seconds since boot at which a process with `startTime` ticks started.
    public static func secondsSinceBoot(ticks: UInt64) -> Double {
        Double(ticks) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }
}

/// The namespace inode of /proc/PID/ns/KIND ("net", "uts", …), or nil.
public func namespaceInode(pid: String, kind: String) -> UInt64? {
    var st = stat()
    guard stat("/proc/\(pid)/ns/\(kind)", &st) == 0 else { return nil }
    return UInt64(st.st_ino)
}

/// Monotonic clock, for durations.
public enum Monotonic {
    public static func nanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    public static func milliseconds(since start: UInt64) -> Double {
        Double(nanoseconds() - start) / 1e6
    }
}

/// Wall clock seconds since the epoch.
public func wallClockSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}
