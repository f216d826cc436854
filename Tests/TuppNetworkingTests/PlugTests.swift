import Glibc
import Testing
import TuppFacts
import TuppManifest
import TuppNetworking
import TuppSystem
import TuppTestSupport

@Suite("Container plugs (root, real kernel)")
struct PlugTests {
    static func plug(_ net: TestNetwork, _ holder: NetnsHolder, veth: Int, host n: UInt32, mtu: Int? = nil) -> ContainerPlug {
        ContainerPlug(netnsPath: holder.path, hostName: net.veth(veth), bridge: net.bridge, interface: "eth0",
                      address: net.host(n), gateway: net.gateway.address, mtu: mtu,
                      alias: LinkOwner(installation: net.prefix, role: .container, name: "c\(veth)").alias)
    }

    /// A test network with its bridge up (the gateway's address, `mtu`). The caller defers
    /// `net.cleanUp()`; when setting up fails, what was made is removed here.
    static func bridged(_ label: String = #function, mtu: Int? = nil) throws -> (net: TestNetwork, host: NetlinkSession) {
        let net = try TestNetwork(label)
        do {
            let host = try NetlinkSession.host()
            try host.createBridge(name: net.bridge, address: net.gateway, mtu: mtu, alias: "test")
            return (net, host)
        } catch {
            _ = net.cleanUp()
            throw error
        }
    }

