import Glibc
import Logging
import TuppBase
import TuppFacts
import TuppManifest
import TuppManifestLoader
import TuppNetworking
import TuppPlan
import TuppRuntime
import TuppSystem

/// A plan together with what was observed to make it.
public struct PlannedRun: Sendable {
    public var plan: Plan
    public var observation: Observation
    public var options: PlanOptions
    /// Other projects' containers whose /etc/hosts this apply rewrites: name → their network's members.
    var neighbourPeers: [String: NetworkMembers] = [:]
    /// How apply waits for dependencies, settling and readiness.
    var lifecycle = LifecycleOptions()
}

/// Why apply did not start changing the host.
public enum ApplyRefusal: Error, CustomStringConvertible {
    /// The saved plan no longer matches what a plan made now would do.
    case stale([String])
    /// The plan has blocking errors (already reported with the plan).
    case planErrors(Int)

    public var description: String {
        switch self {
        case .stale(let reasons):
            "The saved plan is stale and was not applied:\n" + reasons.map { "  - \($0)" }.joined(separator: "\n")
                + "\nRun tupp plan --out again and review the new plan."
        case .planErrors(let count):
            "the plan has \(count) error\(count == 1 ? "" : "s")."
        }
    }
}

/// A change skipped because an earlier one in its group failed.
struct NotAttempted: Error, CustomStringConvertible {
    var description: String { "not attempted" }
}

/// observe → plan → apply. The judgement is pure (TuppPlan); everything that touches the
/// host goes through one reconciler per resource kind, run in dependency order.
public struct Engine: Sendable {
    let store: StateStore
    let runtime: Runtime
    /// Debug detail (observation timings, each step of a change) goes here; the CLI shows
    /// it with --verbose.
    public let logger: Logger
    let reconcilers: [any Reconciler]

    public init(stateDirectory: String, shimPath: String? = nil, logger: Logger = Logger(label: "tupp")) {
        store = StateStore(directory: stateDirectory)
        runtime = Runtime(shimPath: shimPath, cacheDirectory: store.cacheDirectory)
        self.logger = logger
        reconcilers = [PoolReconciler(), ImageReconciler(), LayerReconciler(), VolumeReconciler(), NetworkReconciler(),
                       ContainerReconciler(), PortsReconciler()]
    }

    public var installation: String { store.installationID }
    public var stateDirectory: String { store.directory }

    // MARK: Plan

    /// Reads the live host and plans. Writes nothing: no state directory, record or cache.
    public func plan(_ manifest: Manifest, options: PlanOptions = PlanOptions()) async throws -> PlannedRun {
        try await plan(manifest, options: options, applying: false)
    }

    func plan(_ manifest: Manifest, options: PlanOptions, applying: Bool) async throws -> PlannedRun {
        let observation = await observe(manifest, options: options, applying: applying)
        let desired = DesiredState.resources(manifest, observation.desiredContext)
        var plan = Planner.plan(desired: desired, observed: observation.state, options: options)
        if let layers = observation.facts[LayerFacts.self] {
            LayerKind.insert(LayerKind.removals(plan, layers: layers, incoming: observation.desiredContext.imageLayers), into: &plan)
        }
        if !options.destroy {
            for resource in desired {
                for warning in resource.spec(ContainerSpec.self)?.names.resolverWarnings ?? [] {
                    plan.warnings.append("\(resource.address): \(warning)")
                }
                if let problem = resource.spec(ContainerSpec.self)?.problem { plan.errors.append(problem) }
            }
        }
        let records = observation.records(of: .container)
        if !options.destroy { plan.warnings += Self.lifecycleNotes(desired, records: records, observation: observation) }
        for (name, members) in DesiredState.neighbourPeers(manifest, observation.desiredContext, records: records).sorted(by: { $0.key < $1.key }) {
            let project = records[name]?.projects.keys.sorted().first.map { " (project \($0))" } ?? ""
            plan.warnings.append("container.\(name)\(project) keeps running; its /etc/hosts is rewritten to list \(members.summary(except: name))")
        }
        var run = PlannedRun(plan: plan, observation: observation, options: options)
        run.neighbourPeers = DesiredState.neighbourPeers(manifest, observation.desiredContext, records: records)
        return run
    }

