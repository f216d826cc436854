import TuppFacts
import TuppManifest
import TuppPlan
import TuppRuntime
import TuppSystem

/// What `tupp status` shows for a container.
public struct ContainerStatus: Sendable {
    public var name: String
    /// The project that declares it; nil for a container made before projects existed.
    public var project: String?
    public var state: String
    public var pid: Int32?
    /// Seconds since the command started, when running.
    public var uptime: Double?
    public var image: String?
    public var address: String?
    /// Published ports, "0.0.0.0:8080:80/tcp".
    public var ports: [String]
    public var restarts: Int
    public var lastExit: String?
    public var lastExitAt: Double?
    public var error: String?
    /// OOM kills in the container's cgroup since it started; nil without a memory controller.
    public var oomKills: Int?
    /// What its cgroup counts now: bytes of memory, processes, CPU time.
    public var memoryBytes: Int?
    public var pids: Int?
    public var cpuSeconds: Double?
    /// Wall clock time the current (or last) run started.
    public var startedAt: Double?
    /// starting, healthy, unhealthy; nil without a health check or while not running.
    public var health: String?
    /// The health check's last results (with --json).
    public var healthReport: HealthReport?
    /// "exited with code 1 after 40 ms (restarting, attempt 3)".
    public var lastRun: String?
    /// Stopped with `tupp stop` (kept stopped under `restart: unless-stopped`).
    public var stoppedByUser: Bool = false
    /// Its user namespace (`userns: auto`): the maps the running process has, else the
    /// recorded ones; nil: the host's.
    public var userNamespace: IDMapping?

    /// "0 1879048192 65536" (the lines of /proc/PID/uid_map, comma-separated).
    public var usernsUIDMap: String? { userNamespace.map { IDMapping.render($0.uids) } }
    public var usernsGIDMap: String? { userNamespace.map { IDMapping.render($0.gids) } }

    /// "1879048192-1879113727": the host ids its ids run as (uids, then gids when they differ).
    public var usernsHostIDs: String? {
        userNamespace.map { m in
            let uids = m.uids.map(\.hostRange.description).joined(separator: ","), gids = m.gids.map(\.hostRange.description).joined(separator: ",")
            return uids == gids ? uids : "uid \(uids) gid \(gids)"
        }
    }
}

extension Engine {
    /// Status of the containers tupp recorded (all, or those named, or a project's).
    public func status(_ names: [String] = [], project: String? = nil) throws -> [ContainerStatus] {
        let records = try store.load()
        var out: [ContainerStatus] = []
        for (address, record) in records.sorted(by: { $0.key < $1.key }) where address.kind == .container {
            guard names.isEmpty || names.contains(address.name) else { continue }
            guard project == nil || record.projects[project!] != nil else { continue }
            let process = runtime.observe(directory: store.containerDirectory(address.name))
            let values = record.attributes
            var uptime: Double?
            if process.isRunning, let started = process.startedAt { uptime = max(0, wallClockSeconds() - started) }
            out.append(ContainerStatus(
                name: address.name, project: record.projects.keys.sorted().first, state: record.status == .ready ? process.state.rawValue : record.status.rawValue,
                pid: process.initPID > 0 ? process.initPID : nil, uptime: uptime,
                image: values[ContainerAttribute.image]?.string,
                address: values[ContainerAttribute.networkAddress]?.string,
                ports: values[ContainerAttribute.networkPorts].map { value -> [String] in
                    if case .list(let items) = value { items.compactMap(\.string) } else { [] }
                } ?? [],
                restarts: process.restarts,
                lastExit: process.lastExit.map { $0.oomKilled ? "oom-killed (\($0.status))" : "\($0.status)" },
                lastExitAt: process.lastExit?.at, error: process.error, oomKills: process.oomKills,
                startedAt: process.startedAt, health: process.health?.rawValue,
                healthReport: runtime.health(directory: store.containerDirectory(address.name)),
                lastRun: process.lastRunDescription, stoppedByUser: record.stoppedByUser && !process.isRunning,
                userNamespace: process.isRunning ? process.userNamespace : ContainerKind.userNamespace(values)))
            if process.isRunning, let layout = try? CgroupLayout.host(),
               let seen = runtime.observeResources(directory: store.containerDirectory(address.name),
                                                   expecting: ContainerKind.resourceLimits(values), layout: layout) {
                out[out.count - 1].memoryBytes = seen.usage.memory
                out[out.count - 1].pids = seen.usage.pids
                out[out.count - 1].cpuSeconds = seen.usage.cpuNanoseconds.map { Double($0) / 1e9 }
                out[out.count - 1].oomKills = seen.oomKills ?? process.oomKills
            }
        }
        for name in names where !out.contains(where: { $0.name == name }) {
            throw SystemError.failure("status", "container \(name)", "no such container in \(store.directory)")
        }
        return out
    }

