import Glibc
import Testing
import TuppFacts
import TuppManifest
import TuppRuntime
import TuppSystem
import TuppTestSupport

/// Cgroups on this host's own hierarchies (v1 on a hybrid host, v2 on a unified one),
/// witnessed through the kernel: /proc/PID/cgroup and the cgroup files themselves.
@Suite(.serialized)
struct CgroupTests {
    static func requireHost() throws -> Bool {
        try Host.require(.root, .command(ContainerFixture.busyboxPath))
    }

    /// The cgroup directory of `controller` (nil on v2) holding `pid`, per the kernel.
    static func directory(_ pid: Int32, _ controller: String) throws -> String? {
        let layout = try CgroupLayout.host()
        return try kernelCgroupDirectory(of: pid, controller: layout.version == .v1 ? controller : nil)
    }

    @Test func theInitRestartsAndExecJoinTheContainersCgroup() throws {
        guard try Self.requireHost() else { return }
        let fixture = try ContainerFixture()
        defer { fixture.cleanup() }
        let observation = try fixture.runtime.start(try fixture.config(restart: .always), directory: fixture.directory)
        let layout = try CgroupLayout.host()
        let suffix = "/\(fixture.cgroupParent)/\(fixture.name)"
        let controllers: [String?] = layout.version == .v1 ? ["memory", "pids", "cpu", "cpuacct", "devices", "freezer"] : [nil]
        for controller in controllers {
            let directory = try kernelCgroupDirectory(of: observation.initPID, controller: controller)
            #expect(directory?.hasSuffix(suffix) == true, "\(controller ?? "unified"): \(directory ?? "none")")
        }
        // The supervisor stays outside: stop and OOM kills must not reach it.
        #expect(try kernelCgroupDirectory(of: observation.shimPID, controller: controllers[0])?.hasSuffix(suffix) == false)

        // A process started by exec: in the cgroup before it ran anything.
        let exec = try fixture.exec(["cat", "/proc/self/cgroup"])
        #expect(exec.output.split(separator: "\n").filter { $0.hasSuffix(suffix) }.count == controllers.count, "\(exec.output)")

        // A restart (by the supervisor, without the engine) joins it too.
        kill(observation.initPID, SIGKILL)
        var restarted = observation
        #expect(waitUntil(5) {
            restarted = fixture.runtime.observe(directory: fixture.directory)
            return restarted.isRunning && restarted.initPID != observation.initPID
        })
        #expect(try kernelCgroupDirectory(of: restarted.initPID, controller: controllers[0])?.hasSuffix(suffix) == true)

        fixture.cleanup()
        #expect(fixture.cgroupLeftovers().isEmpty, "removing the container removes its cgroup and the empty parent")
    }

    @Test func aMemoryHogIsOOMKilledAndReported() throws {
        guard try Self.requireHost() else { return }
        let fixture = try ContainerFixture()
        defer { fixture.cleanup() }
        var config = try fixture.config(["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"], restart: .onFailure)
        config.resources.memory = 32 << 20
        let started = try fixture.runtime.start(config, directory: fixture.directory)
        let memory = try #require(try Self.directory(started.initPID, "memory"))

        var observation = started
        #expect(waitUntil(10) {
            observation = fixture.runtime.observe(directory: fixture.directory)
            return observation.restarts >= 1
        }, "the restart policy applies after an OOM kill")
        let layout = try CgroupLayout.host()
        let kills = cgroupField("oom_kill", try cgroupFile(memory, layout.version == .v1 ? "memory.oom_control" : "memory.events"))
        #expect((kills ?? 0) >= 1, "the kernel counted an OOM kill")
        #expect(try cgroupFile(memory, layout.version == .v1 ? "memory.limit_in_bytes" : "memory.max") == String(32 << 20))
        #expect(observation.lastExit?.status == .signal(SIGKILL))
        #expect(observation.lastExit?.oomKilled == true, "status can say oom-killed")
        #expect((observation.oomKills ?? 0) >= 1)
    }

    @Test func aForkLoopStopsAtThePidsLimit() throws {
        guard try Self.requireHost() else { return }
        let fixture = try ContainerFixture()
        defer { fixture.cleanup() }
        try Probe.install("forks", into: fixture.root)
        var config = try fixture.config(["forks", "200"])
        config.resources.pids = 64
        let observation = try fixture.runtime.start(config, directory: fixture.directory)
        let pids = try #require(try Self.directory(observation.initPID, "pids"))
        var log = ""
        #expect(waitUntil(10) {
            log = ((try? Files.readText(fixture.directory + "/log")) ?? nil) ?? ""
            return log.contains("forked=")
        })
        // The probe is one of the 64: 63 children, then EAGAIN.
        #expect(log == "forked=63 error=EAGAIN\n", "\(log)")
        #expect(try cgroupFile(pids, "pids.max") == "64")
        #expect(try cgroupFile(pids, "pids.current") == "64")
        #expect((cgroupField("max", try cgroupFile(pids, "pids.events")) ?? 0) > 0, "the kernel counted the refused fork")
        #expect(try cgroupFile(pids, "cgroup.procs").split(separator: "\n").count == 64)
    }

    @Test func halfACPUKeepsABusyLoopNearHalf() throws {
        guard try Self.requireHost() else { return }
        let fixture = try ContainerFixture()
        defer { fixture.cleanup() }
        var config = try fixture.config(["sh", "-c", "while :; do :; done"])
        config.resources.cpus = 0.5
        let observation = try fixture.runtime.start(config, directory: fixture.directory)
        let layout = try CgroupLayout.host()
        let cpu = try #require(try Self.directory(observation.initPID, layout.version == .v1 ? "cpuacct" : "cpu"))
        func usedNanoseconds() throws -> Double {
            if layout.version == .v1 { return Double(try cgroupFile(cpu, "cpuacct.usage")) ?? 0 }
            return Double(cgroupField("usage_usec", try cgroupFile(cpu, "cpu.stat")) ?? 0) * 1000
        }
        usleep(300_000)
        let before = try usedNanoseconds(), start = Monotonic.nanoseconds()
        usleep(2_000_000)
        let share = (try usedNanoseconds() - before) / Double(Monotonic.nanoseconds() - start)
        // Wide: the machine is shared. Without the limit the loop takes a whole CPU.
        #expect(share > 0.2 && share < 0.65, "used \(share) of a CPU")
        if layout.version == .v1 {
            #expect(try cgroupFile(try Self.directory(observation.initPID, "cpu"), "cpu.cfs_quota_us") == "50000")
        }
        #expect(fixture.runtime.observeResources(directory: fixture.directory, expecting: config.resources, layout: layout)?
            .usage.cpuNanoseconds ?? 0 > 500_000_000)
    }

    @Test func limitsChangeInPlaceAndALowerMemoryLimitIsRefused() throws {
        guard try Self.requireHost() else { return }
        let fixture = try ContainerFixture()
        defer { fixture.cleanup() }
        // 16 MiB in /dev/shm (tmpfs pages are charged to the cgroup), then wait.
        var config = try fixture.config(["sh", "-c", "dd if=/dev/zero of=/dev/shm/fill bs=1M count=16 && echo filled; sleep 100000"])
        config.resources = ResourceLimits(memory: 32 << 20, pids: 100)
        let observation = try fixture.runtime.start(config, directory: fixture.directory)
        let layout = try CgroupLayout.host()
        let memory = try #require(try Self.directory(observation.initPID, "memory"))
        let pids = try #require(try Self.directory(observation.initPID, "pids"))
        let memoryFile = layout.version == .v1 ? "memory.limit_in_bytes" : "memory.max"
        #expect(waitUntil(10) { (try? Files.readText(fixture.directory + "/log"))??.contains("filled") == true })

        config.resources = ResourceLimits(memory: 64 << 20, pids: 200)
        let raised = try fixture.runtime.updateResources(config, directory: fixture.directory)
        #expect(raised.refused.isEmpty)
        #expect(try cgroupFile(memory, memoryFile) == String(64 << 20))
        #expect(try cgroupFile(pids, "pids.max") == "200")
        let after = fixture.runtime.observe(directory: fixture.directory)
        #expect(after.initPID == observation.initPID && after.initStartTime == observation.initStartTime, "the same process")

        // Below what it uses: reported, not forced; the other limit still changes.
        config.resources = ResourceLimits(memory: 8 << 20, pids: 150)
        let lowered = try fixture.runtime.updateResources(config, directory: fixture.directory)
        #expect(lowered.refused.map(\.kind) == [.memory], "\(lowered.refused)")
        #expect(try cgroupFile(memory, memoryFile) == String(64 << 20))
        #expect(try cgroupFile(pids, "pids.max") == "150")
        #expect(ProcessStat.isAlive(pid: observation.initPID, startTime: observation.initStartTime))
        let usage = try #require(fixture.runtime.observeResources(directory: fixture.directory, expecting: config.resources, layout: layout))
        #expect((usage.usage.memory ?? 0) >= 16 << 20)
        #expect(usage.usage.pids.map(String.init) == (try cgroupFile(pids, "pids.current")))
    }

    @Test func aLimitChangedByHandIsDrift() throws {
        guard try Self.requireHost() else { return }
        let fixture = try ContainerFixture()
        defer { fixture.cleanup() }
        var config = try fixture.config()
        config.resources = ResourceLimits(cpuWeight: 200, pids: 100)
        let observation = try fixture.runtime.start(config, directory: fixture.directory)
        let layout = try CgroupLayout.host()
        #expect(fixture.runtime.observeResources(directory: fixture.directory, expecting: config.resources, layout: layout)?.drift == [])

        // By hand, as an operator would: echo 999 > pids.max.
        let pids = try #require(try Self.directory(observation.initPID, "pids"))
        try writeCgroupFile("\(pids)/pids.max", "999")
        let drift = fixture.runtime.observeResources(directory: fixture.directory, expecting: config.resources, layout: layout)?.drift
        #expect(drift?.map(\.description) == ["resources.pids: pids.max is 999, expected 100"])

        // Repaired in place by applying the declared limits again.
        _ = try fixture.runtime.updateResources(config, directory: fixture.directory)
        #expect(try cgroupFile(pids, "pids.max") == "100")
        #expect(fixture.runtime.observeResources(directory: fixture.directory, expecting: config.resources, layout: layout)?.drift == [])
    }

    @Test func stopKillsADaemonizedChild() throws {
        guard try Self.requireHost() else { return }
        let fixture = try ContainerFixture()
        defer { fixture.cleanup() }
        // No pid namespace: nothing but the cgroup ties the daemon to the container once
        // it left the init's session and process tree (setsid, the shell between exits).
        let config = try fixture.config(["sh", "-c", "setsid sh -c 'sleep 100001 & exit 0'; exec sleep 100000"],
                                        namespaces: [.mount, .uts, .ipc, .net])
        let observation = try fixture.runtime.start(config, directory: fixture.directory)
        let freezerOrUnified = try #require(try Self.directory(observation.initPID, "freezer"))
        var daemon: Int32?
        #expect(waitUntil(5) {
            let members = ((try? cgroupFile(freezerOrUnified, "cgroup.procs")) ?? "").split(separator: "\n").compactMap { Int32($0) }
            daemon = processes(among: members, commandLine: ["sleep", "100001"]).first
            return daemon != nil
        })
        let pid = try #require(daemon)
        let stat = try #require(ProcessStat.read(pid))
        // Should stop ever miss it, the test does not leave it behind.
        defer { if ProcessStat.isAlive(pid: pid, startTime: stat.startTime) { kill(pid, SIGKILL) } }
        #expect(try procStatus(pid, "NSsid") != procStatus(observation.initPID, "NSsid"), "a session of its own")
        #expect(stat.parentPID != observation.initPID)

        try fixture.runtime.stop(directory: fixture.directory, timeout: 1)
        #expect(!ProcessStat.isAlive(pid: pid, startTime: stat.startTime), "the daemon died with the container")
        #expect(try cgroupFile(freezerOrUnified, "cgroup.procs").isEmpty)
    }

    @Test func aNodeMadeWithMknodCannotBeOpened() throws {
        guard try Self.requireHost(), try Host.require(.command("/usr/bin/gcc")) else { return }
        let fixture = try ContainerFixture()
        defer { fixture.cleanup() }
        try Probe.install("opendev", into: fixture.root)
        var config = try fixture.config()
        config.capabilities.append(Capability.named("MKNOD")!)
        _ = try fixture.runtime.start(config, directory: fixture.directory)

        // A loop device's node (what backs a tupp pool) and a disk's: made, not opened.
        #expect(try fixture.exec(["mknod", "/dev/loop-of-the-host", "b", "7", "0"]).status == 0)
        #expect(try fixture.exec(["mknod", "/dev/disk-of-the-host", "b", "8", "0"]).status == 0)
        #expect(try fixture.exec(["opendev", "/dev/loop-of-the-host"]).output == "open=EPERM\n")
        #expect(try fixture.exec(["opendev", "/dev/disk-of-the-host"]).output == "open=EPERM\n")
        // tupp's own /dev stays usable, and a copy of an allowed node works too.
        #expect(try fixture.exec(["mknod", "/dev/null-copy", "c", "1", "3"]).status == 0)
        for path in ["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/ptmx", "/dev/null-copy"] {
            #expect(try fixture.exec(["opendev", path]).output == "open=ok\n", "\(path)")
        }
    }

    @Test func aGrantedDeviceIsCreatedAndAllowed() throws {
        guard try Self.requireHost(), try Host.require(.command("/usr/bin/gcc")),
              Files.exists("/dev/fuse") else { return }
        let fixture = try ContainerFixture()
        defer { fixture.cleanup() }
        try Probe.install("opendev", into: fixture.root)
        var config = try fixture.config()
        config.devices = [DeviceGrant(path: "/dev/fuse", permissions: "rw")]
        _ = try fixture.runtime.start(config, directory: fixture.directory)

        var host = stat()
        try Errno.check("stat", "/dev/fuse") { stat("/dev/fuse", &host) }
        let inside = try fixture.exec(["stat", "-c", "%F %t:%T %a", "/dev/fuse"]).output
        let mode = String(host.st_mode & 0o777, radix: 8)
        #expect(inside == "character special file a:e5 \(mode)\n", "\(inside)")
        #expect(try fixture.exec(["opendev", "/dev/fuse"]).output == "open=ok\n")
    }
}
