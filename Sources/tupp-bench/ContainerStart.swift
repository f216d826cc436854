import ArgumentParser
import CTuppSys
import Glibc
import TuppFacts
import TuppRuntime
import TuppSystem

/// Container start of /bin/true on an existing snapshot, through TuppRuntime directly:
/// no manifest, no planning, no network — what `crun run` does for a ready bundle.
struct StartTrue: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "start",
        abstract: "Start /bin/true in a container on ROOTFS, wait for it to exit, remove its directory; N times.")

    @Option(help: "The container's root: a writable btrfs snapshot of the busybox image.")
    var rootfs: String

    @Option(help: "Scratch directory for the runtime directories.")
    var work: String

    @Option(help: "Repetitions.")
    var rounds = 30

    @Option(help: "Unrecorded starts before the first sample (page cache, dentries).")
    var warmup = 1

    @Option(help: "Append the samples (JSON lines) to this file.")
    var out: String

    func run() throws {
        let runtime = Runtime()
        let config = ContainerConfig(name: "benchtrue", rootfs: rootfs, command: ["/bin/true"], stopTimeout: 1)
        var started = Series("start.tupp.exec")   // start() returned: the command was exec'd
        var total = Series("start.tupp")          // … and it exited, its directory removed
        for round in 0..<warmup + rounds {
            let directory = "\(work)/start-\(round)"
            let begin = Monotonic.nanoseconds()
            let observation = try runtime.start(config, directory: directory)
            let afterStart = Monotonic.milliseconds(since: begin)
            try Self.waitForExit(pid: observation.shimPID)
            let final = runtime.observe(directory: directory)
            try runtime.remove(directory: directory)
            let elapsed = Monotonic.milliseconds(since: begin)
            guard final.lastExit?.status == .code(0) else {
                throw SystemError.failure("run /bin/true", directory, "unexpected end: \(final.state.rawValue), \(String(describing: final.lastExit))")
            }
            if round < warmup { continue }
            started.samples.append(afterStart)
            total.samples.append(elapsed)
        }
        try SeriesWriter(path: out).write([total, started])
    }

    /// The supervisor is not our child (it detaches): wait on a pidfd.
    static func waitForExit(pid: Int32) throws {
        let fd = tupp_pidfd_open(pid, 0)
        if fd < 0 {
            if errno == ESRCH { return }  // already gone
            throw SystemError("open pidfd", "supervisor pid \(pid)")
        }
        let descriptor = FileDescriptor(adopting: fd)
        var poller = pollfd(fd: descriptor.rawValue, events: Int16(POLLIN), revents: 0)
        while poll(&poller, 1, 10_000) <= 0 {
            guard errno == EINTR else { throw SystemError("wait for supervisor", "pid \(pid)", detail: "still running after 10 s") }
        }
    }
}
