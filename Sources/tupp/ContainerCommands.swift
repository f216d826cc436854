import ArgumentParser
import Glibc
import TuppBase
import TuppEngine
import TuppManifestLoader
import TuppPlan
import TuppRuntime

struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show the containers tupp runs: state, pid, uptime, image, address, restarts, last exit.",
        discussion: """
            Examples:
              tupp status
              tupp status tupperware --json
              tupp status --project web
            """
    )

    @OptionGroup var global: GlobalOptions

    @Argument(help: "Container names (default: all).")
    var names: [String] = []

    @Option(help: ArgumentHelp("Only the containers of this project.", valueName: "name"))
    var project: String?

    @Flag(help: "Machine-readable JSON.")
    var json = false

    func run() throws {
        let statuses = try Engine(stateDirectory: global.stateDirectory, logger: global.logger).status(names, project: project)
        if json {
            let items: [JSON.Node] = statuses.map { s in
                JSON.object([
                    ("name", .string(s.name)), ("project", s.project.map(JSON.Node.string) ?? .null), ("state", .string(s.state)),
                    ("pid", s.pid.map { .int(Int64($0)) } ?? .null),
                    ("uptime_seconds", s.uptime.map { .double(($0 * 10).rounded() / 10) } ?? .null),
                    ("image", s.image.map(JSON.Node.string) ?? .null), ("address", s.address.map(JSON.Node.string) ?? .null),
                    ("ports", .array(s.ports.map { .string($0) })),
                    ("restarts", .int(Int64(s.restarts))), ("last_exit", s.lastExit.map(JSON.Node.string) ?? .null),
                    ("last_exit_at", s.lastExitAt.map(JSON.Node.double) ?? .null), ("error", s.error.map(JSON.Node.string) ?? .null),
                    ("started_at", s.startedAt.map(JSON.Node.double) ?? .null), ("last_run", s.lastRun.map(JSON.Node.string) ?? .null),
                    ("stopped_by_user", .bool(s.stoppedByUser)), ("health", s.health.map(JSON.Node.string) ?? .null),
                    ("health_log", healthJSON(s.healthReport)),
                    ("oom_kills", s.oomKills.map { .int(Int64($0)) } ?? .null),
                    ("memory_bytes", s.memoryBytes.map { .int(Int64($0)) } ?? .null),
                    ("pids_current", s.pids.map { .int(Int64($0)) } ?? .null),
                    ("cpu_seconds", s.cpuSeconds.map { .double(($0 * 1000).rounded() / 1000) } ?? .null),
                    ("userns", s.usernsUIDMap.map { uids in
                        JSON.object([("uid_map", .string(uids)), ("gid_map", .string(s.usernsGIDMap ?? ""))])
                    } ?? .null),
                ])
            }
            emit(JSON.Node.array(items).serialized() + "\n")
            return
        }
        if statuses.isEmpty {
            emit("No containers.\n")
            return
        }
        // USERNS only when a container has one: the host ids its root and users run as.
        let userns = statuses.contains { $0.usernsHostIDs != nil }
        var header = ["NAME", "PROJECT", "STATE", "HEALTH", "PID", "UPTIME", "IMAGE", "ADDRESS", "PORTS", "MEMORY", "PIDS", "CPU", "RESTARTS", "LAST EXIT"]
        if userns { header.append("USERNS") }
        let rows: [[String]] = statuses.map { s in
            var row: [String] = [s.name, s.project ?? "-", s.stoppedByUser ? "\(s.state) (tupp stop)" : s.state, s.health ?? "-",
                                 s.pid.map(String.init) ?? "-", s.uptime.map(formatUptime) ?? "-", s.image ?? "-"]
            row += [s.address ?? "-", s.ports.isEmpty ? "-" : s.ports.joined(separator: ","),
                    s.memoryBytes.map { Units.formatSize(UInt64($0)) } ?? "-", s.pids.map(String.init) ?? "-"]
            row += [s.cpuSeconds.map { "\(($0 * 100).rounded() / 100)s" } ?? "-", String(s.restarts), s.lastRun ?? s.lastExit ?? "-"]
            if userns { row.append(s.usernsHostIDs ?? "host") }
            return row
        }
        emitTable([header] + rows)
    }
}

