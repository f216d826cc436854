import Glibc
import Synchronization

/// Numbered points between side effects, for crash testing. With
/// `TUPP_TEST_CRASH_AT=N` the process kills itself with SIGKILL at the N-th point — the
/// tests use it to prove that a crash at any instant leaves a host the next apply
/// converges; with `TUPP_TEST_CHECKPOINTS=1` each point is printed to stderr so a test
/// can count them. Unset (always, outside tests), a point costs one atomic increment.
enum Checkpoint {
    private static let crashAt: Int? = getenv("TUPP_TEST_CRASH_AT").flatMap { Int(String(cString: $0)) }
    private static let trace = getenv("TUPP_TEST_CHECKPOINTS") != nil
    private static let count = Atomic<Int>(0)

    static func pass(_ label: @autoclosure () -> String) {
        let n = count.add(1, ordering: .relaxed).newValue
        if trace {
            let line = "tupp checkpoint \(n): \(label())\n"
            _ = line.withCString { write(2, $0, strlen($0)) }
        }
        if n == crashAt { kill(getpid(), SIGKILL) }
    }
}
