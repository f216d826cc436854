import Foundation
import Testing
import TuppManifest
import TuppNetworking
import TuppSystem
import TuppTestSupport

@Suite("NAT via libnftables (root; rules read back, no traffic)")
struct NATTests {
    @Test func masqueradeIsAddedOnceReadBackAndRemoved() throws {
        guard try Host.require(.root, .command(NAT.nftPath)) else { return }
        let net = try TestNetwork()
        let table = "tupp_" + net.prefix
        defer { _ = try? Witness.run([NAT.nftPath, "delete", "table", "ip", table]) }
        let other = IPv4Network(address: IPv4Address(net.subnet.network.value ^ 0x8000), prefixLength: 25)

        #expect(try NAT.masqueradedSubnets(table: table) == nil)
        #expect(try NAT.ensureMasquerade(subnet: net.subnet, table: table))
        #expect(try NAT.ensureMasquerade(subnet: net.subnet, table: table) == false)
        #expect(try NAT.ensureMasquerade(subnet: other, table: table))
        #expect(try NAT.masqueradedSubnets(table: table) == [net.subnet, other])

        // nft's own text shows the rule the way an operator would read it.
        let listing = try Witness.run([NAT.nftPath, "list", "table", "ip", table]).stdout
        #expect(listing.contains("type nat hook postrouting priority srcnat"))
        #expect(listing.contains("ip saddr \(net.subnet) ip daddr != \(net.subnet) masquerade"))

        #expect(try NAT.removeMasquerade(subnet: net.subnet, table: table))
        #expect(try NAT.removeMasquerade(subnet: net.subnet, table: table) == false)
        #expect(try NAT.masqueradedSubnets(table: table) == [other])

        #expect(try NAT.removeTable(table))
        #expect(try NAT.removeTable(table) == false)
        #expect(try Witness.run([NAT.nftPath, "list", "table", "ip", table]).status != 0)
    }

    @Test func forwardingIsPerNamespace() throws {
        guard try Host.require(.root, .command("/usr/bin/unshare")) else { return }
        let net = try TestNetwork()
        defer { #expect(net.cleanUp().isEmpty) }
        let holder = try net.holder()
        let hostBefore = try NAT.isIPv4ForwardingEnabled()

        // Flipped inside a test namespace only; the host's setting is left alone.
        let cloneNewNet: Int32 = 0x4000_0000  // CLONE_NEWNET
        let inside = try NamespaceThread.run(joining: [(holder.path, cloneNewNet)]) { () throws -> (Bool, Bool) in
            // A new netns copies the host's IPv4 setting (devconf_inherit_init_net=0):
            // start from off whatever the host has.
            let fd = try FileDescriptor.open("/proc/sys/net/ipv4/ip_forward", O_WRONLY)
            try fd.writeAll(Array("0\n".utf8))
            let before = try NAT.isIPv4ForwardingEnabled()
            try NAT.enableIPv4Forwarding()
            return (before, try NAT.isIPv4ForwardingEnabled())
        }
        #expect(inside.0 == false)
        #expect(inside.1 == true)
        #expect(try NAT.isIPv4ForwardingEnabled() == hostBefore)
    }
}
