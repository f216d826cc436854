import Glibc
import Testing
import TuppFacts
import TuppManifest
import TuppNetworking
import TuppSystem
import TuppTestSupport

@Suite("Bridges (root, real kernel)")
struct BridgeTests {
    @Test func createUpdateDeleteSeenByIproute() throws {
        guard try Host.require(.root, .command("/usr/sbin/ip")) else { return }
        let net = try TestNetwork()
        defer { #expect(net.cleanUp().isEmpty) }
        let host = try NetlinkSession.host()
        let alias = LinkOwner(installation: net.prefix, role: .network, name: "br0").alias

        try host.createBridge(name: net.bridge, address: net.gateway, mtu: 1400, alias: alias)

        let shown = try #require(try Witness.link(net.bridge))
        #expect((shown["linkinfo"] as? [String: Any])?["info_kind"] as? String == "bridge")
        #expect(Witness.flags(shown).contains("UP"))
        #expect(shown["mtu"] as? Int == 1400)
        #expect(shown["ifalias"] as? String == alias)
        #expect(shown["address"] as? String == LinkNames.mac(for: net.gateway.address).description)
        #expect(try Witness.addresses(net.bridge) == [net.gateway.description])

        // The snapshot reads the same facts.
        let seen = try host.snapshot()
        let bridge = try #require(seen.link(named: net.bridge))
        #expect(bridge.kind == "bridge" && bridge.isUp && bridge.mtu == 1400)
        #expect(bridge.owner == LinkOwner(alias: alias))
        #expect(seen.addresses(onLink: bridge.index) == [net.gateway])
        #expect(seen.mainRoutes(onLink: bridge.index).contains { $0.destination == net.subnet })

        // Creating it again is refused with the kernel's errno.
        let again = systemError {
            try host.createBridge(name: net.bridge, address: net.gateway, alias: alias)
        }
        #expect(again?.code == EEXIST)
        #expect(again?.object.contains(net.bridge) == true)

        // Drift: a stray address and a lowered MTU are put right; the second call is a no-op.
        #expect(try Witness.run(["/usr/sbin/ip", "addr", "add", net.host(77).description, "dev", net.bridge]).status == 0)
        let readdressed = net.host(254)
        #expect(try host.updateBridge(name: net.bridge, address: readdressed, mtu: 1450))
        #expect(try Witness.addresses(net.bridge) == [readdressed.description])
        #expect(try Witness.link(net.bridge)?["mtu"] as? Int == 1450)
        #expect(try host.updateBridge(name: net.bridge, address: readdressed, mtu: 1450) == false)

        #expect(try host.deleteLink(name: net.bridge))
        #expect(try Witness.link(net.bridge) == nil)
        #expect(try host.deleteLink(name: net.bridge) == false)
    }

    @Test func errorsNameTheObjectAndCarryTheKernelsAnswer() throws {
        guard try Host.require(.root) else { return }
        let net = try TestNetwork()
        defer { #expect(net.cleanUp().isEmpty) }
        let host = try NetlinkSession.host()
        try host.createBridge(name: net.bridge, address: net.gateway, alias: "test")

        let tooSmall = systemError { try host.setMTU(name: net.bridge, mtu: 10) }
        #expect(tooSmall?.code == EINVAL)
        #expect(tooSmall?.object.contains(net.bridge) == true)
        #expect(tooSmall?.detail?.hasPrefix("kernel:") == true)  // extended ack text

        let missing = systemError { try host.setUp(name: net.prefix + "none") }
        #expect(missing?.code == ENODEV)

        let invalid = systemError {
            try host.createBridge(name: "bad name", address: net.gateway, alias: "x")
        }
        #expect(invalid?.code == EINVAL)

        let notBridge = systemError { _ = try host.updateBridge(name: "lo", address: net.gateway) }
        #expect(notBridge?.detail?.contains("not a bridge") == true)
    }

    @Test func conflictingFindsARouteOnAForeignLinkButNotOnIgnoredOnes() throws {
        guard try Host.require(.root, .command("/usr/sbin/ip")) else { return }
        let net = try TestNetwork()
        defer { #expect(net.cleanUp().isEmpty) }
        let host = try NetlinkSession.host()
        // Stands in for somebody else's network: a bridge with a route into our subnet.
        let foreign = net.made(net.prefix + "fx")
        #expect(try Witness.run(["/usr/sbin/ip", "link", "add", foreign, "type", "bridge"]).status == 0)
        #expect(try Witness.run(["/usr/sbin/ip", "link", "set", foreign, "up"]).status == 0)
        let part = IPv4Network(address: net.subnet.network, prefixLength: 25)
        #expect(try Witness.run(["/usr/sbin/ip", "route", "add", part.description, "dev", foreign]).status == 0)
        try host.createBridge(name: net.bridge, address: net.gateway, alias: "test")

        let seen = try host.snapshot()
        let ours = try #require(seen.link(named: net.bridge))
        let theirs = try #require(seen.link(named: foreign))
        let found = RouteConflicts.conflicting(subnet: net.subnet, in: seen, ignoringLinks: [ours.index])
        #expect(found.map(\.destination) == [part])
        #expect(found.first?.linkIndex == theirs.index)
        #expect(RouteConflicts.describe(found[0], in: seen).contains("dev \(foreign)"))
        // The host's default route overlaps everything and is never reported.
        #expect(!found.contains { $0.isDefault })
        #expect(RouteConflicts.conflicting(subnet: net.subnet, in: seen, ignoringLinks: [ours.index, theirs.index]).isEmpty)
    }
}
