import ArgumentParser
import Glibc
import TuppFacts
import TuppManifest
import TuppNetworking
import TuppSystem

/// Publishing one port: PublishedPorts.reconcile (libnftables in-process: read the table
/// back, diff, one transaction) against the nft CLI doing the same (`nft -j list table`,
/// then `nft -f` with the rules), interleaved. Everything happens in the network
/// namespace --netns (bench/run's stand-in for the host), so the host's rule set and
/// sysctls are never touched. With --keep, the port stays published for the throughput
/// rows.
struct PortsBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ports",
        abstract: "Publish a port in NETNS: PublishedPorts.reconcile vs the nft CLI.")

    @Option(help: "The namespace standing in for the host (/run/netns/NAME).")
    var netns: String

    @Option(help: "The bridge in that namespace the container is attached to.")
    var bridge: String

    @Option(help: "The bridge's subnet, e.g. 10.216.7.0/25.")
    var subnet: String

    @Option(help: "The container's address on the bridge.")
    var container: String

    @Option(help: "A host address in that namespace that the ports are published on.")
    var hostAddress: String

    @Option(help: "Rounds per row.")
    var rounds: Int = 30

    @Option(help: "Leave HOSTPORT:CONTAINERPORT (e.g. 5201:5201) published at the end.")
    var keep: String?

    @Option(help: "Append the samples (JSON lines) to this file.")
    var out: String

    func run() throws {
        guard let subnet = IPv4Network(subnet), let address = IPv4Address(container), IPv4Address(hostAddress) != nil else {
            throw ValidationError("bad --subnet, --container or --host-address")
        }
        func published(_ ports: [String]) throws -> PortRuleSet {
            PortRuleSet.desired([PublishedContainer(name: "bench", address: address, bridge: bridge, subnet: subnet,
                                                    ports: try ports.map { try PortPublication.parse("\(hostAddress):\($0)") })])
        }
        let table = "tupp_bench_ports"
        let base = try published(["8000:80"])
        let withOne = try published(["8000:80", "8001:80"])
        let keep = try keep.map { try published(["8000:80", $0]) }
        let (tupp, cli, observe, observeCLI, cold, load) = try NamespaceThread.run(joining: [(netns, 0x4000_0000)]) {
            () throws -> (Series, Series, Series, Series, Series, Series) in
            // What a tupp process pays once, on its first rule set: dlopen and a context.
            var load = Series("ports.load.tupp")
            _ = try load.time { try NFTables() }
            var tupp = Series("ports.add.tupp"), cli = Series("ports.add.nft")
            var observe = Series("ports.observe.tupp"), observeCLI = Series("ports.observe.nft")
            var cold = Series("ports.first.tupp")
            // The CLI's change: the rules PortRuleSet adds for the second port, as nft text.
            let rules = ["prerouting", "output"].map {
                "add rule ip \(table) \($0) ip daddr \(hostAddress) tcp dport 8001 dnat to \(address):80 comment \"tupp container bench\"\n"
            }.joined()
            let script = "/tmp/tupp-bench-ports.\(getpid()).nft"
            try Files.writeAtomically(script, text: rules, mode: 0o600)
            defer { try? Files.remove(script) }
            for round in 0..<rounds {
                // The first port: table, chains and rules from nothing.
                _ = try PublishedPorts.reconcile(PortRuleSet.desired([]), table: table)
                try cold.time { _ = try PublishedPorts.reconcile(base, table: table) }
                // One more port on an existing table, both ways, order alternating.
                func viaLibrary() throws {
                    _ = try PublishedPorts.reconcile(base, table: table)
                    let changes = try tupp.time { try PublishedPorts.reconcile(withOne, table: table) }
                    guard changes.add.count == 2, changes.delete.isEmpty else {
                        throw SystemError.failure("publish one port", table, "unexpected changes \(changes.summary)")
                    }
                }
                func viaCLI() throws {
                    _ = try PublishedPorts.reconcile(base, table: table)
                    try cli.time {
                        try Command.run(["nft", "-j", "list", "table", "ip", table])
                        try Command.run(["nft", "-f", script])
                    }
                    guard try PublishedPorts.reconcile(withOne, table: table).isEmpty else {
                        throw SystemError.failure("check the nft CLI's rules", table, "they differ from tupp's")
                    }
                }
                if round % 2 == 0 { try viaLibrary(); try viaCLI() } else { try viaCLI(); try viaLibrary() }
                // What every plan pays: reading the table back.
                try observe.time { _ = try PublishedPorts.observe(table: table, bridges: [bridge]) }
                try observeCLI.time { try Command.run(["nft", "-j", "list", "table", "ip", table]) }
            }
            _ = try PublishedPorts.reconcile(keep ?? PortRuleSet.desired([]), table: table)
            return (tupp, cli, observe, observeCLI, cold, load)
        }
        try SeriesWriter(path: out).write([cli, tupp, cold, load, observeCLI, observe])
    }
}
