import Glibc
import Testing
import TuppBase
import TuppFacts
import TuppManifest
import TuppRuntime
import TuppSystem
import TuppTestSupport

/// What a process inside the container sees, witnessed through `tupp-shim exec`.
@Suite(.serialized)
struct InsideContainerTests {
    static let maskedProc = ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                             "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi"]
    static let readonlyProc = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]

    @Test func hostnameProcessesAndMountsAreTheContainers() throws {
        guard try Host.require(.root, .command(ContainerFixture.busyboxPath)) else { return }
        let fixture = try ContainerFixture()
        defer { fixture.cleanup() }
        let hostBefore = hostHostname()
        _ = try fixture.runtime.start(try fixture.config(), directory: fixture.directory)

        #expect(try fixture.exec(["hostname"]).output == fixture.name + "\n")
        #expect(hostHostname() == hostBefore)

        // PID 1 is the command; the only other process is ps itself.
        let ps = try fixture.exec(["ps", "-o", "pid,args"])
        let rows = ps.output.split(separator: "\n").dropFirst().map { $0.split(separator: " ", maxSplits: 1).map(String.init) }
        #expect(rows.count == 2, "\(ps.output)")
        #expect(rows.first == ["1", "sleep 100000"])
        #expect(rows.last?.last?.hasPrefix("ps") == true)

        // Only the container's mounts: no old root, nothing shared with the host.
        let mounts = MountInfo.parse(try fixture.exec(["cat", "/proc/self/mountinfo"]).output)
        var expected: Set<String> = ["/", "/proc", "/dev", "/dev/pts", "/dev/shm", "/sys", "/tmp", "/sys/firmware"]
        for path in Self.maskedProc + Self.readonlyProc where Files.exists(path) { expected.insert(path) }
        #expect(Set(mounts.map(\.mountPoint)) == expected)
        #expect(mounts.count == expected.count)
        #expect(mounts.allSatisfy { !$0.propagation.contains { $0.hasPrefix("shared:") } })
        #expect(mounts.first { $0.mountPoint == "/" }?.root == fixture.root)
        #expect(mounts.first { $0.mountPoint == "/sys" }?.options.contains("ro") == true)
        #expect(mounts.first { $0.mountPoint == "/proc/sys" }?.options.contains("ro") == true)
        #expect(mounts.first { $0.mountPoint == "/dev/pts" }?.superOptions.contains("ptmxmode=666") == true)
        // And the host sees none of them.
        #expect(try fixture.hostMountsOfThisTest().isEmpty)
    }

    @Test func namespacesCapabilitiesAndMasks() throws {
        guard try Host.require(.root, .command(ContainerFixture.busyboxPath)) else { return }
        let fixture = try ContainerFixture()
        defer { fixture.cleanup() }
        let observation = try fixture.runtime.start(try fixture.config(), directory: fixture.directory)

        for namespace in Namespace.allCases {
            let inside = try fixture.exec(["readlink", "/proc/1/ns/\(namespace.procName)"]).output
            let host = namespaceInode(pid: "self", kind: namespace.procName)!
            #expect(inside == "\(namespace.procName):[\(observation.namespaces[namespace]!)]\n")
            #expect(observation.namespaces[namespace] != host, "\(namespace) must be private")
        }

        let status = try fixture.exec(["cat", "/proc/1/status"]).output
        func field(_ name: String) -> String? {
            status.split(separator: "\n").first { $0.hasPrefix(name + ":") }.map { $0.split(separator: "\t").last.map(String.init) ?? "" }
        }
        // CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP NET_BIND_SERVICE
        #expect(field("CapEff") == "00000000000005fb")
        #expect(field("CapPrm") == "00000000000005fb")
        #expect(field("CapBnd") == "00000000000005fb")
        #expect(field("CapInh") == "0000000000000000")
        #expect(field("CapAmb") == "0000000000000000")
        #expect(field("NoNewPrivs") == "1")
        // An exec'd process gets the same set.
        #expect(try fixture.sh("grep CapEff /proc/self/status").output == "CapEff:\t00000000000005fb\n")

        for path in Self.maskedProc + ["/sys/firmware"] where Files.exists(path) {
            let listing = Files.isDirectory(path) ? try fixture.exec(["ls", "-A", path]) : try fixture.exec(["cat", path])
            #expect(listing.status == 0 && listing.output.isEmpty, "\(path) must read empty: \(listing.output)")
        }
        #expect(try fixture.exec(["cat", "/proc/uptime"]).output.isEmpty == false, "proc itself stays readable")

        #expect(try fixture.exec(["mount", "-t", "tmpfs", "none", "/tmp"]).status != 0)
        #expect(try fixture.exec(["mknod", "/tmp/null2", "c", "1", "3"]).status != 0)
        #expect(try fixture.sh("echo b > /proc/sysrq-trigger").status != 0)
        let writeSys = try fixture.sh("echo changed > /proc/sys/kernel/hostname")
        #expect(writeSys.status != 0 && writeSys.output.contains("Read-only"), "\(writeSys.output)")
        #expect(try fixture.exec(["hostname"]).output == fixture.name + "\n")
    }

    @Test func bindMountsAndTheInitsEnvironment() throws {
        guard try Host.require(.root, .command(ContainerFixture.busyboxPath)) else { return }
        let fixture = try ContainerFixture()
        defer { fixture.cleanup() }
        let readonlyDir = fixture.temp.path + "/host-ro", writableDir = fixture.temp.path + "/host-rw"
        let hostFile = fixture.temp.path + "/host-file"
        try Files.createDirectory(readonlyDir)
        try Files.createDirectory(writableDir)
        try Files.writeAtomically(readonlyDir + "/hello", text: "from the host\n")
        try Files.writeAtomically(hostFile, text: "a single file\n")
        var config = try fixture.config()
        config.mounts += [.bind(readonlyDir, at: "/srv/data", readonly: true), .bind(writableDir, at: "/rw"),
                          .bind(hostFile, at: "/etc/injected", options: ["nosuid", "nodev"])]
        let hostPingRange = try Files.readText("/proc/sys/net/ipv4/ping_group_range")
        _ = try fixture.runtime.start(config, directory: fixture.directory)

        // Targets were created inside the root to match the source: directories and a file.
        #expect(Files.isDirectory(fixture.root + "/srv/data"))
        #expect(try Files.status(fixture.root + "/etc/injected").map { $0.st_mode & S_IFMT } == S_IFREG)
        #expect(try fixture.exec(["cat", "/srv/data/hello"]).output == "from the host\n")
        #expect(try fixture.exec(["cat", "/etc/injected"]).output == "a single file\n")
        let readonlyWrite = try fixture.sh("echo x > /srv/data/new")
        #expect(readonlyWrite.status != 0 && readonlyWrite.output.contains("Read-only"), "\(readonlyWrite.output)")
        #expect(!Files.exists(readonlyDir + "/new"))
        #expect(try fixture.sh("echo written > /rw/out").status == 0)
        #expect(try Files.readText(writableDir + "/out") == "written\n")
        let mounts = MountInfo.parse(try fixture.exec(["cat", "/proc/self/mountinfo"]).output)
        #expect(mounts.first { $0.mountPoint == "/srv/data" }?.options.contains("ro") == true)
        #expect(mounts.first { $0.mountPoint == "/rw" }?.options.contains("rw") == true)
        #expect(mounts.first { $0.mountPoint == "/etc/injected" }.map { $0.options.contains("nosuid") && $0.options.contains("nodev") } == true)

        // Every descriptor but 0, 1, 2 was closed before exec.
        #expect(try fixture.exec(["ls", "/proc/1/fd"]).output == "0\n1\n2\n")
        // Unprivileged ICMP sockets in the container's netns (Docker's setting); the host's is untouched.
        #expect(try fixture.exec(["cat", "/proc/sys/net/ipv4/ping_group_range"]).output == "0\t2147483647\n")
        #expect(try Files.readText("/proc/sys/net/ipv4/ping_group_range") == hostPingRange)
        // The default environment, and nothing inherited from the caller.
        let env = try fixture.exec(["cat", "/proc/1/environ"]).output.split(separator: "\0").map(String.init).sorted()
        #expect(env == ["HOME=/root", "HOSTNAME=\(fixture.name)", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"])
    }

    @Test func unrequestedNamespacesAreSharedAndCapabilitiesAdjust() throws {
        guard try Host.require(.root, .command(ContainerFixture.busyboxPath)) else { return }
        let fixture = try ContainerFixture()
        defer { fixture.cleanup() }
        var config = try fixture.config(namespaces: [.mount, .pid])
        // As a manifest declares them: the defaults adjusted by add/drop.
        config.capabilities = Container(name: fixture.name, image: "box", command: config.command,
                                        capabilitiesAdd: ["NET_RAW", "sys_time"].compactMap(Capability.named),
                                        capabilitiesDrop: ["CHOWN", "CAP_KILL"].compactMap(Capability.named)).effectiveCapabilities
        let observation = try fixture.runtime.start(config, directory: fixture.directory)

        for namespace in Namespace.allCases {
            let host = namespaceInode(pid: "self", kind: namespace.procName)
            let inside = try fixture.exec(["readlink", "/proc/1/ns/\(namespace.procName)"]).output
            #expect(inside == "\(namespace.procName):[\(observation.namespaces[namespace]!)]\n")
            if [.mount, .pid].contains(namespace) {
                #expect(observation.namespaces[namespace] != host)
            } else {
                #expect(observation.namespaces[namespace] == host, "\(namespace) was not requested")
            }
        }
        // Without .uts the hostname is the host's — and tupp refuses to change it.
        #expect(try fixture.exec(["hostname"]).output == hostHostname() + "\n")
        #expect(thrownError { try fixture.runtime.setHostname("nope", for: observation) } != nil)
        // 0x5fb - CHOWN(0) - KILL(5) + NET_RAW(13) + SYS_TIME(25)
        let expected = String(0x5fb & ~1 & ~(1 << 5) | (1 << 13) | (1 << 25), radix: 16)
        let padded = String(repeating: "0", count: 16 - expected.count) + expected
        #expect(try fixture.sh("grep CapBnd /proc/1/status").output == "CapBnd:\t\(padded)\n")
    }

    @Test func symlinkedTargetsAreRefused() throws {
        guard try Host.require(.root, .command(ContainerFixture.busyboxPath)) else { return }
        let fixture = try ContainerFixture()
        defer { fixture.cleanup() }
        // An image whose /proc points elsewhere.
        try Errno.check("rmdir", "proc") { rmdir(fixture.root + "/proc") }
        try Errno.check("symlink", "proc") { symlink("/etc", fixture.root + "/proc") }
        let procError = thrownError {
            _ = try fixture.runtime.start(try fixture.config(), directory: fixture.directory)
        }
        // Fields, not `description`: TuppSystem's Errno.names traps on duplicate keys
        // (EWOULDBLOCK == EAGAIN) the first time an errno is rendered — reported to the lead.
        #expect(procError?.operation == "mount")
        #expect(procError?.object == "/proc in \(fixture.root)")
        #expect(procError?.code == ELOOP)
        #expect(procError?.detail?.contains("symlink") == true)

        // A mount target that is a symlink, here a relative escape attempt.
        try Errno.check("unlink", "proc") { unlink(fixture.root + "/proc") }
        try Files.createDirectory(fixture.root + "/proc")
        try Errno.check("symlink", "data") { symlink("../../../../../etc", fixture.root + "/data") }
        var config = try fixture.config()
        config.mounts.append(.tmpfs(at: "/data"))
        let dataError = thrownError { _ = try fixture.runtime.start(config, directory: fixture.directory) }
        #expect(dataError?.operation == "mount")
        #expect(dataError?.object == "/data in \(fixture.root)")
        #expect(dataError?.code == ELOOP)

        // Nothing was left running: the supervisor recorded the failure and exited.
        let observation = fixture.runtime.observe(directory: fixture.directory)
        #expect(observation.state == .exited)
        #expect(observation.shimPID > 0)
        #expect(waitUntil { !isProcessAlive(observation.shimPID) })
    }

    @Test func startFailuresNameTheStep() throws {
        guard try Host.require(.root, .command(ContainerFixture.busyboxPath)) else { return }
        let fixture = try ContainerFixture()
        defer { fixture.cleanup() }
        var config = try fixture.config()
        config.workdir = "/does/not/exist"
        let workdirError = thrownError { _ = try fixture.runtime.start(config, directory: fixture.directory) }
        #expect(workdirError.map { [$0.operation, $0.object, $0.detail] } == ["chdir", "workdir /does/not/exist in \(fixture.root) (uid 0)", "the workdir must exist in the image and be reachable by the user"])
        #expect(workdirError?.code == ENOENT)

        let missing = thrownError {
            _ = try fixture.runtime.start(try fixture.config(["/bin/nope"]), directory: fixture.directory)
        }
        #expect(missing.map { [$0.operation, $0.object] } == ["exec", "/bin/nope in \(fixture.root)"])
        #expect(missing?.code == ENOENT && missing?.detail == nil)
        let observation = fixture.runtime.observe(directory: fixture.directory)
        #expect(observation.state == .exited)
        #expect(observation.error?.hasPrefix("exec /bin/nope") == true)
    }

    @Test func prepareRunsBeforeTheCommandAndItsFailureLeavesNothing() throws {
        guard try Host.require(.root, .command(ContainerFixture.busyboxPath)) else { return }
        let fixture = try ContainerFixture()
        defer { fixture.cleanup() }
        struct Refused: Error {}
        var seen: StartingContainer?
        #expect(throws: Refused.self) {
            try fixture.runtime.start(try fixture.config(["sh", "-c", "echo ran"]), directory: fixture.directory) { starting in
                seen = starting
                // The init exists but still waits: it is the shim binary, not the command.
                let exe = Paths.canonical("/proc/\(starting.initPID)/exe")
                #expect(exe == Paths.canonical(fixture.runtime.shimPath))
                #expect(namespaceInode(pid: "self", kind: "net") != namespaceInode(pid: String(starting.shimPID), kind: "net"))
                #expect(Files.exists(starting.netnsPath))
                throw Refused()
            }
        }
        let starting = try #require(seen)
        #expect(!isProcessAlive(starting.shimPID))
        #expect(!isProcessAlive(starting.initPID))
        #expect((try Files.readText(fixture.directory + "/log")) ?? "" == "", "the command never ran")
    }
}