    func observe(_ manifest: Manifest, options: PlanOptions, applying: Bool) async -> Observation {
        var observation = Observation()
        var t = Monotonic.nanoseconds()
        func lap(_ what: String) {
            logger.debug("observed \(what) in \((Monotonic.milliseconds(since: t) * 100).rounded() / 100) ms")
            t = Monotonic.nanoseconds()
        }
        do {
            observation.records = try store.load()
        } catch {
            observation.state.problems.append("\(error)")
        }
        lap("\(observation.records.count) records")
        // Containers keep the addresses they were given; new ones get a stable slot.
        let containerRecords = observation.records(of: .container)
        switch AddressAllocator.allocate(manifest, recorded: containerRecords.compactMapValues(\.containerAddress)) {
        case .success(let addresses): observation.desiredContext.addresses = addresses
        case .failure(let e):
            observation.state.problems.append("network.\(e.network): no free address left for container \(e.container); use a larger subnet")
        }
        observation.desiredContext.kept = ProjectRules.keptContainers(containerRecords, declared: Set(manifest.containers.keys),
                                                                      project: options.project)
        observation.desiredContext.destroying = options.destroy
        let context = ObserveContext(manifest: manifest, store: store, runtime: runtime, installation: installation,
                                     logger: logger, destroying: options.destroy, updatesCaches: applying, project: options.project,
                                     refresh: options.refresh)
        for reconciler in reconcilers {
            await reconciler.observe(&observation, context)
            lap(reconciler.kind == .ports ? "ports" : "\(reconciler.kind)s")
        }
        // Which projects declare each resource is the record's to say, whatever the kind.
        for (address, record) in observation.records {
            observation.state.resources[address]?.projects = record.projects
            observation.state.resources[address]?.recorded = record.attributes
        }
        return observation
    }

    // MARK: Apply

    /// Apply (or, with `options.destroy`, destroy) as a whole: takes the host lock, plans,
    /// refuses a stale reviewed plan or a plan with errors, and executes the changes in
    /// dependency order. The plan and every step go to `reporter`.
    ///
    /// `reviewed`: a plan saved by `tupp plan --out` for `loaded`; applied only while a plan
    /// made now would do exactly the same.
    public func apply(_ loaded: LoadedManifest, options: PlanOptions, reviewed: SavedPlan? = nil, version: String,
                      lockTimeout: Double, holder: String, reporter: any ApplyReporter,
                      lifecycle: LifecycleOptions = LifecycleOptions(), only: Set<ResourceAddress>? = nil,
                      beforePlanning: (StateStore) throws -> Void = { _ in }) async throws -> ApplyOutcome {
        let lock = try self.lock(timeout: lockTimeout, command: holder)
        defer { withExtendedLifetime(lock) {} }
        try beforePlanning(store)
        var run = try await plan(loaded.manifest, options: options, applying: true)
        run.lifecycle = lifecycle
        if let only {
            // `tupp start NAME`: only the named resources change; the rest of the plan stays as it is.
            run.plan.changes = run.plan.changes.map { change in
                var change = change
                if !only.contains(change.address) { change.action = .noop }
                return change
            }
        }
        if let reviewed {
            let reasons = reviewed.staleness(now: run, loaded: loaded, stateDirectory: store.directory, version: version)
            if !reasons.isEmpty { throw ApplyRefusal.stale(reasons) }
        }
        reporter.planned(run.plan)
        guard run.plan.errors.isEmpty else { throw ApplyRefusal.planErrors(run.plan.errors.count) }
        guard run.plan.hasChanges else {
            // An apply interrupted after its last change still owes the neighbours' names,
            // and a destroy removing the state directory.
            refreshNeighbours(run)
            if options.destroy { removeEmptyState() }
            var outcome = ApplyOutcome()
            outcome.warnings = run.plan.warnings
            if lifecycle.wait && !options.destroy {
                outcome.unready = await waitUntilReady(run, timeout: lifecycle.waitTimeout, reporter: reporter)
                outcome.changed = !outcome.unready.isEmpty
            }
            reporter.summary(outcome)
            return outcome
        }
        return await execute(run, reporter: reporter)
    }

