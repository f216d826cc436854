import CTuppSys
import Glibc
import TuppBase
import TuppSystem

/// A finished command's exit status and output.
public struct Output: Sendable, CustomStringConvertible {
    public var status: Int32
    public var stdout: String
    public var stderr: String

    /// Everything the command wrote: stdout then stderr, or — for a run with
    /// `stderrToStdout` — both as interleaved when written (stderr is then empty).
    public var output: String { stdout + stderr }

    public var description: String { "exit \(status)\nstdout:\n\(stdout)\nstderr:\n\(stderr)" }
}

/// posix_spawn with a clean signal state.
///
/// The test process's threads block most signals and children inherit that mask:
/// busybox ping's -W timer (SIGALRM) then never fires and ping hangs. Every child here
/// starts with an empty mask and default dispositions.
public enum Spawn {
    /// Starts `arguments` with stdin, stdout and stderr on the given fds (or /dev/null).
    /// A bare command name (no slash) is looked up in PATH. `environment` entries are
    /// KEY=VALUE added to the test's own.
    public static func start(_ arguments: [String], stdin: Int32? = nil, stdout: Int32? = nil, stderr: Int32? = nil,
                             environment: [String] = []) throws -> pid_t {
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
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
        if let stdin { posix_spawn_file_actions_adddup2(&actions, stdin, 0) } else {
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        }
        if let stdout { posix_spawn_file_actions_adddup2(&actions, stdout, 1) } else {
            posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        }
        if let stderr { posix_spawn_file_actions_adddup2(&actions, stderr, 2) } else {
            posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        }
        // Only 0, 1 and 2: a descriptor another test's thread holds without O_CLOEXEC
        // (libbtrfsutil opens that way) would keep its pool busy for as long as this child
        // lives — a netns holder lives for a whole test.
        tupp_spawn_close_from(&actions, 3)

        var cArguments = arguments.map { strdup($0) }
        cArguments.append(nil)
        defer { cArguments.forEach { free($0) } }
        var env: [UnsafeMutablePointer<CChar>?] = []
        var index = 0
        while let entry = environ[index] {
            let text = String(cString: entry)
            let key = text.split(separator: "=", maxSplits: 1).first.map(String.init) ?? text
            if !environment.contains(where: { $0.hasPrefix(key + "=") }) { env.append(strdup(entry)) }
            index += 1
        }
        env += environment.map { strdup($0) }
        env.append(nil)
        defer { env.forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawnp(&pid, arguments[0], &actions, &attributes, &cArguments, &env)
        guard rc == 0 else { throw SystemError("spawn", arguments[0], errno: rc) }
        return pid
    }

    /// Runs `arguments` to completion, collecting stdout and stderr (read together with
    /// poll, so a chatty stderr cannot stall the child). With `stderrToStdout` both go to
    /// one socket, interleaved as written, and come back in `stdout`.
    @discardableResult
    public static func run(_ arguments: [String], stderrToStdout: Bool = false,
                           environment: [String] = []) throws -> Output {
        // Close-on-exec from birth: an end leaked into a concurrently spawned child
        // would keep EOF from ever arriving.
        func socketPair() throws -> (read: Int32, write: Int32) {
            var pair: [Int32] = [0, 0]
            let type = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
            guard socketpair(AF_UNIX, type, 0, &pair) == 0 else { throw SystemError("socketpair", arguments[0]) }
            return (pair[0], pair[1])
        }
        let out = try socketPair()
        let err: (read: Int32, write: Int32)?
        do {
            err = stderrToStdout ? nil : try socketPair()
        } catch {
            close(out.read); close(out.write)
            throw error
        }
        let pid: pid_t
        do {
            pid = try start(arguments, stdout: out.write, stderr: err?.write ?? out.write, environment: environment)
        } catch {
            for fd in [out.read, out.write, err?.read, err?.write].compactMap({ $0 }) { close(fd) }
            throw error
        }
        close(out.write)
        if let err { close(err.write) }
        var open = [out.read] + (err.map { [$0.read] } ?? [])
        var collected: [Int32: [UInt8]] = Dictionary(uniqueKeysWithValues: open.map { ($0, []) })
        var buffer = [UInt8](repeating: 0, count: 65536)
        while !open.isEmpty {
            var fds = open.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            if poll(&fds, nfds_t(fds.count), -1) < 0 {
                if errno == EINTR { continue }
                break
            }
            for entry in fds where entry.revents != 0 {
                let n = read(entry.fd, &buffer, buffer.count)
                if n > 0 {
                    collected[entry.fd]!.append(contentsOf: buffer[..<n])
                } else if n == 0 || errno != EINTR {
                    close(entry.fd)
                    open.removeAll { $0 == entry.fd }
                }
            }
        }
        open.forEach { close($0) }
        let status = wait(pid)
        return Output(status: status, stdout: String(decoding: collected[out.read]!, as: UTF8.self),
                      stderr: err.map { String(decoding: collected[$0.read]!, as: UTF8.self) } ?? "")
    }

    /// Reaps `pid`; the shell-style status (128 + signal when killed).
    @discardableResult
    public static func wait(_ pid: pid_t) -> Int32 {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let exited = status & 0x7f == 0
        return exited ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    }
}

/// Paths of the executables this test run built, next to the test bundle.
public enum Built {
    public static var directory: String { Paths.dirname(Paths.canonical("/proc/self/exe") ?? "/proc/self/exe") }
    public static var tupp: String { "\(directory)/tupp" }
    public static var shim: String { "\(directory)/tupp-shim" }
    /// The repository checkout (for manifests/ and schemas/).
    public static var repository: String {
        String(#filePath.dropLast("Tests/TuppTestTools/Spawn.swift".count))
    }
}

/// Small static C programs (Tests/probes/NAME.c) that witness from inside a container
/// what a shell cannot: a session's terminal, a syscall's errno. Built with gcc once per
/// test run into the build directory.
public enum Probe {
    /// The path of the built probe `name`; compiled when missing or older than its source.
    public static func path(_ name: String) throws -> String {
        let source = "\(Built.repository)Tests/probes/\(name).c"
        let directory = "\(Built.directory)/probes"
        let binary = "\(directory)/\(name)"
        if let built = try Files.status(binary), let src = try Files.status(source), built.st_mtim.tv_sec > src.st_mtim.tv_sec {
            return binary
        }
        try Files.createDirectory(directory)
        let temporary = "\(binary).\(getpid()).tmp"
        let result = try Spawn.run(["gcc", "-static", "-O2", "-Wall", "-Werror", "-o", temporary, source], stderrToStdout: true)
        guard result.status == 0 else {
            throw SystemError.failure("build probe", source, "gcc failed (install gcc and libc6-dev): \(result.output)")
        }
        try Errno.check("rename", temporary) { rename(temporary, binary) }
        return binary
    }

    /// The probe `name` copied to `root`/bin/`name` (a container's root).
    public static func install(_ name: String, into root: String) throws {
        guard let bytes = try Files.read(try path(name)) else { throw SystemError.failure("read probe", name, "missing after build") }
        try Files.writeAtomically("\(root)/bin/\(name)", bytes, mode: 0o755)
    }
}
