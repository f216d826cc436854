import Glibc
import Testing
import TuppFacts
import TuppManifest
import TuppRuntime
import TuppSystem
import TuppTestSupport

/// The process's identity, limits and file system, witnessed on the host through
/// /proc/PID/{status,limits,mountinfo} and the files it creates.
@Suite(.serialized)
struct ProcessConfinementTests {
    static let passwd = """
        root:x:0:0:root:/root:/bin/sh
        nobody:x:65534:65534:nobody:/nonexistent:/bin/false
        app:x:1000:1000:app:/home/app:/bin/sh

        """
    static let group = """
        root:x:0:root
        staff:x:50:app,nobody
        video:x:44:app
        nogroup:x:65534:
        app:x:1000:

        """

    /// /proc/PID/limits as name → (soft, hard).
    static func limits(_ pid: Int32) throws -> [String: (String, String)] {
        var out: [String: (String, String)] = [:]
        for line in (try Files.readText("/proc/\(pid)/limits") ?? "").split(separator: "\n").dropFirst() {
            // "Max open files            1024                 524288               files"
            let name = String(line.prefix(26)).trimmingCharacters()
            let rest = line.dropFirst(26).split(separator: " ")
            if rest.count >= 2 { out[name] = (String(rest[0]), String(rest[1])) }
        }
        return out
    }

