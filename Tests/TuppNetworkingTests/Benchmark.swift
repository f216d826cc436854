import Glibc
import Testing
import TuppFacts
import TuppManifest
import TuppNetworking
import TuppSystem
import TuppTestSupport

/// Numbers for the report, not a timed test: it prints medians and checks only that
/// every container was really connected. Run with TUPP_NET_BENCHMARK=1.
@Suite("Benchmark (TUPP_NET_BENCHMARK=1)", .serialized,
       .enabled(if: getenv("TUPP_NET_BENCHMARK") != nil))
struct NetworkingBenchmark {
    @discardableResult
    static func summary(_ label: String, _ samples: [Double]) -> String {
        let sorted = samples.sorted()
        let median = sorted[sorted.count / 2]
        let p90 = sorted[min(sorted.count - 1, sorted.count * 9 / 10)]
        let text = "\(label): median \(format(median)) ms, p90 \(format(p90)) ms, min \(format(sorted[0])) ms (n=\(sorted.count))"
        print("BENCHMARK " + text)
        return text
    }

    static func format(_ value: Double) -> String {
        let scaled = (value * 100).rounded() / 100
        return String(scaled)
    }

    static func milliseconds(_ body: () throws -> Void) rethrows -> Double {
        let start = Monotonic.nanoseconds()
        try body()
        return Monotonic.milliseconds(since: start)
    }

    @Test func plugVersusIpCommandLine() throws {
        guard try Host.require(.root, .command("/usr/sbin/ip"), .command("/usr/bin/nsenter")) else { return }
        let net = try TestNetwork()
        defer { #expect(net.cleanUp().isEmpty) }
        let host = try NetlinkSession.host()
        try host.createBridge(name: net.bridge, address: net.gateway, alias: "bench")
        let rounds = 25

        var viaNetlink: [Double] = []
        for n in 0..<rounds {
            let holder = try net.holder()
            let plug = PlugTests.plug(net, holder, veth: n, host: UInt32(10 + n))
            viaNetlink.append(try Self.milliseconds { try host.plug(plug) })
            #expect(try NetlinkSession.inNamespace(holder.path).snapshot().defaultRoute?.gateway == net.gateway.address)
            holder.stop()
        }

        // The `ip` recipe with the peer born in the netns, one command per step.
        var viaCommands: [Double] = []
        var viaBatch: [Double] = []
        for n in 0..<rounds {
            let holder = try net.holder()
            let address = net.host(UInt32(100 + n))
            let name = net.veth(100 + n)
            let inside = Witness.inside(holder.path) + ["/usr/sbin/ip"]
            let useBatch = n % 2 == 1
            let elapsed = try Self.milliseconds { () throws in
                #expect(try Witness.run(["/usr/sbin/ip", "link", "add", name, "master", net.bridge, "up", "type", "veth",
                                         "peer", "name", "eth0", "address", LinkNames.mac(for: address.address).description,
                                         "netns", String(holder.pid)]).status == 0)
                #expect(try Witness.run(["/usr/sbin/ip", "link", "set", name, "alias", "bench"]).status == 0)
                if useBatch {
                    // All inside steps in one process: `ip -batch`, fed through a file.
                    let script = "link set lo up\nlink set eth0 up\naddr add \(address) dev eth0\n"
                        + "route add default via \(net.gateway.address) dev eth0\n"
                    let path = "/tmp/\(net.prefix)-\(n).ip"
                    defer { unlink(path) }
                    try Files.writeAtomically(path, text: script)
                    #expect(try Witness.run(inside + ["-batch", path]).status == 0)
                } else {
                    #expect(try Witness.run(inside + ["link", "set", "lo", "up"]).status == 0)
                    #expect(try Witness.run(inside + ["link", "set", "eth0", "up"]).status == 0)
                    #expect(try Witness.run(inside + ["addr", "add", address.description, "dev", "eth0"]).status == 0)
                    #expect(try Witness.run(inside + ["route", "add", "default", "via", net.gateway.address.description]).status == 0)
                }
            }
            if useBatch { viaBatch.append(elapsed) } else { viaCommands.append(elapsed) }
            #expect(try Witness.defaultRoute(netns: holder.path)?.device == "eth0")
            holder.stop()
        }

        // The seed's recipe: create both ends on the host, then move one into the netns.
        var viaMove: [Double] = []
        for n in 0..<10 {
            let holder = try net.holder()
            let name = net.veth(200 + n)
            viaMove.append(try Self.milliseconds { () throws in
                #expect(try Witness.run(["/usr/sbin/ip", "link", "add", name, "type", "veth", "peer", "name", name + "c"]).status == 0)
                #expect(try Witness.run(["/usr/sbin/ip", "link", "set", name + "c", "netns", String(holder.pid)]).status == 0)
            })
            holder.stop()
        }

        // Moving with netlink alone, to isolate the kernel's cost from process spawning.
        var moveKernel: [Double] = []
        for n in 0..<10 {
            let holder = try net.holder()
            let name = net.veth(300 + n)
            #expect(try Witness.run(["/usr/sbin/ip", "link", "add", name, "type", "veth", "peer", "name", name + "c"]).status == 0)
            let session = try NetlinkSession.host()
            moveKernel.append(try Self.milliseconds { try session.moveLink(name: name + "c", toNamespace: holder.path) })
            holder.stop()
        }

        Self.summary("plug() via libnl", viaNetlink)
        Self.summary("ip CLI, peer born in netns, 6 commands", viaCommands)
        Self.summary("ip CLI, peer born in netns, 2 commands (ip -batch inside)", viaBatch)
        Self.summary("ip CLI, seed recipe: create on host + move (2 commands, no inside steps)", viaMove)
        Self.summary("netlink move of an existing link into a netns (kernel cost alone)", moveKernel)
    }

    @Test func observeHostAndHundredNamespaces() throws {
        guard try Host.require(.root) else { return }
        let net = try TestNetwork()
        defer { #expect(net.cleanUp().isEmpty) }
        let host = try NetlinkSession.host()
        try host.createBridge(name: net.bridge, address: IPv4Interface(address: net.subnet.firstHost, prefixLength: 24),
                              alias: "bench")
        let count = 100
        var paths: [String] = []
        for n in 0..<count {
            let holder = try net.holder()
            try host.plug(PlugTests.plug(net, holder, veth: n, host: UInt32(2 + n)))
            paths.append(holder.path)
        }

        var hostOnly: [Double] = []
        var namespacesOnly: [Double] = []
        var total: [Double] = []
        for _ in 0..<20 {
            var snapshot = NetworkSnapshot()
            var inside: [Result<NetworkSnapshot, SystemError>] = []
            let hostTime = try Self.milliseconds { snapshot = try NetlinkSession.host().snapshot() }
            let namespaceTime = Self.milliseconds { inside = NetlinkSession.snapshots(ofNamespaces: paths) }
            hostOnly.append(hostTime)
            namespacesOnly.append(namespaceTime)
            total.append(hostTime + namespaceTime)
            #expect(snapshot.links.filter { $0.name.hasPrefix(net.prefix + "v") }.count == count)
            #expect(inside.count == count)
            #expect(inside.allSatisfy { (try? $0.get().defaultRoute?.gateway) == net.subnet.firstHost })
        }
        Self.summary("host snapshot (links+addrs+routes, \(count) veths on the host)", hostOnly)
        Self.summary("\(count) netns snapshots (socket per netns + 3 dumps each)", namespacesOnly)
        Self.summary("host + \(count) netns", total)
    }
}
