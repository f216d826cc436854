import Glibc
import Testing
import TuppFacts
import TuppNetworking
import TuppSystem
import TuppTestSupport

/// Network features end to end: MTU, NAT read back from nftables (no traffic leaves the
/// machine), two containers talking across their bridge.
@Suite(.serialized) struct NetworkEngineTests {
    @Test func mtuNatAndNeighbours() throws {
        guard try ready(), try Host.require(.command("/usr/sbin/nft"), .command("/usr/bin/nsenter")) else { return }
        let i = try Installation()
        // nat: true turns on the host's IPv4 forwarding (and tupp leaves it on, as Docker
        // does); the test puts back what it found.
        let forwarding = try Files.readText("/proc/sys/net/ipv4/ip_forward") ?? "0\n"
        defer {
            i.finish()
            if let fd = try? FileDescriptor.open("/proc/sys/net/ipv4/ip_forward", O_WRONLY) {
                try? fd.writeAll(Array(forwarding.utf8))
            }
        }
        let ping = "    capabilities: { add: [NET_RAW] }"
        let manifest = smallManifest(service("a", extra: "    network: { attach: net }\n\(ping)") + service("b", extra: "    network: { attach: net }\n\(ping)"))
            .replacing("net: { bridge: {{BRIDGE}}, subnet: {{SUBNET}} }", with: "net: { bridge: {{BRIDGE}}, subnet: {{SUBNET}}, mtu: 1400, nat: true }")
        let m = try i.manifest("m.yaml", manifest)
        try i.apply(m)
        let table = "tupp_\(i.installationID)"

        // Outside witnesses: sysfs and iproute2 (inside the netns) for the MTU, nft for the rule.
        #expect(try Files.readText("/sys/class/net/\(i.bridge)/mtu")?.trimmingCharacters() == "1400")
        let a = try i.initProcess(of: "a")
        let eth0 = try Spawn.run(["/usr/bin/nsenter", "-t", String(a.pid), "-n", "/sbin/ip", "-j", "link", "show", "dev", "eth0"]).stdout
        #expect(eth0.contains("\"mtu\":1400"), "\(eth0)")
        // IPv4 networks: neither end of the pair has an IPv6 address (none to multicast to
        // every port of the bridge), and lo keeps ::1.
        let inet6 = try Spawn.run(["/usr/bin/nsenter", "-t", String(a.pid), "-n", "/sbin/ip", "-6", "-o", "addr", "show"]).stdout
        #expect(inet6.contains("lo    inet6 ::1/128") && !inet6.contains("eth0"), "\(inet6)")
        let hostEnd = try #require(Inventory.take(Inventory.Scope(prefixes: [], installations: [i.installationID])).links.first { $0.master == i.bridge })
        let hostInet6 = try Spawn.run(["/sbin/ip", "-6", "-o", "addr", "show", "dev", hostEnd.name])
        #expect(hostInet6.status == 0 && hostInet6.stdout.isEmpty, "\(hostInet6)")
        #expect(try Spawn.run(["/sbin/ip", "-d", "link", "show", "dev", hostEnd.name]).stdout.contains("addrgenmode none"))
        let rules = try Spawn.run(["/usr/sbin/nft", "list", "table", "ip", table])
        #expect(rules.status == 0 && rules.stdout.contains("ip saddr \(i.subnet)") && rules.stdout.contains("masquerade"), "\(rules)")
        #expect(try Files.readText("/proc/sys/net/ipv4/ip_forward")?.trimmingCharacters() == "1")
        i.expectOnlyDeclared("with NAT on")

        // Neighbours on one bridge reach each other (addresses were allocated): a ping from
        // inside a's network namespace to b's address.
        let b = try #require(try i.liveAddress(of: "b"))
        #expect(try Ping.reaches(b, through: ["/usr/bin/nsenter", "-t", String(a.pid), "-n"]), "a → b")

        // NAT off: the rule and the table go, in place.
        try i.manifest("m.yaml", manifest.replacing("nat: true", with: "nat: false"))
        try i.apply(m)
        #expect(try Spawn.run(["/usr/sbin/nft", "list", "table", "ip", table]).status != 0, "table removed with its last rule")
        #expect(try i.initProcess(of: "a") == a, "NAT changes in place")
        i.expectOnlyDeclared("with NAT off")
        try i.manifest("m.yaml", manifest)
        try i.apply(m)
        try i.expectClean(m)
        #expect(try Spawn.run(["/usr/sbin/nft", "list", "table", "ip", table]).status != 0, "destroy leaves no rule set behind")
    }
}

