import TuppFacts
import TuppManifest

/// Whether a container is where apply wants it: a dependency's condition, `--wait`'s
/// "running and healthy", a start that settled or keeps crashing. Pure: the engine
/// observes and asks.
public enum Readiness: Sendable, Equatable {
    case holds
    /// Not yet; why, for the message when time runs out.
    case pending(String)
    /// Will not hold without a change (a job that failed).
    case failed(String)
}

public enum ContainerReadiness {
    /// Does the dependency, as observed, meet `condition`? `health`: its health check's
    /// last outcome, for the message.
    public static func judge(_ condition: Dependency.Condition, _ p: ProcessObservation, lastHealth: String? = nil) -> Readiness {
        let health = lastHealth.map { "; last health check: \($0)" } ?? ""
        switch condition {
        case .started:
            switch p.state {
            case .running, .restarting, .stopping: return .holds
            case .exited where p.lastExit != nil: return .holds
            default: return .pending("it is \(describe(p))")
            }
        case .healthy:
            if p.isRunning && p.health == .healthy { return .holds }
            if p.isRunning, let status = p.health { return .pending("it is \(status.rawValue)\(health)") }
            if p.isRunning { return .pending("it has no health check") }
            return .pending("it is \(describe(p))\(health)")
        case .completed:
            switch (p.state, p.lastExit?.status) {
            case (.exited, .code(0)?): return .holds
            case (.exited, let status?): return .failed("it \(status == .code(0) ? "exited" : "ended with \(status)")")
            default: return .pending("it is \(describe(p))")
            }
        }
    }

    /// `apply --wait`: running (and healthy, with a health check), or a command without
    /// a restart policy that completed with code 0.
    public static func ready(_ p: ProcessObservation, hasHealthcheck: Bool, restart: RestartPolicy, lastHealth: String? = nil) -> Readiness {
        if p.isRunning {
            guard hasHealthcheck else { return .holds }
            switch p.health {
            case .healthy?: return .holds
            case .unhealthy?: return .pending("it is unhealthy\(lastHealth.map { "; last health check: \($0)" } ?? "")")
            default: return .pending("its health check has not passed yet\(lastHealth.map { "; last: \($0)" } ?? "")")
            }
        }
        if p.state == .exited, p.lastExit?.status == .code(0), restart == .no || restart == .onFailure { return .holds }
        if p.state == .exited, restart == .no || restart == .onFailure {
            return .failed("it \(p.lastRunDescription ?? "exited")")
        }
        return .pending("it is \(describe(p))")
    }

    /// After a start and the settle time: a note when the command did not stay up — it
    /// exited, or was restarted since (`restartsAtStart`: the count right after the start).
    /// nil: it runs. `crashing`: it is not running now, or ran and was restarted.
    public static func settled(_ p: ProcessObservation, restartsAtStart: Int, restart: RestartPolicy) -> (crashing: Bool, note: String)? {
        switch p.state {
        case .running where p.restarts == restartsAtStart, .starting:
            return nil
        case .exited where p.lastExit?.status == .code(0) && (restart == .no || restart == .onFailure):
            return (false, p.lastRunDescription ?? "exited with code 0")
        case .stopping, .stopped:
            return nil
        default:
            return (true, p.lastRunDescription ?? (p.error ?? "is \(p.state.rawValue)"))
        }
    }

    static func describe(_ p: ProcessObservation) -> String {
        switch p.state {
        case .absent: "not started"
        case .supervisorDied: "not running (its supervisor is gone)"
        case .exited, .restarting: "\(p.state.rawValue) (\(p.lastRunDescription ?? "no exit recorded"))"
        default: p.state.rawValue
        }
    }

    /// Compose's `restart: true` on a `dependsOn` edge: a dependency that is replaced or
    /// restarted restarts its dependent after it, even when nothing of the dependent
    /// changed.
    public static func propagateRestarts(_ changes: inout [ResourceAddress: Plan.ResourceChange]) {
        var edges: [String: [String]] = [:]
        for (address, change) in changes where address.kind == .container {
            edges[address.name] = change.spec(ContainerSpec.self).map { Array($0.dependsOn.keys) } ?? []
        }
        for name in DependencyGraph.order(edges) {
            let address = ResourceAddress(.container, name)
            guard var change = changes[address], let spec = change.spec(ContainerSpec.self),
                  change.action == .noop || change.action == .update else { continue }
            for (dependency, edge) in spec.dependsOn.sorted(by: { $0.key < $1.key }) where edge.restart {
                let target = ResourceAddress(.container, dependency)
                guard let other = changes[target] else { continue }
                let restarts = other.action == .replace || other.action == .create || (other.action == .update && other.effect == .restart)
                guard restarts else { continue }
                let verb = other.action == .update ? "restarted" : other.action == .create ? "created" : "replaced"
                change.reasons.append(Plan.Reason(dependency: target, message: "\(target) is \(verb): restarted after it (dependsOn restart: true)",
                                                  effect: .restart))
                change.action = .update
                change.effect = max(change.effect ?? .restart, .restart)
            }
            changes[address] = change
        }
    }
}