/// The health check's state and last results, for `status --json`.
func healthJSON(_ report: HealthReport?) -> JSON.Node {
    guard let report else { return .null }
    return JSON.object([
        ("status", .string("\(report.status)")), ("failing_streak", .int(Int64(report.failingStreak))),
        ("results", .array(report.log.map { r in
            JSON.object([("start", .double(r.start)), ("end", .double(r.end)),
                         ("exit_code", r.exitCode.map { .int(Int64($0)) } ?? .null), ("timed_out", .bool(r.exitCode == nil)),
                         ("output", .string(r.output))])
        })),
    ])
}

/// Columns padded to their widest cell.
func emitTable(_ rows: [[String]]) {
    let widths = (0..<rows[0].count).map { c in rows.map { $0[c].count }.max()! }
    for row in rows {
        emit(row.enumerated().map { $0.element.padding(toLength: widths[$0.offset]) }.joined(separator: "  ").trimmingTrailing() + "\n")
    }
}

struct ListCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ls",
        abstract: "List the projects on this host: their resources and how many containers run.",
        discussion: """
            Examples:
              tupp ls
              tupp ls --json
            """
    )

    @OptionGroup var global: GlobalOptions

    @Flag(help: "Machine-readable JSON.")
    var json = false

    func run() throws {
        let projects = try Engine(stateDirectory: global.stateDirectory, logger: global.logger).projects()
        if json {
            func counts(_ map: [String: Int]) -> JSON.Node { .object(map.keys.sorted().map { ($0, .int(Int64(map[$0]!))) }) }
            emit(JSON.Node.array(projects.map { p in
                JSON.object([("name", .string(p.name)), ("resources", counts(p.resources)), ("containers", counts(p.containerStates))])
            }).serialized() + "\n")
            return
        }
        if projects.isEmpty {
            emit("No projects.\n")
            return
        }
        emitTable([["PROJECT", "CONTAINERS", "STATES", "NETWORKS", "IMAGES", "VOLUMES"]] + projects.map { p in
            let states = p.containerStates.keys.sorted().map { "\(p.containerStates[$0]!) \($0)" }.joined(separator: ", ")
            return [p.name, String(p.resources["container"] ?? 0), states.isEmpty ? "-" : states,
                    String(p.resources["network"] ?? 0), String(p.resources["image"] ?? 0), String(p.resources["volume"] ?? 0)]
        })
    }
}

func formatUptime(_ seconds: Double) -> String {
    let s = Int(seconds)
    if s < 60 { return "\(s)s" }
    if s < 3600 { return "\(s / 60)m\(s % 60)s" }
    if s < 86400 { return "\(s / 3600)h\(s % 3600 / 60)m" }
    return "\(s / 86400)d\(s % 86400 / 3600)h"
}

extension String {
    func padding(toLength n: Int) -> String { count >= n ? self : self + String(repeating: " ", count: n - count) }
    func trimmingTrailing() -> String {
        var s = Substring(self)
        while s.last == " " { s.removeLast() }
        return String(s)
    }
}

