import Glibc
import Testing
import TuppBase
import TuppFacts
import TuppNetworking
import TuppSystem
import TuppTestSupport

/// A small installation: pool, busybox image, one bridge, containers given as YAML.
func smallManifest(_ containers: String, network: Bool = true) -> String {
    """
    version: 1
    storage:
      root: {{ROOT}}/pool
      device: { file: {{ROOT}}/pool.img, size: 256MiB }
    images:
      box: { busybox: /bin/busybox }
    \(network ? "networks:\n  net: { bridge: {{BRIDGE}}, subnet: {{SUBNET}} }" : "")
    containers:
    \(containers)
    """
}

/// A long-running container that stops at once on SIGTERM; `extra` adds lines (indented
/// by four spaces) to its entry.
func service(_ name: String, extra: String = "") -> String {
    var text = """
          \(name):
            image: box
            command: ["/bin/sh", "-c", "trap 'exit 0' TERM; sleep infinity & wait"]
            stopTimeout: 2s

        """
    if !extra.isEmpty { text += extra + "\n" }
    return text
}

func ready() throws -> Bool {
    try Host.require(.root, .btrfs, .command("/bin/busybox"))
}

extension Installation {
    /// The pid of a container's init as /proc shows it (not as tupp reports it).
    func pid(_ name: String) throws -> Int32? { processes(of: name)?.initProcess.pid }

    /// SIGKILLs a container's command and waits (up to ten seconds) until its supervisor
    /// has gone — it records the end before it exits (restart policy "no") — so what comes
    /// next sees an ended command, not a dying one.
    func killCommand(_ name: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let running = try #require(processes(of: name), "\(name) runs", sourceLocation: sourceLocation)
        kill(running.initProcess.pid, SIGKILL)
        #expect(eventually(seconds: 10) { !running.supervisor.isAlive },
                "\(name)'s supervisor still there 10 s after SIGKILL to its init \(running.initProcess)", sourceLocation: sourceLocation)
    }

    /// Applies and records the output as the failure when it does not succeed.
    func apply(_ arguments: String..., sourceLocation: SourceLocation = #_sourceLocation) throws {
        let out = try tupp(["apply"] + arguments)
        #expect(out.status == 0, "\(out)", sourceLocation: sourceLocation)
    }

    /// `destroy --include-storage`, then nothing of this installation may be on the host.
    func expectClean(_ manifests: String..., sourceLocation: SourceLocation = #_sourceLocation) throws {
        let destroy = try tupp(["destroy", "--include-storage"] + manifests)
        #expect(destroy.status == 0, "\(destroy)", sourceLocation: sourceLocation)
        expectNothingLeft(sourceLocation: sourceLocation)
    }

    /// The UUID of a subvolume of the pool, from `btrfs subvolume show`.
    func subvolumeUUID(_ path: String) throws -> String? {
        let shown = try Spawn.run(["/bin/btrfs", "subvolume", "show", "\(root.path)/pool/\(path)"])
        guard shown.status == 0 else { return nil }
        return shown.stdout.split(separator: "\n").map { String($0).trimmingCharacters() }
            .first { $0.hasPrefix("UUID:") }.map { String($0.dropFirst("UUID:".count)).trimmingCharacters() }
    }

    /// `tupp status --json NAME`'s field `key` (what status *reports*; a claim of its own).
    func statusField(_ name: String, _ key: String) throws -> JSON.Node? {
        let out = try tupp("status", "--json", name)
        guard out.status == 0, case .array(let items) = try JSON.parse(Array(out.stdout.utf8)) else { return nil }
        return items.first?[key]
    }
}

