import ArgumentParser
import CTuppSys
import Glibc
import TuppFacts
import TuppRuntime
import TuppSystem

/// Container start of /bin/true on an existing snapshot, through TuppRuntime directly:
/// no manifest, no planning, no network — what `crun run` does for a ready bundle. Each
/// round starts it once per variant, in rotating order: plain (no seccomp filter, no
/// cgroup), confined (tupp's default seccomp profile and a cgroup of its own on this
/// host's hierarchies, created and removed with the container), and with `--unified`
/// confined on that cgroup2 tree (the v2 code path) — the cost of confinement, side by side.
/// With `--userns`, plain and confined again in a user namespace of their own (`userns:
/// auto`: idmapped rootfs, /dev made by the shim, the init cloned from inside).
struct StartTrue: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "start",
        abstract: "Start /bin/true in a container on ROOTFS, wait for it to exit, remove its directory; N times per variant.")

    @Option(help: "The container's root: a writable btrfs snapshot of the busybox image.")
    var rootfs: String

    @Option(help: "Scratch directory for the runtime directories.")
    var work: String

    @Option(help: "Repetitions.")
    var rounds = 30

    @Option(help: "Unrecorded starts before the first sample (page cache, dentries, the seccomp cache).")
    var warmup = 1

    @Option(help: "Append the samples (JSON lines) to this file.")
    var out: String

    @Option(help: "Parent directory of the confined containers' cgroups (in every hierarchy).")
    var cgroupParent = "tupp-bench"

    @Option(help: "Also start confined on the cgroup2 tree mounted here (a hybrid host's /sys/fs/cgroup/unified).")
    var unified: String?

    @Flag(help: "Only the plain start (for the one-shot row).")
    var plainOnly = false

    @Flag(help: "Also start plain and confined in a user namespace (userns: auto).")
    var userns = false

    func run() throws {
        // Compiled seccomp filters are cached across containers, as tupp's engine does in
        // its state directory: the warm-up round compiles, the rest read the cache.
        let runtime = Runtime(cacheDirectory: work)
        let plain = ContainerConfig(name: "benchtrue", rootfs: rootfs, command: ["/bin/true"], stopTimeout: 1, seccomp: .unconfined)
        var variants: [(key: String, config: ContainerConfig)] = [("start.tupp", plain)]
        if !plainOnly {
            var confined = plain
            confined.seccomp = .default
            confined.cgroup = CgroupPlacement(layout: try CgroupLayout.host(), parent: cgroupParent)
            variants.append(("start.tupp.confined", confined))
            if userns {
                // A block of tupp's default range, as the engine would allocate it.
                let mapping = IDMapping.block(uid: 0x7000_0000 + 4000 * 65536, gid: 0x7000_0000 + 4000 * 65536)
                var mapped = plain, confinedMapped = confined
                mapped.userNamespace = mapping
                confinedMapped.userNamespace = mapping
                variants += [("start.tupp.userns", mapped), ("start.tupp.confined.userns", confinedMapped)]
            }
            if let unified {
                confined.cgroup = CgroupPlacement(layout: try CgroupLayout.unified(at: unified), parent: cgroupParent)
                variants.append(("start.tupp.confined-v2", confined))
            }
        }
        _ = SeccompProfile.builtin  // parsed once per process, as in tupp apply: not part of a start
        // Per variant: total (start to exit, directory removed), then until start returned.
        var series = variants.map { (Series($0.key), Series($0.key + ".exec")) }
        for round in 0..<warmup + rounds {
            for offset in variants.indices {
                let index = (round + offset) % variants.count
                let directory = "\(work)/start-\(round)-\(index)"
                let (afterStart, elapsed) = try Self.once(runtime, variants[index].config, directory: directory)
                if round < warmup { continue }
                series[index].0.samples.append(elapsed)
                series[index].1.samples.append(afterStart)
            }
        }
        try SeriesWriter(path: out).write(series.flatMap { [$0.0, $0.1] })
    }

    /// One start to exit and removal: (ms until start returned, ms in all).
    static func once(_ runtime: Runtime, _ config: ContainerConfig, directory: String) throws -> (Double, Double) {
        let begin = Monotonic.nanoseconds()
        let observation = try runtime.start(config, directory: directory)
        let afterStart = Monotonic.milliseconds(since: begin)
        try waitForExit(pid: observation.shimPID)
        let final = runtime.observe(directory: directory)
        try runtime.remove(directory: directory)
        let elapsed = Monotonic.milliseconds(since: begin)
        guard final.lastExit?.status == .code(0) else {
            throw SystemError.failure("run /bin/true", directory, "unexpected end: \(final.state.rawValue), \(String(describing: final.lastExit))")
        }
        return (afterStart, elapsed)
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
