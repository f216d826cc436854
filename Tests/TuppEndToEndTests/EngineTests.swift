import Glibc
import Testing
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
    /// A container's address as `tupp status` reports it, without the prefix length.
    func address(of name: String) throws -> String? {
        let out = try tupp("status", "--json", name).stdout
        guard let range = out.firstRange(of: "\"address\":\"") else { return nil }
        return String(out[range.upperBound...].prefix { $0 != "/" && $0 != "\"" })
    }

    func pid(_ name: String) throws -> Int32? {
        let out = try tupp("status", "--json", name).stdout
        guard let range = out.firstRange(of: "\"pid\":") else { return nil }
        return Int32(out[range.upperBound...].prefix { $0.isNumber })
    }

    /// SIGKILLs a container's command and waits (up to ten seconds) until its supervisor
    /// has recorded the end, so what comes next sees an ended command, not a dying one.
    func killCommand(_ name: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let pid = try #require(try pid(name), sourceLocation: sourceLocation)
        kill(pid, SIGKILL)
        let deadline = Monotonic.nanoseconds() + 10_000_000_000
        var status = ""
        repeat {
            status = try tupp("status", "--json", name).stdout
            if !status.contains("\"state\":\"running\"") && !status.contains("\"state\":\"exiting\"") { return }
            usleep(10_000)
        } while Monotonic.nanoseconds() < deadline
        Issue.record("\(name) still running 10 s after SIGKILL to \(pid): \(status)", sourceLocation: sourceLocation)
    }

    /// Applies and records the output as the failure when it does not succeed.
    func apply(_ arguments: String..., sourceLocation: SourceLocation = #_sourceLocation) throws {
        let out = try tupp(["apply"] + arguments)
        #expect(out.status == 0, "\(out)", sourceLocation: sourceLocation)
    }

    /// `cleanup()`, then nothing of this installation may be left on the host.
    func cleanupLeavingNothing(sourceLocation: SourceLocation = #_sourceLocation) {
        cleanup()
        #expect(leftovers().isEmpty, "left behind: \(leftovers())", sourceLocation: sourceLocation)
    }

    func expectClean(_ manifests: String..., sourceLocation: SourceLocation = #_sourceLocation) throws {
        let destroy = try tupp(["destroy", "--include-storage"] + manifests)
        #expect(destroy.status == 0, "\(destroy)", sourceLocation: sourceLocation)
        #expect(leftovers().isEmpty, "\(leftovers())", sourceLocation: sourceLocation)
    }
}

@Suite(.serialized) struct EngineTests {
    /// A command its supervisor restarts under the container's own policy is not a change
    /// outside tupp: plan stays quiet, status shows the restart.
    @Test func aRestartUnderTheRestartPolicyIsNotDrift() throws {
        guard try ready() else { return }
        let i = try Installation()
        defer { i.cleanupLeavingNothing() }
        let m = try i.manifest("m.yaml", smallManifest(service("cache", extra: "    restart: always"), network: false))
        try i.apply(m)
        let before = try #require(try i.pid("cache"))
        kill(before, SIGKILL)
        let deadline = Monotonic.nanoseconds() + 15_000_000_000
        var after: Int32?
        repeat {
            usleep(50_000)
            after = try i.pid("cache")
        } while (after == nil || after == before) && Monotonic.nanoseconds() < deadline
        #expect(after != nil && after != before, "the supervisor restarted the command")
        #expect(isProcessAlive(after ?? 0))
        let plan = try i.tupp("plan", "--detailed-exitcode", m)
        #expect(plan.status == 0, "\(plan)")
        #expect(!plan.stdout.contains("Changed outside tupp"), "\(plan.stdout)")
        #expect(try i.tupp("status", "--json", "cache").stdout.contains("\"restarts\":1"))
        try i.expectClean(m)
    }

