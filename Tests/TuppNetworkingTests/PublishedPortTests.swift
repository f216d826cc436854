import Foundation
import Glibc
import Testing
import TuppFacts
import TuppManifest
import TuppNetworking
import TuppSystem
import TuppTestSupport

/// A small world in namespaces the test makes, so that nothing of it touches the real
/// host's rule set, sysctls or loopback:
///
///     outside ──veth── host ──bridge── c1 (httpd, UDP echo)
///     10.213.N.130     .129 │  .1   └── c2
///
/// "host" is a network namespace standing in for the machine tupp runs on: the port
/// table, route_localnet and ip_forward are changed there (libnftables and /proc/sys/net
/// from a thread that joined it). Everything goes when the holders are killed.
final class PortLab: @unchecked Sendable {
    let net: TestNetwork
    let host: NetnsHolder
    let outside: NetnsHolder
    let containers: [NetnsHolder]
    let table: String
    private var servers: [pid_t] = []
    let files: TemporaryDirectory

    /// The container subnet is the test's /24 cut in two: .0/25 for the bridge, .128/25
    /// for the outside link.
    var subnet: IPv4Network { IPv4Network(address: net.subnet.network, prefixLength: 25) }
    var gateway: IPv4Interface { IPv4Interface(address: net.host(1).address, prefixLength: 25) }
    func containerAddress(_ n: Int) -> IPv4Address { net.host(UInt32(1 + n)).address }
    var hostAddress: IPv4Address { net.host(129).address }
    var outsideAddress: IPv4Address { net.host(130).address }
    var bridge: String { net.bridge }

    init(_ label: String = #function, containers count: Int = 2) throws {
        let net = try TestNetwork(label)
        let files = try TemporaryDirectory("tupp-ports")
        var holders: [NetnsHolder] = []
        do {
            for _ in 0..<(count + 2) { holders.append(try net.holder()) }
        } catch {
            _ = net.cleanUp()
            files.remove()
            throw error
        }
        self.net = net
        self.files = files
        table = "tupp_\(net.prefix)_ports"
        host = holders[0]
        outside = holders[1]
        containers = Array(holders[2...])
        do {
            try build()
        } catch {
            cleanUp()
            throw error
        }
    }

    private func build() throws {
        // A new namespace inherits the real host's ip_forward (devconf_inherit_init_net):
        // start from off, whatever other tests on the machine have switched on.
        try sh(host, "ip link set lo up && echo 0 > /proc/sys/net/ipv4/ip_forward")
        let session = try NetlinkSession.inNamespace(host.path)
        try session.createBridge(name: bridge, address: gateway, alias: "test")
        for (index, container) in containers.enumerated() {
            try session.plug(ContainerPlug(netnsPath: container.path, hostName: net.veth(index + 1), bridge: bridge,
                                           address: IPv4Interface(address: containerAddress(index + 1), prefixLength: 25),
                                           gateway: gateway.address, alias: "test"))
        }
        // The outside machine: a veth whose peer is born in its namespace.
        try sh(host, "ip link add \(net.prefix)o type veth peer name eth0 netns \(outside.pid)")
        try sh(host, "ip addr add \(hostAddress)/25 dev \(net.prefix)o && ip link set \(net.prefix)o up")
        try sh(outside, "ip link set lo up && ip addr add \(outsideAddress)/25 dev eth0 && ip link set eth0 up")
    }

    /// Runs a shell command line inside `netns`; fails the test setup when it fails.
    @discardableResult
    func sh(_ netns: NetnsHolder, _ command: String) throws -> Output {
        let result = try Spawn.run(["/usr/bin/nsenter", "--net=\(netns.path)", "/bin/sh", "-c", command], stderrToStdout: true)
        guard result.status == 0 else { throw SystemError.failure("run in test namespace", command, result.output) }
        return result
    }