@Suite(.serialized) struct EngineTests {
    /// A command its supervisor restarts under the container's own policy is not a change
    /// outside tupp: plan stays quiet, status shows the restart.
    @Test func aRestartUnderTheRestartPolicyIsNotDrift() throws {
        guard try ready() else { return }
        let i = try Installation()
        defer { i.finish() }
        let m = try i.manifest("m.yaml", smallManifest(service("cache", extra: "    restart: always"), network: false))
        try i.apply(m)
        let before = try #require(i.processes(of: "cache"))
        kill(before.initProcess.pid, SIGKILL)
        var after: ContainerProcesses?
        #expect(eventually(seconds: 15) {
            after = i.processes(of: "cache")
            return after != nil && after?.initProcess != before.initProcess
        }, "the supervisor restarted the command")
        #expect(after?.supervisor == before.supervisor, "the same supervisor")
        let plan = try i.tupp("plan", "--detailed-exitcode", m)
        #expect(plan.status == 0, "\(plan)")
        #expect(!plan.stdout.contains("Changed outside tupp"), "\(plan.stdout)")
        #expect(try i.statusField("cache", "restarts") == .int(1))
        i.expectOnlyDeclared("after the supervisor's restart")
        try i.expectClean(m)
    }

    @Test func converge() throws {
        guard try ready() else { return }
        let i = try Installation()
        defer { i.finish() }
        let m = try i.manifest("m.yaml", smallManifest(service("web", extra: "    network: { attach: net }")))
        let first = try i.tupp("apply", m)
        #expect(first.status == 0, "\(first)")
        #expect(first.stdout.contains("container.web: creating… done ("), "\(first.stdout)")
        i.expectOnlyDeclared()
        #expect(try i.tupp("apply", m).stdout.contains("No changes. The host matches the manifest."))
        #expect(try i.tupp("plan", "--detailed-exitcode", m).status == 0)
        try i.expectClean(m)
    }

    /// `--state-dir state` from the installation's directory is the same installation as the
    /// absolute path: the container's name files are bind-mounted from it and it runs.
    @Test func aRelativeStateDirectoryIsTheSameInstallation() throws {
        guard try ready() else { return }
        let i = try Installation()
        defer { i.cleanupLeavingNothing() }
        let m = try i.manifest("m.yaml", smallManifest(service("web", extra: "    network: { attach: net }")))
        let relative = try Spawn.run(["/bin/sh", "-c", "cd \"$1\" && exec \"$2\" --state-dir state apply m.yaml", "sh",
                                      i.root.path, Built.tupp], stderrToStdout: true, environment: ["NO_COLOR=1"])
        #expect(relative.status == 0, "\(relative)")
        let pid = try #require(try i.pid("web"), "the absolute --state-dir sees the container")
        #expect(try Files.readText("/proc/\(pid)/root/etc/hosts")?.contains("web") == true)
        try i.expectClean(m)
    }

    @Test func driftIsNamedAndRepaired() throws {
        guard try ready(), try Host.require(.command("/usr/bin/nsenter"), .command("/bin/btrfs")) else { return }
        let i = try Installation()
        defer { i.finish() }
        let m = try i.manifest("m.yaml", smallManifest(service("web", extra: "    network: { attach: net }")))
        try i.apply(m)
        let original = try i.initProcess(of: "web")

        // Hostname changed by hand: updated in place, same process.
        #expect(try Spawn.run(["/usr/bin/nsenter", "-t", String(original.pid), "-u", "/bin/hostname", "hacked"]).status == 0)
        var plan = try i.tupp("plan", "--detailed-exitcode", m)
        #expect(plan.status == 2 && plan.stdout.contains("hostname changed outside tupp"), "\(plan)")
        #expect(plan.stdout.contains("~ hostname = \"hacked\" -> \"web\""), "\(plan.stdout)")
        try i.apply(m)
        #expect(try i.liveHostname(of: "web") == "web", "repaired in the container's UTS namespace")
        #expect(try i.initProcess(of: "web") == original, "same process")
        i.expectOnlyDeclared("after the hostname repair")

        // Host veth deleted by hand: plugged again, same process.
        let veth = LinkNames.hostVeth(installation: i.installationID, container: "web")
        #expect(i.inventory().links.contains { $0.name == veth && $0.owner == LinkOwner(installation: i.installationID, role: .container, name: "web") })
        #expect(try Spawn.run(["/sbin/ip", "link", "del", veth]).status == 0)
        plan = try i.tupp("plan", "--detailed-exitcode", m)
        #expect(plan.status == 2 && plan.stdout.contains("host veth \(veth) was deleted outside tupp"), "\(plan)")
        try i.apply(m)
        #expect(try i.initProcess(of: "web") == original, "same process")
        #expect(try Ping.reaches(try #require(try i.liveAddress(of: "web"))))
        i.expectOnlyDeclared("after the veth repair")

        // Init killed: started again.
        try i.killCommand("web")
        plan = try i.tupp("plan", "--detailed-exitcode", m)
        #expect(plan.status == 2 && plan.stdout.contains("process not running (killed by signal 9)"), "\(plan)")
        try i.apply(m)
        let restarted = try i.initProcess(of: "web")
        #expect(restarted != original)
        i.expectOnlyDeclared("after the restart")

        // Snapshot deleted by hand (after the process died): replaced.
        try i.killCommand("web")
        let delete = try Spawn.run(["/bin/btrfs", "subvolume", "delete", "\(i.root.path)/pool/containers/web"])
        #expect(delete.status == 0, "\(delete)")
        plan = try i.tupp("plan", "--detailed-exitcode", m)
        #expect(plan.status == 2 && plan.stdout.contains("snapshot containers/web was deleted outside tupp"), "\(plan)")
        #expect(plan.stdout.contains("-/+ container \"web\""), "\(plan.stdout)")
        try i.apply(m)
        #expect(try i.subvolumeUUID("containers/web") != nil, "a new snapshot")
        #expect(try i.initProcess(of: "web") != restarted)
        i.expectOnlyDeclared("after the replacement")
        #expect(try i.tupp("apply", m).stdout.contains("No changes."))
        try i.expectClean(m)
    }

    @Test func inPlaceChangesKeepTheProcessAndRestartsReplaceIt() throws {
        guard try ready(), try Host.require(.command("/usr/bin/nsenter"), .command("/bin/btrfs")) else { return }
        let i = try Installation()
        defer { i.finish() }
        let base = service("web", extra: "    network: { attach: net, address: {{NET}}.10 }\n    hostname: one")
        let m = try i.manifest("m.yaml", smallManifest(base))
        try i.apply(m)
        let original = try i.initProcess(of: "web")
        let snapshot = try #require(try i.subvolumeUUID("containers/web"))

        // Address and hostname: in place.
        let moved = base.replacing("{{NET}}.10", with: "{{NET}}.11").replacing("hostname: one", with: "hostname: two")
        try i.manifest("m.yaml", smallManifest(moved))
        let update = try i.tupp("apply", m)
        #expect(update.status == 0 && update.stdout.contains("will be updated in place\n"), "\(update)")
        #expect(try i.initProcess(of: "web") == original, "same process")
        #expect(try i.liveHostname(of: "web") == "two")
        #expect(try i.liveAddresses(of: "web") == ["\(i.address(11))/24"])
        #expect(try Ping.reaches(i.address(11)))
        i.expectOnlyDeclared("after the change in place")

        // Command: the process restarts on the same snapshot.
        try i.manifest("m.yaml", smallManifest(moved.replacing("sleep infinity", with: "sleep 99999")))
        #expect(try Spawn.run(["/usr/bin/touch", "\(i.root.path)/pool/containers/web/kept"]).status == 0)
        let restart = try i.tupp("apply", m)
        #expect(restart.stdout.contains("(the process restarts)") && restart.stdout.contains("# restarts the process"), "\(restart)")
        #expect(try i.initProcess(of: "web") != original)
        #expect(try i.subvolumeUUID("containers/web") == snapshot, "same snapshot")
        #expect(Files.exists("\(i.root.path)/pool/containers/web/kept"))
        #expect(try i.nsenter("web", ["/bin/cat", "/proc/1/cmdline"]).stdout.contains("sleep 99999"))
        i.expectOnlyDeclared("after the restart")
        try i.expectClean(m)
    }

    @Test func savedPlans() throws {
        guard try ready() else { return }
        let i = try Installation()
        defer { i.finish() }
        let m = try i.manifest("m.yaml", smallManifest(service("web")))
        let planFile = "\(i.root.path)/reviewed.plan"
        #expect(try i.tupp("plan", "--out", planFile, m).status == 0)
        let applied = try i.tupp("apply", planFile)
        #expect(applied.status == 0 && applied.stdout.contains("container.web: creating… done"), "\(applied)")

        // A plan made, then the host changes underneath it: refused, naming what changed.
        try i.manifest("m.yaml", smallManifest(service("web") + service("api")))
        #expect(try i.tupp("plan", "--out", planFile, m).status == 0)
        try i.killCommand("web")
        let stale = try i.tupp("apply", planFile)
        #expect(stale.status == 1, "\(stale)")
        #expect(stale.stderr.contains("The saved plan is stale") && stale.stderr.contains("container.web changed on the host"), "\(stale)")
        #expect(i.processes(of: "api") == nil, "nothing applied")
        #expect(try i.subvolumeUUID("containers/api") == nil, "nothing applied")

        // The manifest edited after the plan: refused too.
        #expect(try i.tupp("plan", "--out", planFile, m).status == 0)
        try i.manifest("m.yaml", smallManifest(service("web")))
        #expect(try i.tupp("apply", planFile).stderr.contains("the manifest files changed since"))
        try i.expectClean(m)
    }

    @Test func appliesSerializeOnTheHostLock() throws {
        guard try ready() else { return }
        let i = try Installation()
        defer { i.finish() }
        let m = try i.manifest("m.yaml", smallManifest(service("a") + service("b") + service("c")))
        try Files.createDirectory(i.state, mode: 0o700)
        // Held by this test: a second apply waits, then names the holder.
        do {
            guard case .acquired(let lock) = try FileLock.acquire("\(i.state)/lock", timeout: 0, command: "the lock test") else {
                Issue.record("could not take the lock")
                return
            }
            let blocked = try i.tupp("apply", "--lock-timeout", "0.5", m)
            #expect(blocked.status == 1 && blocked.stderr.contains("pid \(getpid()) (the lock test) holds it"), "\(blocked)")
            #expect(!Files.exists("\(i.root.path)/pool.img"), "nothing done while the lock is held")
            withExtendedLifetime(lock) {}   // released when this scope ends
        }

        // Two applies at once: one does all the work, the other waits for it and finds
        // nothing left to do — and the host has each container once.
        let outputs = try [0, 1].map { n in try TemporaryDirectory("tupp-lock-\(n)") }
        defer { outputs.forEach { $0.remove() } }
        let files = try outputs.map { try FileDescriptor.open("\($0.path)/out", O_WRONLY | O_CREAT | O_TRUNC, mode: 0o600) }
        let pids = try files.map { try Spawn.start([Built.tupp, "--state-dir", i.state, "apply", m], stdout: $0.rawValue) }
        let statuses = pids.map { Spawn.wait($0) }
        #expect(statuses == [0, 0])
        let texts = try outputs.map { try Files.readText("\($0.path)/out") ?? "" }
        #expect(texts.filter { $0.contains("Apply complete! 6 changes") }.count == 1, "\(texts)")
        #expect(texts.filter { $0.contains("No changes. The host matches the manifest.") }.count == 1, "\(texts)")
        i.expectOnlyDeclared("after two applies at once")
        #expect(try i.tupp("plan", "--detailed-exitcode", m).status == 0)
        try i.expectClean(m)
    }

    @Test func orphansArePrunedUnlessToldOtherwise() throws {
        guard try ready() else { return }
        let i = try Installation()
        defer { i.finish() }
        let both = try i.manifest("m.yaml", smallManifest(service("a", extra: "    network: { attach: net }") + service("b")))
        try i.apply(both)
        let a = try i.initProcess(of: "a")
        try i.manifest("m.yaml", smallManifest(service("b"), network: false))
        let plan = try i.tupp("plan", both)
        #expect(plan.stdout.contains("# container.a will be destroyed (not in manifest)"), "\(plan.stdout)")
        #expect(plan.stdout.contains("# network.net will be destroyed (not in manifest)"))
        let kept = try i.tupp("apply", "--no-prune", both)
        #expect(kept.stdout.contains("No changes.") && kept.stdout.contains("kept because of --no-prune"), "\(kept)")
        #expect(a.isAlive, "kept")
        #expect(Files.exists("/sys/class/net/\(i.bridge)"))
        try i.apply(both)
        #expect(!a.isAlive && i.processes(of: "a") == nil, "pruned")
        #expect(try i.subvolumeUUID("containers/a") == nil)
        #expect(!Files.exists("/sys/class/net/\(i.bridge)"), "the bridge tupp made is gone with its network")
        i.expectOnlyDeclared("after pruning")
        try i.expectClean(both)
    }

    @Test func protectedResourcesSurviveUntilUnprotected() throws {
        guard try ready() else { return }
        let i = try Installation()
        defer { i.finish() }
        let m = try i.manifest("m.yaml", smallManifest(service("db") + service("web")))
        try i.apply(m)
        let db = try i.initProcess(of: "db")

        // Protecting is a change in place: the same process.
        try i.manifest("m.yaml", smallManifest(service("db", extra: "    protect: true") + service("web")))
        let protect = try i.tupp("apply", m)
        #expect(protect.status == 0 && protect.stdout.contains("container.db will be updated in place"), "\(protect)")
        #expect(try i.initProcess(of: "db") == db, "protect changes in place")

        // Removed from the manifest: kept, with a warning.
        try i.manifest("m.yaml", smallManifest(service("web")))
        let kept = try i.tupp("apply", m)
        #expect(kept.status == 0 && kept.stdout.contains("container.db is not in the manifest but protected"), "\(kept)")
        #expect(try i.initProcess(of: "db") == db)

        // A change that would replace it: refused, nothing touched.
        try i.manifest("m.yaml", smallManifest(service("db", extra: "    protect: true\n    namespaces: [mount, pid]") + service("web")))
        let refused = try i.tupp("apply", m)
        #expect(refused.status == 1 && refused.stdout.contains("container.db is protected"), "\(refused)")
        #expect(try i.initProcess(of: "db") == db)

        // Unprotected in one apply (in place), replaceable in the next.
        try i.manifest("m.yaml", smallManifest(service("db") + service("web")))
        try i.apply(m)
        #expect(try i.initProcess(of: "db") == db, "unprotecting changes in place")
        try i.manifest("m.yaml", smallManifest(service("db", extra: "    namespaces: [mount, pid]") + service("web")))
        try i.apply(m)
        #expect(try i.initProcess(of: "db") != db)
        #expect(ProcEntry.namespace(String(try i.initProcess(of: "db").pid), "uts") == ProcEntry.namespace("self", "uts"),
                "replaced: the host's UTS namespace, as now declared")
        i.expectOnlyDeclared("after the replacement")
        try i.expectClean(m)
    }

    /// What iproute2 says about a link: everything a change by tupp would show in.
    func linkFacts(_ name: String) throws -> String {
        let link = try Spawn.run(["/sbin/ip", "-d", "-j", "link", "show", "dev", name]).stdout
        // IPv4: the kernel gives an up bridge an IPv6 link-local address of its own.
        let addresses = try Spawn.run(["/sbin/ip", "-4", "-j", "addr", "show", "dev", name]).stdout
        // Counters and the operational state move with traffic, and a bridge without a MAC
        // of its own takes its lowest port's (the kernel's doing); identity and settings do not.
        guard case .array(let links) = try JSON.parse(Array(link.utf8)), let l = links.first,
              case .array(let addrs) = try JSON.parse(Array(addresses.utf8)), let a = addrs.first else { return "absent" }
        let keys = ["ifindex", "ifname", "mtu", "ifalias", "master"]
        return keys.map { "\($0)=\(l[$0]?.serialized() ?? "-")" }.joined(separator: " ") + " addresses=\(a["addr_info"]?.serialized() ?? "-")"
    }

    @Test func foreignObjectsAndHostRoutesAreRespected() throws {
        guard try ready() else { return }
        let i = try Installation()
        defer { i.finish() }
        // A bridge tupp did not create, with another address: refused, left untouched.
        #expect(try Spawn.run(["/sbin/ip", "link", "add", i.bridge, "type", "bridge"]).status == 0)
        defer { _ = try? Spawn.run(["/sbin/ip", "link", "del", i.bridge]) }
        #expect(try Spawn.run(["/sbin/ip", "addr", "add", "\(i.address(200))/24", "dev", i.bridge]).status == 0)
        let m = try i.manifest("m.yaml", smallManifest(service("web", extra: "    network: { attach: net }")))
        var before = try linkFacts(i.bridge)
        let refused = try i.tupp("plan", m)
        #expect(refused.status == 1 && refused.stdout.contains("bridge \(i.bridge) exists, was not created by tupp"), "\(refused)")
        #expect(try i.tupp("apply", m).status == 1)
        #expect(try linkFacts(i.bridge) == before, "refused and untouched")

        // The same bridge with the declared gateway: used, never changed or deleted.
        #expect(try Spawn.run(["/sbin/ip", "addr", "flush", "dev", i.bridge]).status == 0)
        #expect(try Spawn.run(["/sbin/ip", "addr", "add", "\(i.address(1))/24", "dev", i.bridge]).status == 0)
        #expect(try Spawn.run(["/sbin/ip", "link", "set", i.bridge, "up"]).status == 0)
        before = try linkFacts(i.bridge)
        let used = try i.tupp("apply", m)
        #expect(used.status == 0, "\(used)")
        #expect(try Ping.reaches(try #require(try i.liveAddress(of: "web"))), "the container is on the foreign bridge")
        let veth = LinkNames.hostVeth(installation: i.installationID, container: "web")
        #expect(i.inventory().links.first { $0.name == veth }?.master == i.bridge)
        #expect(try i.tupp("destroy", m).status == 0)
        let after = try linkFacts(i.bridge)
        #expect(after == before, "a foreign bridge is used as it is: not re-addressed, re-marked, resized or deleted")
        #expect(try Spawn.run(["/sbin/ip", "-j", "link", "show", "dev", i.bridge]).stdout.contains("\"UP\""), "and left up")
        #expect(try Spawn.run(["/sbin/ip", "link", "del", i.bridge]).status == 0)

        // A subnet that overlaps a host route tupp does not own: refused, naming it.
        let dummy = i.bridge + "r"   // a bridge tupp does not own, carrying the route
        #expect(try Spawn.run(["/sbin/ip", "link", "add", dummy, "type", "bridge"]).status == 0)
        defer { _ = try? Spawn.run(["/sbin/ip", "link", "del", dummy]) }
        #expect(try Spawn.run(["/sbin/ip", "link", "set", dummy, "up"]).status == 0)
        #expect(try Spawn.run(["/sbin/ip", "route", "add", "10.214.\(i.subnetOctet).128/25", "dev", dummy]).status == 0)
        let overlap = try i.tupp("plan", m)
        #expect(overlap.status == 1 && overlap.stdout.contains("overlaps the host route") && overlap.stdout.contains(dummy), "\(overlap)")
        #expect(try Spawn.run(["/sbin/ip", "link", "del", dummy]).status == 0)
        try i.expectClean(m)
    }

    @Test func allocatedAddressesAreStable() throws {
        guard try ready(), try Host.require(.command("/usr/bin/nsenter")) else { return }
        let i = try Installation()
        defer { i.finish() }
        let m = try i.manifest("m.yaml", smallManifest(["a", "b", "c"].map { service($0, extra: "    network: { attach: net }") }.joined()))
        try i.apply(m)
        // The addresses inside each container's namespace, not the ones tupp recorded.
        let first = try ["a", "b", "c"].map { try i.liveAddresses(of: $0) }
        #expect(first.allSatisfy { $0.count == 1 && $0[0].hasSuffix("/24") && $0[0].hasPrefix("10.214.\(i.subnetOctet).") })
        #expect(Set(first).count == 3 && !first.contains([i.address(1) + "/24"]))
        #expect(try i.tupp("destroy", m).status == 0)
        try i.apply(m)
        #expect(try ["a", "b", "c"].map { try i.liveAddresses(of: $0) } == first)
        for a in first.compactMap(\.first) {
            #expect(try Ping.reaches(String(a.prefix { $0 != "/" })), "host → \(a)")
        }
        try i.expectClean(m)
    }

    @Test func machineOutput() throws {
        guard try ready() else { return }
        let i = try Installation()
        defer { i.finish() }
        let m = try i.manifest("m.yaml", smallManifest(service("web")))
        let plan = try i.tupp("plan", "--json", m)
        #expect(plan.stdout.hasPrefix("{\"format_version\":\"1.0\""), "\(plan.stdout)")
        let apply = try i.tupp("apply", "--json", m)
        let types = apply.stdout.split(separator: "\n").compactMap { line -> String? in
            let text = String(line)
            guard let r = text.firstRange(of: "\"type\":\"") else { return nil }
            return String(text[r.upperBound...].prefix { $0 != "\"" })
        }
        #expect(types.first == "planned" && types.last == "summary", "\(types)")
        #expect(types.contains("start") && types.contains("complete"))
        let markdown = try i.tupp("plan", "--format", "markdown", m).stdout
        #expect(markdown.hasPrefix("### tupp plan") && markdown.contains("No changes."), "\(markdown)")
        let status = try i.tupp("status", "--json")
        #expect(status.stdout.contains("\"name\":\"web\",\"project\":\"\(i.project)\",\"state\":\"running\""), "\(status)")
        #expect(try i.statusField("web", "pid") == .int(Int64(try i.initProcess(of: "web").pid)), "status names the live init")
        try i.expectClean(m)
    }
}
