import Glibc
import Testing
import TuppFacts
import TuppManifest
import TuppRuntime
import TuppSystem
import TuppTestSupport

/// The container seen from outside: supervision, restarts, in-place changes, stop, logs.
@Suite(.serialized)
struct LifecycleTests {
    @Test func survivesTheCallerAndRecordsAKilledInit() throws {
        guard try Host.require(.root, .command(ContainerFixture.busyboxPath)) else { return }
        let fixture = try ContainerFixture()
        defer { fixture.cleanup() }
        let observation = try fixture.runtime.start(try fixture.config(), directory: fixture.directory)
        #expect(observation.state == .running)
        #expect(isProcessAlive(observation.initPID))

        // The supervisor is not our child and leads its own session: the caller exiting
        // (or its terminal closing) does not touch it.
        let shim = try #require(ProcEntry.read(observation.shimPID))
        #expect(shim.parent != getpid())
        let stat = try #require(try Files.readText("/proc/\(observation.shimPID)/stat"))
        let fields = stat[stat.lastIndex(of: ")")!...].split(separator: " ")
        #expect(fields[4] == "\(observation.shimPID)", "session id = supervisor pid (setsid)")
        #expect(ProcEntry.read(observation.initPID)?.parent == observation.shimPID)

        // kill -9 of the init: restart "no" records the exit and the supervisor leaves.
        kill(observation.initPID, SIGKILL)
        #expect(waitUntil { fixture.runtime.observe(directory: fixture.directory).state == .exited })
        let after = fixture.runtime.observe(directory: fixture.directory)
        #expect(after.lastExit?.status == .signal(SIGKILL))
        #expect(after.initPID == 0)
        #expect(after.restarts == 0)
        #expect(waitUntil { !isProcessAlive(observation.shimPID) }, "the supervisor exits with its command")
    }

    @Test func supervisorAndCommandHoldNothingOfTheCaller() throws {
        guard try Host.require(.root, .command(ContainerFixture.busyboxPath)) else { return }
        let fixture = try ContainerFixture()
        defer { fixture.cleanup() }
        // A directory the caller holds open without O_CLOEXEC, as libbtrfsutil does during
        // a snapshot: inherited by a resident supervisor, it would keep a pool busy.
        let held = fixture.temp.path + "/held-by-caller"
        try #require(mkdir(held, 0o700) == 0)
        let fd = open(held, O_RDONLY | O_DIRECTORY)
        try #require(fd >= 0)
        defer { close(fd) }

        let observation = try fixture.runtime.start(try fixture.config(), directory: fixture.directory)
        for (role, pid) in [("supervisor", observation.shimPID), ("command", observation.initPID)] {
            let open = try Files.list("/proc/\(pid)/fd").map { descriptor in
                var target = [CChar](repeating: 0, count: 4096)
                let count = readlink("/proc/\(pid)/fd/\(descriptor)", &target, target.count - 1)
                return count < 0 ? "" : String(decoding: target[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            }
            #expect(!open.contains(held), "the \(role) (pid \(pid)) holds the caller's descriptor: \(open)")
        }
    }

    @Test func restartAlwaysBacksOffAndKeepsTheNetworkNamespace() throws {
        guard try Host.require(.root, .command(ContainerFixture.busyboxPath)) else { return }
        let fixture = try ContainerFixture()
        defer { fixture.cleanup() }
        let first = try fixture.runtime.start(try fixture.config(restart: .always), directory: fixture.directory)
        // Namespace inode numbers are recycled once a namespace is freed: hold the first
        // run's pid and mount namespaces open so "new" really means new.
        let heldNamespaces = try [Namespace.pid, .mount].map {
            try FileDescriptor.open("/proc/\(first.initPID)/ns/\($0.procName)", O_RDONLY)
        }
        defer { withExtendedLifetime(heldNamespaces) {} }

        kill(first.initPID, SIGKILL)
        #expect(waitUntil { fixture.runtime.observe(directory: fixture.directory).restarts == 1 &&
            fixture.runtime.observe(directory: fixture.directory).isRunning })
        let second = fixture.runtime.observe(directory: fixture.directory)
        #expect(second.shimPID == first.shimPID)
        #expect(second.initPID != first.initPID)
        #expect(second.lastExit?.status == .signal(SIGKILL))
        let firstGap = try #require(second.startedAt) - (try #require(second.lastExit?.at))
        #expect(firstGap >= 0.1 && firstGap < 1, "first backoff 100 ms, was \(firstGap)")
        // net/uts/ipc belong to the supervisor and survive; pid and mount are new.
        for namespace in [Namespace.net, .uts, .ipc] { #expect(second.namespaces[namespace] == first.namespaces[namespace]) }
        for namespace in [Namespace.pid, .mount] { #expect(second.namespaces[namespace] != first.namespaces[namespace]) }

        try #require(second.initPID > 0)  // kill(0) would hit the test's own process group
        kill(second.initPID, SIGKILL)
        #expect(waitUntil { fixture.runtime.observe(directory: fixture.directory).restarts == 2 &&
            fixture.runtime.observe(directory: fixture.directory).isRunning })
        let third = fixture.runtime.observe(directory: fixture.directory)
        let secondGap = try #require(third.startedAt) - (try #require(third.lastExit?.at))
        #expect(secondGap >= 0.2 && secondGap < 1.5, "backoff doubles to 200 ms, was \(secondGap)")

        try fixture.runtime.stop(directory: fixture.directory)
        #expect(fixture.runtime.observe(directory: fixture.directory).state == .stopped)
        #expect(!isProcessAlive(third.initPID) && !isProcessAlive(third.shimPID))
    }

