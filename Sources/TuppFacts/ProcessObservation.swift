import TuppManifest
import TuppBase

/// How the container's command ended.
public enum ExitStatus: Sendable, Equatable, CustomStringConvertible {
    case code(Int32)
    case signal(Int32)

    public var description: String {
        switch self {
        case .code(let code): "exit code \(code)"
        case .signal(let signal): "killed by signal \(signal)"
        }
    }

    /// The shell convention: the code, or 128 + signal.
    public var shellStatus: Int32 {
        switch self {
        case .code(let code): code
        case .signal(let signal): 128 + signal
        }
    }
}

public struct ExitRecord: Sendable, Equatable {
    public var status: ExitStatus
    /// Wall clock, seconds since the epoch.
    public var at: Double
    /// The kernel's OOM killer killed a process of the container during this run (the
    /// command itself or a child — as Docker's OOMKilled): `status` can say `oom-killed`.
    public var oomKilled: Bool = false

    public init(status: ExitStatus, at: Double, oomKilled: Bool = false) {
        self.status = status
        self.at = at
        self.oomKilled = oomKilled
    }
}

/// A health check's verdict (Docker's): `starting` until the first success after a start.
public enum HealthStatus: String, Sendable, Equatable {
    case starting, healthy, unhealthy
}

/// What the container is doing, from the live kernel (pid + start time) and DIR/state.
public enum ContainerState: String, Sendable, Equatable {
    /// No state record: never started here, or removed.
    case absent
    /// The shim is setting up the first run.
    case starting
    /// The command runs.
    case running
    /// The command just ended and the supervisor is still recording it (and deciding
    /// whether to restart): a few milliseconds, observe again.
    case exiting
    /// The command exited and the restart policy will run it again after a backoff.
    case restarting
    /// A stop was requested; the command is being terminated.
    case stopping
    /// The command exited (or could not start) and was not restarted; see `lastExit`.
    case exited
    /// Stopped on request.
    case stopped
    /// The supervisor vanished without recording an end (killed, crashed): nothing is
    /// supervised any more, and the command died with it unless `initPID` is still alive.
    case supervisorDied
}

/// A container's process as observed now. Cheap: a small file and a few /proc reads.
public struct ProcessObservation: Sendable, Equatable {
    public var state: ContainerState
    public var shimPID: Int32
    public var shimStartTime: UInt64
    /// The command's pid (PID 1 in its pid namespace), 0 when it does not run.
    public var initPID: Int32
    public var initStartTime: UInt64
    public var restarts: Int
    /// Wall clock time the current (or last) run started.
    public var startedAt: Double?
    public var lastExit: ExitRecord?
    /// Why the last start failed ("exec /bin/nope in /…: No such file or directory").
    public var error: String?
    /// Namespace inodes as the kernel shows them now; empty when nothing runs.
    public var namespaces: [Namespace: UInt64]
    /// OOM kills in the container's cgroup since it started, as the supervisor last
    /// recorded them; nil without a cgroup with a memory controller.
    public var oomKills: Int?
    /// The health check's verdict on the current run; nil without a health check.
    public var health: HealthStatus?
    /// Failed checks in a row.
    public var healthFailures: Int = 0
    /// How long the last run lasted before it exited (with `lastExit`).
    public var lastRunMilliseconds: Double?
    /// The init's user namespace maps (/proc/PID/uid_map, gid_map) while it runs in one
    /// of its own; nil when it shares the host's or does not run.
    public var userNamespace: IDMapping?

    public init(state: ContainerState, shimPID: Int32, shimStartTime: UInt64, initPID: Int32, initStartTime: UInt64,
                restarts: Int, startedAt: Double?, lastExit: ExitRecord?, error: String?, namespaces: [Namespace: UInt64],
                oomKills: Int? = nil, userNamespace: IDMapping? = nil) {
        self.oomKills = oomKills
        self.userNamespace = userNamespace
        self.state = state
        self.shimPID = shimPID
        self.shimStartTime = shimStartTime
        self.initPID = initPID
        self.initStartTime = initStartTime
        self.restarts = restarts
        self.startedAt = startedAt
        self.lastExit = lastExit
        self.error = error
        self.namespaces = namespaces
    }

    public var isRunning: Bool { state == .running }

    /// "exited with code 1 after 40 ms (restarting, attempt 3)": the last run, when it
    /// ended; nil while the first run goes on.
    public var lastRunDescription: String? {
        guard let exit = lastExit else { return nil }
        var text: String
        switch exit.status {
        case _ where exit.oomKilled: text = "was oom-killed (\(exit.status))"
        case .code(let code): text = "exited with code \(code)"
        case .signal(let signal): text = "was killed by signal \(signal)"
        }
        if let ms = lastRunMilliseconds { text += " after \(ms < 10_000 ? "\(Int(ms)) ms" : "\(Int(ms / 1000)) s")" }
        if state == .restarting || (state == .running && restarts > 0) {
            text += " (\(state == .restarting ? "restarting" : "restarted"), attempt \(restarts + (state == .restarting ? 1 : 0)))"
        }
        return text
    }

    public static let absent = ProcessObservation(state: .absent, shimPID: 0, shimStartTime: 0, initPID: 0, initStartTime: 0,
                                           restarts: 0, startedAt: nil, lastExit: nil, error: nil, namespaces: [:])
}
