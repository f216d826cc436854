import CTuppSys
import Glibc
import TuppBase
import TuppFacts
import TuppManifest
import TuppSystem

/// The container's process as seen during start, before its command runs: the engine's
/// chance to do outside work (create the veth with its peer directly in `netnsPath`).
public struct StartingContainer: Sendable {
    public var shimPID: Int32
    public var initPID: Int32
    /// The container's network namespace, held by the supervisor (it outlives restarts
    /// of the command and disappears with the supervisor).
    public var netnsPath: String
}

/// Runs containers through tupp-shim, one supervisor per container, each with its own
/// runtime directory DIR holding `spec` (written here), `state` (written by the shim),
/// `log` and `log.1`. Every call re-reads DIR and the kernel: there is no in-memory state.
public struct Runtime: Sendable {
    /// Path of the tupp-shim executable.
    public let shimPath: String
    /// How long start waits for each step of the shim (seconds).
    public var startTimeout: Double = 30
    /// Where tupp-shim keeps compiled seccomp filters, shared by every container (the
    /// engine's state directory cache, mode 0700). nil: each container's own directory,
    /// so a filter is compiled once per container instead of once per installation.
    public var cacheDirectory: String?

    /// `shimPath` nil: "tupp-shim" next to the running executable (tupp and tupp-shim are
    /// installed side by side; in tests, the build directory).
    public init(shimPath: String? = nil, cacheDirectory: String? = nil) {
        self.cacheDirectory = cacheDirectory
        if let shimPath {
            self.shimPath = shimPath
        } else {
            let executable = Paths.canonical("/proc/self/exe") ?? "/usr/local/bin/tupp"
            self.shimPath = Paths.dirname(executable) + "/tupp-shim"
        }
    }

    // MARK: Start

    /// Starts the supervisor and the container's init, calls `prepare` while the init
    /// waits (before the command runs), then lets it go and returns once the command was
    /// exec'd. A failing step — in the shim, the rootfs setup or `prepare` — throws and
    /// leaves no process behind.
    public func start(_ config: ContainerConfig, directory: String,
                      prepare: (StartingContainer) throws -> Void = { _ in }) throws -> ProcessObservation {
        try config.validate()
        guard access(shimPath, X_OK) == 0 else { throw SystemError("find tupp-shim", shimPath) }
        let current = observe(directory: directory)
        if current.supervised || ProcessStat.isAlive(pid: current.initPID, startTime: current.initStartTime) {
            throw SystemError.failure("start", "container \(config.name)",
                                      "already running (supervisor pid \(current.shimPID), state \(current.state.rawValue)); stop it first")
        }
        let resolved = try config.resolve(cacheDirectory: cacheDirectory ?? directory)
        try Files.createDirectory(directory, mode: 0o700)
        try Files.remove("\(directory)/state")
        // The spec first: it names the cgroup, so `remove` finds it even if this process
        // dies right after creating it.
        try SpecFile.write(config, resolved, directory: directory)
        if let cgroup = resolved.cgroup, let placement = config.cgroup {
            // Before the shim exists: the init joins it right after clone, and the limits
            // and device policy hold before the command runs anything.
            do {
                try cgroup.create(limits: config.resources, devices: DevicePolicy.rules(granting: resolved.devices),
                                  layout: placement.layout)
                if config.delegateCgroup {
                    let root = config.userNamespace.map { ($0.hostUID(0) ?? 0, $0.hostGID(0) ?? 0) } ?? (0, 0)
                    try cgroup.delegate(to: (UInt32(root.0), UInt32(root.1)))
                    // Killed here, the spec already names the cgroup: the next start or
                    // remove finds it, child cgroups included.
                    Checkpoint.pass("cgroup delegated")
                }
            } catch {
                try? cgroup.remove()
                throw error
            }
        }

        let session: ShimSession
        do {
            session = try ShimSession.launch(shimPath: shimPath, directory: directory, containerName: config.name)
        } catch {
            try? resolved.cgroup?.remove()
            throw error
        }
        var shim: PinnedProcess?
        do {
            let pids = try session.receive(timeout: startTimeout, waitingFor: "pids").split(separator: " ")
            guard pids.count == 3, pids[0] == "pids", let shimPID = Int32(pids[1]), let initPID = Int32(pids[2]) else {
                throw SystemError.failure("start", "container \(config.name)", "unexpected message from tupp-shim: \(pids)")
            }
            // The shim waits for "go" right now, so this pid is certainly it.
            shim = try PinnedProcess.open(pid: shimPID, startTime: ProcessStat.read(shimPID)?.startTime ?? 0)
            try prepare(StartingContainer(shimPID: shimPID, initPID: initPID, netnsPath: "/proc/\(shimPID)/ns/net"))
            try session.send("go")
            let started = try session.receive(timeout: startTimeout, waitingFor: "start confirmation")
            guard started.hasPrefix("started ") else {
                throw SystemError.failure("start", "container \(config.name)", "unexpected message from tupp-shim: \(started)")
            }
        } catch {
            // EOF instead of "go" makes the shim kill the waiting init and exit; after a
            // reported failure it exits anyway. A shim stuck in setup is killed (its init
            // dies with it). Either way nothing — netns included — outlives the error.
            session.abort()
            if let shim, !shim.waitForExit(timeout: 2) {
                try? shim.send(SIGKILL)
                _ = shim.waitForExit(timeout: 10)
            }
            try? resolved.cgroup?.remove()
            throw error
        }
        return observe(directory: directory)
    }

