import CTuppSys
import Glibc
import TuppSystem

/// One start conversation with `tupp-shim run DIR` over a SOCK_SEQPACKET socketpair
/// (protocol in Sources/tupp-shim/supervise.c). The shim is started with posix_spawn —
/// never fork in this multithreaded process — and daemonizes itself; the short-lived
/// intermediate process is reaped here.
final class ShimSession {
    let socket: FileDescriptor
    let directory: String
    let containerName: String

    private init(socket: FileDescriptor, directory: String, containerName: String) {
        self.socket = socket
        self.directory = directory
        self.containerName = containerName
    }

    static func launch(shimPath: String, directory: String, containerName: String) throws(SystemError) -> ShimSession {
        var pair: [Int32] = [-1, -1]
        try Errno.check("create socketpair", "sync socket for \(containerName)") {
            socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair)
        }
        let ours = FileDescriptor(adopting: pair[0])
        var theirs = FileDescriptor(adopting: pair[1])
        if theirs.rawValue == 3 {
            // dup2(3, 3) in the child would leave FD_CLOEXEC set; move it out of the way.
            let moved = try Errno.check("dup", "sync socket") { fcntl(theirs.rawValue, F_DUPFD_CLOEXEC, 10) }
            theirs = FileDescriptor(adopting: moved)
        }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, theirs.rawValue, 3)
        // Nothing else crosses: the supervisor stays resident, and a descriptor of ours
        // (a pool directory, say) held open in it would keep that filesystem busy.
        tupp_spawn_close_from(&actions, 4)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        var allSignals = sigset_t()
        sigfillset(&allSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        posix_spawnattr_setsigdefault(&attributes, &allSignals)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let arguments = [shimPath, "run", directory]
        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, shimPath, &actions, &attributes, &argv, environ)
        guard rc == 0 else { throw SystemError("spawn", shimPath, errno: rc) }
        // The spawned process forks the supervisor and exits at once.
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        guard tupp_wait_exit_code(status) == 0 else {
            throw SystemError.failure("start supervisor", "\(shimPath) run \(directory)",
                                      "exited with status \(tupp_wait_exit_code(status)) before daemonizing")
        }
        return ShimSession(socket: ours, directory: directory, containerName: containerName)
    }

    /// One message, or an error if the shim reported one, went silent or closed the socket.
    func receive(timeout: Double, waitingFor what: String) throws(SystemError) -> String {
        var poller = pollfd(fd: socket.rawValue, events: Int16(POLLIN), revents: 0)
        let ready = try Errno.check("wait for supervisor", containerName) { poll(&poller, 1, Int32(timeout * 1000)) }
        guard ready > 0 else {
            throw SystemError.failure("start", "container \(containerName)", "tupp-shim sent no \(what) within \(timeout) s")
        }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let count = try Errno.check("read from supervisor", containerName) { recv(socket.rawValue, &buffer, buffer.count, 0) }
        guard count > 0 else {
            let hint = (try? StateRecord.read(directory: directory))??.error.map { " (\($0))" } ?? ""
            throw SystemError.failure("start", "container \(containerName)", "tupp-shim exited before \(what)\(hint)")
        }
        let message = String(decoding: buffer[..<count], as: UTF8.self)
        if message.hasPrefix("error\n") { throw Self.failure(from: message) }
        return message
    }

    /// "error\nERRNO\nOP\nOBJECT\nDETAIL" → "OP OBJECT: strerror (ENAME) — DETAIL".
    static func failure(from message: String) -> SystemError {
        let parts = message.split(separator: "\n", maxSplits: 4, omittingEmptySubsequences: false).map(String.init)
        let code = parts.count > 1 ? Int32(parts[1]) ?? 0 : 0
        let operation = parts.count > 2 ? parts[2] : "start"
        let object = parts.count > 3 ? parts[3] : "container"
        let detail = parts.count > 4 && !parts[4].isEmpty ? parts[4] : nil
        if code == 0 { return SystemError.failure(operation, object, detail ?? "failed") }
        return SystemError(operation, object, errno: code, detail: detail)
    }

    /// The shim reads EOF instead of "go": it kills the waiting init and exits.
    func abort() {
        shutdown(socket.rawValue, Int32(SHUT_RDWR))
    }

    func send(_ text: String) throws(SystemError) {
        let bytes = Array(text.utf8)
        _ = try Errno.check("write to supervisor", containerName) {
            Glibc.send(socket.rawValue, bytes, bytes.count, Int32(MSG_NOSIGNAL))
        }
    }
}

/// A process pinned by a pidfd whose start time was verified after opening it: signals
/// sent through it can never reach a recycled pid.
final class PinnedProcess {
    let pid: Int32
    let descriptor: FileDescriptor

    private init(pid: Int32, descriptor: FileDescriptor) {
        self.pid = pid
        self.descriptor = descriptor
    }

    /// nil when no live (non-zombie) process has this pid and start time.
    static func open(pid: Int32, startTime: UInt64) throws(SystemError) -> PinnedProcess? {
        guard pid > 0 else { return nil }
        let fd = tupp_pidfd_open(pid, 0)
        if fd < 0 {
            if errno == ESRCH { return nil }
            throw SystemError("open pidfd", "pid \(pid)")
        }
        let process = PinnedProcess(pid: pid, descriptor: FileDescriptor(adopting: fd))
        guard ProcessStat.isAlive(pid: pid, startTime: startTime) else { return nil }
        return process
    }

    /// Sends `signal`, with a queued integer when `value` is given. A process that is
    /// already gone is not an error.
    func send(_ signal: Int32, value: Int32? = nil) throws(SystemError) {
        let rc = value.map { tupp_pidfd_send_signal_value(descriptor.rawValue, signal, $0) }
            ?? tupp_pidfd_send_signal(descriptor.rawValue, signal)
        if rc < 0 && errno != ESRCH { throw SystemError("signal \(signal)", "pid \(pid)") }
    }

    /// Waits until the process has exited; false on timeout.
    func waitForExit(timeout: Double) -> Bool {
        let deadline = Monotonic.nanoseconds() + UInt64(max(0, timeout) * 1e9)
        while true {
            var poller = pollfd(fd: descriptor.rawValue, events: Int16(POLLIN), revents: 0)
            let now = Monotonic.nanoseconds()
            let remaining = now >= deadline ? 0 : Int32((deadline - now) / 1_000_000)
            let ready = poll(&poller, 1, remaining)
            if ready > 0 { return true }
            if ready == 0 || errno != EINTR { return false }
        }
    }
}
