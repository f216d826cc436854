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

    /// nil when the process does not exist.
    public static func read(_ pid: Int32) -> ProcessStat? {
        guard let text = try? Files.readText("/proc/\(pid)/stat", limit: 4096) else { return nil }
        return parse(text, pid: pid)
    }

    public static func parse(_ text: String, pid: Int32) -> ProcessStat? {
        // The command name (field 2) may hold spaces and parentheses: split after the last ')'.
        guard let close = text.lastIndex(of: ")") else { return nil }
        let rest = text[text.index(after: close)...].split(separator: " ")
        // rest[0] is field 3 (state); field 22 is rest[19].
        guard rest.count > 19, let state = rest[0].first, let ppid = Int32(rest[1]),
              let start = UInt64(rest[19]) else { return nil }
        return ProcessStat(pid: pid, state: state, parentPID: ppid, startTime: start)
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