struct ExecCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "exec",
        abstract: "Run a command inside a running container.",
        discussion: """
            Joins every namespace of the container, its root, capabilities and no_new_privs. \
            The command's exit status is tupp's.

            Examples:
              tupp exec -t tupperware sh             an interactive shell (a pty)
              tupp exec tupperware -- ps             what runs inside
              tupp exec -e DEBUG=1 -w /tmp tupperware -- env
              tupp exec -u nobody tupperware -- id
            """
    )

    @OptionGroup var global: GlobalOptions

    @Flag(name: .shortAndLong, help: "Allocate a pseudo-terminal (for interactive programs).")
    var tty = false

    @Option(name: .shortAndLong, help: ArgumentHelp("Set an environment variable (repeatable).", valueName: "KEY=VALUE"))
    var env: [String] = []

    @Option(name: .shortAndLong, help: ArgumentHelp("Working directory inside the container.", valueName: "dir"))
    var workdir: String?

    @Option(name: .shortAndLong, help: ArgumentHelp("Run as this user instead of the container's (NAME, UID, NAME:GROUP or UID:GID, looked up in the container).", valueName: "user"))
    var user: String?

    @Argument(help: "The container.")
    var name: String

    @Argument(parsing: .captureForPassthrough, help: "The command and its arguments (after --).")
    var command: [String] = []

    func validate() throws {
        for item in env where !item.contains("=") || item.hasPrefix("=") {
            throw ValidationError("--env \(item): expected KEY=VALUE")
        }
    }

    func run() throws {
        var argv = command
        if argv.first == "--" { argv.removeFirst() }
        guard !argv.isEmpty else { throw ValidationError("give a command to run, e.g. tupp exec \(name) -- sh") }
        let engine = Engine(stateDirectory: global.stateDirectory, logger: global.logger)
        var environment: [String: String] = [:]
        for item in env {
            let parts = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            environment[String(parts[0])] = parts.count > 1 ? String(parts[1]) : ""
        }
        let shim = try engine.execArguments(name, command: argv, env: environment, tty: tty, workdir: workdir, user: user)
        // Replace this process: the shim joins the namespaces single-threaded and its
        // exit status becomes ours.
        let cArgs = shim.map { strdup($0) } + [nil]
        execv(shim[0], cArgs)
        printError("exec \(shim[0]): \(String(cString: strerror(errno)))")
        throw ExitCode(126)
    }
}

struct LogsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "logs",
        abstract: "Print a container's output (stdout and stderr).",
        discussion: """
            The log is bounded: it rotates at 1 MiB, keeping one older file. The supervisor \
            notes when it wrote each piece of output: --timestamps and --since use that.

            Examples:
              tupp logs tupperware
              tupp logs -f tupperware                follow until the container stops
              tupp logs --tail 20 --timestamps db    the last 20 lines, each with its time
              tupp logs --since 10m db               what the last ten minutes brought
            """
    )

    @OptionGroup var global: GlobalOptions

    @Flag(name: .shortAndLong, help: "Keep printing new output until the container stops.")
    var follow = false

    @Option(help: ArgumentHelp("Only the last N lines.", valueName: "N"))
    var tail: Int?

    @Option(help: ArgumentHelp("Only lines written in this last span: 10m, 1h30m, 45s.", valueName: "duration"))
    var since: String?

    @Flag(help: "Prefix each line with when it was written (RFC 3339, UTC).")
    var timestamps = false

    @Argument(help: "The container.")
    var name: String

    func validate() throws {
        if let tail, tail < 0 { throw ValidationError("--tail must not be negative") }
        if let since, case .failure(let e) = Units.parseDuration(since) { throw ValidationError("--since \(since): \(e.message)") }
    }

    func run() throws {
        var selection = LogSelection(tail: tail, timestamps: timestamps)
        if let since, case .success(let seconds) = Units.parseDuration(since) { selection.since = wallClock() - seconds }
        try Engine(stateDirectory: global.stateDirectory, logger: global.logger).logs(name, selection: selection, follow: follow, to: 1)
    }
}

