import TuppSystem
import TuppTestTools

/// Runs the reference tools (tar, btrfs, umoci, ip) that the library calls are compared
/// with, through the test suite's posix_spawn runner (never fork: this process is
/// multithreaded).
enum Command {
    /// Runs `arguments` to completion; throws unless it exits 0.
    static func run(_ arguments: [String]) throws {
        let output = try Spawn.run(arguments)
        guard output.status == 0 else {
            throw SystemError.failure("run", arguments.joined(separator: " "), "exit status \(output.status): \(output.stderr)")
        }
    }
}