    @Test func onFailureDoesNotRestartASuccessAndPolicyChangesApplyInPlace() throws {
        guard try Host.require(.root, .command(ContainerFixture.busyboxPath)) else { return }
        let fixture = try ContainerFixture()
        defer { fixture.cleanup() }
        // Exits 3 once a flag file exists in /tmp... which is a fresh tmpfs per run, so
        // use the exit code of the first run: it fails, is restarted, and the second run
        // succeeds because the policy was changed to "no" meanwhile.
        var config = try fixture.config(["sh", "-c", "sleep 0.5; exit 3"], restart: .onFailure)
        _ = try fixture.runtime.start(config, directory: fixture.directory)
        #expect(waitUntil { fixture.runtime.observe(directory: fixture.directory).restarts >= 1 })
        config.restart = .no
        try fixture.runtime.updateSettings(config, directory: fixture.directory)
        #expect(waitUntil(5) { fixture.runtime.observe(directory: fixture.directory).state == .exited })
        let observation = fixture.runtime.observe(directory: fixture.directory)
        #expect(observation.lastExit?.status == .code(3))
        #expect(observation.restarts == 1, "no restart after the policy became \"no\"")

        let success = try ContainerFixture()
        defer { success.cleanup() }
        _ = try success.runtime.start(try success.config(["true"], restart: .onFailure), directory: success.directory)
        #expect(waitUntil { success.runtime.observe(directory: success.directory).state == .exited })
        #expect(success.runtime.observe(directory: success.directory).lastExit?.status == .code(0))
        #expect(success.runtime.observe(directory: success.directory).restarts == 0)
    }

    @Test func hostnameChangesInPlace() throws {
        guard try Host.require(.root, .command(ContainerFixture.busyboxPath)) else { return }
        let fixture = try ContainerFixture()
        defer { fixture.cleanup() }
        let hostBefore = hostHostname()
        let observation = try fixture.runtime.start(try fixture.config(), directory: fixture.directory)
        let initBefore = try #require(ProcEntry.read(observation.initPID))
        // Witness: nsenter into the UTS namespace of the container's init.
        func live() throws -> String {
            try Spawn.run(["nsenter", "-t", String(observation.initPID), "-u", "hostname"]).stdout
        }
        #expect(try live() == fixture.name + "\n")

        try fixture.runtime.setHostname("renamed-\(fixture.name)", for: observation)
        #expect(try live() == "renamed-\(fixture.name)\n")
        #expect(try fixture.exec(["hostname"]).output == "renamed-\(fixture.name)\n")
        #expect(ProcEntry.read(observation.initPID)?.startTime == initBefore.startTime, "same process (pid and start time)")
        #expect(hostHostname() == hostBefore)
    }

