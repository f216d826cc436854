import Glibc
import TuppBase
import TuppFacts
import TuppManifest
import TuppPlan
import TuppRuntime
import TuppSystem

/// How apply waits for services: for each dependency's condition before a dependent
/// starts, for a started command to settle, and (`--wait`) for every container to be
/// ready before it returns.
public struct LifecycleOptions: Sendable {
    /// Return only when every container runs and, with a health check, is healthy.
    public var wait: Bool
    /// Seconds a dependent waits for its dependencies' conditions, and `--wait` for the
    /// containers to be ready.
    public var waitTimeout: Double
    /// Seconds apply watches a command it started before it reports it as done: one that
    /// exits or is restarted meanwhile is reported as crashing.
    public var settle: Double

    public init(wait: Bool = false, waitTimeout: Double = 120, settle: Double = 1) {
        self.wait = wait
        self.waitTimeout = waitTimeout
        self.settle = settle
    }
}

/// A condition that did not hold in time.
struct DependencyTimeout: Error, CustomStringConvertible {
    var description: String
}

extension Engine {
    /// The containers `change` waits for within its group (those changed in the same
    /// run), by index in `group`.
    static func prerequisites(_ group: [Plan.ResourceChange]) -> [[Int]] {
        let index = Dictionary(group.enumerated().map { ($0.element.address, $0.offset) }, uniquingKeysWith: { a, _ in a })
        return group.map { change in
            guard change.action != .delete, let spec = change.spec(ContainerSpec.self) else { return [] }
            return spec.dependsOn.keys.sorted().compactMap { index[ResourceAddress(.container, $0)] }
        }
    }

    /// True when applying `change` starts the container's command.
    static func starts(_ change: Plan.ResourceChange) -> Bool {
        change.address.kind == .container
            && (change.action == .create || change.action == .replace || (change.action == .update && change.effect == .restart))
    }

    /// Waits until every dependency of `spec` meets its condition, telling `progress` what
    /// it waits for; throws naming the dependency and its state (and last health check)
    /// when `timeout` passes first, or at once when the condition cannot hold any more.
    func waitForDependencies(of spec: ContainerSpec, timeout: Double, progress: (String) -> Void) async throws {
        let deadline = Monotonic.nanoseconds() + UInt64(max(0, timeout) * 1e9)
        for (name, edge) in spec.dependsOn.sorted(by: { $0.key < $1.key }) {
            let directory = store.containerDirectory(name)
            var told = false
            while true {
                let process = runtime.observe(directory: directory)
                let health = edge.condition == .healthy ? runtime.health(directory: directory)?.lastOutcome : nil
                switch ContainerReadiness.judge(edge.condition, process, lastHealth: health) {
                case .holds:
                    break
                case .failed(let why):
                    throw DependencyTimeout(description: "container.\(name) will not be \(edge.condition.rawValue): \(why)")
                case .pending(let why):
                    if Monotonic.nanoseconds() >= deadline {
                        throw DependencyTimeout(description: "waited \(Units.seconds(timeout)) for container.\(name) to be \(edge.condition.rawValue): \(why) (see --wait-timeout)")
                    }
                    if !told {
                        progress("waiting for container.\(name) to be \(edge.condition.rawValue)")
                        told = true
                    }
                    try await Task.sleep(nanoseconds: 50_000_000)
                    continue
                }
                break
            }
        }
    }

    /// Watches a command just started for `seconds`; a note when it exited or was
    /// restarted meanwhile ("exited with code 1 after 40 ms (restarting, attempt 3)").
    func settle(_ name: String, seconds: Double, restart: RestartPolicy) async -> (crashing: Bool, note: String)? {
        guard seconds > 0 else { return nil }
        let directory = store.containerDirectory(name)
        let first = runtime.observe(directory: directory)
        guard first.isSupervised || first.state == .exited else { return nil }
        let restarts = first.restarts
        try? await Task.sleep(nanoseconds: UInt64(seconds * 1e9))
        return ContainerReadiness.settled(runtime.observe(directory: directory), restartsAtStart: restarts, restart: restart)
    }

    /// `apply --wait`: every declared container that is not stopped on purpose is
    /// running — healthy where it has a health check — or completed; what is not, with
    /// why, once `timeout` passed (at once for one that cannot get there).
    func waitUntilReady(_ run: PlannedRun, timeout: Double, reporter: any ApplyReporter) async -> [(address: ResourceAddress, error: String)] {
        let deadline = Monotonic.nanoseconds() + UInt64(max(0, timeout) * 1e9)
        var waiting: [(ResourceAddress, ContainerSpec)] = run.plan.changes.compactMap { change in
            guard change.address.kind == .container, change.action != .delete, let spec = change.spec(ContainerSpec.self) else { return nil }
            if change.action != .create && change.action != .replace,
               run.observation.records[change.address]?.stoppedOnPurpose == true { return nil }
            return (change.address, spec)
        }
        var failed: [(address: ResourceAddress, error: String)] = []
        while !waiting.isEmpty {
            var still: [(ResourceAddress, ContainerSpec)] = []
            for (address, spec) in waiting {
                let directory = store.containerDirectory(spec.name)
                let process = runtime.observe(directory: directory)
                let health = spec.healthcheck != nil ? runtime.health(directory: directory)?.lastOutcome : nil
                switch ContainerReadiness.ready(process, hasHealthcheck: spec.healthcheck != nil, restart: spec.restart, lastHealth: health) {
                case .holds: break
                case .failed(let why): failed.append((address, why))
                case .pending(let why):
                    if Monotonic.nanoseconds() >= deadline {
                        failed.append((address, "not ready after \(Units.seconds(timeout)): \(why)"))
                    } else {
                        still.append((address, spec))
                    }
                }
            }
            waiting = still
            if !waiting.isEmpty { try? await Task.sleep(nanoseconds: 50_000_000) }
        }
        return failed.sorted { $0.address < $1.address }
    }
}

extension Units {
    /// "120 s", "1.5 s".
    static func seconds(_ value: Double) -> String {
        value == value.rounded() ? "\(Int(value)) s" : "\(value) s"
    }
}

extension Engine {
    /// What the plan says about service lifecycles: containers stopped on purpose, and
    /// `healthy` waits on a container without a health check (one an image's config could
    /// not fill either).
    static func lifecycleNotes(_ desired: [DesiredResource], records: [String: Record], observation: Observation) -> [String] {
        var notes: [String] = []
        let specs = Dictionary(desired.compactMap { d in d.spec(ContainerSpec.self).map { ($0.name, $0) } }, uniquingKeysWith: { a, _ in a })
        for name in specs.keys.sorted() {
            if let record = records[name], record.stoppedOnPurpose,
               observation.facts[ContainerFacts.self]?.processes[name]?.isRunning != true {
                notes.append("container.\(name) is stopped on purpose (tupp stop, restart: unless-stopped); tupp start \(name) starts it")
            }
            for (target, edge) in specs[name]!.dependsOn.sorted(by: { $0.key < $1.key }) where edge.condition == .healthy {
                if let other = specs[target], other.healthcheck == nil {
                    notes.append("container.\(name) waits for container.\(target) to be healthy, but \(target) has no health check: the wait can only time out")
                }
            }
        }
        return notes
    }
}