    /// `body` on a thread inside the host namespace (libnftables and /proc/sys/net act there).
    func onHost<T>(_ body: @escaping () throws -> T) throws -> T {
        try NamespaceThread.run(joining: [(host.path, 0x4000_0000)], body)  // CLONE_NEWNET
    }

    /// busybox httpd in container `n` (1-based) answering "c<n>" on port 80.
    func startWebServer(_ n: Int) throws {
        let root = "\(files.path)/www\(n)"
        try Files.createDirectory(root)
        try Files.writeAtomically("\(root)/index.html", text: "c\(n)\n", mode: 0o644)
        servers.append(try Spawn.start(["/usr/bin/nsenter", "--net=\(containers[n - 1].path)",
                                        "/bin/busybox", "httpd", "-f", "-p", "80", "-h", root]))
    }

    /// A UDP server in container `n` that answers each datagram with "c<n>:" + the datagram.
    func startUDPEcho(_ n: Int, port: UInt16) throws {
        let script = """
            import socket
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("0.0.0.0", \(port)))
            while True:
                data, peer = s.recvfrom(2048)
                s.sendto(b"c\(n):" + data, peer)
            """
        servers.append(try Spawn.start(["/usr/bin/nsenter", "--net=\(containers[n - 1].path)", "/usr/bin/python3", "-c", script]))
    }

    /// A host process (python3's http.server) bound to `address`:`port` in the host namespace.
    func startHostListener(_ address: String, port: UInt16) throws -> pid_t {
        let pid = try Spawn.start(["/usr/bin/nsenter", "--net=\(host.path)", "/usr/bin/python3", "-m", "http.server",
                                   "--bind", address, String(port)])
        servers.append(pid)
        return pid
    }

    /// The body curl fetches from `netns` (nil when it fails), retried for a few seconds:
    /// the first frames after links change can be lost.
    func fetch(from netns: NetnsHolder, _ address: String, _ port: UInt16, within seconds: Double = 8) throws -> String? {
        let deadline = Monotonic.nanoseconds() + UInt64(seconds * 1e9)
        while true {
            let result = try Spawn.run(["/usr/bin/nsenter", "--net=\(netns.path)", "/usr/bin/curl", "-sS",
                                        "--max-time", "2", "http://\(address):\(port)/"])
            if result.status == 0 { return result.stdout }
            if Monotonic.nanoseconds() >= deadline { return nil }
            usleep(100_000)
        }
    }

    /// One try: fails fast on a refused connection, the witness that nothing answers.
    func refused(from netns: NetnsHolder, _ address: String, _ port: UInt16) throws -> Bool {
        try Spawn.run(["/usr/bin/nsenter", "--net=\(netns.path)", "/usr/bin/curl", "-sS", "--max-time", "2",
                       "http://\(address):\(port)/"]).status != 0
    }

    /// A datagram to `address`:`port` from `netns` and the answer, or nil.
    func udpExchange(from netns: NetnsHolder, _ address: String, _ port: UInt16, _ message: String) throws -> String? {
        let script = """
            import socket, sys
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.settimeout(0.5)
            for _ in range(16):
                s.sendto(b"\(message)", ("\(address)", \(port)))
                try:
                    print(s.recvfrom(2048)[0].decode()); sys.exit(0)
                except socket.timeout:
                    pass
            sys.exit(1)
            """
        let result = try Spawn.run(["/usr/bin/nsenter", "--net=\(netns.path)", "/usr/bin/python3", "-c", script])
        return result.status == 0 ? result.stdout.trimmingCharacters() : nil
    }

    /// What `nft` itself lists in the host namespace (nil: no such table).
    func nftListing() throws -> String? {
        let result = try Spawn.run(["/usr/bin/nsenter", "--net=\(host.path)", NAT.nftPath, "list", "table", "ip", table])
        return result.status == 0 ? result.stdout : nil
    }

    func sysctl(_ path: String) throws -> String {
        try sh(host, "cat /proc/sys/\(path)").stdout.trimmingCharacters()
    }