    // MARK: Observe

    /// The container's process now: DIR/state checked against the kernel (pid + start
    /// time, not a zombie). Namespace inodes are read live from /proc.
    public func observe(directory: String) -> ProcessObservation {
        guard let record = (try? StateRecord.read(directory: directory)) ?? nil else { return .absent }
        let shimAlive = ProcessStat.isAlive(pid: record.shimPID, startTime: record.shimStartTime)
        let initAlive = record.initPID > 0 && ProcessStat.isAlive(pid: record.initPID, startTime: record.initStartTime)
        let state: ContainerState
        switch record.state {
        case "exited": state = .exited
        case "stopped": state = .stopped
        case "running": state = shimAlive ? (initAlive ? .running : .exiting) : .supervisorDied
        case "restarting": state = shimAlive ? .restarting : .supervisorDied
        case "stopping": state = shimAlive ? .stopping : .supervisorDied
        default: state = shimAlive ? .starting : .supervisorDied
        }
        var namespaces: [Namespace: UInt64] = [:]
        if initAlive && record.namespaces.count == Namespace.allCases.count {
            // The supervisor recorded them when it started this init, which was alive just
            // now: a process's namespaces do not change under it (the init never setns).
            namespaces = record.namespaces
        } else if initAlive {
            for namespace in Namespace.allCases {
                namespaces[namespace] = namespaceInode(pid: String(record.initPID), kind: namespace.procName)
            }
            // Read after the inodes: if the pid was recycled meanwhile, they are not ours.
            if !ProcessStat.isAlive(pid: record.initPID, startTime: record.initStartTime) { namespaces = [:] }
        } else if shimAlive {
            for namespace in [Namespace.net, .uts, .ipc] {
                namespaces[namespace] = namespaceInode(pid: String(record.shimPID), kind: namespace.procName)
            }
            if !ProcessStat.isAlive(pid: record.shimPID, startTime: record.shimStartTime) { namespaces = [:] }
        }
        var observation = ProcessObservation(
            state: state, shimPID: record.shimPID, shimStartTime: record.shimStartTime,
            initPID: initAlive ? record.initPID : 0, initStartTime: initAlive ? record.initStartTime : 0,
            restarts: record.restarts, startedAt: record.startedAt, lastExit: record.exit, error: record.error,
            namespaces: namespaces, oomKills: record.oomKills)
        // The verdict is about the run now going on.
        if state == .running || state == .stopping {
            observation.health = record.health.flatMap(HealthStatus.init)
            observation.healthFailures = record.healthFailures
        }
        observation.lastRunMilliseconds = record.ranMilliseconds
        // The maps as the kernel shows them (userns: auto), read while the init runs; the
        // pid checked again after, as for the namespaces.
        if initAlive, let mapping = UserNamespaces.mapping(of: record.initPID),
           ProcessStat.isAlive(pid: record.initPID, startTime: record.initStartTime) {
            observation.userNamespace = mapping
        }
        return observation
    }

    // MARK: Stop and remove

