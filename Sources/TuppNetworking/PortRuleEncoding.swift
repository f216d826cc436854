import TuppFacts
import TuppManifest

/// How tupp's port rules are written to and read back from libnftables.
extension PortRule {
    var comment: String? {
        if case .forward(let forward) = self { return Self.commentPrefix + forward.container }
        return nil
    }

    /// The rule's expressions exactly as `nft -j list` prints them back.
    var expression: [NFTJSON] {
        switch self {
        case .forward(let f):
            var dnat: [String: NFTJSON] = ["addr": .string(f.target.description)]
            if let port = f.targetPort { dnat["port"] = .number(Double(port)) }
            let destination = f.destination.map { NFTCommands.match(.ipDestination, .string($0.description)) }
                ?? NFTCommands.match(.destinationType, "local")
            return [destination, NFTCommands.match(.destinationPort(f.protocol.rawValue), NFTCommands.ports(f.ports)), ["dnat": .object(dnat)]]
        case .hairpin(let subnet):
            return [NFTCommands.match(.ipSource, subnet), NFTCommands.match(.ipDestination, subnet),
                    NFTCommands.match(.conntrackStatus, "dnat", "in"), ["masquerade": nil]]
        case .loopbackSource(let bridge):
            return [NFTCommands.match(.outputInterface, .string(bridge)), NFTCommands.match(.ipSource, Self.loopback),
                    ["masquerade": nil]]
        case .localnetGuard(let bridge, let which):
            return [NFTCommands.match(.inputInterface, .string(bridge)),
                    NFTCommands.match(which == .source ? .ipSource : .ipDestination, Self.loopback), ["drop": nil]]
        }
    }

    /// The rule a listed rule is, when it is exactly one tupp writes; nil otherwise.
    static func parse(_ rule: NFTListing.Rule) -> PortRule? {
        guard let candidate = candidate(rule), candidate.chain == rule.chain,
              candidate.expression == rule.expr, candidate.comment == rule.comment else { return nil }
        return candidate
    }

    /// Reads the fields of whichever shape `rule` resembles; `parse` then checks that the
    /// candidate prints back to exactly the same rule.
    private static func candidate(_ rule: NFTListing.Rule) -> PortRule? {
        let e = rule.expr
        func right(_ index: Int) -> NFTJSON? { index < e.count ? e[index]["match"]?["right"] : nil }
        switch rule.chain {
        case "prerouting", "output":
            guard e.count == 3, let chain = PortChain(rawValue: rule.chain), let dnat = e[2]["dnat"],
                  let target = dnat["addr"]?.string.flatMap(IPv4Address.init),
                  let proto = e[1]["match"]?["left"]?["payload"]?["protocol"]?.string.flatMap(TransportProtocol.init),
                  let ports = right(1).flatMap(NFTCommands.ports),
                  let container = rule.comment?.dropFirst(commentPrefix.count), rule.comment?.hasPrefix(commentPrefix) == true
            else { return nil }
            let destination = right(0)?.string.flatMap(IPv4Address.init)
            let targetPort = dnat["port"]?.integer(in: 1...65535).map(UInt16.init)
            return .forward(PortForward(chain: chain, destination: destination, protocol: proto, ports: ports,
                                        target: target, targetPort: targetPort, container: String(container)))
        case "postrouting":
            if e.count == 4, let subnet = right(0).flatMap(NFTCommands.network) { return .hairpin(subnet: subnet) }
            if e.count == 3, let bridge = right(0)?.string { return .loopbackSource(bridge: bridge) }
            return nil
        case "localnet_guard":
            guard e.count == 3, let bridge = right(0)?.string,
                  let field = e[1]["match"]?["left"]?["payload"]?["field"]?.string else { return nil }
            return .localnetGuard(bridge: bridge, field == "saddr" ? .source : .destination)
        default:
            return nil
        }
    }
}

extension NFTCommands {
    /// A port or port range the way nft prints it.
    static func ports(_ range: PortRange) -> NFTJSON {
        range.count == 1 ? .number(Double(range.lower)) : ["range": [.number(Double(range.lower)), .number(Double(range.upper))]]
    }

    /// The inverse of `ports(_:)`.
    static func ports(_ json: NFTJSON) -> PortRange? {
        if let single = json.integer(in: 1...65535) { return PortRange(UInt16(single)) }
        guard let bounds = json["range"]?.array, bounds.count == 2, let lower = bounds[0].integer(in: 1...65535),
              let upper = bounds[1].integer(in: 1...65535), lower <= upper else { return nil }
        return PortRange(UInt16(lower), UInt16(upper))
    }
}
