import Glibc
import Testing
import TuppBase
import TuppSystem
import TuppTestSupport

/// Published ports, /etc/hosts and /etc/resolv.conf through `tupp apply` (issue 14).
/// Traffic goes only to the test's bridge, the test's "outside client" namespace and
/// loopback. Witnesses: curl and busybox from namespaces the test made, `nft -j`,
/// /proc/sys, nsenter into the containers.
@Suite(.serialized) struct ReachableServicesTests {
    /// A network namespace standing for another machine, linked to the host by a veth pair
    /// the test makes: host end 10.217.N.1/30, client end .2/30.
    final class OutsideClient {
        let holder: NetnsHolder
        let hostLink: String
        let octet: Int

        init(_ i: Installation) throws {
            holder = try NetnsHolder()
            hostLink = i.bridge + "o"
            octet = i.subnetOctet
            do {
                try run(["ip", "link", "add", hostLink, "type", "veth", "peer", "name", "eth0", "netns", String(holder.pid)])
                try run(["ip", "addr", "add", "\(hostAddress)/30", "dev", hostLink])
                try run(["ip", "link", "set", hostLink, "up"])
                try inside("ip link set lo up && ip addr add 10.217.\(octet).2/30 dev eth0 && ip link set eth0 up")
            } catch {
                stop()
                throw error
            }
        }

        var hostAddress: String { "10.217.\(octet).1" }

        func run(_ arguments: [String]) throws {
            let result = try Spawn.run(arguments, stderrToStdout: true)
            guard result.status == 0 else { throw SystemError.failure("set up the outside client", arguments.joined(separator: " "), result.output) }
        }

        func inside(_ script: String) throws {
            try run(["nsenter", "--net=\(holder.path)", "/bin/sh", "-c", script])
        }

        /// What curl fetches from this namespace, retried for a few seconds; nil when it never answers.
        func fetch(_ url: String, within seconds: Double = 8) throws -> String? {
            try Self.fetch(["nsenter", "--net=\(holder.path)"], url, within: seconds)
        }

        static func fetch(_ prefix: [String], _ url: String, within seconds: Double = 8) throws -> String? {
            let deadline = Monotonic.nanoseconds() + UInt64(seconds * 1e9)
            while true {
                let result = try Spawn.run(prefix + ["curl", "-sS", "--max-time", "2", url])
                if result.status == 0 { return result.stdout }
                if Monotonic.nanoseconds() >= deadline { return nil }
                usleep(100_000)
            }
        }

        /// Killing the holder takes the namespace and the veth pair with it.
        func stop() {
            holder.stop()
            _ = try? Spawn.run(["ip", "link", "del", hostLink])
        }
    }

    func web(_ name: String, body: String, ports: String, extra: String = "") -> String {
        """
          \(name):
            image: box
            command: ["/bin/sh", "-c", "mkdir -p /www && echo \(body) > /www/index.html && exec httpd -f -p 80 -h /www"]
            stopTimeout: 1s
            network: { attach: net, ports: \(ports) }
        \(extra)
        """
    }

    func table(_ i: Installation) -> String { "tupp_\(i.installationID)_ports" }

    func nftRules(_ i: Installation) throws -> String? {
        let out = try Spawn.run(["nft", "-j", "list", "table", "ip", table(i)])
        return out.status == 0 ? out.stdout : nil
    }

