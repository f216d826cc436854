import Glibc
import TuppManifest
import TuppPlan
import TuppRuntime
import TuppSystem

/// A plan together with what was observed to make it.
public struct PlannedRun: Sendable {
    public var plan: Plan
    public var observation: Observation
    public var desired: [DesiredResource]
    public var options: PlanOptions
}

/// observe → plan → apply. The planner is pure; everything that touches the host is
/// here and in the reconcilers.
public struct Engine: Sendable {
    public let store: StateStore
    public let runtime: Runtime

    public init(stateDirectory: String, shimPath: String? = nil) {
        store = StateStore(directory: stateDirectory)
        runtime = Runtime(shimPath: shimPath)
    }

    public var installation: String { store.installationID }

    /// Reads the live host and plans. Changes nothing on the host (it may create the
    /// empty state directory).
    public func plan(_ manifest: Manifest, options: PlanOptions = PlanOptions()) async throws -> PlannedRun {
        try store.prepare()
        let observer = Observer(store: store, runtime: runtime, installation: installation, destroying: options.destroy)
        let observation = await observer.observe(manifest)
        let desired = DesiredState.resources(manifest, imageDigests: observation.imageDigests, addresses: observation.addresses)
        let plan = Planner.plan(desired: desired, observed: observation.state, options: options)
        return PlannedRun(plan: plan, observation: observation, desired: desired, options: options)
    }

    /// Takes the host lock or fails naming who holds it.
    public func lock(timeout: Double, command: String) throws -> FileLock {
        try store.prepare()
        switch try FileLock.acquire(store.lockPath, timeout: timeout, command: command) {
        case .acquired(let lock): return lock
        case .timedOut(let holder):
            let who = holder.map { "pid \($0.pid) (\($0.command))" } ?? "another tupp"
            throw SystemError.failure("lock", store.lockPath, "\(who) holds it; waited \(Int(timeout)) s (see --lock-timeout)")
        }
    }

    /// Executes the plan's changes in order. Stops at the first failure; the outcome
    /// lists what was applied, what failed and what was not attempted.
    public func apply(_ run: PlannedRun, manifest: Manifest, reporter: any ApplyReporter) async -> ApplyOutcome {
        let started = Monotonic.nanoseconds()
        var outcome = ApplyOutcome()
        outcome.warnings = run.plan.warnings
        reporter.planned(run.plan)
        let executor = Executor(store: store, runtime: runtime, installation: installation, manifest: manifest,
                                observation: run.observation,
                                desired: Dictionary(run.desired.map { ($0.address, $0) }, uniquingKeysWith: { a, _ in a }),
                                options: run.options)
        let changes = run.plan.actionable
        for (i, change) in changes.enumerated() {
            reporter.start(change)
            let t0 = Monotonic.nanoseconds()
            do {
                try await executor.execute(change) { reporter.progress(change, $0) }
                outcome.applied.append(change.address)
                reporter.complete(change, milliseconds: Monotonic.milliseconds(since: t0))
            } catch {
                outcome.failed.append((change.address, "\(error)"))
                outcome.notAttempted = changes[(i + 1)...].map(\.address)
                reporter.errored(change, error)
                break
            }
        }
        if run.options.destroy && outcome.succeeded { removeEmptyState() }
        outcome.milliseconds = Monotonic.milliseconds(since: started)
        reporter.summary(outcome)
        return outcome
    }

    /// After a complete destroy nothing of tupp's may remain, not even its state
    /// directory — unless records of other resources are still there.
    public func removeEmptyState() {
        guard let records = try? store.load(), records.isEmpty else { return }
        for dir in ["\(store.directory)/containers", store.recordsDirectory] {
            if (try? Files.list(dir))?.isEmpty == true { rmdir(dir) }
        }
        try? Files.removeTree(store.cacheDirectory)
        unlink(store.lockPath)
        rmdir(store.directory)   // kept when something else lives there (a pool file, say)
    }
}
