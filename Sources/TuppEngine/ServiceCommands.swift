import Glibc
import TuppBase
import TuppManifestLoader
import TuppManifest
import TuppPlan
import TuppRuntime
import TuppSystem

extension Engine {
    /// `tupp stop NAME…`: records that each container is stopped on purpose, then stops
    /// it (stop signal, SIGKILL after its stop timeout, or `timeout`). Under `restart:
    /// unless-stopped` it stays stopped — through applies and reboots — until `tupp start`.
    public func stop(_ names: [String], timeout: Double? = nil, lockTimeout: Double, holder: String) throws {
        let lock = try self.lock(timeout: lockTimeout, command: holder)
        defer { withExtendedLifetime(lock) {} }
        let records = try store.load()
        for name in names {
            guard var record = records[ResourceAddress(.container, name)] else {
                throw SystemError.failure("stop", "container \(name)", "no such container in \(store.directory)")
            }
            record.facts[Record.stoppedFact] = "true"
            try store.save(record)   // intent first: a crash after it leaves a container apply keeps stopped
            try runtime.stop(directory: store.containerDirectory(name), timeout: timeout)
            Checkpoint.pass("\(name) stopped on request")
        }
    }

    /// `tupp start NAME…`: clears the stopped mark and applies `loaded` for these
    /// containers only — the plan restarts what `tupp stop` stopped.
    public func start(_ names: [String], loaded: LoadedManifest, options: PlanOptions, version: String, lockTimeout: Double,
                      holder: String, reporter: any ApplyReporter, lifecycle: LifecycleOptions = LifecycleOptions()) async throws -> ApplyOutcome {
        for name in names where loaded.manifest.containers[name] == nil {
            throw SystemError.failure("start", "container \(name)", "not declared in \(loaded.files.map(\.path).joined(separator: ", "))")
        }
        return try await apply(loaded, options: options, version: version, lockTimeout: lockTimeout, holder: holder, reporter: reporter,
                               lifecycle: lifecycle, only: Set(names.map { ResourceAddress(.container, $0) })) { store in
            let records = try store.load()
            for name in names {
                guard var record = records[ResourceAddress(.container, name)], record.stoppedByUser else { continue }
                record.facts[Record.stoppedFact] = nil
                try store.save(record)
            }
        }
    }

    /// `tupp events`: what the supervisors report, as it happens, until `until` (wall
    /// clock; nil: until interrupted). `since`: also what happened from then on.
    /// `names`: only these containers (empty: all, also those created meanwhile).
    public func events(_ names: [String], since: Double?, until: Double?, emit: (ContainerEvent) -> Void) async throws {
        let containers = "\(store.directory)/containers"
        let follower = EventFollower(directories: {
            let all = ((try? Files.list(containers)) ?? []).filter { !$0.hasPrefix(".") }.sorted()
            return (names.isEmpty ? all : all.filter(names.contains)).map { "\(containers)/\($0)" }
        }, since: since)
        while true {
            for event in follower.poll() { emit(event) }
            if let until, wallClockSeconds() >= until { return }
            try await Task.sleep(nanoseconds: 100_000_000)
        }
    }

    /// `tupp logs` with `--tail`, `--since`, `--timestamps`.
    public func logs(_ name: String, selection: LogSelection, follow: Bool, to output: Int32) throws {
        _ = try status([name])
        try runtime.logs(directory: store.containerDirectory(name), selection: selection, follow: follow, to: output)
    }

    /// The health check's last results of a container; nil without one.
    public func health(_ name: String) -> HealthReport? {
        runtime.health(directory: store.containerDirectory(name))
    }
}
