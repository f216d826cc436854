import Glibc
import Testing
import TuppBase
import TuppManifest
import TuppSystem
import TuppTestSupport

/// Kill -9 at every checkpoint of every mutating path — create, change in place, restart,
/// replace, prune, destroy — then prove the host is recoverable.
///
/// The points of a path are enumerated from a traced run of that path (`TUPP_TEST_CHECKPOINTS`),
/// and each crash targets a point by its label (`TUPP_TEST_CRASH_AT=LABEL`), so the crash
/// lands on the same step however the two containers' changes interleave. After each crash:
/// the record of the resource being changed shows the intent (never `ready` mid-change), the
/// plan is readable, the next apply converges (a second one has nothing to do), the
/// containers run and answer, and the inventory shows exactly what the manifest declares.
@Suite(.serialized) struct CrashTests {
    /// Pool, image, a masqueraded network, containers a (with a port published on
    /// loopback) and b on it; `a` and `network` replace parts of a's entry and of the network's.
    static func manifest(a: String = "    network: { attach: net, ports: [\"127.0.0.1:{{PORT}}:80\"] }\n    hostname: alpha",
                         command: String = "sleep infinity",
                         network: String = "nat: true", withB: Bool = true) -> String {
        smallManifest(service("a", extra: a).replacing("sleep infinity", with: command)
                      + (withB ? service("b", extra: "    network: { attach: net }") : ""))
            .replacing("net: { bridge: {{BRIDGE}}, subnet: {{SUBNET}} }", with: "net: { bridge: {{BRIDGE}}, subnet: {{SUBNET}}, \(network) }")
    }

    static let base = manifest()

    /// One checkpoint of a traced run.
    struct Point: CustomStringConvertible {
        var label: String
        /// "container.a" for "container.a: stopped"; nil for points of no one resource.
        var resource: String? {
            guard let colon = label.firstRange(of: ": ") else { return nil }
            let head = String(label[..<colon.lowerBound])
            return ["pool.", "image.", "volume.", "network.", "container.", "ports."].contains { head.hasPrefix($0) } ? head : nil
        }
        var step: String { resource.map { String(label.dropFirst($0.count + 2)) } ?? label }
        var description: String { label }
    }

    /// The checkpoints one run of `arguments` passes, in order.
    func trace(_ i: Installation, _ arguments: [String], sourceLocation: SourceLocation = #_sourceLocation) throws -> [Point] {
        let traced = try i.tupp(arguments, environment: ["TUPP_TEST_CHECKPOINTS=1"])
        #expect(traced.status == 0, "\(traced)", sourceLocation: sourceLocation)
        let points = traced.stderr.split(separator: "\n").compactMap { line -> Point? in
            guard line.hasPrefix("tupp checkpoint "), let colon = line.firstRange(of: ": ") else { return nil }
            return Point(label: String(line[colon.upperBound...]))
        }
        // A crash targets a label: each must name one point.
        let labels = points.map(\.label)
        #expect(Set(labels).count == labels.count, "labels repeat: \(labels)", sourceLocation: sourceLocation)
        return points
    }

    /// Runs `arguments` killed at `point`.
    func crash(_ i: Installation, _ arguments: [String], at point: Point, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let crashed = try i.tupp(arguments, environment: ["TUPP_TEST_CRASH_AT=\(point.label)"])
        #expect(crashed.status == 128 + SIGKILL, "killed at \(point): \(crashed)", sourceLocation: sourceLocation)
    }

