import Glibc
import Testing
import TuppFacts
import TuppManifest
import TuppRuntime
import TuppSystem
import TuppTestSupport

/// The cgroup v2 code path, on whatever cgroup2 hierarchy this host mounts — on a hybrid
/// host the empty unified tree (/sys/fs/cgroup/unified), where membership, cgroup.kill
/// and device programs work without any controller. Limits are not tried here: without
/// controllers the layout refuses them, which is checked too.
@Suite(.serialized)
struct CgroupV2Tests {
    /// The host's cgroup2 mount as a v2 layout; nil (and a skip) without one.
    static func unifiedLayout() throws -> CgroupLayout? {
        guard try Host.require(.root, .command(ContainerFixture.busyboxPath)),
              let mount = try MountInfo.read().first(where: { $0.fsType == "cgroup2" }) else { return nil }
        return try CgroupLayout.unified(at: mount.mountPoint)
    }

    @Test func membershipAndRemoval() throws {
        guard let layout = try Self.unifiedLayout() else { return }
        let fixture = try ContainerFixture()
        defer { fixture.cleanup() }
        let observation = try fixture.runtime.start(try fixture.config(restart: .always, layout: layout), directory: fixture.directory)
        let expected = "\(layout.hierarchies[0].mountPoint)/\(fixture.cgroupParent)/\(fixture.name)"
        #expect(try kernelCgroupDirectory(of: observation.initPID, controller: nil) == expected)
        #expect(try kernelCgroupDirectory(of: observation.shimPID, controller: nil) != expected)
        let exec = try fixture.exec(["cat", "/proc/self/cgroup"])
        #expect(exec.output.contains("0::/\(fixture.cgroupParent)/\(fixture.name)\n"), "\(exec.output)")

        kill(observation.initPID, SIGKILL)
        var restarted = observation
        #expect(waitUntil(5) {
            restarted = fixture.runtime.observe(directory: fixture.directory)
            return restarted.isRunning && restarted.initPID != observation.initPID
        })
        #expect(try kernelCgroupDirectory(of: restarted.initPID, controller: nil) == expected)

        fixture.cleanup()
        #expect(!Files.exists(expected))
        #expect(fixture.cgroupLeftovers().isEmpty)
    }

    @Test func stopKillsADaemonizedChildThroughCgroupKill() throws {
        guard let layout = try Self.unifiedLayout() else { return }
        let fixture = try ContainerFixture()
        defer { fixture.cleanup() }
        let config = try fixture.config(["sh", "-c", "setsid sh -c 'sleep 100002 & exit 0'; exec sleep 100000"],
                                        namespaces: [.mount, .uts, .ipc, .net], layout: layout)
        let observation = try fixture.runtime.start(config, directory: fixture.directory)
        let directory = try #require(try kernelCgroupDirectory(of: observation.initPID, controller: nil))
        #expect(Files.exists(directory + "/cgroup.kill"))
        var daemon: Int32?
        #expect(waitUntil(5) {
            let members = ((try? cgroupFile(directory, "cgroup.procs")) ?? "").split(separator: "\n").compactMap { Int32($0) }
            daemon = processes(among: members, commandLine: ["sleep", "100002"]).first
            return daemon != nil
        })
        let pid = try #require(daemon)
        let stat = try #require(ProcessStat.read(pid))
        // Should stop ever miss it, the test does not leave it behind.
        defer { if ProcessStat.isAlive(pid: pid, startTime: stat.startTime) { kill(pid, SIGKILL) } }

        try fixture.runtime.stop(directory: fixture.directory, timeout: 1)
        #expect(!ProcessStat.isAlive(pid: pid, startTime: stat.startTime))
        #expect(try cgroupFile(directory, "cgroup.procs").isEmpty)
        #expect(cgroupField("populated", try cgroupFile(directory, "cgroup.events")) == 0)
    }

    @Test func theDevicePolicyIsABPFProgram() throws {
        guard let layout = try Self.unifiedLayout(), try Host.require(.command("/usr/bin/gcc")) else { return }
        let fixture = try ContainerFixture()
        defer { fixture.cleanup() }
        try Probe.install("opendev", into: fixture.root)
        var config = try fixture.config(layout: layout)
        config.capabilities.append(Capability.named("MKNOD")!)
        _ = try fixture.runtime.start(config, directory: fixture.directory)

        #expect(try fixture.exec(["mknod", "/dev/loop-of-the-host", "b", "7", "0"]).status == 0)
        #expect(try fixture.exec(["opendev", "/dev/loop-of-the-host"]).output == "open=EPERM\n")
        for path in ["/dev/null", "/dev/zero", "/dev/urandom", "/dev/ptmx"] {
            #expect(try fixture.exec(["opendev", path]).output == "open=ok\n", "\(path)")
        }
    }

    @Test func limitsWithoutControllersAreRefused() throws {
        guard let layout = try Self.unifiedLayout(), !layout.controllers.contains("memory") else { return }
        let fixture = try ContainerFixture()
        defer { fixture.cleanup() }
        #expect(layout.refusals(for: ResourceLimits(memory: 32 << 20, pids: 10)).map(\.kind) == [.memory, .pids])
        var config = try fixture.config(layout: layout)
        config.resources.memory = 32 << 20
        let error = thrownError { _ = try fixture.runtime.start(config, directory: fixture.directory) }
        #expect(error?.object == "\(fixture.name).resources.memory")
        #expect(fixture.cgroupLeftovers().isEmpty, "nothing was created")
    }
}