    /// Takes the host lock or fails naming who holds it.
    func lock(timeout: Double, command: String) throws -> FileLock {
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
    func execute(_ run: PlannedRun, reporter: any ApplyReporter) async -> ApplyOutcome {
        let started = Monotonic.nanoseconds()
        var outcome = ApplyOutcome()
        outcome.changed = true
        outcome.warnings = run.plan.warnings
        let changes = run.plan.actionable
        var index = 0
        while index < changes.count {
            let group = Self.parallelGroup(changes, from: index)
            let results = await execute(group, run: run, reporter: reporter)
            for (change, result) in zip(group, results) {
                switch result.error {
                case nil: outcome.applied.append(change.address)
                case is NotAttempted: outcome.notAttempted.append(change.address)
                case let error?: outcome.failed.append((change.address, "\(error)"))
                }
                if let note = result.crashing { outcome.crashing.append((change.address, note)) }
            }
            index += group.count
            if !outcome.failed.isEmpty {
                outcome.notAttempted += changes[index...].map(\.address)
                break
            }
        }
        if outcome.succeeded { refreshNeighbours(run) }
        if run.options.destroy && outcome.succeeded { removeEmptyState() }
        if run.lifecycle.wait && !run.options.destroy && outcome.succeeded {
            // A command seen crashing while it settled is not ready, whatever it does now.
            outcome.unready = outcome.crashing.map { ($0.address, $0.note) }
            let crashed = Set(outcome.crashing.map(\.address))
            outcome.unready += await waitUntilReady(run, timeout: run.lifecycle.waitTimeout, reporter: reporter)
                .filter { !crashed.contains($0.address) }
        }
        outcome.milliseconds = Monotonic.milliseconds(since: started)
        reporter.summary(outcome)
        return outcome
    }

    /// How many independent containers are created, changed or removed at once.
    static let parallelism = 8

    /// The threads changes are applied on (see `BlockingWorkExecutor`).
    static let blockingWork = BlockingWorkExecutor(threads: parallelism)

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

    /// What became of one change: its error, and a note when the command it started did
    /// not stay up while it settled.
    struct ChangeResult {
        var error: (any Error)?
        var crashing: String?
    }

    /// Runs `group` with at most `parallelism` changes in flight, a container only after
    /// the containers it depends on in the group were applied and once their conditions
    /// hold; the result of each, in order. A started command settles (`--settle`) outside
    /// those slots, all of them at once: the settle time is paid once per apply, not once
    /// per `parallelism` containers.
    func execute(_ group: [Plan.ResourceChange], run: PlannedRun, reporter: any ApplyReporter) async -> [ChangeResult] {
        /// What a task in the group reports: a change applied and now settling (its slot is
        /// free), or a change finished, from its own slot (`applying`) or from settling.
        enum Step { case settling(Int, ContainerSpec, milliseconds: Double), finished(Int, ChangeResult, applying: Bool) }
        let prerequisites = Self.prerequisites(group)
        return await withTaskGroup(of: Step.self) { tasks in
            var results = [ChangeResult?](repeating: nil, count: group.count)
            var applied = Set<Int>()
            var launched = Set<Int>()
            var running = 0
            var failed = false
            func launch(_ i: Int) {
                let change = group[i]
                launched.insert(i)
                running += 1
                let reconciler = reconcilers.first { $0.kind == change.address.kind }!
                let context = ApplyContext(store: store, runtime: runtime, installation: installation, logger: logger,
                                           options: run.options, observation: run.observation,
                                           progress: { reporter.progress(change, $0) },
                                           layerProgress: { reporter.layer(change, $0) }, projects: change.projects)
                tasks.addTask {
                    reporter.start(change)
                    let t0 = Monotonic.nanoseconds()
                    do {
                        let spec = change.spec(ContainerSpec.self)
                        if Self.starts(change), let spec, !spec.dependsOn.isEmpty {
                            try await waitForDependencies(of: spec, timeout: run.lifecycle.waitTimeout) { reporter.progress(change, $0) }
                        }
                        // Every crash checkpoint passed during the change names its resource;
                        // its blocking system calls wait on threads of their own.
                        try await withTaskExecutorPreference(Self.blockingWork) {
                            try await Checkpoint.$resource.withValue(change.address.description) {
                                if change.isMembershipOnly {
                                    try updateMembership(change, context)
                                } else {
                                    try await reconciler.apply(change, context)
                                }
                            }
                        }
                        let milliseconds = Monotonic.milliseconds(since: t0)
                        if Self.starts(change), let spec, run.lifecycle.settle > 0 {
                            return .settling(i, spec, milliseconds: milliseconds)
                        }
                        reporter.complete(change, milliseconds: milliseconds)
                        return .finished(i, ChangeResult(), applying: true)
                    } catch {
                        reporter.errored(change, error)
                        return .finished(i, ChangeResult(error: error), applying: true)
                    }
                }
            }
            func watch(_ i: Int, _ spec: ContainerSpec, milliseconds: Double) {
                let change = group[i]
                tasks.addTask {
                    guard let settled = await settle(spec.name, seconds: run.lifecycle.settle, restart: spec.restart) else {
                        reporter.complete(change, milliseconds: milliseconds)
                        return .finished(i, ChangeResult(), applying: false)
                    }
                    reporter.complete(change, milliseconds: milliseconds, note: settled.note)
                    return .finished(i, ChangeResult(error: nil, crashing: settled.crashing ? settled.note : nil), applying: false)
                }
            }
            func launchReady() {
                guard !failed else { return }
                for i in group.indices where running < Self.parallelism && !launched.contains(i) {
                    if prerequisites[i].allSatisfy({ applied.contains($0) }) { launch(i) }
                }
            }
            launchReady()
            for await step in tasks {
                switch step {
                case .settling(let i, let spec, let milliseconds):
                    running -= 1
                    applied.insert(i)
                    watch(i, spec, milliseconds: milliseconds)
                case .finished(let i, let result, let applying):
                    results[i] = result
                    if applying { running -= 1 }
                    // After a failure, let what runs finish but start nothing new.
                    if result.error != nil { failed = true } else { applied.insert(i) }
                }
                launchReady()
            }
            // Changes never started count as errors here so the caller stops; report them
            // as not attempted.
            return results.map { $0 ?? ChangeResult(error: NotAttempted()) }
        }
    }

    /// Which projects declare a resource changed, nothing else: its record is rewritten,
    /// the host is left alone.
    func updateMembership(_ change: Plan.ResourceChange, _ context: ApplyContext) throws {
        // A live object of this installation without a record (one whose record was lost)
        // gets one now.
        try context.save(context.record(change.address) ?? Record(change.address, status: .ready, attributes: change.after ?? [:]))
    }

    /// Other projects' running containers on the networks this apply changed: their
    /// /etc/hosts is rewritten in place to list the containers now there (the plan said
    /// so), and their records follow. Best effort: a container that stopped meanwhile
    /// gets its file when it starts again.
    func refreshNeighbours(_ run: PlannedRun) {
        for (name, members) in run.neighbourPeers {
            guard var record = run.observation.records[ResourceAddress(.container, name)],
                  runtime.observe(directory: store.containerDirectory(name)).isRunning else { continue }
            let extras = HostsFile.lines(fromDisplay: record.attributes[ContainerAttribute.hosts].flatMap { value -> [String]? in
                if case .list(let items) = value { items.compactMap(\.string) } else { nil }
            } ?? [])
            do {
                let text = try HostsFile.render(container: name, hostname: record.attributes[ContainerAttribute.hostname]?.string,
                                                address: record.containerAddress?.address, extras: HostsFile.entries(extras),
                                                peers: members.lines)
                let path = ContainerNameFiles.hostsPath(runtimeDirectory: store.containerDirectory(name))
                _ = try ContainerNameFiles.write(path, text)
                record.attributes[ContainerAttribute.peers] = members.summary(except: name)
                record.hostsStamp = try ContainerNameFiles.stamp(path)
                try store.save(record)
            } catch {
                logger.warning("container.\(name): its /etc/hosts was not rewritten: \(error)")
            }
        }
    }

    /// After a complete destroy nothing of tupp's may remain, not even its state
    /// directory — unless records of other resources are still there.
    func removeEmptyState() {
        guard let records = try? store.load(), records.isEmpty else { return }
        for dir in ["\(store.directory)/containers", store.recordsDirectory] {
            if (try? Files.list(dir))?.isEmpty == true { rmdir(dir) }
        }
        Checkpoint.pass("empty state directories removed")
        try? Files.removeTree(store.cacheDirectory)
        Checkpoint.pass("state cache removed")
        unlink(store.lockPath)
        Checkpoint.pass("state lock file removed")
        rmdir(store.directory)   // kept when something else lives there (a pool file, say)
    }
}