    func published(_ n: Int, _ ports: String...) throws -> PublishedContainer {
        PublishedContainer(name: "c\(n)", address: containerAddress(n), bridge: bridge, subnet: subnet,
                           ports: try ports.map { try PortPublication.parse($0) })
    }

    @discardableResult
    func reconcile(_ containers: [PublishedContainer]) throws -> PortRuleChanges {
        let table = self.table
        return try onHost { try PublishedPorts.reconcile(PortRuleSet.desired(containers), table: table) }
    }

    /// Stops every server by pid, kills the namespaces (and so everything in them) and
    /// reports what of the test's links is left on the real host.
    @discardableResult
    func cleanUp() -> [String] {
        for pid in servers {
            kill(pid, SIGKILL)
            Spawn.wait(pid)
        }
        servers = []
        files.remove()
        return net.cleanUp()
    }
}

@Suite("Published ports (root, real kernel, traffic only inside test namespaces)", .serialized)
struct PublishedPortTests {
    static func available() throws -> Bool {
        try Host.require(.root, .command("/usr/bin/nsenter"), .command("/usr/bin/unshare"), .command("/bin/busybox"),
                         .command("/usr/bin/curl"), .command("/usr/bin/python3"), .command(NAT.nftPath),
                         .command("/usr/sbin/ip"))
    }

