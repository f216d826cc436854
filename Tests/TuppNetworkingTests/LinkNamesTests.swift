import Glibc
import Testing
import TuppFacts
import TuppManifest
import TuppSystem
@testable import TuppNetworking

@Suite("Link names, aliases and MACs (no root)")
struct LinkNamesTests {
    @Test func hostVethNamesAreShortValidAndDeterministic() {
        let name = LinkNames.hostVeth(installation: "/var/lib/tupp", container: "web")
        #expect(name.utf8.count == 14)
        #expect(name.hasPrefix("tv"))
        #expect(LinkNames.isValid(name))
        #expect(LinkNames.looksLikeHostVeth(name))
        #expect(LinkNames.hostVeth(installation: "/var/lib/tupp", container: "web") == name)
    }

    @Test func installationsAndContainersDoNotCollide() {
        var seen = Set<String>()
        for installation in ["/var/lib/tupp", "/srv/tupp", "/tmp/a", "/tmp/b"] {
            for index in 0..<2000 {
                seen.insert(LinkNames.hostVeth(installation: installation, container: "c\(index)"))
            }
        }
        #expect(seen.count == 8000)
        // The separator in the hash keeps ("ab","c") and ("a","bc") apart.
        #expect(LinkNames.hostVeth(installation: "ab", container: "c") != LinkNames.hostVeth(installation: "a", container: "bc"))
    }

    @Test(arguments: ["", ".", "..", "a/b", "a:b", "a b", "tab\there", "eth%d", "sixteen-bytes-xx", "nl\nx"])
    func invalidNamesAreRejected(_ name: String) {
        #expect(!LinkNames.isValid(name))
    }

    @Test(arguments: ["eth0", "tupp0", "br-1.2", "fifteen-bytes-x", "tvabcdefgh2345"])
    func validNamesAreAccepted(_ name: String) {
        #expect(LinkNames.isValid(name))
    }

    @Test func looksLikeHostVethIsStrict() {
        #expect(!LinkNames.looksLikeHostVeth("tv"))
        #expect(!LinkNames.looksLikeHostVeth("tvABCDEFGHIJKL"))
        #expect(!LinkNames.looksLikeHostVeth("tvabcdefghijk1"))  // '1' is not base-32 here
        #expect(!LinkNames.looksLikeHostVeth("tvabcdefghijklm"))
        #expect(!LinkNames.looksLikeHostVeth("veth1234567890"))
    }

    @Test func macIsStableLocallyAdministeredUnicast() throws {
        let address = try #require(IPv4Address("10.213.7.42"))
        let mac = LinkNames.mac(for: address)
        #expect(mac.description == "02:74:0a:d5:07:2a")
        #expect(mac.isLocallyAdministered)
        #expect(mac.isUnicast)
        #expect(LinkNames.mac(for: address) == mac)
        #expect(LinkNames.mac(for: IPv4Address(address.value + 1)) != mac)
    }

    @Test func macParsing() {
        #expect(MACAddress("02:74:0A:d5:07:2a")?.description == "02:74:0a:d5:07:2a")
        #expect(MACAddress("02:74:0a:d5:07") == nil)
        #expect(MACAddress("02:74:0a:d5:07:2g") == nil)
        #expect(MACAddress("2:74:0a:d5:07:2a") == nil)
    }

    @Test func ownerAliasRoundTrips() throws {
        let owner = LinkOwner(installation: "/var/lib/tupp", role: .container, name: "web:1")
        let parsed = try #require(LinkOwner(alias: owner.alias))
        #expect(parsed == owner)
        #expect(parsed.name == "web:1")
        #expect(parsed.belongs(toInstallation: "/var/lib/tupp"))
        #expect(!parsed.belongs(toInstallation: "/srv/tupp"))
        #expect(LinkOwner(alias: "docker bridge") == nil)
        #expect(LinkOwner(alias: "tupp:short:network:x") == nil)
        #expect(LinkOwner(alias: "tupp:abcdefgh:volume:x") == nil)
    }
}

