import TuppBase

/// The image config's defaults for a container (image-spec config.md `config`): what
/// runs, as whom, where, with which environment, and how it is stopped and checked.
/// A plain value, stored with the image; the planner merges it with the manifest:
/// a container's `command` replaces `cmd`, its `entrypoint` replaces `entrypoint`.
public struct ImageConfig: Sendable, Equatable {
    public var entrypoint: [String]?
    public var cmd: [String]?
    /// "KEY=VALUE", in the image's order.
    public var env: [String]
    public var workingDir: String?
    /// NAME, UID, NAME:GROUP or UID:GID, resolved inside the container.
    public var user: String?
    /// "SIGTERM", "15", …: as the image says it.
    public var stopSignal: String?
    public var healthcheck: Healthcheck?

    public init(entrypoint: [String]? = nil, cmd: [String]? = nil, env: [String] = [], workingDir: String? = nil,
                user: String? = nil, stopSignal: String? = nil, healthcheck: Healthcheck? = nil) {
        self.entrypoint = entrypoint
        self.cmd = cmd
        self.env = env
        self.workingDir = workingDir
        self.user = user
        self.stopSignal = stopSignal
        self.healthcheck = healthcheck
    }

    /// Docker's HEALTHCHECK: durations in nanoseconds, 0 meaning "the default".
    public struct Healthcheck: Sendable, Equatable {
        /// ["NONE"], ["CMD", args…] or ["CMD-SHELL", command].
        public var test: [String]
        public var intervalNanoseconds: Int64
        public var timeoutNanoseconds: Int64
        public var startPeriodNanoseconds: Int64
        public var retries: Int

        public init(test: [String], intervalNanoseconds: Int64 = 0, timeoutNanoseconds: Int64 = 0,
                    startPeriodNanoseconds: Int64 = 0, retries: Int = 0) {
            self.test = test
            self.intervalNanoseconds = intervalNanoseconds
            self.timeoutNanoseconds = timeoutNanoseconds
            self.startPeriodNanoseconds = startPeriodNanoseconds
            self.retries = retries
        }
    }

    /// The command Docker would run with no overrides: Entrypoint + Cmd.
    public var defaultCommand: [String] { (entrypoint ?? []) + (cmd ?? []) }

    /// The image config's own field names, as tupp stores the value with an image.
    public var json: JSON.Node {
        var pairs: [(String, JSON.Node)] = []
        func strings(_ list: [String]) -> JSON.Node { .array(list.map { .string($0) }) }
        if let entrypoint { pairs.append(("Entrypoint", strings(entrypoint))) }
        if let cmd { pairs.append(("Cmd", strings(cmd))) }
        pairs.append(("Env", strings(env)))
        if let workingDir { pairs.append(("WorkingDir", .string(workingDir))) }
        if let user { pairs.append(("User", .string(user))) }
        if let stopSignal { pairs.append(("StopSignal", .string(stopSignal))) }
        if let healthcheck {
            pairs.append(("Healthcheck", .object([
                ("Test", strings(healthcheck.test)), ("Interval", .int(healthcheck.intervalNanoseconds)),
                ("Timeout", .int(healthcheck.timeoutNanoseconds)), ("StartPeriod", .int(healthcheck.startPeriodNanoseconds)),
                ("Retries", .int(Int64(healthcheck.retries))),
            ])))
        }
        return .object(pairs)
    }
}