    /// Stops the container: SIGTERM to its init, SIGKILL after `timeout` (nil: the spec's
    /// stopTimeout), and returns once the pid namespace is gone and the supervisor exited.
    /// Also works when the supervisor died (the orphaned init is killed through a pidfd)
    /// and when nothing runs (no-op).
    public func stop(directory: String, timeout: Double? = nil) throws {
        guard let record = try StateRecord.read(directory: directory) else { return }
        let grace = timeout ?? SpecFile.stopTimeout(directory: directory) ?? 10
        if let shim = try PinnedProcess.open(pid: record.shimPID, startTime: record.shimStartTime) {
            try shim.send(SIGTERM, value: Int32(min(grace, 3600) * 1000))
            if !shim.waitForExit(timeout: grace + 10) {
                // A hung supervisor: kill it; PDEATHSIG takes the init down with it.
                try shim.send(SIGKILL)
                guard shim.waitForExit(timeout: 10) else {
                    throw SystemError.failure("stop", "supervisor pid \(shim.pid)", "still alive 10 s after SIGKILL")
                }
            }
        }
        if let orphan = try PinnedProcess.open(pid: record.initPID, startTime: record.initStartTime) {
            try orphan.send(SIGKILL)
            guard orphan.waitForExit(timeout: 10) else {
                throw SystemError.failure("stop", "init pid \(orphan.pid)", "still alive 10 s after SIGKILL")
            }
        }
        // The supervisor kills through the cgroup; when it could not (it was killed
        // itself), whatever the container left — a daemonized child, an exec'd process —
        // dies here.
        try SpecFile.cgroup(directory: directory)?.kill()
        // The shim writes the final record itself; when it could not (it was killed),
        // record the stop so status does not keep reporting a dead supervisor.
        if var final = try StateRecord.read(directory: directory), !["exited", "stopped"].contains(final.state) {
            final.state = "stopped"
            final.initPID = 0
            final.initStartTime = 0
            try Files.writeAtomically("\(directory)/state", text: final.render())
        }
    }

    /// Deletes DIR (spec, state, logs) and the container's cgroup — and the
    /// installation's cgroup parent when no other container is left in it. Refuses
    /// while anything of the container runs.
    public func remove(directory: String) throws {
        let observation = observe(directory: directory)
        if observation.supervised || observation.initPID != 0 {
            throw SystemError.failure("remove", directory, "the container is \(observation.state.rawValue); stop it first")
        }
        try SpecFile.cgroup(directory: directory)?.remove()
        try Files.removeTree(directory)
    }

    // MARK: In-place changes

    /// Rewrites DIR/spec and tells the supervisor (SIGHUP), which takes `restart`,
    /// `stopTimeout`, `stopSignal`, `logLimitBytes` and the health check in place (it also
    /// re-reads them at every exit and stop); everything else takes effect at the next start.
    public func updateSettings(_ config: ContainerConfig, directory: String) throws {
        try config.validate()
        try SpecFile.write(config, try config.resolve(cacheDirectory: cacheDirectory ?? directory), directory: directory)
        // A running supervisor takes the new health check and stop signal at once.
        if let record = try StateRecord.read(directory: directory),
           let shim = try PinnedProcess.open(pid: record.shimPID, startTime: record.shimStartTime) {
            try shim.send(SIGHUP)
        }
    }

    // MARK: Resources

    /// The container's cgroup as its spec names it; nil when it has none.
    public func cgroup(directory: String) -> ContainerCgroup? { SpecFile.cgroup(directory: directory) }

    /// What the container's cgroup shows now: the limit files `limits` are enforced
    /// through (for `CgroupFiles.drift`), usage and the OOM kill count. nil when the
    /// container has no cgroup. Reads files only.
    public func observeResources(directory: String, expecting limits: ResourceLimits,
                                 layout: CgroupLayout) -> ResourceObservation? {
        guard let cgroup = cgroup(directory: directory), cgroup.directories.allSatisfy(Files.exists) else { return nil }
        let expected = CgroupFiles.settings(for: limits, on: layout)
        let files = cgroup.read(expected)
        return ResourceObservation(expected: expected, files: files, drift: CgroupFiles.drift(expected: expected, observed: files),
                                   usage: cgroup.usage(), oomKills: cgroup.oomKills())
    }

    /// The limit files `limits` are enforced through that read otherwise than written (changed
    /// by hand); nil when the container has no cgroup. Reads only those files: a plan asks
    /// this of every container with limits.
    public func limitDrift(directory: String, expecting limits: ResourceLimits, layout: CgroupLayout) -> [CgroupFiles.Drift]? {
        guard let cgroup = cgroup(directory: directory) else { return nil }
        let expected = CgroupFiles.settings(for: limits, on: layout)
        return CgroupFiles.drift(expected: expected, observed: cgroup.read(expected))
    }