    @Test func aPublishedPortIsReachableFromOutsideTheHostAndOtherContainers() throws {
        guard try ready(), try Host.require(.command("/usr/bin/curl"), .command("/usr/sbin/nft")) else { return }
        let i = try Installation()
        defer { i.cleanupLeavingNothing() }
        let forwarding = try Files.readText("/proc/sys/net/ipv4/ip_forward")
        defer { if let forwarding { try? Files.writeAtomically("/proc/sys/net/ipv4/ip_forward", text: forwarding) } }
        let client = try OutsideClient(i)
        defer { client.stop() }
        let m = try i.manifest("m.yaml", smallManifest(
            web("front", body: "front", ports: #"["18080:80", "127.0.0.1:18081:80"]"#)
                + service("probe", extra: "    network: { attach: net }")))
        try i.apply(m)
        let front = try #require(try i.pid("front"))

        // From another machine, through the host's address.
        #expect(try client.fetch("http://\(client.hostAddress):18080/") == "front\n")
        // From the host itself, on loopback and on its own address.
        #expect(try OutsideClient.fetch([], "http://127.0.0.1:18080/") == "front\n")
        #expect(try OutsideClient.fetch([], "http://127.0.0.1:18081/") == "front\n", "a loopback-published port answers the host")
        // A loopback-published port is the host's only.
        #expect(try client.fetch("http://\(client.hostAddress):18081/", within: 1) == nil)
        // route_localnet only on this bridge.
        #expect(try Files.readText("/proc/sys/net/ipv4/conf/\(i.bridge)/route_localnet")?.hasPrefix("1") == true)
        #expect(try Files.readText("/proc/sys/net/ipv4/conf/\(client.hostLink)/route_localnet")?.hasPrefix("0") == true)
        // Hairpin: another container through the host's published port.
        let hairpin = try i.tupp("exec", "probe", "--", "wget", "-qO-", "http://\(i.address(1)):18080/")
        #expect(hairpin.stdout == "front\n", "\(hairpin)")

        // The plan and status list each port; plan is quiet once applied.
        #expect(try i.tupp("plan", "--detailed-exitcode", m).status == 0)
        let status = try i.tupp("status", "front").stdout
        #expect(status.contains("18080:80") && status.contains("127.0.0.1:18081:80"), "\(status)")

        // Drift: a DNAT rule deleted by hand is shown and restored, the container keeps its process.
        #expect(try Spawn.run(["nft", "flush", "chain", "ip", table(i), "prerouting"]).status == 0)
        let drift = try i.tupp("plan", m)
        #expect(drift.stdout.contains("port table: + prerouting:"), "\(drift.stdout)")
        try i.apply(m)
        #expect(try client.fetch("http://\(client.hostAddress):18080/") == "front\n")
        #expect(try i.pid("front") == front && isProcessAlive(front))

        // A port changed in place: no restart.
        let moved = try i.manifest("m.yaml", smallManifest(
            web("front", body: "front", ports: #"["18090:80"]"#) + service("probe", extra: "    network: { attach: net }")))
        let change = try i.tupp("apply", moved)
        #expect(change.status == 0 && !change.stdout.contains("restarting"), "\(change)")
        #expect(try i.pid("front") == front)
        #expect(try client.fetch("http://\(client.hostAddress):18090/") == "front\n")
        #expect(try nftRules(i)?.contains("18080") == false)

        // Destroy takes the table with its last rule, and route_localnet back. (The client
        // goes first: its link is the test's, not tupp's.)
        client.stop()
        try i.expectClean(moved)
        #expect(try nftRules(i) == nil)
    }

    @Test func aPublishedUDPPortAnswers() throws {
        guard try ready(), try Host.require(.command("/usr/sbin/nft")) else { return }
        let i = try Installation()
        defer { i.cleanupLeavingNothing() }
        let forwarding = try Files.readText("/proc/sys/net/ipv4/ip_forward")
        defer { if let forwarding { try? Files.writeAtomically("/proc/sys/net/ipv4/ip_forward", text: forwarding) } }
        // Debian's busybox nc has no UDP: the echo server runs in the container's network
        // namespace (python3 from the host), which is the path DNAT must reach.
        let m = try i.manifest("m.yaml", smallManifest(service("echo", extra: "    network: { attach: net, ports: [\"127.0.0.1:15353:5353/udp\"] }")))
        try i.apply(m)
        let pid = try #require(try i.pid("echo"))
        let echo = try Spawn.start(["nsenter", "--net=/proc/\(pid)/ns/net", "/usr/bin/python3", "-c", """
            import socket
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("0.0.0.0", 5353))
            while True:
                data, peer = s.recvfrom(2048)
                s.sendto(data, peer)
            """])
        defer {
            kill(echo, SIGKILL)
            Spawn.wait(echo)
        }
        // One datagram out, the echo back, retried while the listener comes up.
        let script = """
            import socket, sys
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(0.5)
            for _ in range(20):
                s.sendto(b"ping\\n", ("127.0.0.1", 15353))
                try:
                    print(s.recvfrom(2048)[0].decode().strip()); sys.exit(0)
                except socket.timeout:
                    pass
            sys.exit(1)
            """
        let answer = try Spawn.run(["/usr/bin/python3", "-c", script])
        #expect(answer.status == 0 && answer.stdout == "ping\n", "\(answer)")
        kill(echo, SIGKILL)
        try i.expectClean(m)
    }

    @Test func aTakenPortIsRefusedAtPlanTimeNamingItsOwner() throws {
        guard try ready(), try Host.require(.command("/usr/bin/python3")) else { return }
        let i = try Installation()
        defer { i.cleanupLeavingNothing() }
        let server = try Spawn.start(["/usr/bin/python3", "-m", "http.server", "--bind", "127.0.0.1", "18181"])
        defer {
            kill(server, SIGKILL)
            Spawn.wait(server)
        }
        // Wait until it listens (its socket is the witness).
        var listening = false
        for _ in 0..<100 where !listening {
            listening = (try Files.readText("/proc/net/tcp"))?.contains(":\(String(18181, radix: 16, uppercase: true)) 00000000:0000 0A") == true
            if !listening { usleep(50_000) }
        }
        #expect(listening)
        let m = try i.manifest("m.yaml", smallManifest(web("front", body: "x", ports: #"["127.0.0.1:18181:80"]"#)))
        let plan = try i.tupp("plan", m)
        #expect(plan.status == 1)
        #expect(plan.stdout.contains("is taken on the host") && plan.stdout.contains("pid \(server) (python3)"), "\(plan)")

        // Two containers on one port: refused before anything is planned.
        let twice = try i.manifest("twice.yaml", smallManifest(web("a", body: "a", ports: #"["18182:80"]"#)
                                                               + web("b", body: "b", ports: #"["18182:80"]"#)))
        let refused = try i.tupp("plan", twice)
        #expect(refused.status == 1 && refused.stderr.contains("port 0.0.0.0:18182:80/tcp overlaps"), "\(refused)")
    }

    @Test func containersKnowEachOtherByNameWithoutRestarting() throws {
        guard try ready() else { return }
        let i = try Installation()
        defer { i.cleanupLeavingNothing() }
        func manifest(_ names: [String]) throws -> String {
            try i.manifest("m.yaml", smallManifest(names.map {
                service($0, extra: "    network: { attach: net }\n    capabilities: { add: [NET_RAW] }\n    hosts: { legacy.internal: 192.0.2.10 }")
            }.joined()))
        }
        try i.apply(try manifest(["a", "b"]))
        let a = try #require(try i.pid("a"))
        func hostsOfA() throws -> String { try Spawn.run(["nsenter", "-t", String(a), "-m", "cat", "/etc/hosts"]).stdout }
        let hosts = try hostsOfA()
        let bAddress = try #require(try i.address(of: "b"))
        #expect(hosts.contains("\(bAddress)\tb\n") && hosts.contains("192.0.2.10\tlegacy.internal\n"), "\(hosts)")
        #expect(try Ping.reaches("b", through: ["nsenter", "-t", String(a), "-n", "-m", "-u", "--"]), "ping b by name from a")

        // C comes: a's /etc/hosts gains it, a keeps its process.
        try i.apply(try manifest(["a", "b", "c"]))
        let cAddress = try #require(try i.address(of: "c"))
        #expect(try hostsOfA().contains("\(cAddress)\tc\n"))
        #expect(try i.pid("a") == a && isProcessAlive(a))
        // And goes.
        try i.apply(try manifest(["a", "b"]))
        let without = try hostsOfA()
        #expect(!without.contains("\tc\n"), "\(without)")
        #expect(try i.pid("a") == a)

        // resolv.conf: never a loopback address the container cannot reach.
        let resolv = try Spawn.run(["nsenter", "-t", String(a), "-m", "cat", "/etc/resolv.conf"]).stdout
        for line in resolv.split(separator: "\n") where line.hasPrefix("nameserver") {
            #expect(!line.contains(" 127.") && !line.contains("::1"), "\(resolv)")
        }
        // Read-only inside: the container cannot change them.
        #expect(try Spawn.run(["nsenter", "-t", String(a), "-m", "-p", "-r", "-w", "/bin/sh", "-c", "echo x >> /etc/hosts"]).status != 0)
        try i.expectClean(try manifest(["a", "b"]))
    }

    @Test func dnsSettingsAreWrittenAndChangedInPlace() throws {
        guard try ready() else { return }
        let i = try Installation()
        defer { i.cleanupLeavingNothing() }
        func manifest(_ dns: String) throws -> String {
            try i.manifest("m.yaml", smallManifest(service("a", extra: "    dns: [\(dns)]\n    dnsSearch: [example.org]\n    dnsOptions: [\"ndots:2\"]"), network: false))
        }
        try i.apply(try manifest("192.0.2.53"))
        let a = try #require(try i.pid("a"))
        func resolv() throws -> String { try Spawn.run(["nsenter", "-t", String(a), "-m", "cat", "/etc/resolv.conf"]).stdout }
        let written = try resolv()
        #expect(written.contains("nameserver 192.0.2.53\nsearch example.org\noptions ndots:2\n"), "\(written)")
        let change = try i.tupp("apply", try manifest("192.0.2.54, 192.0.2.55"))
        #expect(change.status == 0 && !change.stdout.contains("restarting"), "\(change)")
        #expect(try resolv().contains("nameserver 192.0.2.54\nnameserver 192.0.2.55\n"))
        #expect(try i.pid("a") == a)
        try i.expectClean(try manifest("192.0.2.54"))
    }
}
