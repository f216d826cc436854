import Glibc
import Testing
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
}