    @Test func theUserIsResolvedInTheContainersOwnFiles() throws {
        guard try Host.require(.root, .command(ContainerFixture.busyboxPath)) else { return }
        let fixture = try ContainerFixture()
        defer { fixture.cleanup() }
        try fixture.writeUsers(passwd: Self.passwd, group: Self.group)
        let volume = fixture.temp.path + "/volume"
        try Files.createDirectory(volume, mode: 0o777)
        chmod(volume, 0o777)
        var config = try fixture.config()
        config.user = UserSpec("nobody")
        config.mounts.append(.bind(volume, at: "/data"))
        let observation = try fixture.runtime.start(config, directory: fixture.directory)

        #expect(try procStatus(observation.initPID, "Uid") == "65534\t65534\t65534\t65534")
        #expect(try procStatus(observation.initPID, "Gid") == "65534\t65534\t65534\t65534")
        #expect(try procStatus(observation.initPID, "Groups") == "50")
        // A non-root user has no capabilities after exec: the kernel's rules.
        #expect(try procStatus(observation.initPID, "CapEff") == "0000000000000000")
        #expect(try procStatus(observation.initPID, "CapPrm") == "0000000000000000")
        #expect(try procStatus(observation.initPID, "CapBnd") == "00000000000005fb", "the bounding set is still the container's")
        // Supplementary groups: those that list the user as a member (the kernel sorts them).
        #expect(try fixture.exec(["id"]).output == "uid=65534(nobody) gid=65534(nogroup) groups=50(staff)\n")
        #expect(try fixture.exec(["sh", "-c", "echo $HOME"]).output == "/nonexistent\n")

        // Files it creates on a volume are its own, as the host sees them.
        #expect(try fixture.exec(["touch", "/data/made-by-nobody"]).status == 0)
        let made = try #require(try Files.status(volume + "/made-by-nobody"))
        #expect(made.st_uid == 65534 && made.st_gid == 65534)

        // exec -u: another user for one command, resolved the same way.
        let asApp = try Spawn.run(try fixture.runtime.execCommand(directory: fixture.directory, command: ["id"], user: UserSpec("app")!),
                                  stderrToStdout: true)
        #expect(asApp.output == "uid=1000(app) gid=1000(app) groups=44(video),50(staff)\n", "\(asApp.output)")
        let asRoot = try Spawn.run(try fixture.runtime.execCommand(directory: fixture.directory, command: ["id", "-u"], user: .root),
                                   stderrToStdout: true)
        #expect(asRoot.output == "0\n")
        #expect(thrownError { _ = try fixture.runtime.execCommand(directory: fixture.directory, command: ["id"], user: UserSpec("ghost")!) }?
            .detail == "no such user in the container's /etc/passwd")
    }

    @Test func ambientCapabilitiesOnlyWhenAsked() throws {
        guard try Host.require(.root, .command(ContainerFixture.busyboxPath)) else { return }
        let fixture = try ContainerFixture()
        defer { fixture.cleanup() }
        try fixture.writeUsers(passwd: Self.passwd, group: Self.group)
        var config = try fixture.config()
        config.user = UserSpec("1000:50")
        config.ambientCapabilities = [Capability.named("NET_BIND_SERVICE")!]
        let observation = try fixture.runtime.start(config, directory: fixture.directory)
        // NET_BIND_SERVICE is bit 10.
        #expect(try procStatus(observation.initPID, "CapAmb") == "0000000000000400")
        #expect(try procStatus(observation.initPID, "CapEff") == "0000000000000400")
        #expect(try procStatus(observation.initPID, "Uid") == "1000\t1000\t1000\t1000")
        #expect(try procStatus(observation.initPID, "Gid") == "50\t50\t50\t50")
    }

    @Test func aReadOnlyRootfsKeepsScratchSpaceWritable() throws {
        guard try Host.require(.root, .command(ContainerFixture.busyboxPath)) else { return }
        let fixture = try ContainerFixture()
        defer { fixture.cleanup() }
        var config = try fixture.config()
        config.readOnly = true
        let observation = try fixture.runtime.start(config, directory: fixture.directory)

        let write = try fixture.sh("echo x > /etc/x")
        #expect(write.status != 0 && write.output.contains("Read-only file system"), "\(write.output)")
        #expect(!Files.exists(fixture.root + "/etc/x"))
        for path in ["/tmp/x", "/run/x", "/var/tmp/x", "/dev/shm/x"] {
            #expect(try fixture.sh("echo x > \(path)").status == 0, "\(path) is writable")
        }
        let mounts = MountInfo.parse(try Files.readText("/proc/\(observation.initPID)/mountinfo") ?? "")
        #expect(mounts.first { $0.mountPoint == "/" }?.options.contains("ro") == true)
        // The fixture's own /tmp mount (size=1m) was kept; /run and /var/tmp were added.
        #expect(mounts.first { $0.mountPoint == "/tmp" }?.superOptions.contains("size=1024k") == true)
        #expect(Set(mounts.filter { $0.fsType == "tmpfs" }.map(\.mountPoint)).isSuperset(of: ["/tmp", "/run", "/var/tmp"]))
    }

    @Test func limitsAreTuppsNotTheCallers() throws {
        guard try Host.require(.root, .command(ContainerFixture.busyboxPath)) else { return }
        let fixture = try ContainerFixture()
        defer { fixture.cleanup() }
        var caller = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &caller)
        let observation = try fixture.runtime.start(try fixture.config(), directory: fixture.directory)
        let limits = try Self.limits(observation.initPID)
        // Where tupp runs without CAP_SYS_RESOURCE it cannot raise a hard limit; it keeps
        // the caller's hard nofile then, but the soft one is its own.
        let canRaise = ((try Files.readText("/proc/self/status")) ?? "").split(separator: "\n")
            .first { $0.hasPrefix("CapEff:") }.flatMap { UInt64($0.split(separator: "\t").last ?? "", radix: 16) }
            .map { $0 & (1 << 24) != 0 } ?? false
        let hard = canRaise ? "524288" : String(min(caller.rlim_max, 524_288))
        #expect(limits["Max open files"]! == ("1024", hard), "caller: \(caller.rlim_cur):\(caller.rlim_max)")
        #expect(caller.rlim_cur != 1024, "the witness needs a caller whose soft nofile differs")
        #expect(limits["Max core file size"]! == ("0", "unlimited"))
        #expect(limits["Max stack size"]! == ("8388608", "unlimited"))
        #expect(limits["Max locked memory"]! == ("8388608", "8388608"))
        #expect(limits["Max msgqueue size"]! == ("819200", "819200"))
        let half = String(try Ulimit.threadsMax() / 2)
        #expect(limits["Max processes"]! == (half, half))
        // exec'd processes get the same.
        let inside = try fixture.exec(["sh", "-c", "grep 'open files' /proc/self/limits"]).output
        #expect(inside.split(separator: " ").filter { !$0.isEmpty }.dropFirst(3).prefix(2) == ["1024", Substring(hard)], "\(inside)")
    }

    @Test func declaredUlimitsAreVisibleInProc() throws {
        guard try Host.require(.root, .command(ContainerFixture.busyboxPath)) else { return }
        let fixture = try ContainerFixture()
        defer { fixture.cleanup() }
        var config = try fixture.config()
        config.ulimits = [Ulimit(.nofile, 4096), Ulimit(.nproc, soft: 1024, hard: 2048), Ulimit(.core, 0)]
        config.shmSize = 256 << 20
        let observation = try fixture.runtime.start(config, directory: fixture.directory)
        let limits = try Self.limits(observation.initPID)
        #expect(limits["Max open files"]! == ("4096", "4096"))
        #expect(limits["Max processes"]! == ("1024", "2048"))
        #expect(limits["Max core file size"]! == ("0", "0"))
        let mounts = MountInfo.parse(try Files.readText("/proc/\(observation.initPID)/mountinfo") ?? "")
        #expect(mounts.first { $0.mountPoint == "/dev/shm" }?.superOptions.contains("size=262144k") == true)
    }
}
