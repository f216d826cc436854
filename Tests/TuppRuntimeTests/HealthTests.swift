import Glibc
import Testing
import TuppBase
import TuppFacts
import TuppManifest
import TuppRuntime
import TuppSystem
import TuppTestSupport

/// The supervisor's health check, seen from the kernel's side: where the check process
/// runs, and that no CLI has to stay alive for it.
@Suite(.serialized) struct HealthTests {
    /// The check writes what the kernel says about it (/proc/self) into a bind-mounted
    /// host directory: the init's pid and mount namespaces, the container's cgroup, its
    /// user, its seccomp filter and no_new_privs — as `tupp exec` would run it.
    @Test func theCheckRunsInsideTheContainerAsItsCommandDoes() throws {
        guard try Host.require(.root, .command(ContainerFixture.busyboxPath)) else { return }
        let fixture = try ContainerFixture()
        defer { fixture.cleanup() }
        let shared = fixture.temp.path + "/shared"
        try Files.createDirectory(shared)
        chmod(shared, 0o777)   // the check runs as nobody
        try fixture.writeUsers(passwd: "root:x:0:0::/root:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n", group: "root:x:0:\nnogroup:x:65534:\n")
        var config = try fixture.config()
        config.mounts.append(.bind(shared, at: "/shared"))
        config.user = UserSpec("nobody")
        config.healthcheck = Healthcheck(command: ["/bin/sh", "-ec", "cat /proc/self/status > /shared/status; cat /proc/self/cgroup > /shared/cgroup; echo checked"],
                                         interval: 0.1, timeout: 2, retries: 1)
        let started = try fixture.runtime.start(config, directory: fixture.directory)
        #expect(waitUntil(10) { fixture.runtime.observe(directory: fixture.directory).health == .healthy })

        let status = try #require(try Files.readText("\(shared)/status"))
        #expect(status.contains("\nUid:\t65534\t65534\t65534\t65534"), "the container's user: \(status)")
        #expect(status.contains("\nSeccomp:\t2"), "its seccomp filter")
        #expect(status.contains("\nNoNewPrivs:\t1"))
        // The container's /proc is its pid namespace's: /proc/self resolves there only for
        // a process inside it, with a small pid (the init is 1). The file it wrote reached
        // the host only through the container's mount namespace, where /shared is mounted.
        let nspid = status.split(separator: "\n").first { $0.hasPrefix("NSpid:") }?.split(separator: "\t").dropFirst() ?? []
        #expect(nspid.count == 1 && (2..<1000).contains(Int(nspid.first ?? "") ?? 0), "in the container's pid namespace: \(nspid)")
        let cgroups = try #require(try Files.readText("\(shared)/cgroup"))
        let initCgroups = try #require(try Files.readText("/proc/\(started.initPID)/cgroup"))
        #expect(cgroups == initCgroups, "the container's cgroup")
        let report = try #require(fixture.runtime.health(directory: fixture.directory))
        #expect(report.log.last?.output == "checked\n" && report.log.last?.exitCode == 0)
    }

    @Test func aSlowCheckTimesOutAndCountsAsAFailure() throws {
        guard try Host.require(.root, .command(ContainerFixture.busyboxPath)) else { return }
        let fixture = try ContainerFixture()
        defer { fixture.cleanup() }
        var config = try fixture.config()
        config.healthcheck = Healthcheck(command: ["/bin/sh", "-c", "echo slow; sleep 5"], interval: 0.1, timeout: 0.3, retries: 2)
        _ = try fixture.runtime.start(config, directory: fixture.directory)
        #expect(waitUntil(10) { fixture.runtime.observe(directory: fixture.directory).health == .unhealthy })
        let report = try #require(fixture.runtime.health(directory: fixture.directory))
        let last = try #require(report.log.last)
        #expect(last.exitCode == nil, "timed out")
        #expect(last.output.hasPrefix("slow\n") && last.output.contains("exceeded timeout"), "\(last.output)")
        #expect(last.end - last.start < 1.5, "killed at the timeout, not after the command's 5 s")
        // Nothing of the killed check is left in the container.
        let processes = try fixture.exec(["ps", "-o", "comm"]).stdout
        #expect(!processes.contains("sleep 5") && processes.split(separator: "\n").count <= 4, "\(processes)")
    }
}