/// The pool end to end: remounted when found unmounted, grown in place, never shrunk.
@Suite(.serialized) struct PoolEngineTests {
    @Test func unmountedPoolIsRemountedAndGrowsInPlace() throws {
        guard try ready() else { return }
        let i = try Installation()
        defer { i.finish() }
        let m = try i.manifest("m.yaml", smallManifest(service("web"), network: false))
        try i.apply(m)
        let pool = "\(i.root.path)/pool"

        // Unmounted by hand (the container stopped first: its snapshot pins the mount).
        try i.killCommand("web")
        #expect(umount2(pool, 0) == 0, "unmount: \(String(cString: strerror(errno)))")
        let plan = try i.tupp("plan", "--detailed-exitcode", m)
        #expect(plan.status == 2 && plan.stdout.contains("is not mounted at \(pool)"), "\(plan)")
        try i.apply(m)
        #expect(Inventory.readMountInfo("/proc/self/mountinfo").contains { $0.mountPoint == pool && $0.fsType == "btrfs" })
        i.expectOnlyDeclared("after the remount")

        // Grown from 256 MiB to 384 MiB: the file and the filesystem, in place.
        try i.manifest("m.yaml", smallManifest(service("web"), network: false).replacing("size: 256MiB", with: "size: 384MiB"))
        let grow = try i.tupp("apply", m)
        #expect(grow.status == 0 && grow.stdout.contains("~ device.size = 268435456 (256MiB) -> 402653184 (384MiB)"), "\(grow)")
        let df = try Spawn.run(["/bin/btrfs", "filesystem", "show", "--raw", pool])
        #expect(df.stdout.contains("size 402653184"), "\(df)")
        #expect(try Files.status("\(i.root.path)/pool.img")?.st_size == 402653184)

        // Shrinking is refused and changes nothing.
        try i.manifest("m.yaml", smallManifest(service("web"), network: false))
        let shrink = try i.tupp("apply", m)
        #expect(shrink.status == 1 && shrink.stdout.contains("shrinking storage.device.size"), "\(shrink)")
        try i.manifest("m.yaml", smallManifest(service("web"), network: false).replacing("size: 256MiB", with: "size: 384MiB"))
        try i.expectClean(m)
    }
}

/// What apply does when a change fails, and what it does with leftovers it finds.
@Suite(.serialized) struct ApplyOutcomeTests {
    @Test func failureIsReportedResourceByResourceAndTheNextApplyConverges() throws {
        guard try ready() else { return }
        let i = try Installation()
        defer { i.finish() }
        // Two files, one desired state: the second adds a container whose program is missing.
        let base = try i.manifest("base.yaml", smallManifest(service("web"), network: false))
        let broken = try i.manifest("broken.yaml", """
            version: 1
            containers:
              broken:
                image: box
                command: ["/no/such/program"]
            """)
        let failed = try i.tupp("apply", base, broken)
        #expect(failed.status == 1, "\(failed)")
        #expect(failed.stderr.contains("container.broken") && failed.stderr.contains("/no/such/program"), "\(failed)")
        #expect(failed.stdout.contains("failed         container.broken"), "\(failed.stdout)")
        #expect(failed.stdout.contains("applied        pool.main"), "\(failed.stdout)")

        // Fixed in the manifest: the next apply replaces what the failure left.
        try i.manifest("broken.yaml", """
            version: 1
            containers:
              broken:
                image: box
                command: ["/bin/sh", "-c", "trap 'exit 0' TERM; sleep infinity & wait"]
                stopTimeout: 2s
            """)
        try i.apply(base, broken)
        #expect(try i.tupp("plan", "--detailed-exitcode", base, broken).status == 0)

        // Destroying only the base would pull the pool from under the other file's container.
        let partial = try i.tupp("destroy", base)
        #expect(partial.status == 1 && partial.stdout.contains("pool.main still holds container.broken"), "\(partial)")
        try i.expectClean(base, broken)
    }

    @Test func orphanedHostVethIsRemoved() throws {
        guard try ready() else { return }
        let i = try Installation()
        defer { i.finish() }
        let m = try i.manifest("m.yaml", smallManifest(service("web", extra: "    network: { attach: net }")))
        try i.apply(m)
        // A host veth carrying this installation's mark for a container nobody declares
        // (what a crash of some other tool could leave): shown as an orphan, removed.
        let name = LinkNames.hostVeth(installation: i.installationID, container: "ghost")
        #expect(try Spawn.run(["/sbin/ip", "link", "add", name, "type", "veth", "peer", "name", name + "p"]).status == 0)
        let alias = LinkOwner(installation: i.installationID, role: .container, name: "ghost").alias
        #expect(try Spawn.run(["/sbin/ip", "link", "set", name, "alias", alias]).status == 0)
        let plan = try i.tupp("plan", m)
        #expect(plan.stdout.contains("# container.ghost will be destroyed (not in manifest)"), "\(plan)")
        try i.apply(m)
        #expect(!Files.exists("/sys/class/net/\(name)"))
        try i.expectClean(m)
    }
}