@Suite("Route conflicts (no root)")
struct RouteConflictTests {
    let snapshot = NetworkSnapshot(
        links: [LinkInfo(index: 2, name: "eth0"), LinkInfo(index: 7, name: "tupp0", kind: "bridge")],
        routes: [
            RouteInfo(destination: IPv4Network("0.0.0.0/0")!, gateway: IPv4Address("192.0.2.1"), linkIndex: 2),
            RouteInfo(destination: IPv4Network("192.0.2.0/24")!, linkIndex: 2, protocol: RouteInfo.kernelProtocol,
                      scope: RouteInfo.linkScope),
            RouteInfo(destination: IPv4Network("10.213.5.0/24")!, linkIndex: 7, protocol: RouteInfo.kernelProtocol),
            RouteInfo(destination: IPv4Network("10.0.0.0/8")!, gateway: IPv4Address("192.0.2.254"), linkIndex: 2),
            RouteInfo(destination: IPv4Network("172.31.0.0/16")!, type: 6),  // blackhole: no device
        ])

    @Test func findsOverlapsButNotDefaultOrIgnoredLinks() {
        let found = RouteConflicts.conflicting(subnet: IPv4Network("10.213.5.0/24")!, in: snapshot, ignoringLinks: [7])
        #expect(found.map(\.destination.description) == ["10.0.0.0/8"])
        #expect(RouteConflicts.describe(found[0], in: snapshot) == "10.0.0.0/8 via 192.0.2.254 dev eth0 (table main, proto boot)")
    }

    @Test func supernetsAndSubnetsBothConflict() {
        let wide = RouteConflicts.conflicting(subnet: IPv4Network("192.0.0.0/16")!, in: snapshot)
        #expect(wide.map(\.destination.description) == ["192.0.2.0/24"])
        let blackhole = RouteConflicts.conflicting(subnet: IPv4Network("172.31.9.0/24")!, in: snapshot)
        #expect(blackhole.count == 1)
        #expect(RouteConflicts.describe(blackhole[0], in: snapshot).contains("no device"))
    }

    @Test func disjointSubnetHasNoConflicts() {
        #expect(RouteConflicts.conflicting(subnet: IPv4Network("100.64.0.0/24")!, in: snapshot).isEmpty)
    }
}

@Suite("nft JSON (no root)")
struct NFTListingTests {
    @Test func readsMasqueradeRules() throws {
        let json = """
            {"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
             {"table": {"family": "ip", "name": "t", "handle": 1}},
             {"chain": {"family": "ip", "table": "t", "name": "postrouting", "handle": 1, "type": "nat", "hook": "postrouting", "prio": 100, "policy": "accept"}},
             {"rule": {"family": "ip", "table": "t", "chain": "postrouting", "handle": 2, "comment": "tupp",
               "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": {"prefix": {"addr": "10.213.250.0", "len": 24}}}},
                        {"match": {"op": "!=", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": {"prefix": {"addr": "10.213.250.0", "len": 24}}}},
                        {"masquerade": null}]}},
             {"rule": {"family": "ip", "table": "t", "chain": "postrouting", "handle": 3,
               "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": "10.213.9.9"}},
                        {"masquerade": null}]}},
             {"rule": {"family": "ip", "table": "t", "chain": "postrouting", "handle": 4,
               "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": "10.213.8.8"}},
                        {"accept": null}]}}]}
            """
        let subnets = try NFTListing.masqueradedSubnets(json: json, table: "t", chain: "postrouting")
        #expect(subnets.map(\.description) == ["10.213.250.0/24", "10.213.9.9/32"])
        #expect(try NFTListing.masqueradeRuleHandles(json: json, table: "t", chain: "postrouting",
                                                      subnet: IPv4Network("10.213.250.0/24")!) == [2])
    }

    @Test func rejectsUnsafeTableNames() {
        for name in ["t; flush ruleset", "", "1abc", "a b", String(repeating: "t", count: 65)] {
            #expect(systemError { try NAT.checkTableName(name) }?.code == EINVAL)
        }
        #expect(systemError { try NAT.checkTableName("tupp_nat-1") } == nil)
    }
}