struct StopCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stop",
        abstract: "Stop containers on purpose: under restart: unless-stopped they stay stopped until tupp start.",
        discussion: """
            Sends the stop signal (stopSignal, SIGTERM by default), then SIGKILL after the \
            container's stopTimeout. A container with restart: unless-stopped then stays \
            stopped across applies and reboots, and plans show it as stopped on purpose; \
            other containers are started again by the next apply.

            Examples:
              tupp stop db
              tupp stop --timeout 30s db cache
            """
    )

    @OptionGroup var global: GlobalOptions

    @Option(help: ArgumentHelp("Time between the stop signal and SIGKILL (default: the container's stopTimeout).", valueName: "duration"))
    var timeout: String?

    @Option(help: ArgumentHelp("Seconds to wait for another apply to finish.", valueName: "seconds"))
    var lockTimeout: Double = 60

    @Argument(help: "The containers.")
    var names: [String]

    func run() throws {
        var grace: Double?
        if let timeout {
            guard case .success(let seconds) = Units.parseDuration(timeout) else { throw ValidationError("--timeout \(timeout): not a duration") }
            grace = seconds
        }
        try Engine(stateDirectory: global.stateDirectory, logger: global.logger)
            .stop(names, timeout: grace, lockTimeout: lockTimeout, holder: CommandLine.arguments.joined(separator: " "))
        for name in names { emit("\(name): stopped\n") }
    }
}

struct StartCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "start",
        abstract: "Start containers stopped with tupp stop (applies the manifest for them only).",
        discussion: """
            Clears the mark tupp stop left and applies the manifest for the named \
            containers only, waiting for their dependencies as apply does.

            Examples:
              tupp start db
              tupp start -f site/ db cache
            """
    )

    @OptionGroup var global: GlobalOptions

    @Option(name: [.customShort("f"), .customLong("file")],
            help: ArgumentHelp("Manifest files or directories (repeatable; default ./tupperware.yaml).", valueName: "file|dir"))
    var files: [String] = []

    @Option(help: ArgumentHelp("The project (default: the manifests' project: key, else their directory's name).", valueName: "name"))
    var project: String?

    @Option(help: ArgumentHelp("Seconds to wait for another apply to finish.", valueName: "seconds"))
    var lockTimeout: Double = 60

    @Flag(help: "Stream JSON lines instead of text.")
    var json = false

    @OptionGroup var waiting: WaitOptions

    @Argument(help: "The containers.")
    var names: [String]

    func run() async throws {
        let loaded = try loadManifests(files, project: project)
        try await runApply(loaded, options: PlanOptions(prune: false, project: loaded.project), json: json, lockTimeout: lockTimeout,
                           global: global, command: "start", lifecycle: try waiting.options(), starting: names)
    }
}

struct EventsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "events",
        abstract: "Stream what the supervisors report: starts, exits, restarts, health changes, stops.",
        discussion: """
            Each line is one event as it happens. With --json, the supervisor's own JSON \
            lines: {"time", "container", "type": start | exit | restart | health | stop, …}; \
            an exit has "code" or "signal", "oom" and "ran_ms", a health change "from", "to", \
            "exit_code" and "output".

            Examples:
              tupp events
              tupp events --json db | jq -c 'select(.type=="health")'
              tupp events --since 1h --until 0s      what the last hour brought, then stop
            """
    )

    @OptionGroup var global: GlobalOptions

    @Flag(help: "Machine-readable JSON lines.")
    var json = false

    @Option(help: ArgumentHelp("Also show what happened in this last span (10m, 1h).", valueName: "duration"))
    var since: String?

    @Option(help: ArgumentHelp("Stop after this span from now (0s: stop at once, after --since's events).", valueName: "duration"))
    var until: String?

    @Argument(help: "Only these containers (default: all, also those created meanwhile).")
    var names: [String] = []

    func run() async throws {
        func seconds(_ text: String?, _ flag: String) throws -> Double? {
            guard let text else { return nil }
            guard case .success(let value) = Units.parseDuration(text) else { throw ValidationError("\(flag) \(text): not a duration") }
            return value
        }
        let now = wallClock()
        let since = try seconds(since, "--since").map { now - $0 }
        let until = try seconds(until, "--until").map { now + $0 }
        try await Engine(stateDirectory: global.stateDirectory, logger: global.logger).events(names, since: since, until: until) { event in
            if json {
                emit(event.json.serialized() + "\n")
            } else {
                emit("\(LogLines.rfc3339(event.time)) \(event.container) \(event.summary)\n")
            }
        }
    }
}
