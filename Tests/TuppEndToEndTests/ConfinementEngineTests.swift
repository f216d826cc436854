import Glibc
import Testing
import TuppBase
import TuppSystem
import TuppTestSupport

/// Confinement through `tupp apply` (issue 15): the manifest's fields reach the kernel.
/// Witnesses: /proc/PID/status and limits, the cgroup files under /sys/fs/cgroup, the
/// container's own view through nsenter.
@Suite(.serialized) struct ConfinementEngineTests {
    func cgroupFile(_ i: Installation, _ controller: String, _ name: String, _ file: String) throws -> String? {
        try Files.readText("/sys/fs/cgroup/\(controller)/tupp-\(i.installationID)/\(name)/\(file)")?.trimmingCharacters()
    }

    func status(_ pid: Int32, _ field: String) throws -> String? {
        try Files.readText("/proc/\(pid)/status")?.split(separator: "\n").first { $0.hasPrefix(field + ":") }
            .map { String($0.dropFirst(field.count + 1)).trimmingCharacters() }
    }

    @Test func limitsSeccompAndUserReachTheKernel() throws {
        guard try ready(), try Host.require(.command("/usr/bin/nsenter")) else { return }
        guard Files.exists("/sys/fs/cgroup/memory") else { return }   // this host's v1 layout; v2 is covered by the runtime tests
        let i = try Installation()
        defer { i.cleanupLeavingNothing() }
        func manifest(memory: String, seccomp: String) throws -> String {
            try i.manifest("m.yaml", smallManifest("""
                  app:
                    image: box
                    command: ["/bin/sh", "-c", "trap 'exit 0' TERM; sleep infinity & wait"]
                    stopTimeout: 1s
                    user: "65534:65534"
                    readOnly: true
                    seccomp: \(seccomp)
                    resources: { memory: \(memory), pids: 64 }
                    ulimits: { nofile: 2048 }
                """, network: false))
        }
        try i.apply(try manifest(memory: "64MiB", seccomp: "default"))
        let pid = try #require(try i.pid("app"))
        #expect(try status(pid, "Seccomp") == "2")
        #expect(try status(pid, "Uid")?.hasPrefix("65534") == true)
        #expect(try cgroupFile(i, "memory", "app", "memory.limit_in_bytes") == String(64 << 20))
        #expect(try cgroupFile(i, "pids", "app", "pids.max") == "64")
        #expect(try cgroupFile(i, "memory", "app", "cgroup.procs")?.split(separator: "\n").contains(Substring(String(pid))) == true)
        let limits = try Files.readText("/proc/\(pid)/limits") ?? ""
        #expect(limits.split(separator: "\n").contains { $0.hasPrefix("Max open files") && $0.contains("2048") }, "\(limits)")
        let write = try Spawn.run(["nsenter", "-t", String(pid), "-m", "-p", "-r", "-w", "/bin/sh", "-c", "echo x > /etc/x"], stderrToStdout: true)
        #expect(write.status != 0 && write.output.contains("Read-only"), "\(write)")

        // A raised limit is written in place: same process.
        let raise = try i.tupp("apply", try manifest(memory: "96MiB", seccomp: "default"))
        #expect(raise.status == 0 && !raise.stdout.contains("restarting"), "\(raise)")
        #expect(try i.pid("app") == pid)
        #expect(try cgroupFile(i, "memory", "app", "memory.limit_in_bytes") == String(96 << 20))

        // A limit changed by hand is drift, repaired in place.
        #expect(try Spawn.run(["/bin/sh", "-c", "echo 100 > /sys/fs/cgroup/pids/tupp-\(i.installationID)/app/pids.max"]).status == 0)
        let drift = try i.tupp("plan", try manifest(memory: "96MiB", seccomp: "default"))
        #expect(drift.stdout.contains("cgroup limit changed outside tupp"), "\(drift.stdout)")
        try i.apply(try manifest(memory: "96MiB", seccomp: "default"))
        #expect(try cgroupFile(i, "pids", "app", "pids.max") == "64")
        #expect(try i.pid("app") == pid)

        // seccomp changes restart the process; unconfined has no filter.
        let unconfined = try i.tupp("apply", try manifest(memory: "96MiB", seccomp: "unconfined"))
        #expect(unconfined.stdout.contains("restarting"), "\(unconfined)")
        let restarted = try #require(try i.pid("app"))
        let seccompAfter = try status(restarted, "Seccomp")
        #expect(restarted != pid && seccompAfter == "0")

        // exec runs as the container's user; -u overrides.
        #expect(try i.tupp("exec", "app", "--", "id", "-u").stdout == "65534\n")
        #expect(try i.tupp("exec", "-u", "0", "app", "--", "id", "-u").stdout == "0\n")
        try i.expectClean(try manifest(memory: "96MiB", seccomp: "unconfined"))
        #expect(!Files.exists("/sys/fs/cgroup/memory/tupp-\(i.installationID)"), "the installation's cgroup goes with its last container")
    }

    @Test func anOOMKillIsReportedAndALimitTheHostCannotEnforceIsRefused() throws {
        guard try ready(), Files.exists("/sys/fs/cgroup/memory") else { return }
        let i = try Installation()
        defer { i.cleanupLeavingNothing() }
        let m = try i.manifest("m.yaml", smallManifest("""
              hog:
                image: box
                command: ["/bin/sh", "-c", "x=a; while true; do x=$x$x; done"]
                stopTimeout: 1s
                resources: { memory: 16MiB, memorySwap: 16MiB }
            """, network: false))
        try i.apply(m)
        var lastExit = ""
        for _ in 0..<200 where !lastExit.contains("oom-killed") {
            lastExit = try i.tupp("status", "--json", "hog").stdout
            usleep(50_000)
        }
        #expect(lastExit.contains("\"last_exit\":\"oom-killed"), "\(lastExit)")
        #expect(try i.tupp("status", "hog").stdout.contains("oom-killed"))
        try i.expectClean(m)

        // This VM's block devices do not honour I/O weights: refused at plan time, not ignored.
        let io = try i.manifest("io.yaml", smallManifest(service("io", extra: "    resources: { ioWeight: 200 }"), network: false))
        let plan = try i.tupp("plan", io)
        if plan.stdout.contains("resources.ioWeight") {
            #expect(plan.status == 1 && plan.stdout.contains("on this host"), "\(plan)")
        }
    }
}
