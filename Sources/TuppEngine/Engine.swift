import Glibc
import Logging
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

/// A change skipped because an earlier one in its group failed.
struct NotAttempted: Error, CustomStringConvertible {
    var description: String { "not attempted" }
}

/// observe → plan → apply. The planner is pure; everything that touches the host is
/// here and in the reconcilers.
public struct Engine: Sendable {
    public let store: StateStore
    public let runtime: Runtime
    /// Debug detail (observation timings, each step of a change) goes here; the CLI shows
    /// it with --verbose.
    public let logger: Logger

    public init(stateDirectory: String, shimPath: String? = nil, logger: Logger = Logger(label: "tupp")) {
        store = StateStore(directory: stateDirectory)
        runtime = Runtime(shimPath: shimPath)
        self.logger = logger
    }

    public var installation: String { store.installationID }

    /// Reads the live host and plans. Changes nothing on the host (it may create the
    /// empty state directory).
    public func plan(_ manifest: Manifest, options: PlanOptions = PlanOptions()) async throws -> PlannedRun {
        try store.prepare()
        let observer = Observer(store: store, runtime: runtime, installation: installation, logger: logger,
                                destroying: options.destroy)
        let observation = await observer.observe(manifest)
        let desired = DesiredState.resources(manifest, imageDigests: observation.imageDigests, addresses: observation.addresses)
        let plan = Planner.plan(desired: desired, observed: observation.state, options: options)
        return PlannedRun(plan: plan, observation: observation, desired: desired, options: options)
    }

    /// Takes the host lock or fails naming who holds it.
    public func lock(timeout: Double, command: String) throws -> FileLock {
        try store.prepare()
        switch try FileLock.acquire(store.lockPath, timeout: timeout, command: command) {
        case .acquired(let lock):
            try store.removeStaleTemporaryFiles()
            return lock
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
        let executor = Executor(store: store, runtime: runtime, installation: installation, logger: logger, manifest: manifest,
                                observation: run.observation, options: run.options)
        let changes = run.plan.actionable
        var index = 0
        while index < changes.count {
            let group = Self.parallelGroup(changes, from: index)
            let results = await execute(group, executor: executor, reporter: reporter)
            for (change, error) in zip(group, results) {
                switch error {
                case nil: outcome.applied.append(change.address)
                case is NotAttempted: outcome.notAttempted.append(change.address)
                case let error?: outcome.failed.append((change.address, "\(error)"))
                }
            }
            index += group.count
            if !outcome.failed.isEmpty {
                outcome.notAttempted += changes[index...].map(\.address)
                break
            }
        }
        if run.options.destroy && outcome.succeeded { removeEmptyState() }
        outcome.milliseconds = Monotonic.milliseconds(since: started)
        reporter.summary(outcome)
        return outcome
    }

    /// How many independent containers are created, changed or removed at once.
    static let parallelism = 4

    /// The changes from `start` that may run together: a run of container changes in the
    /// same phase (removals, or creations and updates). Containers do not depend on each
    /// other; everything else runs alone, in dependency order.
    static func parallelGroup(_ changes: [Plan.ResourceChange], from start: Int) -> [Plan.ResourceChange] {
        let first = changes[start]
        guard first.address.kind == .container else { return [first] }
        var end = start + 1
        while end < changes.count, changes[end].address.kind == .container,
              (changes[end].action == .delete) == (first.action == .delete) {
            end += 1
        }
        return Array(changes[start..<end])
    }

    /// Runs `group` with at most `parallelism` changes in flight; the error of each, in order.
    func execute(_ group: [Plan.ResourceChange], executor: Executor, reporter: any ApplyReporter) async -> [(any Error)?] {
        await withTaskGroup(of: (Int, (any Error)?).self) { tasks in
            var results = [(any Error)?](repeating: nil, count: group.count)
            var next = 0
            func launch() {
                let i = next
                let change = group[i]
                next += 1
                tasks.addTask {
                    reporter.start(change)
                    let t0 = Monotonic.nanoseconds()
                    do {
                        try await executor.execute(change) { reporter.progress(change, $0) }
                        reporter.complete(change, milliseconds: Monotonic.milliseconds(since: t0))
                        return (i, nil)
                    } catch {
                        reporter.errored(change, error)
                        return (i, error)
                    }
                }
            }
            while next < min(group.count, Self.parallelism) { launch() }
            for await (i, error) in tasks {
                results[i] = error
                // After a failure, let what runs finish but start nothing new.
                if next < group.count && !results.contains(where: { $0 != nil }) { launch() }
            }
            // Changes never started count as errors here so the caller stops; report them
            // as not attempted.
            for i in next..<group.count { results[i] = NotAttempted() }
            return results
        }
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