    /// Every project with resources on this host: how many of each kind it declares and
    /// how many of its containers are running. Resources made before projects existed are
    /// listed under the project "-".
    public func projects() throws -> [ProjectSummary] {
        let records = try store.load()
        var byName: [String: ProjectSummary] = [:]
        for (address, record) in records {
            let names = record.projects.isEmpty ? ["-"] : Array(record.projects.keys)
            for name in names {
                var summary = byName[name] ?? ProjectSummary(name: name)
                summary.resources[address.kind.rawValue, default: 0] += 1
                if address.kind == .container {
                    let state = runtime.observe(directory: store.containerDirectory(address.name)).state
                    summary.containerStates[record.status == .ready ? state.rawValue : record.status.rawValue, default: 0] += 1
                }
                byName[name] = summary
            }
        }
        return byName.values.sorted { $0.name < $1.name }
    }

    /// The supervisor directory of a running container, or an error a user can act on.
    func runningContainerDirectory(_ name: String) throws -> String {
        let records = try store.load()
        guard records[ResourceAddress(.container, name)] != nil else {
            let known = records.keys.filter { $0.kind == .container }.map(\.name).sorted()
            throw SystemError.failure("find container", name,
                                      known.isEmpty ? "no containers in \(store.directory) (wrong --state-dir?)"
                                                    : "not found in \(store.directory); known: \(known.joined(separator: ", "))")
        }
        let directory = store.containerDirectory(name)
        let process = runtime.observe(directory: directory)
        guard process.isRunning else {
            throw SystemError.failure("exec", "container \(name)", "it is \(process.state.rawValue)\(process.lastExit.map { " (\($0.status))" } ?? ""); run tupp apply to start it")
        }
        return directory
    }
}

extension Engine {
    /// The argv that runs `command` in the running container `name`; the CLI execv()s it
    /// so the command's exit status becomes its own.
    /// `user`: as this user (`tupp exec -u`) instead of the container's.
    public func execArguments(_ name: String, command: [String], env: [String: String] = [:], tty: Bool = false,
                              workdir: String? = nil, user: String? = nil) throws -> [String] {
        let directory = try runningContainerDirectory(name)
        guard let user else {
            return runtime.execCommand(directory: directory, command: command, env: env, tty: tty, workdir: workdir)
        }
        guard let spec = UserSpec(user) else {
            throw SystemError.failure("exec", "container \(name)", "user \"\(user)\" is not NAME, UID, NAME:GROUP or UID:GID")
        }
        return try runtime.execCommand(directory: directory, command: command, env: env, tty: tty, workdir: workdir, user: spec)
    }

    /// Copies the container's output to `output`; with `follow`, until the container stops.
    public func logs(_ name: String, follow: Bool, to output: Int32) throws {
        _ = try status([name])
        try runtime.logs(directory: store.containerDirectory(name), follow: follow, to: output)
    }
}

/// What `tupp ls` shows for a project.
public struct ProjectSummary: Sendable {
    public var name: String
    /// "container", "image", … → how many the project declares.
    public var resources: [String: Int] = [:]
    /// "running", "exited", … → how many of its containers are in that state.
    public var containerStates: [String: Int] = [:]
}
