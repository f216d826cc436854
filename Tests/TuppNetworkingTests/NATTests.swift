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
        defer {
            // Removed by the test below; anything left of the table is a leak.
            let left = Inventory.take(Inventory.Scope(prefixes: [table])).nftTables
            #expect(left.isEmpty, "left behind: \(left)")
            _ = try? Witness.run([NAT.nftPath, "delete", "table", "ip", table])
        }
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
        guard try Host.require(.root, .command("/usr/bin/unshare"), .command("/usr/bin/nsenter")) else { return }
        let net = try TestNetwork()
        defer { #expect(net.cleanUp().isEmpty) }
        let holder = try net.holder()
        // Witnesses: the sysctl file read in each namespace, by this process and by nsenter.
        func inside() throws -> String {
            try Witness.run(Witness.inside(holder.path) + ["/bin/cat", "/proc/sys/net/ipv4/ip_forward"]).stdout.trimmingCharacters()
        }
        let hostBefore = try Files.readText("/proc/sys/net/ipv4/ip_forward")?.trimmingCharacters()

        // Flipped inside a test namespace only; the host's setting is left alone.
        // A new netns copies the host's IPv4 setting (devconf_inherit_init_net=0): start
        // from off whatever the host has.
        #expect(try Witness.run(Witness.inside(holder.path) + ["/bin/sh", "-c", "echo 0 > /proc/sys/net/ipv4/ip_forward"]).status == 0)
        #expect(try inside() == "0")
        let cloneNewNet: Int32 = 0x4000_0000  // CLONE_NEWNET
        try NamespaceThread.run(joining: [(holder.path, cloneNewNet)]) { try NAT.enableIPv4Forwarding() }
        #expect(try inside() == "1")
        #expect(try Files.readText("/proc/sys/net/ipv4/ip_forward")?.trimmingCharacters() == hostBefore)
    }
}
