import Glibc
import Testing
import TuppBase
import TuppSystem
import TuppTestSupport

/// Services through the CLI on the real kernel: health checks run by the supervisors,
/// start order that waits for readiness, crash loops, `tupp stop`/`start`, events, logs
/// with times, and a host that comes back after a reboot.
@Suite(.serialized) struct LifecycleEngineTests {
    /// A long-running busybox service; `extra` lines are indented four spaces.
    func service(_ name: String, _ command: String = "sleep infinity & wait", extra: String = "") -> String {
        var text = """
              \(name):
                image: box
                command: ["/bin/sh", "-c", "trap 'exit 0' TERM; \(command)"]
                stopTimeout: 2s

            """
        if !extra.isEmpty { text += extra + "\n" }
        return text
    }

    @Test func aDependentStartsOnlyOnceItsDependencyIsHealthy() throws {
        guard try ready() else { return }
        let i = try Installation()
        defer { i.cleanupLeavingNothing() }
        // db becomes healthy once /ready exists, two seconds after it started; `app`
        // waits for that, `early` only for db to be started.
        let m = try i.manifest("m.yaml", smallManifest(
            service("db", "(sleep 2; touch /ready) & sleep infinity & wait", extra: """
                    network: { attach: net }
                    healthcheck: { command: [test, -e, /ready], interval: 100ms, timeout: 2s }
                """)
            + service("app", extra: "    network: { attach: net }\n    dependsOn: { db: healthy }")
            + service("early", extra: "    dependsOn: [db]")))
        let apply = try i.tupp("apply", "--settle", "0", m)
        #expect(apply.status == 0, "\(apply)")

        // Witnesses: the file's mtime in db's snapshot, and each init's start time in /proc.
        let readyAt = try #require(modificationTime("\(i.root.path)/pool/containers/db/ready"), "db never wrote /ready")
        let dbPID = try #require(try i.pid("db")), appPID = try #require(try i.pid("app")), earlyPID = try #require(try i.pid("early"))
        let dbStart = try #require(processStart(dbPID))
        let appStart = try #require(processStart(appPID))
        let earlyStart = try #require(processStart(earlyPID))
        #expect(appStart >= readyAt - 0.02, "app started \(readyAt - appStart) s before db could be healthy")
        #expect(earlyStart < readyAt - 0.5, "`started` did not wait for health: \(earlyStart - dbStart) s after db")
        // And as tupp reports it: app's start after db's first passing check.
        let db = try status(i, "db"), app = try status(i, "app")
        #expect(db["health"]?.string == "healthy")
        let firstPass = try #require(healthResults(db).first { $0["exit_code"]?.int == 0 }?["end"]?.double)
        let appStarted = try #require(app["started_at"]?.double)
        #expect(appStarted >= firstPass - 0.01)
        #expect(try i.tupp("plan", "--detailed-exitcode", m).status == 0)
        try i.expectClean(m)
    }

