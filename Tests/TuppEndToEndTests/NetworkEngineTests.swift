import Glibc
import Testing
import TuppSystem
import TuppTestSupport

/// Network features end to end: MTU, NAT read back from nftables (no traffic leaves the
/// machine), two containers talking across their bridge.
@Suite(.serialized) struct NetworkEngineTests {
    @Test func mtuNatAndNeighbours() throws {
        guard try ready(), try Host.require(.command("/usr/sbin/nft")) else { return }
        let i = try Installation()
        // nat: true turns on the host's IPv4 forwarding (and tupp leaves it on, as Docker
        // does); the test puts back what it found.
        let forwarding = try Files.readText("/proc/sys/net/ipv4/ip_forward") ?? "0\n"
        defer {
            i.cleanup()
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

        // Outside witnesses: iproute2 for the MTU, nft for the masquerade rule.
        #expect(try Files.readText("/sys/class/net/\(i.bridge)/mtu")?.trimmingCharacters() == "1400")
        #expect(try i.tupp("exec", "a", "--", "cat", "/sys/class/net/eth0/mtu").stdout == "1400\n")
        let rules = try Spawn.run(["/usr/sbin/nft", "list", "table", "ip", table])
        #expect(rules.status == 0 && rules.stdout.contains("ip saddr \(i.subnet)") && rules.stdout.contains("masquerade"), "\(rules)")
        #expect(try Files.readText("/proc/sys/net/ipv4/ip_forward")?.trimmingCharacters() == "1")

        // Neighbours on one bridge reach each other (addresses were allocated).
        let b = try #require(try i.tupp("exec", "b", "--", "ip", "-4", "-o", "addr", "show", "eth0").stdout
            .split(separator: " ").first { $0.hasPrefix("10.214.") }.map { String($0.prefix { $0 != "/" }) })
        let reach = try i.tupp("exec", "a", "--", "ping", "-c", "1", "-W", "2", b)
        #expect(reach.status == 0, "a → b: \(reach)")

        // NAT off: the rule and the table go, in place.
        try i.manifest("m.yaml", manifest.replacing("nat: true", with: "nat: false"))
        try i.apply(m)
        #expect(try Spawn.run(["/usr/sbin/nft", "list", "table", "ip", table]).status != 0, "table removed with its last rule")
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
        defer { i.cleanup() }
        let m = try i.manifest("m.yaml", smallManifest(service("web"), network: false))
        try i.apply(m)
        let pool = "\(i.root.path)/pool"

        // Unmounted by hand (the container stopped first: its snapshot pins the mount).
        kill(try #require(try i.pid("web")), SIGKILL)
        usleep(200_000)
        #expect(umount2(pool, 0) == 0, "unmount: \(String(cString: strerror(errno)))")
        let plan = try i.tupp("plan", "--detailed-exitcode", m)
        #expect(plan.status == 2 && plan.stdout.contains("is not mounted at \(pool)"), "\(plan)")
        try i.apply(m)
        #expect(try MountInfo.read().contains { $0.mountPoint == pool && $0.fsType == "btrfs" })

        // Grown from 256 MiB to 384 MiB: the file and the filesystem, in place.
        try i.manifest("m.yaml", smallManifest(service("web"), network: false).replacing("size: 256MiB", with: "size: 384MiB"))
        let grow = try i.tupp("apply", m)
        #expect(grow.status == 0 && grow.stdout.contains("~ device.size = 268435456 (256MiB) -> 402653184 (384MiB)"), "\(grow)")
        let df = try Spawn.run(["/bin/btrfs", "filesystem", "show", "--raw", pool])
        #expect(df.stdout.contains("size 402653184"), "\(df)")

        // Shrinking is refused and changes nothing.
        try i.manifest("m.yaml", smallManifest(service("web"), network: false))
        let shrink = try i.tupp("apply", m)
        #expect(shrink.status == 1 && shrink.stdout.contains("shrinking storage.device.size"), "\(shrink)")
        try i.manifest("m.yaml", smallManifest(service("web"), network: false).replacing("size: 256MiB", with: "size: 384MiB"))
        try i.expectClean(m)
    }
}