    /// Changes the limits of a running (or stopped) container in place — the process
    /// keeps running — and records them in DIR/spec for its next start. A memory limit
    /// below the current usage is not applied but returned in `refused`.
    public func updateResources(_ config: ContainerConfig, directory: String) throws -> ResourceUpdate {
        try config.validate()
        guard let placement = config.cgroup, let cgroup = cgroup(directory: directory) else {
            throw SystemError.failure("update resources", "container \(config.name)", "it has no cgroup")
        }
        let update = try cgroup.apply(limits: config.resources, layout: placement.layout)
        try SpecFile.write(config, try config.resolve(cacheDirectory: cacheDirectory ?? directory), directory: directory)
        return update
    }

    /// The hostnames of many running containers (a plan reads every container's): each
    /// lane of `Lanes` is a throw-away thread that joins each of its UTS namespaces in
    /// turn. nil for a container that is not running or shares the host's UTS namespace.
    public func hostnames(of observations: [ProcessObservation]) -> [String?] {
        let hostUTS = namespaceInode(pid: "self", kind: "uts")
        return Lanes.map(observations.count) { indices in
            let mine = indices.map { observations[$0] }
            let names = try? NamespaceThread.run(joining: []) { () -> [String?] in
                mine.map { observation -> String? in
                    let pid = observation.shimPID
                    guard pid > 0, let namespace = try? FileDescriptor.open("/proc/\(pid)/ns/uts", O_RDONLY),
                          ProcessStat.isAlive(pid: pid, startTime: observation.shimStartTime) else { return nil }
                    var info = stat()
                    guard fstat(namespace.rawValue, &info) == 0, UInt64(info.st_ino) != hostUTS,
                          tupp_setns(namespace.rawValue, Int32(TUPP_CLONE_NEWUTS)) == 0 else { return nil }
                    var buffer = [CChar](repeating: 0, count: 256)
                    guard gethostname(&buffer, buffer.count - 1) == 0 else { return nil }
                    return String(decoding: buffer.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
                }
            }
            return names ?? Array(repeating: nil, count: mine.count)
        }
    }

    /// Changes the hostname inside the running container (same processes, no restart).
    /// Also rewrite the spec (updateSettings) so that the next start uses it too.
    public func setHostname(_ name: String, for observation: ProcessObservation) throws {
        guard !name.isEmpty, name.utf8.count <= 64, !name.utf8.contains(0) else {
            throw SystemError.failure("set hostname", name, "must be 1–64 bytes")
        }
        try inUTSNamespace(of: observation, operation: "set hostname") {
            try Errno.check("sethostname", name) { sethostname(name, name.utf8.count) }
        }
    }

    /// Joins the UTS namespace held by the supervisor on a throw-away thread. Refuses
    /// when the container has no UTS namespace of its own: never the host's hostname.
    @discardableResult
    private func inUTSNamespace<T>(of observation: ProcessObservation, operation: String,
                                   _ body: @escaping () throws -> T) throws -> T {
        let pid = observation.shimPID
        guard pid > 0 else { throw SystemError.failure(operation, "container", "it is not running") }
        let namespace = try FileDescriptor.open("/proc/\(pid)/ns/uts", O_RDONLY)
        // Checked after opening: the descriptor is the supervisor's namespace, not a recycled pid's.
        guard ProcessStat.isAlive(pid: pid, startTime: observation.shimStartTime) else {
            throw SystemError.failure(operation, "supervisor pid \(pid)", "it is gone; the container is not running")
        }
        var info = stat()
        try Errno.check("stat", "/proc/\(pid)/ns/uts") { fstat(namespace.rawValue, &info) }
        guard UInt64(info.st_ino) != namespaceInode(pid: "self", kind: "uts") else {
            throw SystemError.failure(operation, "supervisor pid \(pid)", "the container shares the host's UTS namespace; refusing to change the host")
        }
        let path = "/proc/self/fd/\(namespace.rawValue)"
        return try withExtendedLifetime(namespace) {
            try NamespaceThread.run(joining: [(path: path, type: Int32(TUPP_CLONE_NEWUTS))], body)
        }
    }

    // MARK: Exec and logs

    /// The argv that runs `command` inside the container; the CLI execv()s it so the
    /// command's exit status becomes its own.
    public func execCommand(directory: String, command: [String], env: [String: String] = [:],
                            tty: Bool = false, workdir: String? = nil) -> [String] {
        execCommand(directory: directory, command: command, env: env, tty: tty, workdir: workdir, resolvedUser: nil)
    }

    /// The same, as `user` (`tupp exec -u`) instead of the container's user: resolved in
    /// the container's /etc/passwd and /etc/group.
    public func execCommand(directory: String, command: [String], env: [String: String] = [:], tty: Bool = false,
                            workdir: String? = nil, user: UserSpec) throws -> [String] {
        guard let rootfs = SpecFile.value("rootfs", directory: directory) else {
            throw SystemError.failure("exec", directory, "no spec: the container was never started here")
        }
        return execCommand(directory: directory, command: command, env: env, tty: tty, workdir: workdir,
                           resolvedUser: try user.resolve(inRoot: rootfs))
    }

    func execCommand(directory: String, command: [String], env: [String: String], tty: Bool, workdir: String?,
                     resolvedUser: ResolvedUser?) -> [String] {
        var argv = [shimPath, "exec", directory]
        if tty { argv.append("--tty") }
        for key in env.keys.sorted() { argv += ["--env", "\(key)=\(env[key]!)"] }
        if let workdir { argv += ["--workdir", workdir] }
        if let user = resolvedUser {
            argv += ["--user", "\(user.uid):\(user.gid)"]
            for group in user.groups { argv += ["--group", String(group)] }
            argv += ["--home", user.home]
        }
        return argv + ["--"] + command
    }

    /// Copies the container's output (DIR/log.1 then DIR/log) to `output`. With `follow`,
    /// keeps copying new output across rotations until the supervisor is gone.
    public func logs(directory: String, follow: Bool = false, to output: Int32) throws {
        if let old = try Files.read("\(directory)/log.1") { try write(old, to: output) }
        let path = "\(directory)/log"
        var current: FileDescriptor? = try? FileDescriptor.open(path, O_RDONLY)
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            if let fd = current {
                let count = try Errno.check("read", path) { read(fd.rawValue, &buffer, buffer.count) }
                if count > 0 {
                    try write(buffer[..<count], to: output)
                    continue
                }
            }
            guard follow else { return }
            // At the end: a rotation means a new DIR/log to continue with — after draining
            // the old file, which may have grown between our last read and the rename.
            if let onDisk = try Files.status(path), current == nil || inode(of: current!) != UInt64(onDisk.st_ino) {
                if let old = current { try drain(old, into: output, buffer: &buffer) }
                current = try FileDescriptor.open(path, O_RDONLY)
                continue
            }
            if !observe(directory: directory).supervised {
                // One last pass catches what was written just before the supervisor left.
                if let fd = current { try drain(fd, into: output, buffer: &buffer) }
                return
            }
            usleep(50_000)
        }
    }