    @Test func aDependencyThatNeverBecomesHealthyFailsTheDependentNamingIt() throws {
        guard try ready() else { return }
        let i = try Installation()
        defer { i.cleanupLeavingNothing() }
        let m = try i.manifest("m.yaml", smallManifest(
            service("db", extra: "    healthcheck: { command: \"echo connection refused; exit 1\", interval: 100ms, retries: 1 }")
            + service("app", extra: "    dependsOn: { db: healthy }"), network: false))
        let apply = try i.tupp("apply", "--settle", "0", "--wait-timeout", "1s", m)
        #expect(apply.status == 1, "\(apply)")
        #expect(apply.stderr.contains("waited 1 s for container.db to be healthy: it is unhealthy; last health check: exit code 1: connection refused"),
                "\(apply)")
        #expect(try i.pid("app") == nil, "app's command never started")
        try i.expectClean(m)
    }

    @Test func anUnhealthyContainerIsRestartedWhenAsked() throws {
        guard try ready() else { return }
        let i = try Installation()
        defer { i.cleanupLeavingNothing() }
        let m = try i.manifest("m.yaml", smallManifest(service("sick", extra: """
                healthcheck: { command: [/bin/false], interval: 100ms, retries: 2 }
                onUnhealthy: restart
            """), network: false))
        try i.apply("--settle", "0", m)
        let first = try #require(try i.pid("sick"))
        var replacement: Int32?
        let deadline = Monotonic.nanoseconds() + 10_000_000_000
        while Monotonic.nanoseconds() < deadline {
            if let now = try i.pid("sick"), now != first, isProcessAlive(now) { replacement = now; break }
            usleep(50_000)
        }
        #expect(replacement != nil, "the supervisor never restarted the unhealthy command")
        #expect(!isProcessAlive(first), "the first run is gone")
        #expect((try status(i, "sick")["restarts"]?.int ?? 0) >= 1)
        try i.expectClean(m)
    }

    @Test func eventsStreamStartsExitsAndHealthChanges() throws {
        guard try ready() else { return }
        let i = try Installation()
        defer { i.cleanupLeavingNothing() }
        let m = try i.manifest("m.yaml", smallManifest(service("job", "sleep 1.5; exit 3", extra: """
                restart: on-failure
                healthcheck: { command: [/bin/true], interval: 100ms }
            """), network: false))
        let log = "\(i.root.path)/events.jsonl"
        let fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        #expect(fd >= 0)
        let follower = try Spawn.start([Built.tupp, "--state-dir", i.state, "events", "--json", "--until", "6s"], stdout: fd)
        close(fd)
        usleep(300_000)   // the follower is reading before anything happens
        try i.apply("--settle", "0", m)
        #expect(Spawn.wait(follower) == 0)
        let events = (try Files.readText(log) ?? "").split(separator: "\n").compactMap { try? JSON.parse(Array($0.utf8)) }
        let kinds = events.map { "\($0["type"]?.string ?? "?")" + ($0["type"]?.string == "health" ? ":\($0["to"]?.string ?? "")" : "") }
        #expect(events.allSatisfy { $0["container"]?.string == "job" && ($0["time"]?.double ?? 0) > 0 }, "\(events)")
        let firstStart = kinds.firstIndex(of: "start"), healthy = kinds.firstIndex(of: "health:healthy"), exit = kinds.firstIndex(of: "exit")
        #expect(firstStart != nil && healthy != nil && exit != nil, "\(kinds)")
        if let firstStart, let healthy, let exit {
            #expect(firstStart < healthy && healthy < exit, "\(kinds)")
            #expect(events[exit]["code"]?.int == 3, "\(events[exit])")
            #expect(kinds[exit...].contains("restart") && kinds[(exit + 1)...].contains("start"), "restarted under on-failure: \(kinds)")
        }
        try i.expectClean(m)
    }

    @Test func aCrashLoopIsReportedAndFailsWait() throws {
        guard try ready() else { return }
        let i = try Installation()
        defer { i.cleanupLeavingNothing() }
        let m = try i.manifest("m.yaml", """
            version: 1
            storage:
              root: {{ROOT}}/pool
              device: { file: {{ROOT}}/pool.img, size: 256MiB }
            images:
              box: { busybox: /bin/busybox }
            containers:
              crash:
                image: box
                command: ["/bin/sh", "-c", "echo boom; exit 1"]
                restart: on-failure
            """)
        let apply = try i.tupp("apply", m)
        #expect(apply.status == 0, "without --wait a crash loop is reported, not an error: \(apply)")
        #expect(apply.stdout.contains("container.crash: creating… exited with code 1 after"), "\(apply)")
        #expect(apply.stdout.contains("(restarting, attempt") || apply.stdout.contains("(restarted, attempt"), "\(apply)")
        let wait = try i.tupp("apply", "--wait", "--wait-timeout", "1s", m)
        #expect(wait.status == 1, "\(wait)")
        #expect(wait.stdout.contains("Not ready: container.crash"), "\(wait)")
        try i.expectClean(m)
    }

    @Test func stopSignalAndEnvFilesReachTheContainer() throws {
        guard try ready() else { return }
        let i = try Installation()
        defer { i.cleanupLeavingNothing() }
        let shared = "\(i.root.path)/shared"
        try Files.createDirectory(shared)
        try Files.writeAtomically("\(i.root.path)/app.env", text: "GREETING=from the file\nLEVEL=info\n", mode: 0o644)
        let m = try i.manifest("m.yaml", smallManifest(service("pg", "trap 'echo got INT > /shared/signal; exit 0' INT; sleep infinity & wait", extra: """
                stopSignal: SIGINT
                envFile: [./app.env]
                env: { LEVEL: debug }
                mounts: [{ type: bind, source: {{ROOT}}/shared, target: /shared }]
            """), network: false))
        try i.apply("--settle", "0", m)
        let pid = try #require(try i.pid("pg"))
        let environment = (try Files.read("/proc/\(pid)/environ") ?? []).split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        #expect(environment.contains("GREETING=from the file") && environment.contains("LEVEL=debug"), "\(environment)")
        #expect(try i.tupp("stop", "pg").status == 0)
        #expect(try Files.readText("\(shared)/signal") == "got INT\n", "the stop signal was SIGINT")
        try i.expectClean(m)
    }

    @Test func aContainerStoppedOnPurposeStaysStoppedUntilStarted() throws {
        guard try ready() else { return }
        let i = try Installation()
        defer { i.cleanupLeavingNothing() }
        let m = try i.manifest("m.yaml", smallManifest(
            service("web", extra: "    network: { attach: net }\n    restart: unless-stopped")
            + service("cache", extra: "    restart: always"), network: true))
        try i.apply("--settle", "0", m)
        let web = try #require(try i.pid("web"))
        let stop = try i.tupp("stop", "web", "cache")
        #expect(stop.status == 0, "\(stop)")
        #expect(!isProcessAlive(web))
        let plan = try i.tupp("plan", "--detailed-exitcode", m)
        #expect(plan.status == 2, "cache (always) is started again: \(plan)")
        #expect(!plan.stdout.contains("# container.web") && !plan.stdout.contains("~ container.web"), "web is not drift: \(plan)")
        #expect(plan.stdout.contains("container.web is stopped on purpose"), "\(plan)")
        // A reboot on top: still stopped afterwards, cache running again.
        try simulateReboot(i)
        try i.apply("--wait", "--settle", "0", m)
        #expect(try i.pid("web") == nil)
        #expect(try status(i, "web")["stopped_by_user"]?.bool == true)
        #expect(try i.pid("cache").map(isProcessAlive) == true, "restart: always runs after boot")
        let start = try i.tupp("start", "-f", m, "web", "--settle", "0")
        #expect(start.status == 0, "\(start)")
        let again = try #require(try i.pid("web"))
        #expect(isProcessAlive(again))
        #expect(try Ping.reaches(i.address(of: "web") ?? "", through: []), "plugged again after start")
        #expect(try i.tupp("plan", "--detailed-exitcode", m).status == 0)
        try i.expectClean(m)
    }

    @Test func logsKeepWhenEachLineWasWritten() throws {
        guard try ready() else { return }
        let i = try Installation()
        defer { i.cleanupLeavingNothing() }
        let m = try i.manifest("m.yaml", smallManifest(service("talk", "echo one; echo two; sleep 1.2; echo three; sleep infinity & wait"),
                                                      network: false))
        try i.apply("--settle", "0", m)
        usleep(1_600_000)
        #expect(try i.tupp("logs", "talk").stdout == "one\ntwo\nthree\n")
        #expect(try i.tupp("logs", "--tail", "1", "talk").stdout == "three\n")
        #expect(try i.tupp("logs", "--since", "1s", "talk").stdout == "three\n", "one and two are older than a second")
        let stamped = try i.tupp("logs", "--timestamps", "talk").stdout.split(separator: "\n")
        #expect(stamped.count == 3)
        let times = stamped.compactMap { line in line.split(separator: " ").first.map(String.init) }
        #expect(times.allSatisfy { $0.count == 27 && $0.hasSuffix("Z") && $0.contains("T") }, "\(stamped)")
        #expect(times[0] < times[2], "three was written later: \(stamped)")
        try i.expectClean(m)
    }

    /// The issue's reboot: two networks, three containers, data written into a snapshot;
    /// then everything a reboot takes away is taken away by hand.
    @Test func aRebootLeavesRecordsAndApplyBringsEverythingBack() throws {
        guard try ready() else { return }
        let i = try Installation()
        defer { i.cleanupLeavingNothing() }
        let back = "10.215.\(i.subnetOctet)"
        let m = try i.manifest("m.yaml", """
            version: 1
            storage:
              root: {{ROOT}}/pool
              device: { file: {{ROOT}}/pool.img, size: 256MiB }
            images:
              box: { busybox: /bin/busybox }
            networks:
              front: { bridge: {{BRIDGE}}, subnet: {{SUBNET}} }
              back: { bridge: {{BRIDGE}}b, subnet: \(back).0/24 }
            containers:
            \(service("db", extra: """
                    network: { attach: back }
                    healthcheck: { command: [test, -e, /data/ok], interval: 100ms, startPeriod: 30s }
                    restart: always
                """))\(service("app", extra: """
                    network: { attach: back }
                    capabilities: { add: [NET_RAW] }
                    dependsOn: { db: healthy }
                """))\(service("web", extra: "    network: { attach: front }\n    restart: always"))
            """)
        // db turns healthy once its data exists; the dependent waits for it.
        let first = try i.tupp("apply", "--settle", "0", "--wait-timeout", "1s", m)
        #expect(first.status == 1, "app cannot start before db is healthy: \(first)")
        #expect(try i.tupp("exec", "db", "--", "sh", "-c", "mkdir -p /data && echo precious > /data/ok").status == 0)
        try i.apply("--wait", "--settle", "0", m)
        let addresses = try ["db", "app", "web"].map { name -> String in
            guard let address = try i.address(of: name) else { throw Failure("\(name) has no address") }
            return address
        }
        let snapshotIDs = try btrfsSubvolumeIDs(i)

        try simulateReboot(i)
        #expect(!Files.exists("/sys/class/net/\(i.bridge)"))
        let plan = try i.tupp("plan", m)
        #expect(plan.status == 0, "\(plan)")
        #expect(plan.stdout.contains("is not mounted at"), "\(plan.stdout)")
        #expect(!plan.stdout.contains("will be replaced") && !plan.stdout.contains("forces replacement"), "nothing is replaced: \(plan.stdout)")
        #expect(plan.stdout.contains("0 to replace, 0 to destroy"), "\(plan.stdout)")

        let boot = try i.tupp("apply", "--wait", "--settle", "0", m)
        #expect(boot.status == 0, "\(boot)")
        #expect(try ["db", "app", "web"].map { try i.address(of: $0) } == addresses, "same addresses")
        #expect(try btrfsSubvolumeIDs(i) == snapshotIDs, "same snapshots (btrfs subvolume ids)")
        #expect(try Files.readText("\(i.root.path)/pool/containers/db/data/ok") == "precious\n", "same data")
        let ping = try Ping.untilAnswered { try i.tupp("exec", "app", "--", "ping", "-c", "1", "-W", "1", addresses[0]) }
        #expect(ping.status == 0, "app reaches db across the bridge: \(ping)")
        let again = try i.tupp("apply", m)
        #expect(again.stdout.contains("No changes."), "\(again)")
        try i.expectClean(m)
    }

    /// `tupp stop` killed at each of its checkpoints (the record's intent, the stop):
    /// the next `tupp stop` finishes the job, the plan shows no drift, `tupp start` brings
    /// it back, and destroy leaves nothing.
    @Test func stopKilledAtEveryCheckpointConverges() throws {
        guard try ready() else { return }
        let i = try Installation()
        defer { i.cleanupLeavingNothing() }
        let m = try i.manifest("m.yaml", smallManifest(service("web", extra: "    network: { attach: net }\n    restart: unless-stopped")))
        try i.apply("--settle", "0", m)
        let traced = try i.tupp(["stop", "web"], environment: ["TUPP_TEST_CHECKPOINTS=1"])
        #expect(traced.status == 0, "\(traced)")
        let points = traced.stderr.split(separator: "\n").filter { $0.hasPrefix("tupp checkpoint ") }
        #expect(points.count == 2, "intent recorded, then stopped: \(points)")
        for (n, point) in points.enumerated() {
            #expect(try i.tupp("start", "-f", m, "--settle", "0", "web").status == 0)
            let running = try #require(try i.pid("web"))
            let crashed = try i.tupp(["stop", "web"], environment: ["TUPP_TEST_CRASH_AT=\(n + 1)"])
            #expect(crashed.status == 128 + SIGKILL, "killed at \(point): \(crashed)")
            let again = try i.tupp("stop", "web")
            #expect(again.status == 0, "after a crash at \(point): \(again)")
            #expect(!isProcessAlive(running), "stopped after a crash at \(point)")
            let plan = try i.tupp("plan", "--detailed-exitcode", m)
            #expect(plan.status == 0 && plan.stdout.contains("stopped on purpose"), "after a crash at \(point): \(plan)")
        }
        #expect(try i.tupp("start", "-f", m, "--settle", "0", "web").status == 0)
        #expect(try Ping.reaches(i.address(of: "web") ?? ""), "started and plugged again")
        try i.expectClean(m)
    }

    // MARK: Witnesses

    func status(_ i: Installation, _ name: String) throws -> JSON.Node {
        let out = try i.tupp("status", "--json", name)
        guard case .array(let items) = try JSON.parse(Array(out.stdout.utf8)), let first = items.first else {
            throw Failure("status --json \(name): \(out)")
        }
        return first
    }

    func healthResults(_ status: JSON.Node) -> [JSON.Node] {
        if case .array(let items)? = status["health_log"]?["results"] { return items }
        return []
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }

    func modificationTime(_ path: String) -> Double? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        return Double(info.st_mtim.tv_sec) + Double(info.st_mtim.tv_nsec) / 1e9
    }

    /// When `pid` started, wall clock: its start time in ticks since boot (/proc/PID/stat)
    /// plus when the system booted (the realtime clock less the boot-time clock; /proc/stat's
    /// btime is whole seconds, too coarse here).
    func processStart(_ pid: Int32) -> Double? {
        guard let ticks = ProcessStat.read(pid)?.startTime else { return nil }
        var real = timespec(), boot = timespec()
        clock_gettime(CLOCK_REALTIME, &real)
        clock_gettime(CLOCK_BOOTTIME, &boot)
        let booted = Double(real.tv_sec - boot.tv_sec) + Double(real.tv_nsec - boot.tv_nsec) / 1e9
        return booted + Double(ticks) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// The subvolume ids of the containers' snapshots, as btrfs-progs lists them.
    func btrfsSubvolumeIDs(_ i: Installation) throws -> [String] {
        let out = try Spawn.run(["/bin/btrfs", "subvolume", "list", "-u", "\(i.root.path)/pool"])
        // "ID 258 gen 14 top level 5 uuid … path containers/db": the id, uuid and path (gen moves).
        return out.stdout.split(separator: "\n").filter { $0.contains("containers/") }.map { line in
            let words = line.split(separator: " ")
            return [words[1]] + words.drop { $0 != "uuid" }.map { $0 }
        }.map { $0.joined(separator: " ") }.sorted()
    }

    /// What a reboot leaves: no supervisor or container process of this installation
    /// (killed by pid), no links, no cgroups of its own, the pool unmounted and its loop
    /// device detached — the pool file and the state directory stay.
    func simulateReboot(_ i: Installation) throws {
        let containers = "\(i.state)/containers"
        for name in (try? Files.list(containers)) ?? [] {
            guard let state = try Files.readText("\(containers)/\(name)/state") else { continue }
            var values: [String: String] = [:]
            for line in state.split(separator: "\n") {
                let parts = line.split(separator: "=", maxSplits: 1)
                if parts.count == 2 { values[String(parts[0])] = String(parts[1]) }
            }
            for (pidKey, startKey) in [("shim-pid", "shim-start"), ("init-pid", "init-start")] {
                guard let pid = values[pidKey].flatMap(Int32.init), pid > 0, let start = values[startKey].flatMap(UInt64.init),
                      ProcessStat.read(pid)?.startTime == start else { continue }
                kill(pid, SIGKILL)
                let deadline = Monotonic.nanoseconds() + 5_000_000_000
                while isProcessAlive(pid) && Monotonic.nanoseconds() < deadline { usleep(10_000) }
            }
        }
        for link in (try? Files.list("/sys/class/net")) ?? [] {
            let alias = (try? Files.readText("/sys/class/net/\(link)/ifalias"))??.split(separator: "\n").first.map(String.init) ?? ""
            // A veth may go with its peer's namespace meanwhile: what counts is that none is left.
            if link.hasPrefix(i.bridge) || alias.contains(i.installationID) { _ = try? Spawn.run(["/sbin/ip", "link", "del", link]) }
        }
        for hierarchy in (try? Files.list("/sys/fs/cgroup")) ?? [] {
            let parent = "/sys/fs/cgroup/\(hierarchy)/tupp-\(i.installationID)"
            for child in (try? Files.list(parent)) ?? [] where Files.isDirectory("\(parent)/\(child)") { rmdir("\(parent)/\(child)") }
            rmdir(parent)
        }
        #expect(umount2("\(i.root.path)/pool", 0) == 0, "unmount the pool: \(String(cString: strerror(errno)))")
        for loop in (try? Files.list("/sys/block")) ?? [] where loop.hasPrefix("loop") {
            if let backing = try? Files.readText("/sys/block/\(loop)/loop/backing_file"), backing.hasPrefix(i.root.path) {
                _ = try Spawn.run(["/sbin/losetup", "-d", "/dev/\(loop)"])
            }
        }
        usleep(200_000)   // autoclear and link removal settle
        // What survives a reboot: the pool's file and the records, nothing live.
        #expect(i.leftovers().allSatisfy { $0.hasPrefix("state ") || $0.hasPrefix("pool file ") },
                "a reboot leaves only records and the pool file: \(i.leftovers())")
    }
}