    /// `bridged`, plus one container namespace plugged in: veth 1, host address 2.
    static func plugged(_ label: String = #function)
        throws -> (net: TestNetwork, host: NetlinkSession, holder: NetnsHolder, plug: ContainerPlug) {
        let (net, host) = try bridged(label)
        do {
            let holder = try net.holder()
            let plug = Self.plug(net, holder, veth: 1, host: 2)
            try host.plug(plug)
            return (net, host, holder, plug)
        } catch {
            _ = net.cleanUp()
            throw error
        }
    }

    @Test func plugBuildsTheWholePathAndTrafficFlows() throws {
        guard try Host.require(.root, .command("/usr/sbin/ip"), .command("/usr/bin/nsenter"),
                               .command("/bin/busybox"), .command("/usr/bin/unshare")) else { return }
        let (net, host) = try Self.bridged()
        defer { #expect(net.cleanUp().isEmpty) }
        let holder = try net.holder()
        let plug = Self.plug(net, holder, veth: 1, host: 2, mtu: 1400)

        try host.plug(plug)

        // Host side, seen by iproute2: enslaved, up, marked.
        let hostEnd = try #require(try Witness.link(plug.hostName))
        #expect(hostEnd["master"] as? String == net.bridge)
        #expect(Witness.flags(hostEnd).contains("UP"))
        #expect(hostEnd["ifalias"] as? String == plug.alias)
        #expect(hostEnd["mtu"] as? Int == 1400)
        // Hairpin mode: a container can reach its own published port where br_netfilter is loaded.
        let port = (hostEnd["linkinfo"] as? [String: Any])?["info_slave_data"] as? [String: Any]
        #expect(port?["hairpin"] as? Bool == true)
        // The peer was born in the container's namespace: not on the host under any name.
        #expect(hostEnd["link_netnsid"] != nil, "the host end's peer is in another namespace: \(hostEnd)")
        let hostMACs = try Witness.run(["/usr/sbin/ip", "-j", "link", "show"]).stdout
        #expect(!hostMACs.contains("\"\(plug.mac)\""), "no host link has the peer's MAC \(plug.mac)")

        // Inside, seen through nsenter: name, MAC, MTU, address, default route, lo up.
        let peer = try #require(try Witness.link("eth0", netns: holder.path))
        #expect(peer["address"] as? String == LinkNames.mac(for: plug.address.address).description)
        #expect(Witness.flags(peer).contains("UP"))
        #expect(peer["mtu"] as? Int == 1400)
        #expect(try Witness.addresses("eth0", netns: holder.path) == [plug.address.description])
        let route = try #require(try Witness.defaultRoute(netns: holder.path))
        #expect(route.gateway == net.gateway.address.description && route.device == "eth0")
        #expect(Witness.flags(try #require(try Witness.link("lo", netns: holder.path))).contains("UP"))
        // IPv4 networks: neither end has an IPv6 address to multicast to every bridge port.
        #expect(try Witness.run(["/usr/sbin/ip", "-6", "-o", "addr", "show", "dev", plug.hostName]).stdout.isEmpty)
        #expect(try Witness.run(Witness.inside(holder.path) + ["/usr/sbin/ip", "-6", "-o", "addr", "show", "dev", "eth0"]).stdout.isEmpty)

        // The snapshot pairs the two ends by index and netns id.
        let hostSeen = try host.snapshot()
        let inside = try NetlinkSession.inNamespace(holder.path).snapshot()
        let hostLink = try #require(hostSeen.link(named: plug.hostName))
        let peerLink = try #require(inside.link(named: "eth0"))
        #expect(hostLink.kind == "veth" && peerLink.kind == "veth")
        #expect(hostLink.masterIndex == hostSeen.link(named: net.bridge)?.index)
        #expect(hostLink.peerIndex == peerLink.index && peerLink.peerIndex == hostLink.index)
        #expect(hostLink.peerNetnsID != nil && peerLink.peerNetnsID != nil)
        #expect(inside.defaultRoute?.gateway == net.gateway.address)
        #expect(inside.addresses(onLink: peerLink.index) == [plug.address])

        #expect(try Witness.ping(net.gateway.address, from: holder.path))
        #expect(try Witness.ping(plug.address.address))

        // A second plug for the same host name is refused and leaves the first intact.
        let twice = systemError { try host.plug(plug) }
        #expect(twice?.code == EEXIST)
        #expect(try Witness.ping(plug.address.address))
    }

    @Test func twoContainersOnOneBridgeReachEachOther() throws {
        guard try Host.require(.root, .command("/usr/bin/nsenter"), .command("/bin/busybox"),
                               .command("/usr/bin/unshare")) else { return }
        let (net, host) = try Self.bridged(mtu: 1450)
        defer { #expect(net.cleanUp().isEmpty) }
        let first = try net.holder()
        let second = try net.holder()
        try host.plug(Self.plug(net, first, veth: 1, host: 2))
        try host.plug(Self.plug(net, second, veth: 2, host: 3))

        #expect(try Witness.ping(net.host(3).address, from: first.path))
        #expect(try Witness.ping(net.host(2).address, from: second.path))
        // Without an explicit MTU both ends take the bridge's.
        #expect(try Witness.link("eth0", netns: first.path)?["mtu"] as? Int == 1450)
        #expect(try Witness.link(net.veth(1))?["mtu"] as? Int == 1450)
    }

    @Test func aHostEndPairedWithAnotherNamespaceIsRecreated() throws {
        guard try Host.require(.root, .command("/usr/bin/nsenter"), .command("/bin/busybox"),
                               .command("/usr/bin/unshare")) else { return }
        let (net, host) = try Self.bridged()
        defer { #expect(net.cleanUp().isEmpty) }
        // The container's earlier namespace is still held open by something.
        let earlier = try net.holder()
        try host.plug(Self.plug(net, earlier, veth: 1, host: 2))
        let current = try net.holder()

        #expect(try host.ensurePlugged(Self.plug(net, current, veth: 1, host: 2)) == [.createdPair])

        #expect(try NetlinkSession.inNamespace(earlier.path).link(named: "eth0") == nil)
        #expect(try Witness.addresses("eth0", netns: current.path) == [net.host(2).description])
        #expect(try Witness.ping(net.gateway.address, from: current.path))
    }

    @Test func theNamespacesDeathRemovesThePair() throws {
        guard try Host.require(.root, .command("/usr/bin/unshare")) else { return }
        let (net, host, holder, plug) = try Self.plugged()
        defer { #expect(net.cleanUp().isEmpty) }
        #expect(try host.link(named: plug.hostName) != nil)

        holder.stop()

        // Namespace teardown runs on a kernel workqueue: give it a moment.
        #expect(try eventually { try host.link(named: plug.hostName) == nil })
    }

    @Test func failedPlugLeavesNothingBehind() throws {
        guard try Host.require(.root, .command("/usr/bin/unshare")) else { return }
        let net = try TestNetwork()
        defer { #expect(net.cleanUp().isEmpty) }
        let host = try NetlinkSession.host()
        let holder = try net.holder()

        // No bridge: refused before anything is created.
        let noBridge = systemError { try host.plug(Self.plug(net, holder, veth: 1, host: 2)) }
        #expect(noBridge?.code == ENODEV)
        #expect(noBridge?.object.contains(net.bridge) == true)

        // The inside steps fail (a gateway outside the subnet is unreachable): the pair goes again.
        try host.createBridge(name: net.bridge, address: net.gateway, alias: "test")
        var plug = Self.plug(net, holder, veth: 1, host: 2)
        plug.gateway = IPv4Address("198.51.100.1")!
        let unreachable = systemError { try host.plug(plug) }
        #expect(unreachable?.code == ENETUNREACH)
        #expect(try host.link(named: plug.hostName) == nil)
        #expect(try NetlinkSession.inNamespace(holder.path).link(named: "eth0") == nil)

        // A namespace path that does not exist.
        plug.netnsPath = "/proc/0/ns/net"
        #expect(systemError { try host.plug(plug) }?.code == ENOENT)
    }

    @Test func handDeletedHostVethIsSeenAndRepairedWithoutRestart() throws {
        guard try Host.require(.root, .command("/usr/sbin/ip"), .command("/usr/bin/nsenter"),
                               .command("/bin/busybox"), .command("/usr/bin/unshare")) else { return }
        let (net, host, holder, plug) = try Self.plugged()
        defer { #expect(net.cleanUp().isEmpty) }
        #expect(try host.ensurePlugged(plug).isEmpty)

        let namespace = ProcEntry.namespace(String(holder.pid), "net")
        let before = try #require(try Witness.link(plug.hostName))["ifindex"] as? Int
        #expect(try Witness.run(["/usr/sbin/ip", "link", "del", plug.hostName]).status == 0)
        #expect(try Witness.link(plug.hostName) == nil)
        #expect(try Witness.link("eth0", netns: holder.path) == nil)

        #expect(try host.ensurePlugged(plug) == [.createdPair])
        // A new pair, its peer in the same namespace as before (nothing was restarted).
        #expect(try Witness.link(plug.hostName)?["ifindex"] as? Int != before)
        #expect(ProcEntry.namespace(String(holder.pid), "net") == namespace)
        #expect(try Witness.link("eth0", netns: holder.path)?["address"] as? String == plug.mac.description)
        #expect(try Witness.addresses("eth0", netns: holder.path) == [plug.address.description])
        #expect(try Witness.ping(plug.address.address))

        // Detached and downed by hand, address and route removed inside: all put back.
        #expect(try Witness.run(["/usr/sbin/ip", "link", "set", plug.hostName, "nomaster"]).status == 0)
        #expect(try Witness.run(["/usr/sbin/ip", "link", "set", plug.hostName, "down"]).status == 0)
        #expect(try Witness.run(Witness.inside(holder.path) + ["/usr/sbin/ip", "addr", "flush", "dev", "eth0"]).status == 0)
        let repairs = try host.ensurePlugged(plug)
        #expect(Set(repairs) == [.attachedToBridge, .replacedAddress, .replacedDefaultRoute])
        #expect(try Witness.link(plug.hostName)?["master"] as? String == net.bridge)
        #expect(try Witness.ping(plug.address.address))

        // Downed inside with IPv6 addresses allowed again: up without one.
        #expect(try Witness.run(Witness.inside(holder.path) + ["/usr/sbin/ip", "link", "set", "eth0", "down", "addrgenmode", "eui64"]).status == 0)
        #expect(try host.ensurePlugged(plug).contains(.broughtUpInterface))
        #expect(try Witness.run(Witness.inside(holder.path) + ["/usr/sbin/ip", "-6", "-o", "addr", "show", "dev", "eth0"]).stdout.isEmpty)
        #expect(try Witness.ping(plug.address.address))
    }

    @Test func readdressInPlace() throws {
        guard try Host.require(.root, .command("/usr/sbin/ip"), .command("/usr/bin/nsenter"),
                               .command("/bin/busybox"), .command("/usr/bin/unshare")) else { return }
        let (net, host, holder, plug) = try Self.plugged()
        defer { #expect(net.cleanUp().isEmpty) }
        let before = try #require(try host.link(named: plug.hostName))

        let moved = net.host(40)
        try host.readdress(netnsPath: holder.path, interface: "eth0", to: moved, gateway: net.gateway.address)

        #expect(try Witness.addresses("eth0", netns: holder.path) == [moved.description])
        #expect(try Witness.defaultRoute(netns: holder.path)?.gateway == net.gateway.address.description)
        #expect(try Witness.ping(moved.address))
        #expect(try Witness.silent(plug.address.address))
        #expect(try host.link(named: plug.hostName)?.index == before.index)  // same pair, untouched
    }

    @Test func snapshotsOfManyNamespacesInOrder() throws {
        guard try Host.require(.root, .command("/usr/bin/unshare")) else { return }
        let (net, host) = try Self.bridged()
        defer { #expect(net.cleanUp().isEmpty) }
        let holders = try (0..<3).map { _ in try net.holder() }
        for (n, holder) in holders.enumerated() {
            try host.plug(Self.plug(net, holder, veth: n, host: UInt32(10 + n)))
        }
        // Enough namespaces for several lanes, each told apart by an address on its lo.
        let bare = try (0..<33).map { _ in try net.holder() }
        for (n, holder) in bare.enumerated() {
            _ = try Witness.run(["/usr/bin/nsenter", "--net=\(holder.path)", "/usr/sbin/ip", "addr", "add", "127.1.0.\(n + 1)/32", "dev", "lo"])
        }
        let paths = holders.map(\.path) + ["/proc/0/ns/net"] + bare.map(\.path)
        #expect(Lanes.count(for: paths.count) > 1 || sysconf(Int32(_SC_NPROCESSORS_ONLN)) == 1)

        let results = NetlinkSession.snapshots(ofNamespaces: paths)

        #expect(results.count == paths.count)
        for (n, result) in results.prefix(3).enumerated() {
            let seen = try result.get()
            let eth0 = try #require(seen.link(named: "eth0"))
            #expect(seen.addresses(onLink: eth0.index) == [net.host(UInt32(10 + n))])
            #expect(seen.defaultRoute?.gateway == net.gateway.address)
        }
        #expect(systemError { _ = try results[3].get() }?.code == ENOENT)
        for (n, result) in results.dropFirst(4).enumerated() {
            let seen = try result.get()
            let lo = try #require(seen.link(named: "lo"))
            #expect(seen.addresses(onLink: lo.index).map(\.description) == ["127.1.0.\(n + 1)/32"])
        }

        // The observation holds no namespace: killing the holders still removes the pairs.
        holders.forEach { $0.stop() }
        #expect(try eventually { try (0..<3).allSatisfy { try host.link(named: net.veth($0)) == nil } })
    }
}
