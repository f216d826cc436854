import Testing
import TuppFacts
import TuppManifest
@testable import TuppNetworking

@Suite("Published ports: rules as data, read back, diff (no root)")
struct PortRulesTests {
    static func ip(_ text: String) -> IPv4Address { IPv4Address(text)! }
    static let subnet = IPv4Network("10.0.0.0/24")!

    static func web(_ ports: String...) throws -> PublishedContainer {
        PublishedContainer(name: "web", address: ip("10.0.0.3"), bridge: "br0", subnet: subnet,
                           ports: try ports.map { try PortPublication.parse($0) })
    }

    static func forward(_ chain: PortChain, _ destination: String?, _ ports: PortRange, to target: String = "10.0.0.3",
                        _ port: UInt16?, _ proto: TransportProtocol = .tcp, container: String = "web") -> PortRule {
        .forward(PortForward(chain: chain, destination: destination.map(ip), protocol: proto, ports: ports,
                             target: ip(target), targetPort: port, container: container))
    }

    @Test func aPortOnEveryAddressIsTranslatedForOthersAndTheHostIncludingLoopback() throws {
        let set = PortRuleSet.desired([try Self.web("8080:80")])
        #expect(set.rules == [
            Self.forward(.prerouting, nil, PortRange(8080), 80),
            Self.forward(.output, nil, PortRange(8080), 80),
            .hairpin(subnet: Self.subnet),
            .loopbackSource(bridge: "br0"),
            .localnetGuard(bridge: "br0", .source),
            .localnetGuard(bridge: "br0", .destination),
        ])
        #expect(set.localnetBridges == ["br0"])
        #expect(set.needsForwarding)
    }

    @Test func aLoopbackPortIsOnlyForTheHost() throws {
        let set = PortRuleSet.desired([try Self.web("127.0.0.1:5432:5432")])
        #expect(set.rules.contains(Self.forward(.output, "127.0.0.1", PortRange(5432), 5432)))
        #expect(!set.rules.contains { if case .forward(let f) = $0 { return f.chain == .prerouting } else { return false } })
        #expect(!set.rules.contains(.hairpin(subnet: Self.subnet)))  // containers cannot address the host's loopback
        #expect(set.localnetBridges == ["br0"])
        #expect(!set.needsForwarding)
    }

    @Test func aPortOnOneAddressLeavesLoopbackAlone() throws {
        let set = PortRuleSet.desired([try Self.web("192.0.2.9:53:53/udp")])
        #expect(set.rules == [
            Self.forward(.prerouting, "192.0.2.9", PortRange(53), 53, .udp),
            Self.forward(.output, "192.0.2.9", PortRange(53), 53, .udp),
            .hairpin(subnet: Self.subnet),
        ])
        #expect(set.localnetBridges.isEmpty)
    }

    @Test func rangesKeepTheirPortsOrAreSpreadOnePerPort() throws {
        let same = PortRuleSet.desired([try Self.web("192.0.2.9:9000-9002:9000-9002")])
        #expect(same.rules.filter { $0.chain == "prerouting" } == [Self.forward(.prerouting, "192.0.2.9", PortRange(9000, 9002), nil)])
        let moved = PortRuleSet.desired([try Self.web("192.0.2.9:9000-9002:7000-7002")])
        #expect(moved.rules.filter { $0.chain == "prerouting" } == [
            Self.forward(.prerouting, "192.0.2.9", PortRange(9000), 7000),
            Self.forward(.prerouting, "192.0.2.9", PortRange(9001), 7001),
            Self.forward(.prerouting, "192.0.2.9", PortRange(9002), 7002),
        ])
    }

    @Test func containersOnOneNetworkShareTheHairpinAndGuardRules() throws {
        let db = PublishedContainer(name: "db", address: Self.ip("10.0.0.4"), bridge: "br0", subnet: Self.subnet,
                                    ports: [try PortPublication.parse("5432:5432")])
        let set = PortRuleSet.desired([try Self.web("8080:80"), db])
        #expect(set.rules.filter { $0 == .hairpin(subnet: Self.subnet) }.count == 1)
        #expect(set.rules.filter { $0 == .loopbackSource(bridge: "br0") }.count == 1)
        #expect(set.rules.count == 4 + 4)
        #expect(PortRuleSet.desired([]).isEmpty)
    }

    /// Written by the real nft from text syntax (nft -j list table, nftables 1.0.6): an
    /// independent witness of the JSON shapes tupp reads.
    static let listing = #"""
    {"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, {"table": {"family": "ip", "name": "tupp_abc_ports", "handle": 1}}, {"chain": {"family": "ip", "table": "tupp_abc_ports", "name": "prerouting", "handle": 1, "type": "nat", "hook": "prerouting", "prio": -100, "policy": "accept"}}, {"chain": {"family": "ip", "table": "tupp_abc_ports", "name": "output", "handle": 2, "type": "nat", "hook": "output", "prio": -100, "policy": "accept"}}, {"chain": {"family": "ip", "table": "tupp_abc_ports", "name": "postrouting", "handle": 3, "type": "nat", "hook": "postrouting", "prio": 100, "policy": "accept"}}, {"chain": {"family": "ip", "table": "tupp_abc_ports", "name": "localnet_guard", "handle": 4, "type": "filter", "hook": "prerouting", "prio": -300, "policy": "accept"}}, {"rule": {"family": "ip", "table": "tupp_abc_ports", "chain": "prerouting", "handle": 5, "comment": "tupp container web", "expr": [{"match": {"op": "==", "left": {"fib": {"result": "type", "flags": ["daddr"]}}, "right": "local"}}, {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 8080}}, {"dnat": {"addr": "10.0.0.3", "port": 80}}]}}, {"rule": {"family": "ip", "table": "tupp_abc_ports", "chain": "prerouting", "handle": 6, "comment": "tupp container web", "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": "192.0.2.9"}}, {"match": {"op": "==", "left": {"payload": {"protocol": "udp", "field": "dport"}}, "right": {"range": [9000, 9002]}}}, {"dnat": {"addr": "10.0.0.3"}}]}}, {"rule": {"family": "ip", "table": "tupp_abc_ports", "chain": "prerouting", "handle": 7, "comment": "tupp container web", "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 22}}, {"dnat": {"addr": "10.0.0.9", "port": 22}}]}}, {"rule": {"family": "ip", "table": "tupp_abc_ports", "chain": "prerouting", "handle": 8, "expr": [{"match": {"op": "==", "left": {"fib": {"result": "type", "flags": ["daddr"]}}, "right": "local"}}, {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 8081}}, {"dnat": {"addr": "10.0.0.3", "port": 80}}]}}, {"rule": {"family": "ip", "table": "tupp_abc_ports", "chain": "output", "handle": 9, "comment": "tupp container db", "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": "127.0.0.1"}}, {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 5432}}, {"dnat": {"addr": "10.0.0.4", "port": 5432}}]}}, {"rule": {"family": "ip", "table": "tupp_abc_ports", "chain": "postrouting", "handle": 10, "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": {"prefix": {"addr": "10.0.0.0", "len": 24}}}}, {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": {"prefix": {"addr": "10.0.0.0", "len": 24}}}}, {"match": {"op": "in", "left": {"ct": {"key": "status"}}, "right": "dnat"}}, {"masquerade": null}]}}, {"rule": {"family": "ip", "table": "tupp_abc_ports", "chain": "postrouting", "handle": 11, "expr": [{"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "br0"}}, {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": {"prefix": {"addr": "127.0.0.0", "len": 8}}}}, {"masquerade": null}]}}, {"rule": {"family": "ip", "table": "tupp_abc_ports", "chain": "localnet_guard", "handle": 12, "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "br0"}}, {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": {"prefix": {"addr": "127.0.0.0", "len": 8}}}}, {"drop": null}]}}, {"rule": {"family": "ip", "table": "tupp_abc_ports", "chain": "localnet_guard", "handle": 13, "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "br0"}}, {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": {"prefix": {"addr": "127.0.0.0", "len": 8}}}}, {"drop": null}]}}]}
    """#

    @Test func aListingWrittenByNftReadsBackIntoTheSameValues() throws {
        let rules = try NFTListing.rules(json: Self.listing, table: "tupp_abc_ports")
        let parsed = rules.map { ObservedPortRule(handle: $0.handle, chain: $0.chain, rule: PortRule.parse($0)) }
        #expect(parsed.map(\.rule) == [
            Self.forward(.prerouting, nil, PortRange(8080), 80),
            Self.forward(.prerouting, "192.0.2.9", PortRange(9000, 9002), nil, .udp),
            nil,  // no destination match: not a shape tupp writes
            nil,  // no comment naming a container
            Self.forward(.output, "127.0.0.1", PortRange(5432), to: "10.0.0.4", 5432, container: "db"),
            .hairpin(subnet: Self.subnet),
            .loopbackSource(bridge: "br0"),
            .localnetGuard(bridge: "br0", .source),
            .localnetGuard(bridge: "br0", .destination),
        ])
        #expect(PublishedPorts.chainsIntact(try NFTListing.chains(json: Self.listing, table: "tupp_abc_ports")))
        #expect(try NFTListing.rules(json: Self.listing, table: "other").isEmpty)
    }

    @Test func everyRuleTuppWritesParsesBackFromItsOwnJSON() throws {
        let set = PortRuleSet.desired([try Self.web("8080:80", "127.0.0.1:5432:5432", "192.0.2.9:9000-9002:7000-7002/udp",
                                                    "9100-9101:9100-9101")])
        for (index, rule) in set.rules.enumerated() {
            let listed = NFTListing.Rule(family: "ip", table: "t", chain: rule.chain, handle: index, comment: rule.comment,
                                         expr: rule.expression)
            #expect(PortRule.parse(listed) == rule, "\(rule)")
        }
    }

    @Test func rulesAreSerializedAsNftJSON() {
        let rule = Self.forward(.prerouting, nil, PortRange(8080), 80)
        let command = NFTCommands.addRule(table: "t", chain: rule.chain, expression: rule.expression, comment: rule.comment)
        #expect(command.serialized == #"{"add":{"rule":{"chain":"prerouting","comment":"tupp container web","expr":[{"match":{"left":{"fib":{"flags":["daddr"],"result":"type"}},"op":"==","right":"local"}},{"match":{"left":{"payload":{"field":"dport","protocol":"tcp"}},"op":"==","right":8080}},{"dnat":{"addr":"10.0.0.3","port":80}}],"family":"ip","table":"t"}}}"#)
        #expect(NFTJSON.string("a\"b\\\n\u{1}").serialized == #""a\"b\\\n\u0001""#)
        #expect(rule.description == "prerouting: fib daddr type local tcp dport 8080 dnat to 10.0.0.3:80 (container web)")
    }

    static func observed(_ rules: [PortRule?], chains: [String]? = nil) -> PortRuleFacts {
        PortRuleFacts(tableExists: true, rules: rules.enumerated().map { index, rule in
            ObservedPortRule(handle: 10 + index, chain: rule?.chain ?? "prerouting", rule: rule)
        }, routeLocalnet: ["br0": true], forwarding: true)
    }

    @Test func nothingChangesWhenTheTableMatches() throws {
        let desired = PortRuleSet.desired([try Self.web("8080:80")])
        let changes = PortRules.diff(desired: desired, observed: Self.observed(desired.rules.reversed()))
        #expect(changes.isEmpty, "\(changes.summary)")
    }

    @Test func aDeletedRuleIsAddedBackAndNothingElseMoves() throws {
        let desired = PortRuleSet.desired([try Self.web("8080:80")])
        let lost = desired.rules[0]
        let changes = PortRules.diff(desired: desired, observed: Self.observed(Array(desired.rules.dropFirst())))
        #expect(changes.add == [lost])
        #expect(changes.delete.isEmpty && !changes.deleteTable && !changes.recreateTable && !changes.createTable)
        #expect(changes.summary == ["+ \(lost)"])
    }

    @Test func strayDuplicateAndEditedRulesAreDeletedByHandle() throws {
        let desired = PortRuleSet.desired([try Self.web("8080:80")])
        let edited = Self.forward(.prerouting, nil, PortRange(8080), to: "10.0.0.99", 80)
        let facts = Self.observed(desired.rules + [desired.rules[1], nil, edited])
        let changes = PortRules.diff(desired: desired, observed: facts)
        #expect(changes.add.isEmpty)
        #expect(changes.delete.map(\.handle) == [10 + desired.rules.count, 11 + desired.rules.count, 12 + desired.rules.count])
    }

    @Test func theTableGoesWithItsLastRuleAndLocalnetIsTurnedBackOff() throws {
        let old = PortRuleSet.desired([try Self.web("8080:80")])
        let changes = PortRules.diff(desired: PortRuleSet.desired([]), observed: Self.observed(old.rules))
        #expect(changes.deleteTable)
        #expect(changes.disableLocalnet == ["br0"])
        #expect(changes.add.isEmpty && changes.delete.isEmpty)
        #expect(PortRules.diff(desired: PortRuleSet.desired([]), observed: PortRuleFacts(tableExists: false)).isEmpty)
    }

    @Test func switchesAreTurnedOnWhereNeededOnly() throws {
        let desired = PortRuleSet.desired([try Self.web("8080:80")])
        let facts = PortRuleFacts(tableExists: false, routeLocalnet: ["br0": false, "br1": true], forwarding: false)
        let changes = PortRules.diff(desired: desired, observed: facts)
        #expect(changes.enableLocalnet == ["br0"])
        #expect(changes.disableLocalnet.isEmpty)  // br1's switch is not tupp's: no guard rule names it
        #expect(changes.enableForwarding)
        #expect(changes.createTable && changes.add == desired.rules)
        let loopbackOnly = PortRules.diff(desired: PortRuleSet.desired([try Self.web("127.0.0.1:80:80")]), observed: facts)
        #expect(!loopbackOnly.enableForwarding)
    }

    @Test func alteredChainsRebuildTheTable() throws {
        let desired = PortRuleSet.desired([try Self.web("8080:80")])
        var facts = Self.observed(desired.rules)
        facts.chainsIntact = false
        let changes = PortRules.diff(desired: desired, observed: facts)
        #expect(changes.recreateTable)
        #expect(changes.add == desired.rules)
    }
}
