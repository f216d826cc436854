import Glibc
import Testing
import TuppFacts
import TuppManifest
import TuppRuntime
import TuppSystem
import TuppTestSupport

/// The seccomp filter, witnessed by the kernel (/proc/PID/status of the container's
/// processes) and by a static probe that makes the calls (Tests/probes/syscalls.c).
@Suite(.serialized)
struct SeccompTests {
    /// Calls Docker's, Podman's and containerd's default profiles refuse.
    static let refused = ["unshare-user", "keyctl", "add_key", "bpf", "perf_event_open", "userfaultfd", "io_uring_setup",
                          "kexec_load", "init_module", "open_by_handle_at", "mount", "reboot", "swapon", "clock_settime",
                          "clone-newuts", "personality-exec", "socket-vsock"]

    /// "NAME=RESULT" lines of the probe.
    static func results(_ output: String) -> [String: String] {
        var out: [String: String] = [:]
        for line in output.split(separator: "\n") {
            let parts = line.split(separator: "=", maxSplits: 1).map(String.init)
            if parts.count == 2 { out[parts[0]] = parts[1] }
        }
        return out
    }

    /// The "Seccomp:" field of /proc/PID/status (0 none, 2 filter), read on the host.
    static func seccompMode(_ pid: Int32) throws -> String? {
        try Files.readText("/proc/\(pid)/status")?.split(separator: "\n")
            .first { $0.hasPrefix("Seccomp:") }.map { String($0.dropFirst("Seccomp:".count)).trimmingCharacters() }
    }

    @Test func theDefaultProfileRefusesWhatDockerRefuses() throws {
        guard try Host.require(.root, .command(ContainerFixture.busyboxPath), .command("/usr/bin/gcc")) else { return }
        let fixture = try ContainerFixture()
        defer { fixture.cleanup() }
        try Probe.install("syscalls", into: fixture.root)
        let observation = try fixture.runtime.start(try fixture.config(), directory: fixture.directory)
        #expect(try Self.seccompMode(observation.initPID) == "2", "the init runs under a filter")

        let run = try fixture.exec(["syscalls"])
        let results = Self.results(run.output)
        #expect(run.status == 0, "\(run.output)")
        for name in Self.refused {
            #expect(results[name] == "EPERM", "\(name): \(results[name] ?? "no result")")
        }
        // What the profile lets through: a clone without namespace flags, the usual
        // personality, and ptrace — Moby's profile allows it since Linux 4.8, where a
        // tracer can no longer bypass the filter; it works within the container.
        #expect(results["clone"] == "ok")
        #expect(results["personality-linux"] == "ok")
        #expect(results["ptrace-sibling"] == "ok")
        // clone3 carries its flags in memory seccomp cannot read: ENOSYS, so libc falls back to clone.
        #expect(results["clone3"] == "ENOSYS")
        // Processes started by exec are filtered too.
        let exec = try fixture.exec(["sh", "-c", "grep Seccomp: /proc/self/status"])
        #expect(exec.output == "Seccomp:\t2\n", "\(exec.output)")
    }

    @Test func unconfinedLetsTheCallsReachTheKernel() throws {
        guard try Host.require(.root, .command(ContainerFixture.busyboxPath), .command("/usr/bin/gcc")) else { return }
        let fixture = try ContainerFixture()
        defer { fixture.cleanup() }
        try Probe.install("syscalls", into: fixture.root)
        var config = try fixture.config()
        config.seccomp = .unconfined
        // The capabilities the calls need, so that the kernel's own checks pass and only
        // the arguments (bad on purpose) are refused: EFAULT, EINVAL, ENOENT … not EPERM.
        config.capabilities += ["SYS_ADMIN", "SYS_BOOT", "SYS_MODULE", "SYS_TIME", "DAC_READ_SEARCH", "SYS_PTRACE",
                                "BPF", "PERFMON"].compactMap(Capability.named)
        let observation = try fixture.runtime.start(config, directory: fixture.directory)
        #expect(try Self.seccompMode(observation.initPID) == "0")

        let results = Self.results(try fixture.exec(["syscalls"]).output)
        for name in Self.refused {
            #expect(results[name] != nil && results[name] != "EPERM", "\(name): \(results[name] ?? "no result")")
        }
    }