    /// Intent before every side effect: killed right after a step of a resource's change,
    /// the resource's record on disk says what was under way — `creating`, `updating` or
    /// `deleting`, not `ready` — unless the step was writing or removing the record itself.
    func expectIntentRecorded(_ i: Installation, at point: Point, sourceLocation: SourceLocation = #_sourceLocation) throws {
        guard let resource = point.resource else { return }
        let path = "\(i.state)/records/\(resource).json"
        let status = try Files.read(path).flatMap { try? JSON.parse($0) }?["status"]?.string
        switch point.step {
        case "record removed":
            #expect(status == nil, "\(point): the record is gone", sourceLocation: sourceLocation)
        case let step where step.hasPrefix("recorded "):
            #expect(status == String(step.dropFirst("recorded ".count)), "\(point): \(path) says \(status ?? "nothing")", sourceLocation: sourceLocation)
        default:
            #expect(status != nil && status != "ready",
                    "\(point): a side effect of \(resource) with \(status.map { "its record \($0)" } ?? "no record") — intent must be recorded first",
                    sourceLocation: sourceLocation)
        }
    }

    /// What every converged host shows: plan and apply agree there is nothing to do, the
    /// running containers answer, and nothing but what the manifest declares is there.
    func expectConverged(_ i: Installation, _ m: String, after point: Point, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let again = try i.tupp("apply", m)
        #expect(again.status == 0 && again.stdout.contains("No changes."), "after a crash at \(point): \(again)", sourceLocation: sourceLocation)
        for name in i.declared.containers.keys.sorted() where i.declared.containers[name]?.network != nil {
            let address = try #require(try i.liveAddress(of: name), "\(name) has an address after a crash at \(point)", sourceLocation: sourceLocation)
            #expect(try Ping.reaches(address), "\(name) reachable after a crash at \(point)", sourceLocation: sourceLocation)
        }
        i.expectOnlyDeclared("after a crash at \(point)", sourceLocation: sourceLocation)
    }

    /// Crashes `arguments` (an apply of `change`, run on a host converged to `start`) at
    /// each of its points, and checks that the next apply of `change` converges. `check`
    /// looks at the converged host; `before` is what `start` left running.
    func crashEverywhere(_ i: Installation, start: String?, change: String, expectedPoints: Int? = nil,
                         sourceLocation: SourceLocation = #_sourceLocation,
                         check: (_ before: [String: ContainerProcesses], _ point: Point) throws -> Void = { _, _ in }) throws {
        func converge(to manifest: String?) throws -> [String: ContainerProcesses] {
            if let manifest {
                let m = try i.manifest("m.yaml", manifest)
                try i.apply(m, sourceLocation: sourceLocation)
            } else if Files.exists("\(i.root.path)/m.yaml") {
                try i.expectClean("\(i.root.path)/m.yaml", sourceLocation: sourceLocation)
            }
            var running: [String: ContainerProcesses] = [:]
            for name in i.declared.containers.keys { running[name] = i.processes(of: name) }
            return running
        }
        _ = try converge(to: start)
        let m = try i.manifest("m.yaml", change)
        let points = try trace(i, ["apply", m], sourceLocation: sourceLocation)
        if let expectedPoints { #expect(points.count == expectedPoints, "\(points)", sourceLocation: sourceLocation) }
        #expect(!points.isEmpty, sourceLocation: sourceLocation)
        for point in points {
            let before = try converge(to: start)
            try i.manifest("m.yaml", change)
            try crash(i, ["apply", m], at: point, sourceLocation: sourceLocation)
            try expectIntentRecorded(i, at: point, sourceLocation: sourceLocation)
            let plan = try i.tupp("plan", "--detailed-exitcode", m)
            #expect(plan.status == 0 || plan.status == 2, "after a crash at \(point) the plan is readable: \(plan)", sourceLocation: sourceLocation)
            let converged = try i.tupp("apply", m)
            #expect(converged.status == 0, "apply converges after a crash at \(point): \(converged)", sourceLocation: sourceLocation)
            try expectConverged(i, m, after: point, sourceLocation: sourceLocation)
            try check(before, point)
        }
    }

    func ready() throws -> Bool {
        try Host.require(.root, .btrfs, .command("/bin/busybox"), .command("/usr/sbin/nft"), .command("/usr/bin/nsenter"))
    }

    /// NAT turns on the host's IPv4 forwarding: put back what was there.
    func keepingForwarding(_ body: () throws -> Void) rethrows {
        let forwarding = (try? Files.readText("/proc/sys/net/ipv4/ip_forward")) ?? "0\n"
        defer {
            if let fd = try? FileDescriptor.open("/proc/sys/net/ipv4/ip_forward", O_WRONLY) { try? fd.writeAll(Array(forwarding.utf8)) }
        }
        try body()
    }

    @Test func createKilledAtEveryCheckpointConverges() throws {
        guard try ready() else { return }
        let i = try Installation()
        defer { i.finish() }
        try keepingForwarding {
            // From nothing: pool (file, mkfs, loop, mount), image import, bridge and NAT,
            // two containers started in parallel, each plugged into the bridge.
            try crashEverywhere(i, start: nil, change: Self.base)
        }
    }

    @Test func changeInPlaceKilledAtEveryCheckpointKeepsTheProcess() throws {
        guard try ready() else { return }
        let i = try Installation()
        defer { i.finish() }
        // Every value the change touches is declared at the start too: converging back to
        // the start must undo the change (an omitted address or MTU would be kept).
        let start = Self.manifest(a: "    network: { attach: net, address: {{NET}}.76, ports: [\"127.0.0.1:{{PORT}}:80\"] }\n    hostname: alpha",
                                  network: "nat: true, mtu: 1500")
        let changed = Self.manifest(a: "    network: { attach: net, address: {{NET}}.77, ports: [\"127.0.0.1:{{PORT}}:81\"] }\n    hostname: omega\n    restart: on-failure",
                                    network: "nat: true, mtu: 1400")
        try keepingForwarding {
            try crashEverywhere(i, start: start, change: changed) { before, point throws in
                #expect(try i.initProcess(of: "a") == before["a"]?.initProcess, "an interrupted change in place is finished in place (crash at \(point))")
                #expect(try i.liveHostname(of: "a") == "omega")
                #expect(try i.liveAddresses(of: "a") == ["\(i.address(77))/24"])
            }
        }
    }

    @Test func restartKilledAtEveryCheckpointKeepsTheSnapshot() throws {
        guard try ready(), try Host.require(.command("/bin/btrfs")) else { return }
        let i = try Installation()
        defer { i.finish() }
        let changed = Self.manifest(command: "sleep 99999")
        try keepingForwarding {
            var snapshot: String?
            try crashEverywhere(i, start: Self.base, change: changed) { before, point throws in
                let uuid = try i.subvolumeUUID("containers/a")
                if snapshot == nil { snapshot = uuid }
                #expect(uuid != nil && uuid == snapshot, "a restart interrupted at \(point) keeps the snapshot")
                #expect(try i.nsenter("a", ["/bin/cat", "/proc/1/cmdline"]).stdout.contains("sleep 99999"))
                #expect(try i.initProcess(of: "b") == before["b"]?.initProcess, "b is not touched")
            }
        }
    }

    @Test func replaceKilledAtEveryCheckpointConverges() throws {
        guard try ready() else { return }
        let i = try Installation()
        defer { i.finish() }
        // Without its own IPC namespace: a replacement.
        let changed = Self.manifest(a: "    network: { attach: net, ports: [\"127.0.0.1:{{PORT}}:80\"] }\n    hostname: alpha\n    namespaces: [mount, uts, net, pid]")
        try keepingForwarding {
            try crashEverywhere(i, start: Self.base, change: changed) { before, point throws in
                let a = try i.initProcess(of: "a")
                #expect(ProcEntry.namespace(String(a.pid), "ipc") == ProcEntry.namespace("self", "ipc"), "replaced after a crash at \(point)")
                #expect(try i.initProcess(of: "b") == before["b"]?.initProcess, "b is not touched")
            }
        }
    }

    @Test func pruneKilledAtEveryCheckpointConverges() throws {
        guard try ready() else { return }
        let i = try Installation()
        defer { i.finish() }
        let changed = Self.manifest(withB: false)
        try keepingForwarding {
            try crashEverywhere(i, start: Self.base, change: changed) { before, point throws in
                #expect(i.processes(of: "b") == nil, "b pruned after a crash at \(point)")
                #expect(try i.subvolumeUUID("containers/b") == nil)
                #expect(try i.initProcess(of: "a") == before["a"]?.initProcess, "a is not touched")
            }
        }
    }

    /// `userns: auto` switched on — a restarts into a user namespace, b is created in one —
    /// killed at every point. The allocator keeps no state of its own: a range lives in the
    /// intent record (`creating` carries the new maps) and in the live process's
    /// /proc/PID/uid_map, so a crash between choosing a range and recording it must neither
    /// move one (a container ending on another block after one crash than after the others)
    /// nor hand one out twice.
    @Test func usernsSwitchKilledAtEveryCheckpointKeepsRangesDisjointAndStable() throws {
        guard try ready() else { return }
        let i = try Installation()
        defer { i.finish() }
        // The default pool, stated: the same on a host whose /etc/subuid names tupp.
        let changed = "defaults: { userns: auto }\nuserns: { range: { start: 1879048192, size: 268304384 } }\n" + Self.base
        /// "HOST_START COUNT" of the one line of a uid_map or gid_map, read from /proc.
        func hostRange(_ name: String, _ file: String) throws -> String? {
            let pid = try i.initProcess(of: name).pid
            let words = try #require(try Files.readText("/proc/\(pid)/\(file)")).split(whereSeparator: \.isWhitespace)
            return words.count == 3 && words[0] == "0" ? "\(words[1]) \(words[2])" : nil
        }
        try keepingForwarding {
            var first: [String: String]?
            try crashEverywhere(i, start: Self.manifest(withB: false), change: changed) { _, point throws in
                var ranges: [String: String] = [:]
                for name in ["a", "b"] {
                    let uids = try #require(try hostRange(name, "uid_map"), "\(name) runs with one map line after a crash at \(point)")
                    #expect(try hostRange(name, "gid_map") == uids, "\(name): gids paired with uids after a crash at \(point)")
                    let words = uids.split(separator: " ").compactMap { UInt64($0) }
                    #expect(words.count == 2 && words[1] == 65536 && words[0] >= 0x7000_0000 && (words[0] - 0x7000_0000) % 65536 == 0,
                            "\(name): one whole block of the default pool after a crash at \(point): \(uids)")
                    ranges[name] = uids
                }
                #expect(ranges["a"] != ranges["b"], "disjoint after a crash at \(point): \(ranges)")
                if first == nil { first = ranges }
                #expect(ranges == first, "the same ranges after every crash; after one at \(point): \(ranges), not \(first ?? [:])")
            }
        }
    }

    /// A destroy killed at each point: an apply afterwards brings everything back, and a
    /// destroy (also killed there first) removes everything.
    @Test func destroyKilledAtEveryCheckpointConvergesBothWays() throws {
        guard try ready() else { return }
        let i = try Installation()
        defer { i.finish() }
        try keepingForwarding {
            let m = try i.manifest("m.yaml", Self.base)
            try i.apply(m)
            let points = try trace(i, ["destroy", "--include-storage", m])
            #expect(!points.isEmpty)
            i.expectNothingLeft("after the traced destroy")
            for point in points {
                try i.apply(m)
                try crash(i, ["destroy", "--include-storage", m], at: point)
                try expectIntentRecorded(i, at: point)
                // Apply converges after a crashed destroy…
                let back = try i.tupp("apply", m)
                #expect(back.status == 0, "apply after a destroy killed at \(point): \(back)")
                try expectConverged(i, m, after: point)
                // …and so does destroy.
                try crash(i, ["destroy", "--include-storage", m], at: point)
                let destroy = try i.tupp("destroy", "--include-storage", m)
                #expect(destroy.status == 0, "destroy after a destroy killed at \(point): \(destroy)")
                i.expectNothingLeft("destroy after a destroy killed at \(point)")
            }
        }
    }
}