    @Test func execStatusEnvironmentAndWorkdir() throws {
        guard try Host.require(.root, .command(ContainerFixture.busyboxPath)) else { return }
        let fixture = try ContainerFixture()
        defer { fixture.cleanup() }
        var config = try fixture.config()
        config.env = ["FROM_SPEC": "spec", "FOO": "spec-foo"]
        _ = try fixture.runtime.start(config, directory: fixture.directory)

        #expect(try fixture.sh("exit 7").status == 7)
        #expect(try fixture.sh("kill -9 $$").status == 137)
        let missing = try fixture.exec(["no-such-command"])
        #expect(missing.status == 127)
        #expect(missing.output.contains("exec no-such-command in container \(fixture.name)"))
        let env = try fixture.exec(["sh", "-c", "echo $FROM_SPEC $FOO $HOME $HOSTNAME; pwd"], env: ["FOO": "override"], workdir: "/tmp")
        #expect(env.output == "spec override /root \(fixture.name)\n/tmp\n")
        #expect(try fixture.exec(["pwd"], workdir: "/nope").status == 126)

        try fixture.runtime.stop(directory: fixture.directory)
        let stopped = try fixture.exec(["true"])
        #expect(stopped.status == 125)
        #expect(stopped.output.contains("is not running"))
    }

    @Test func execWithTTY() throws {
        guard try Host.require(.root, .command(ContainerFixture.busyboxPath)) else { return }
        let fixture = try ContainerFixture()
        defer { fixture.cleanup() }
        _ = try fixture.runtime.start(try fixture.config(), directory: fixture.directory)

        // Our own pty plays the user's terminal, 40 rows × 101 columns.
        // posix_openpt & co. are hidden from Swift's Glibc module; the ioctls are what they
        // do: TIOCSPTLCK = _IOW('T', 0x31, int), TIOCGPTN = _IOR('T', 0x30, unsigned).
        let master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC)
        try #require(master >= 0)
        defer { close(master) }
        var unlock: Int32 = 0, number: UInt32 = 0
        try #require(ioctl(master, 0x4004_5431, &unlock) == 0 && ioctl(master, 0x8004_5430, &number) == 0)
        let peerPath = "/dev/pts/\(number)"
        var size = winsize(ws_row: 40, ws_col: 101, ws_xpixel: 0, ws_ypixel: 0)
        #expect(ioctl(master, UInt(TIOCSWINSZ), &size) == 0)
        let peer = open(peerPath, O_RDWR | O_NOCTTY | O_CLOEXEC)
        try #require(peer >= 0)
        let argv = fixture.runtime.execCommand(directory: fixture.directory, command: ["sh"], tty: true)
        let pid = try Spawn.start(argv, stdin: peer, stdout: peer, stderr: peer)
        close(peer)