    @Test func theDefaultProfileFollowsTheCapabilities() throws {
        guard try Host.require(.root, .command(ContainerFixture.busyboxPath), .command("/usr/bin/gcc")) else { return }
        let fixture = try ContainerFixture()
        defer { fixture.cleanup() }
        try Probe.install("syscalls", into: fixture.root)
        var config = try fixture.config()
        // As Moby does: CAP_SYS_ADMIN opens mount, unshare and clone with namespace flags;
        // CAP_SYS_TIME clock_settime. The rest stays refused.
        config.capabilities += ["SYS_ADMIN", "SYS_TIME"].compactMap(Capability.named)
        _ = try fixture.runtime.start(config, directory: fixture.directory)

        let results = Self.results(try fixture.exec(["syscalls"]).output)
        for name in ["mount", "unshare-user", "clone-newuts", "clock_settime"] {
            #expect(results[name] != nil && results[name] != "EPERM", "\(name): \(results[name] ?? "no result")")
        }
        #expect(results["clone3"] != "ENOSYS", "with CAP_SYS_ADMIN clone3 is allowed")
        for name in ["reboot", "init_module", "kexec_load", "keyctl", "io_uring_setup", "socket-vsock"] {
            #expect(results[name] == "EPERM", "\(name): \(results[name] ?? "no result")")
        }
    }

    @Test func aJSONProfileIsHonoured() throws {
        guard try Host.require(.root, .command(ContainerFixture.busyboxPath)) else { return }
        let fixture = try ContainerFixture()
        defer { fixture.cleanup() }
        // Docker's format: allow by default, refuse mkdir with EACCES; an unknown syscall
        // name is skipped (as runc does), not an error.
        let path = fixture.temp.path + "/profile.json"
        try Files.writeAtomically(path, text: """
            {
              "defaultAction": "SCMP_ACT_ALLOW",
              "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
              "syscalls": [
                {"names": ["mkdir", "mkdirat", "no_such_syscall_anywhere"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}
              ]
            }
            """)
        var config = try fixture.config()
        config.seccomp = .profile(try SeccompProfile.load(path: path))
        let observation = try fixture.runtime.start(config, directory: fixture.directory)
        #expect(try Self.seccompMode(observation.initPID) == "2")

        let refused = try fixture.exec(["mkdir", "/tmp/made"])
        #expect(refused.status != 0 && refused.output.contains("Permission denied"), "\(refused.output)")
        #expect(!Files.exists(fixture.root + "/tmp/made"))
        // Everything else is allowed by this profile: even what the default refuses.
        #expect(try fixture.exec(["touch", "/tmp/file"]).status == 0)
    }

    @Test func compiledFiltersAreCachedAndAForgedCacheIsNotTrusted() throws {
        guard try Host.require(.root, .command(ContainerFixture.busyboxPath), .command("/usr/bin/gcc")) else { return }
        let fixture = try ContainerFixture()
        defer { fixture.cleanup() }
        try Probe.install("syscalls", into: fixture.root)
        let cache = fixture.temp.path + "/cache"
        try Files.createDirectory(cache, mode: 0o700)
        let runtime = Runtime(cacheDirectory: cache)
        let config = try fixture.config(restart: .always)
        let first = try runtime.start(config, directory: fixture.directory)
        let files = try Files.list(cache)
        #expect(files.count == 1 && files[0].hasPrefix("seccomp-") && files[0].hasSuffix(".bpf"), "\(files)")
        let path = cache + "/" + files[0]
        let stored = try #require(try Files.status(path))
        #expect(stored.st_uid == 0 && stored.st_mode & 0o777 == 0o600)
        let original = try #require(try Files.read(path))

        // Every byte of the program changed, header intact: the checksum no longer
        // matches. The next run (a restart, by the supervisor) must compile again.
        var forged = original
        for index in 24..<forged.count { forged[index] = 0 }
        try Files.writeAtomically(path, forged, mode: 0o600)
        kill(first.initPID, SIGKILL)
        var second = first
        #expect(waitUntil(5) {
            second = runtime.observe(directory: fixture.directory)
            return second.isRunning && second.initPID != first.initPID
        })
        #expect(try Files.read(path) == original, "the forged file was replaced by a fresh compile")
        try #require(second.initPID > 0)  // kill(0) would hit the test's own process group
        #expect(try Self.seccompMode(second.initPID) == "2")

        // A file others may write is not trusted either, whatever it holds.
        chmod(path, 0o666)
        kill(second.initPID, SIGKILL)
        var third = second
        #expect(waitUntil(5) {
            third = runtime.observe(directory: fixture.directory)
            return third.isRunning && third.initPID != second.initPID
        })
        #expect(try Files.status(path).map { $0.st_mode & 0o777 } == 0o600, "rewritten")
        let results = Self.results(try fixture.exec(["syscalls"]).output)
        #expect(results["keyctl"] == "EPERM" && results["mount"] == "EPERM", "\(results)")
        try runtime.stop(directory: fixture.directory, timeout: 1)
    }
}