    @Test func converge() throws {
        guard try ready() else { return }
        let i = try Installation()
        defer { i.cleanup() }
        let m = try i.manifest("m.yaml", smallManifest(service("web", extra: "    network: { attach: net }")))
        let first = try i.tupp("apply", m)
        #expect(first.status == 0, "\(first)")
        #expect(first.stdout.contains("container.web: creating… done ("), "\(first.stdout)")
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
        guard try ready() else { return }
        let i = try Installation()
        defer { i.cleanup() }
        let m = try i.manifest("m.yaml", smallManifest(service("web", extra: "    network: { attach: net }")))
        try i.apply(m)
        let pid = try #require(try i.pid("web"))

        // Hostname changed by hand: updated in place, same process.
        #expect(try Spawn.run(["/usr/bin/nsenter", "-t", String(pid), "-u", "/bin/hostname", "hacked"]).status == 0)
        var plan = try i.tupp("plan", "--detailed-exitcode", m)
        #expect(plan.status == 2 && plan.stdout.contains("hostname changed outside tupp"), "\(plan)")
        #expect(plan.stdout.contains("~ hostname = \"hacked\" -> \"web\""), "\(plan.stdout)")
        try i.apply(m)
        #expect(try i.tupp("exec", "web", "--", "hostname").stdout == "web\n")
        #expect(try i.pid("web") == pid)

        // Host veth deleted by hand: plugged again, same process.
        let veth = try #require(try Files.list("/sys/class/net").first { name in
            let alias = (try? Files.readText("/sys/class/net/\(name)/ifalias"))?.trimmingCharacters() ?? ""
            return LinkOwner(alias: alias) == LinkOwner(installation: i.installationID, role: .container, name: "web")
        })
        #expect(try Spawn.run(["/sbin/ip", "link", "del", veth]).status == 0)
        plan = try i.tupp("plan", "--detailed-exitcode", m)
        #expect(plan.status == 2 && plan.stdout.contains("host veth \(veth) was deleted outside tupp"), "\(plan)")
        try i.apply(m)
        #expect(try i.pid("web") == pid)
        #expect(try Ping.reaches(try address(i, "web")))

        // Init killed: started again.
        try i.killCommand("web")
        plan = try i.tupp("plan", "--detailed-exitcode", m)
        #expect(plan.status == 2 && plan.stdout.contains("process not running (killed by signal 9)"), "\(plan)")
        try i.apply(m)
        let restarted = try #require(try i.pid("web"))
        #expect(restarted != pid)

        // Snapshot deleted by hand (after the process died): replaced.
        try i.killCommand("web")
        let delete = try Spawn.run(["/bin/btrfs", "subvolume", "delete", "\(i.root.path)/pool/containers/web"])
        #expect(delete.status == 0, "\(delete)")
        plan = try i.tupp("plan", "--detailed-exitcode", m)
        #expect(plan.status == 2 && plan.stdout.contains("snapshot containers/web was deleted outside tupp"), "\(plan)")
        #expect(plan.stdout.contains("-/+ container \"web\""), "\(plan.stdout)")
        try i.apply(m)
        #expect(try i.tupp("apply", m).stdout.contains("No changes."))
        try i.expectClean(m)
    }

    func address(_ i: Installation, _ name: String) throws -> String {
        try #require(try i.address(of: name))
    }

    @Test func inPlaceChangesKeepTheProcessAndRestartsReplaceIt() throws {
        guard try ready() else { return }
        let i = try Installation()
        defer { i.cleanup() }
        let base = service("web", extra: "    network: { attach: net, address: {{NET}}.10 }\n    hostname: one")
        let m = try i.manifest("m.yaml", smallManifest(base))
        try i.apply(m)
        let pid = try #require(try i.pid("web"))

        // Address and hostname: in place.
        try i.manifest("m.yaml", smallManifest(base.replacing("{{NET}}.10", with: "{{NET}}.11").replacing("hostname: one", with: "hostname: two")))
        let update = try i.tupp("apply", m)
        #expect(update.status == 0 && update.stdout.contains("will be updated in place\n"), "\(update)")
        #expect(try i.pid("web") == pid)
        #expect(try i.tupp("exec", "web", "--", "hostname").stdout == "two\n")
        #expect(try i.tupp("exec", "web", "--", "ip", "-4", "-o", "addr", "show", "eth0").stdout.contains("\(i.address(11))/24"))
        #expect(try Ping.reaches(i.address(11)))

        // Command: the process restarts on the same snapshot.
        try i.manifest("m.yaml", smallManifest(base.replacing("{{NET}}.10", with: "{{NET}}.11").replacing("hostname: one", with: "hostname: two")
            .replacing("sleep infinity", with: "sleep 99999")))
        #expect(try Spawn.run(["/usr/bin/touch", "\(i.root.path)/pool/containers/web/kept"]).status == 0)
        let restart = try i.tupp("apply", m)
        #expect(restart.stdout.contains("(the process restarts)") && restart.stdout.contains("# restarts the process"), "\(restart)")
        #expect(try i.pid("web") != pid)
        #expect(Files.exists("\(i.root.path)/pool/containers/web/kept"), "same snapshot")
        try i.expectClean(m)
    }

    @Test func savedPlans() throws {
        guard try ready() else { return }
        let i = try Installation()
        defer { i.cleanup() }
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
        #expect(try i.pid("api") == nil, "nothing applied")

        // The manifest edited after the plan: refused too.
        #expect(try i.tupp("plan", "--out", planFile, m).status == 0)
        try i.manifest("m.yaml", smallManifest(service("web")))
        #expect(try i.tupp("apply", planFile).stderr.contains("the manifest files changed since"))
        try i.expectClean(m)
    }

    @Test func appliesSerializeOnTheHostLock() throws {
        guard try ready() else { return }
        let i = try Installation()
        defer { i.cleanup() }
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
            withExtendedLifetime(lock) {}   // released when this scope ends
        }

        // Two applies at once: both succeed, one does the work, the other finds nothing to do.
        let one = try Spawn.start([Built.tupp, "--state-dir", i.state, "apply", m])
        let two = try Spawn.start([Built.tupp, "--state-dir", i.state, "apply", m])
        #expect(Spawn.wait(one) == 0)
        #expect(Spawn.wait(two) == 0)
        #expect(try i.tupp("plan", "--detailed-exitcode", m).status == 0)
        try i.expectClean(m)
    }

    @Test func orphansArePrunedUnlessToldOtherwise() throws {
        guard try ready() else { return }
        let i = try Installation()
        defer { i.cleanup() }
        let both = try i.manifest("m.yaml", smallManifest(service("a", extra: "    network: { attach: net }") + service("b")))
        try i.apply(both)
        try i.manifest("m.yaml", smallManifest(service("b"), network: false))
        let plan = try i.tupp("plan", both)
        #expect(plan.stdout.contains("# container.a will be destroyed (not in manifest)"), "\(plan.stdout)")
        #expect(plan.stdout.contains("# network.net will be destroyed (not in manifest)"))
        let kept = try i.tupp("apply", "--no-prune", both)
        #expect(kept.stdout.contains("No changes.") && kept.stdout.contains("kept because of --no-prune"), "\(kept)")
        #expect(try i.pid("a") != nil)
        try i.apply(both)
        #expect(try i.tupp("status", "a").status == 1)
        #expect(!Files.exists("/sys/class/net/\(i.bridge)"), "the bridge tupp made is gone with its network")
        try i.expectClean(both)
    }

    @Test func protectedResourcesSurviveUntilUnprotected() throws {
        guard try ready() else { return }
        let i = try Installation()
        defer { i.cleanup() }
        let m = try i.manifest("m.yaml", smallManifest(service("db", extra: "    protect: true") + service("web")))
        try i.apply(m)
        let pid = try i.pid("db")

        // Removed from the manifest: kept, with a warning.
        try i.manifest("m.yaml", smallManifest(service("web")))
        let kept = try i.tupp("apply", m)
        #expect(kept.status == 0 && kept.stdout.contains("container.db is not in the manifest but protected"), "\(kept)")
        #expect(try i.pid("db") == pid)

        // A change that would replace it: refused.
        try i.manifest("m.yaml", smallManifest(service("db", extra: "    protect: true\n    namespaces: [mount, pid]") + service("web")))
        let refused = try i.tupp("apply", m)
        #expect(refused.status == 1 && refused.stdout.contains("container.db is protected"), "\(refused)")

        // Unprotected in one apply, replaceable in the next.
        try i.manifest("m.yaml", smallManifest(service("db") + service("web")))
        try i.apply(m)
        try i.manifest("m.yaml", smallManifest(service("db", extra: "    namespaces: [mount, pid]") + service("web")))
        try i.apply(m)
        #expect(try i.pid("db") != pid)
        try i.expectClean(m)
    }

    @Test func foreignObjectsAndHostRoutesAreRespected() throws {
        guard try ready() else { return }
        let i = try Installation()
        defer { i.cleanup() }
        // A bridge tupp did not create, with another address: refused, left untouched.
        #expect(try Spawn.run(["/sbin/ip", "link", "add", i.bridge, "type", "bridge"]).status == 0)
        #expect(try Spawn.run(["/sbin/ip", "addr", "add", "\(i.address(200))/24", "dev", i.bridge]).status == 0)
        let m = try i.manifest("m.yaml", smallManifest(service("web", extra: "    network: { attach: net }")))
        let refused = try i.tupp("plan", m)
        #expect(refused.status == 1 && refused.stdout.contains("bridge \(i.bridge) exists, was not created by tupp"), "\(refused)")

        // The same bridge with the declared gateway: used, never changed or deleted.
        #expect(try Spawn.run(["/sbin/ip", "addr", "flush", "dev", i.bridge]).status == 0)
        #expect(try Spawn.run(["/sbin/ip", "addr", "add", "\(i.address(1))/24", "dev", i.bridge]).status == 0)
        #expect(try Spawn.run(["/sbin/ip", "link", "set", i.bridge, "up"]).status == 0)
        let used = try i.tupp("apply", m)
        #expect(used.status == 0, "\(used)")
        #expect(try i.tupp("destroy", m).status == 0)
        #expect(Files.exists("/sys/class/net/\(i.bridge)"), "a foreign bridge is never deleted")
        #expect(try Spawn.run(["/sbin/ip", "link", "del", i.bridge]).status == 0)

        // A subnet that overlaps a host route tupp does not own: refused, naming it.
        let dummy = i.bridge + "r"   // a bridge tupp does not own, carrying the route
        #expect(try Spawn.run(["/sbin/ip", "link", "add", dummy, "type", "bridge"]).status == 0)
        defer { _ = try? Spawn.run(["/sbin/ip", "link", "del", dummy]) }
        #expect(try Spawn.run(["/sbin/ip", "link", "set", dummy, "up"]).status == 0)
        #expect(try Spawn.run(["/sbin/ip", "route", "add", "10.214.\(i.subnetOctet).128/25", "dev", dummy]).status == 0)
        let overlap = try i.tupp("plan", m)
        #expect(overlap.status == 1 && overlap.stdout.contains("overlaps the host route") && overlap.stdout.contains(dummy), "\(overlap)")
        try i.expectClean(m)
    }

    @Test func allocatedAddressesAreStable() throws {
        guard try ready() else { return }
        let i = try Installation()
        defer { i.cleanup() }
        let m = try i.manifest("m.yaml", smallManifest(["a", "b", "c"].map { service($0, extra: "    network: { attach: net }") }.joined()))
        try i.apply(m)
        let first = try ["a", "b", "c"].map { try address(i, $0) }
        #expect(Set(first).count == 3 && !first.contains(i.address(1)))
        #expect(try i.tupp("destroy", m).status == 0)
        try i.apply(m)
        #expect(try ["a", "b", "c"].map { try address(i, $0) } == first)
        for a in first {
            #expect(try Ping.reaches(a), "host → \(a)")
        }
        try i.expectClean(m)
    }

    @Test func machineOutput() throws {
        guard try ready() else { return }
        let i = try Installation()
        defer { i.cleanup() }
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
        try i.expectClean(m)
    }
}