        var output: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        /// Reads what the terminal shows until `done` or five quiet seconds; false on EOF/EIO
        /// (the relay exited) or the timeout.
        func read(until done: ([UInt8]) -> Bool) -> Bool {
            while !done(output) {
                var poller = pollfd(fd: master, events: Int16(POLLIN), revents: 0)
                guard poll(&poller, 1, 5000) > 0 else { return false }
                let count = Glibc.read(master, &buffer, buffer.count)
                if count <= 0 { return false }
                output += buffer[..<count]
            }
            return true
        }
        // Type only once the shell prompts: before that it may still be setting the terminal up.
        #expect(read { String(decoding: $0, as: UTF8.self).contains("# ") }, "a prompt")
        let input = "tty; stty size; echo sum=$((6*7)); exit 3\n"
        _ = input.withCString { write(master, $0, strlen($0)) }
        _ = read { _ in false }
        let text = String(decoding: output, as: UTF8.self)
        #expect(Spawn.wait(pid) == 3)
        #expect(text.contains("/dev/pts/0\r\n"), "the container's own devpts: \(text)")
        #expect(text.contains("40 101\r\n"), "window size forwarded: \(text)")
        #expect(text.contains("sum=42\r\n"))
    }

    @Test func stopLeavesNothingAndRespectsTheGracePeriod() throws {
        guard try Host.require(.root, .command(ContainerFixture.busyboxPath)) else { return }
        let fixture = try ContainerFixture()
        defer { fixture.cleanup() }
        let pidsBefore = try hostPIDs()

        // An init that catches SIGTERM and keeps running: SIGKILL after stopTimeout.
        let stubborn = try fixture.config(["sh", "-c", "trap 'echo got TERM' TERM; while :; do sleep 0.2; done"], stopTimeout: 1.5)
        let observation = try fixture.runtime.start(stubborn, directory: fixture.directory)
        #expect(try fixture.hostMountsOfThisTest().isEmpty, "the container's mounts live in its own namespace")
        #expect(waitUntil { catchesSIGTERM(observation.initPID) }, "the trap is installed")
        var started = Monotonic.nanoseconds()
        try fixture.runtime.stop(directory: fixture.directory)
        let stubbornSeconds = Double(Monotonic.nanoseconds() - started) / 1e9
        #expect(stubbornSeconds >= 1.5 && stubbornSeconds < 4, "\(stubbornSeconds) s")
        #expect(try Files.readText(fixture.directory + "/log")?.contains("got TERM") == true, "SIGTERM came first")
        #expect(fixture.runtime.observe(directory: fixture.directory).state == .stopped)
        #expect(fixture.runtime.observe(directory: fixture.directory).lastExit?.status == .signal(SIGKILL))

        // PID 1 without a SIGTERM handler would ignore it: killed at once, not after 10 s.
        let plain = try fixture.runtime.start(try fixture.config(stopTimeout: 10), directory: fixture.directory)
        #expect(!catchesSIGTERM(plain.initPID))
        started = Monotonic.nanoseconds()
        try fixture.runtime.stop(directory: fixture.directory)
        #expect(Double(Monotonic.nanoseconds() - started) / 1e9 < 2)

        // Nothing of either run remains: processes, mounts (the host's table is unchanged).
        for pid in [observation.shimPID, observation.initPID, plain.shimPID, plain.initPID] { #expect(!isProcessAlive(pid)) }
        #expect(try hostPIDs().subtracting(pidsBefore).filter(isProcessAlive).allSatisfy { pid in
            !((try? Files.readText("/proc/\(pid)/cmdline")) ?? nil ?? "").contains(fixture.directory)
        })
        #expect(try fixture.hostMountsOfThisTest().isEmpty)
        try fixture.runtime.remove(directory: fixture.directory)
        #expect(!Files.exists(fixture.directory))
        try fixture.runtime.stop(directory: fixture.directory)  // nothing runs: a no-op
    }

    @Test func supervisorKilledTakesTheInitAlongAndStopStillWorks() throws {
        guard try Host.require(.root, .command(ContainerFixture.busyboxPath)) else { return }
        let fixture = try ContainerFixture()
        defer { fixture.cleanup() }
        let observation = try fixture.runtime.start(try fixture.config(restart: .always), directory: fixture.directory)
        #expect(thrownError { try fixture.runtime.remove(directory: fixture.directory) } != nil)

        kill(observation.shimPID, SIGKILL)
        #expect(waitUntil { !isProcessAlive(observation.initPID) }, "PDEATHSIG")
        #expect(fixture.runtime.observe(directory: fixture.directory).state == .supervisorDied)
        try fixture.runtime.stop(directory: fixture.directory)
        #expect(fixture.runtime.observe(directory: fixture.directory).state == .stopped)
        try fixture.runtime.remove(directory: fixture.directory)
    }

    @Test func logsRotateAtTheLimit() throws {
        guard try Host.require(.root, .command(ContainerFixture.busyboxPath)) else { return }
        let fixture = try ContainerFixture()
        defer { fixture.cleanup() }
        let config = try fixture.config(["sh", "-c", "for i in $(seq 1 400); do echo \"line $i of the container output\"; done; echo done >&2"],
                                    logLimitBytes: 4096)
        _ = try fixture.runtime.start(config, directory: fixture.directory)
        #expect(waitUntil { fixture.runtime.observe(directory: fixture.directory).state == .exited })

        let current = try #require(try Files.read(fixture.directory + "/log"))
        let previous = try #require(try Files.read(fixture.directory + "/log.1"))
        #expect(current.count <= 4096 && previous.count == 4096)
        let tail = String(decoding: current, as: UTF8.self)
        #expect(tail.hasSuffix("line 400 of the container output\ndone\n"), "stdout and stderr, in order")
        #expect(!String(decoding: previous + current, as: UTF8.self).contains("line 1 of"), "bounded: the oldest output is gone")
        #expect(try fixture.followLog() == previous + current)
    }

    @Test func followingTheLogLosesNothingAcrossRotations() throws {
        guard try Host.require(.root, .command(ContainerFixture.busyboxPath)) else { return }
        let fixture = try ContainerFixture()
        defer { fixture.cleanup() }
        // ~9 KB written over a second or more with a 4 KiB limit: at least two rotations while following.
        let config = try fixture.config(["sh", "-c", "for i in $(seq 1 220); do echo \"line $i, padded to forty bytes.....\"; sleep 0.005; done"],
                                    logLimitBytes: 4096)
        _ = try fixture.runtime.start(config, directory: fixture.directory)
        let followed = try fixture.followLog()
        #expect(fixture.runtime.observe(directory: fixture.directory).state == .exited, "follow returns when the supervisor is gone")

        let lines = String(decoding: followed, as: UTF8.self).split(separator: "\n")
        #expect(lines.count == 220)
        #expect(lines.enumerated().allSatisfy { $0.element.hasPrefix("line \($0.offset + 1),") }, "every line, in order")
        #expect((try Files.read(fixture.directory + "/log.1"))?.count == 4096, "it did rotate")
    }

    @Test func aRecycledPidIsNeverSignalledOrJoined() throws {
        guard try Host.require(.root, .command(ContainerFixture.busyboxPath)) else { return }
        let fixture = try ContainerFixture()
        defer { fixture.cleanup() }
        // Without a cgroup: with one, stop kills whatever is in the container's cgroup —
        // processes that are the container's by the kernel's account, whatever the record
        // says — and there would be no recycled pid to protect.
        var config = try fixture.config()
        config.cgroup = nil
        let observation = try fixture.runtime.start(config, directory: fixture.directory)
        let statePath = fixture.directory + "/state"
        let genuine = try #require(try Files.readText(statePath))
        // The record now names the same pids with other start times: as if both had
        // exited and the pids had been given to unrelated processes.
        let forged = genuine.split(separator: "\n").map { line -> String in
            for key in ["shim-start=", "init-start="] where line.hasPrefix(key) {
                return key + String(UInt64(line.dropFirst(key.count))! + 1)
            }
            return String(line)
        }.joined(separator: "\n") + "\n"
        try Files.writeAtomically(statePath, text: forged)

        #expect(fixture.runtime.observe(directory: fixture.directory).state == .supervisorDied)
        let exec = try fixture.exec(["true"])
        #expect(exec.status == 125 && exec.output.contains("was reused"), "\(exec.output)")
        try fixture.runtime.stop(directory: fixture.directory, timeout: 1)
        #expect(isProcessAlive(observation.shimPID) && isProcessAlive(observation.initPID), "stop must not touch a recycled pid")

        try Files.writeAtomically(statePath, text: genuine)
        try fixture.runtime.stop(directory: fixture.directory, timeout: 1)
        #expect(!isProcessAlive(observation.shimPID) && !isProcessAlive(observation.initPID))
    }
}

/// Bit SIGTERM of SigCgt in /proc/PID/status: a handler is installed.
func catchesSIGTERM(_ pid: Int32) -> Bool {
    guard let status = (try? Files.readText("/proc/\(pid)/status")) ?? nil,
          let line = status.split(separator: "\n").first(where: { $0.hasPrefix("SigCgt:") }),
          let mask = UInt64(String(line.dropFirst("SigCgt:".count)).trimmingCharacters(), radix: 16) else { return false }
    return (mask >> (UInt64(SIGTERM) - 1)) & 1 == 1
}
