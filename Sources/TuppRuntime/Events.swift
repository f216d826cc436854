import Glibc
import TuppBase
import TuppSystem

/// One line of a supervisor's DIR/events (format in Sources/tupp-shim/events.c).
public struct ContainerEvent: Sendable, Equatable {
    /// Wall clock, seconds since the epoch.
    public var time: Double
    public var container: String
    /// start, exit, restart, health, stop.
    public var type: String
    /// The line as the supervisor wrote it.
    public var json: JSON.Node

    public static func parse(_ line: some Collection<UInt8>) -> ContainerEvent? {
        guard let json = try? JSON.parse(Array(line)), let time = json["time"]?.double, let container = json["container"]?.string,
              let type = json["type"]?.string else { return nil }
        return ContainerEvent(time: time, container: container, type: type, json: json)
    }

    /// "start pid 4242", "exit code 3 after 41 ms", "health starting → healthy".
    public var summary: String {
        func int(_ key: String) -> Int64? { json[key]?.int }
        switch type {
        case "start": return "start pid \(int("pid") ?? 0)\((int("restarts") ?? 0) > 0 ? " (restart \(int("restarts")!))" : "")"
        case "exit":
            let how = int("signal").map { "killed by signal \($0)" } ?? "exit code \(int("code") ?? 0)"
            let oom = json["oom"]?.bool == true ? " (out of memory)" : ""
            let error = json["error"]?.string.map { ": \($0)" } ?? ""
            return "exit \(how) after \(int("ran_ms") ?? 0) ms\(oom)\(error)"
        case "restart": return "restart attempt \(int("attempt") ?? 0) in \(int("delay_ms") ?? 0) ms"
        case "health":
            let output = (json["output"]?.string ?? "").split(whereSeparator: \.isNewline).first.map { ": \($0)" } ?? ""
            return "health \(json["from"]?.string ?? "?") → \(json["to"]?.string ?? "?") (exit code \(int("exit_code") ?? 0)\(output))"
        case "stop": return "stop signal \(int("signal") ?? 15)"
        default: return type
        }
    }
}

/// Follows the events files of many containers as the supervisors append to them,
/// across rotations (events → events.1) and containers that appear later.
public final class EventFollower {
    private struct Source {
        var descriptor: FileDescriptor
        var inode: UInt64
        var pending: [UInt8] = []
    }

    private var sources: [String: Source] = [:]
    private let directories: () -> [String]

    /// `directories`: the container runtime directories to follow, asked again at every
    /// poll (new containers are picked up). Events older than `since` (wall clock) are
    /// skipped; nil: only what happens from now on.
    public init(directories: @escaping () -> [String], since: Double?) {
        self.directories = directories
        for directory in directories() {
            if let since {
                for event in Self.events(in: "\(directory)/events.1") where event.time >= since { backlog.append(event) }
                for event in Self.events(in: "\(directory)/events") where event.time >= since { backlog.append(event) }
            }
            open(directory, atEnd: true)
        }
        backlog.sort { $0.time < $1.time }
    }

    private var backlog: [ContainerEvent] = []

    static func events(in path: String) -> [ContainerEvent] {
        guard let bytes = (try? Files.read(path, limit: 8 << 20)) ?? nil else { return [] }
        return bytes.split(separator: 10).compactMap { ContainerEvent.parse($0) }
    }

    private func open(_ directory: String, atEnd: Bool) {
        let path = "\(directory)/events"
        guard let fd = try? FileDescriptor.open(path, O_RDONLY) else { return }
        var info = stat()
        guard fstat(fd.rawValue, &info) == 0 else { return }
        if atEnd { lseek(fd.rawValue, 0, SEEK_END) }
        sources[directory] = Source(descriptor: fd, inode: UInt64(info.st_ino))
    }

    /// Events that happened since the last call, in time order.
    public func poll() -> [ContainerEvent] {
        var out = backlog
        backlog = []
        for directory in directories() {
            let path = "\(directory)/events"
            if var source = sources[directory] {
                out += drain(&source)
                // Rotated: the old file is drained, the new one read from its start.
                if let onDisk = try? Files.status(path), UInt64(onDisk.st_ino) != source.inode {
                    sources[directory] = nil
                    open(directory, atEnd: false)
                    if var fresh = sources[directory] {
                        out += drain(&fresh)
                        sources[directory] = fresh
                    }
                } else {
                    sources[directory] = source
                }
            } else if Files.exists(path) {
                // A container that appeared since: everything it wrote is new.
                open(directory, atEnd: false)
                if var fresh = sources[directory] {
                    out += drain(&fresh)
                    sources[directory] = fresh
                }
            }
        }
        return out.sorted { $0.time < $1.time }
    }

    private func drain(_ source: inout Source) -> [ContainerEvent] {
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = Glibc.read(source.descriptor.rawValue, &buffer, buffer.count)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            source.pending += buffer[..<n]
        }
        guard let last = source.pending.lastIndex(of: 10) else { return [] }
        let complete = source.pending[...last]
        source.pending = Array(source.pending[(last + 1)...])
        return complete.split(separator: 10).compactMap { ContainerEvent.parse($0) }
    }
}
