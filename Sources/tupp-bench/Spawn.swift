import Glibc
import TuppSystem

/// Runs the reference tools (tar, btrfs, umoci, ip) that the library calls are compared
/// with. posix_spawn, never fork: this process is multithreaded.
enum Command {
    /// Runs `arguments` to completion with stdin and stdout on /dev/null and stderr on
    /// the harness's stderr; throws unless it exits 0.
    static func run(_ arguments: [String]) throws {
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // Swift's threads block signals and children inherit the mask: reset it.
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        var all = sigset_t()
        sigfillset(&all)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)

        var argv = arguments.map { strdup($0) }
        argv.append(nil)
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawnp(&pid, arguments[0], &actions, &attributes, &argv, environ)
        guard rc == 0 else { throw SystemError("spawn", arguments[0], errno: rc) }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            guard errno == EINTR else { throw SystemError("wait for", arguments.joined(separator: " ")) }
        }
        guard status == 0 else {
            throw SystemError.failure("run", arguments.joined(separator: " "), "wait status \(status)")
        }
    }
}