    private func drain(_ descriptor: FileDescriptor, into output: Int32, buffer: inout [UInt8]) throws(SystemError) {
        while true {
            let count = try Errno.check("read", "log") { read(descriptor.rawValue, &buffer, buffer.count) }
            if count <= 0 { return }
            try write(buffer[..<count], to: output)
        }
    }

    private func inode(of descriptor: FileDescriptor) -> UInt64? {
        var info = stat()
        return fstat(descriptor.rawValue, &info) == 0 ? UInt64(info.st_ino) : nil
    }

    private func write(_ bytes: some Collection<UInt8>, to output: Int32) throws(SystemError) {
        let array = Array(bytes)
        var offset = 0
        while offset < array.count {
            let n = array.withUnsafeBytes { Glibc.write(output, $0.baseAddress! + offset, $0.count - offset) }
            if n < 0 {
                if errno == EINTR { continue }
                throw SystemError("write logs", "fd \(output)")
            }
            offset += n
        }
    }
}

/// A container's cgroup as observed: the limit files, drift from the expected values,
/// usage and OOM kills.
public struct ResourceObservation: Sendable, Equatable {
    /// What the limits should read (`CgroupFiles.settings`).
    public var expected: [CgroupFiles.Setting]
    /// File name → text as read now.
    public var files: [String: String]
    /// Files that read differently from `expected` (changed by hand).
    public var drift: [CgroupFiles.Drift]
    public var usage: ResourceUsage
    /// OOM kills since the cgroup was created (the container's last start); nil without
    /// a memory controller.
    public var oomKills: Int?
}

extension ProcessObservation {
    var supervised: Bool { isSupervised }
}
