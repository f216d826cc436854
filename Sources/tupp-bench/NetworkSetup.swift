import ArgumentParser
import TuppFacts
import TuppManifest
import TuppNetworking
import TuppSystem

/// Network setup for one container — veth with its peer born in the container's netns,
/// host end on the bridge, lo and eth0 up, address, default route — through
/// NetlinkSession.plug against the `ip` CLI recipe doing the same, interleaved.
struct NetworkBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "net",
        abstract: "Plug containers into BRIDGE: NetlinkSession.plug vs the ip CLI recipe (peer created in the netns).")

    @Option(help: "An existing bridge carrying the gateway address.")
    var bridge: String

    @Option(help: "The gateway, with the subnet's prefix (e.g. 10.216.7.1/24).")
    var gateway: String

    @Option(help: "Prefix of the host veth names (≤ 9 bytes).")
    var prefix: String

    @Option(help: "Named network namespaces (/run/netns/NAME), two per round: the library's, then the CLI's.")
    var netns: [String]

    @Option(help: "Append the samples (JSON lines) to this file.")
    var out: String

    func run() throws {
        guard let gatewayInterface = IPv4Interface(gateway) else { throw ValidationError("bad --gateway \(gateway)") }
        let rounds = netns.count / 2
        guard rounds >= 2, rounds < 100 else { throw ValidationError("give between 4 and 198 namespaces") }
        var library = Series("net.tupp"), cli = Series("net.ip")
        let host = try NetlinkSession.host()
        for round in 0..<rounds {
            let (mine, theirs) = (netns[2 * round], netns[2 * round + 1])
            let address = IPv4Interface(address: IPv4Address(gatewayInterface.network.network.value + UInt32(10 + round)),
                                        prefixLength: gatewayInterface.prefixLength)
            let cliAddress = IPv4Interface(address: IPv4Address(gatewayInterface.network.network.value + UInt32(110 + round)),
                                           prefixLength: gatewayInterface.prefixLength)
            let plug = ContainerPlug(netnsPath: "/run/netns/\(mine)", hostName: "\(prefix)t\(round)", bridge: bridge,
                                     address: address, gateway: gatewayInterface.address, alias: "tupp-bench")
            let cliHost = "\(prefix)i\(round)"
            let inside = ["ip", "-n", theirs]
            func viaLibrary() throws {
                try library.time { try NetlinkSession.host().plug(plug) }
            }
            func viaCLI() throws {
                try cli.time {
                    try Command.run(["ip", "link", "add", cliHost, "master", bridge, "up", "type", "veth", "peer", "name", "eth0",
                                     "address", LinkNames.mac(for: cliAddress.address).description, "netns", theirs])
                    try Command.run(["ip", "link", "set", cliHost, "alias", "tupp-bench"])
                    try Command.run(inside + ["link", "set", "lo", "up"])
                    try Command.run(inside + ["link", "set", "eth0", "up"])
                    try Command.run(inside + ["addr", "add", cliAddress.description, "dev", "eth0"])
                    try Command.run(inside + ["route", "add", "default", "via", gatewayInterface.address.description])
                }
            }
            if round % 2 == 0 { try viaLibrary(); try viaCLI() } else { try viaCLI(); try viaLibrary() }
            // Both containers must really be connected: same observable result.
            for (path, expected) in [("/run/netns/\(mine)", address), ("/run/netns/\(theirs)", cliAddress)] {
                let seen = try NetlinkSession.inNamespace(path).snapshot()
                guard seen.defaultRoute?.gateway == gatewayInterface.address,
                      let eth0 = seen.link(named: "eth0"), seen.addresses(onLink: eth0.index).contains(expected) else {
                    throw SystemError.failure("check network setup", path, "eth0 with \(expected) and a default route via \(gatewayInterface.address) expected")
                }
            }
            _ = try host.deleteLink(name: plug.hostName)
            _ = try host.deleteLink(name: cliHost)
        }
        try SeriesWriter(path: out).write([library, cli])
    }
}
