import Glibc
import Synchronization

/// Points right after side effects, for crash testing — one mechanism for every module
/// that changes the host (the engine's reconcilers, the pool, image imports, links).
///
/// Each point is labelled "RESOURCE: step", RESOURCE being the resource whose change is
/// under way (`Checkpoint.$resource`, bound by the engine around each change). With
/// `TUPP_TEST_CRASH_AT=N` the process kills itself with SIGKILL at the N-th point, with
/// `TUPP_TEST_CRASH_AT=LABEL` at the first point with exactly that label (independent of
/// how parallel changes interleave); with `TUPP_TEST_CHECKPOINTS=1` each point is printed
/// to stderr as "tupp checkpoint N: LABEL" so a test can enumerate them. Unset (always,
/// outside tests), a point costs one atomic increment.
///
/// A point is passed whether or not the step found anything to do, so the points of one
/// run do not depend on timing (a veth that the kernel may or may not have removed yet).
public enum Checkpoint {
    /// The resource being changed, e.g. "container.web".
    @TaskLocal public static var resource: String?

    private enum Target {
        case number(Int)
        case label(String)
    }

    private static let target: Target? = getenv("TUPP_TEST_CRASH_AT").map { raw in
        let text = String(cString: raw)
        return Int(text).map(Target.number) ?? .label(text)
    }
    private static let trace = getenv("TUPP_TEST_CHECKPOINTS") != nil
    private static let count = Atomic<Int>(0)

    /// Passes the point after `step` of the current resource's change.
    public static func pass(_ step: @autoclosure () -> String) {
        pass(step(), resource: resource)
    }

    /// Passes the point after `step` of `resource`'s change (the state store names it itself).
    public static func pass(_ step: @autoclosure () -> String, resource: @autoclosure () -> String?) {
        let n = count.add(1, ordering: .relaxed).newValue
        guard trace || target != nil else { return }
        let label = resource().map { "\($0): \(step())" } ?? step()
        if trace {
            let line = "tupp checkpoint \(n): \(label)\n"
            _ = line.withCString { write(2, $0, strlen($0)) }
        }
        switch target {
        case .number(let at) where at == n: kill(getpid(), SIGKILL)
        case .label(let at) where at == label: kill(getpid(), SIGKILL)
        default: break
        }
    }
}