    @Test func aPublishedPortAnswersOtherMachinesTheHostAndOtherContainers() throws {
        guard try Self.available() else { return }
        let lab = try PortLab()
        defer { #expect(lab.cleanUp().isEmpty) }
        try lab.startWebServer(1)
        let host = lab.hostAddress.description
        let changes = try lab.reconcile([try lab.published(1, "8080:80", "127.0.0.1:8081:80", "\(host):8082:80")])
        #expect(changes.enableLocalnet == [lab.bridge] && changes.enableForwarding)

        // What nft itself lists: the rules an operator reads.
        let listing = try #require(try lab.nftListing())
        #expect(listing.contains("fib daddr type local tcp dport 8080 dnat to \(lab.containerAddress(1)):80"))
        #expect(listing.contains("ip daddr 127.0.0.1 tcp dport 8081 dnat to \(lab.containerAddress(1)):80"))
        #expect(try lab.sysctl("net/ipv4/conf/\(lab.bridge)/route_localnet") == "1")
        #expect(try lab.sysctl("net/ipv4/ip_forward") == "1")

        // br_netfilter on (Docker hosts) and off: both paths must work.
        for bridgeFilter in ["1", "0"] {
            try lab.sh(lab.host, "echo \(bridgeFilter) > /proc/sys/net/bridge/bridge-nf-call-iptables")
            // From another machine, to every address and to the one address.
            #expect(try lab.fetch(from: lab.outside, host, 8080) == "c1\n", "br_netfilter \(bridgeFilter)")
            #expect(try lab.fetch(from: lab.outside, host, 8082) == "c1\n")
            // From the host itself, including loopback.
            #expect(try lab.fetch(from: lab.host, "127.0.0.1", 8080) == "c1\n")
            #expect(try lab.fetch(from: lab.host, "127.0.0.1", 8081) == "c1\n")
            #expect(try lab.fetch(from: lab.host, host, 8082) == "c1\n")
            // Hairpin: another container, and the container itself, through the host's port.
            #expect(try lab.fetch(from: lab.containers[1], host, 8080) == "c1\n")
            #expect(try lab.fetch(from: lab.containers[0], host, 8080) == "c1\n", "br_netfilter \(bridgeFilter)")
            #expect(try lab.fetch(from: lab.containers[1], lab.gateway.address.description, 8080) == "c1\n")
            // The loopback-only port is the host's alone.
            #expect(try lab.refused(from: lab.outside, host, 8081))
            #expect(try lab.refused(from: lab.containers[1], host, 8081))
        }

        // With `nat: true` masquerading the subnet too.
        let subnet = lab.subnet
        let masqueraded = try lab.onHost { () throws -> Bool in try NAT.ensureMasquerade(subnet: subnet, table: "tupp_nat_test") }
        #expect(masqueraded)
        #expect(try lab.fetch(from: lab.outside, host, 8080) == "c1\n")
        #expect(try lab.fetch(from: lab.host, "127.0.0.1", 8080) == "c1\n")
        #expect(try lab.fetch(from: lab.containers[1], host, 8080) == "c1\n")

        // Applying the same state again changes nothing.
        #expect(try lab.reconcile([try lab.published(1, "8080:80", "127.0.0.1:8081:80", "\(host):8082:80")]).isEmpty)
    }

    @Test func aPublishedUDPPortAnswers() throws {
        guard try Self.available() else { return }
        let lab = try PortLab(containers: 1)
        defer { #expect(lab.cleanUp().isEmpty) }
        try lab.startUDPEcho(1, port: 5353)
        try lab.reconcile([try lab.published(1, "53:5353/udp")])
        #expect(try lab.udpExchange(from: lab.outside, lab.hostAddress.description, 53, "hello") == "c1:hello")
        #expect(try lab.udpExchange(from: lab.host, "127.0.0.1", 53, "local") == "c1:local")
        // TCP on the same port is not published.
        #expect(try lab.refused(from: lab.outside, lab.hostAddress.description, 53))
    }

    @Test func portRangesArePublishedPortForPort() throws {
        guard try Self.available() else { return }
        let lab = try PortLab(containers: 1)
        defer { #expect(lab.cleanUp().isEmpty) }
        try lab.startWebServer(1)
        try lab.reconcile([try lab.published(1, "9000-9002:79-81")])
        #expect(try lab.fetch(from: lab.outside, lab.hostAddress.description, 9001) == "c1\n")
        #expect(try lab.refused(from: lab.outside, lab.hostAddress.description, 9000))  // → 79: nothing listens
    }

    @Test func driftIsSeenAndRepairedInPlace() throws {
        guard try Self.available() else { return }
        let lab = try PortLab(containers: 1)
        defer { #expect(lab.cleanUp().isEmpty) }
        try lab.startWebServer(1)
        let desired = [try lab.published(1, "8080:80")]
        try lab.reconcile(desired)
        #expect(try lab.fetch(from: lab.outside, lab.hostAddress.description, 8080) == "c1\n")

        // Someone deletes the DNAT rule with nft, and turns route_localnet off.
        let handle = try #require(try lab.sh(lab.host, "nft -a list chain ip \(lab.table) prerouting")
            .stdout.split(separator: "\n").first { $0.contains("dport 8080") }?.split(separator: " ").last)
        try lab.sh(lab.host, "nft delete rule ip \(lab.table) prerouting handle \(handle)")
        try lab.sh(lab.host, "echo 0 > /proc/sys/net/ipv4/conf/\(lab.bridge)/route_localnet")
        #expect(try lab.refused(from: lab.outside, lab.hostAddress.description, 8080))

        // The diff names exactly what is missing...
        let table = lab.table
        let bridge = lab.bridge
        let observed = try lab.onHost { try PublishedPorts.observe(table: table, bridges: [bridge]) }
        let changes = PortRules.diff(desired: PortRuleSet.desired(desired), observed: observed)
        #expect(changes.add.map(\.description) == ["prerouting: fib daddr type local tcp dport 8080 dnat to \(lab.containerAddress(1)):80 (container c1)"])
        #expect(changes.delete.isEmpty && changes.enableLocalnet == [lab.bridge])

        // ...and the repair puts it back; the server never restarted.
        try lab.onHost { try PublishedPorts.apply(changes, table: table) }
        #expect(try lab.fetch(from: lab.outside, lab.hostAddress.description, 8080) == "c1\n")
        #expect(try lab.fetch(from: lab.host, "127.0.0.1", 8080) == "c1\n")
        #expect(try lab.reconcile(desired).isEmpty)

        // A rule someone adds to tupp's table is taken out again.
        try lab.sh(lab.host, "nft add rule ip \(lab.table) prerouting tcp dport 7777 dnat to 192.0.2.1")
        let cleanup = try lab.reconcile(desired)
        #expect(cleanup.delete.count == 1 && cleanup.add.isEmpty)
        #expect(try lab.nftListing()?.contains("7777") == false)

        // A chain altered by hand gets the table rebuilt.
        try lab.sh(lab.host, "nft delete chain ip \(lab.table) localnet_guard")
        #expect(try lab.reconcile(desired).recreateTable)
        #expect(try lab.nftListing()?.contains("iifname \"\(lab.bridge)\" ip daddr 127.0.0.0/8 drop") == true)
    }

    @Test func theTableGoesWithItsLastRule() throws {
        guard try Self.available() else { return }
        let lab = try PortLab(containers: 1)
        defer { #expect(lab.cleanUp().isEmpty) }
        try lab.reconcile([try lab.published(1, "8080:80", "127.0.0.1:8081:80")])
        #expect(try lab.nftListing() != nil)
        let first = try lab.reconcile([try lab.published(1, "127.0.0.1:8081:80")])  // one fewer publication
        #expect(first.delete.count == 3 && first.add.isEmpty)  // its prerouting and output rules, and the hairpin
        let last = try lab.reconcile([])
        #expect(last.deleteTable && last.disableLocalnet == [lab.bridge])
        #expect(try lab.nftListing() == nil)
        #expect(try lab.sysctl("net/ipv4/conf/\(lab.bridge)/route_localnet") == "0")
        #expect(try lab.reconcile([]).isEmpty)
    }

    @Test func aPortTakenOnTheHostOrByAnotherInstallationIsAConflict() throws {
        guard try Self.available() else { return }
        let lab = try PortLab(containers: 2)
        defer { #expect(lab.cleanUp().isEmpty) }
        let listener = try lab.startHostListener("127.0.0.1", port: 8090)
        #expect(eventually(seconds: 10) { (try? lab.sh(lab.host, "grep -q ':1F9A 00000000:0000 0A' /proc/net/tcp")) != nil })

        // Another installation (its own table) already publishes 8091.
        let other = PortRuleSet.desired([try lab.published(2, "8091:80")])
        try lab.onHost { _ = try PublishedPorts.reconcile(other, table: "tupp_other_ports") }

        let claims = [
            PortClaim(container: "c1", publication: try PortPublication.parse("127.0.0.1:8090:80")),
            PortClaim(container: "c1", publication: try PortPublication.parse("127.0.0.2:8090:80")),  // not the listener's address
            PortClaim(container: "c1", publication: try PortPublication.parse("8091:80")),
            PortClaim(container: "c1", publication: try PortPublication.parse("8092:80")),
            PortClaim(container: "c2", publication: try PortPublication.parse("127.0.0.1:8092:80")),
        ]
        let table = lab.table
        let conflicts = try lab.onHost { try PublishedPorts.conflicts(for: claims, ownTable: table) }
        #expect(conflicts.count == 3, "\(conflicts)")
        #expect(conflicts.contains(.publishedTwice(claims[3], claims[4])))
        let host = try #require(conflicts.first { if case .boundOnHost = $0 { true } else { false } })
        guard case .boundOnHost(let claim, let socket, let processes) = host else { return }
        #expect(claim == claims[0])
        #expect(socket.address == IPv4Address("127.0.0.1") && socket.port == 8090)
        #expect(processes.map(\.pid) == [listener])
        #expect(processes.first?.command.hasPrefix("python3") == true)
        #expect(host.description.contains("pid \(listener) (python3"))
        let foreign = try #require(conflicts.first { if case .publishedByAnotherInstallation = $0 { true } else { false } })
        #expect(foreign.claim == claims[2])
        #expect(foreign.description.contains("container c2 of another tupp installation (nftables table tupp_other_ports)"))
    }
}
