import Foundation
import Glibc
import Synchronization
import Testing
import TuppFacts
import TuppManifest
import TuppNetworking
import TuppSystem
import TuppTestSupport

/// Outside witnesses and actors: iproute2, nsenter, busybox ping. Tests may run them;
/// the module never does.
enum Witness {
    /// Runs a command to completion and collects its output.
    @discardableResult
    static func run(_ arguments: [String]) throws -> Output {
        try Spawn.run(arguments)
    }

    /// Prefix that runs a command inside `netns` (nil: the host).
    static func inside(_ netns: String?) -> [String] {
        netns.map { ["/usr/bin/nsenter", "--net=\($0)"] } ?? []
    }

    /// `ip -d -j link show dev NAME` as a dictionary, or nil when the link does not exist.
    static func link(_ name: String, netns: String? = nil) throws -> [String: Any]? {
        let output = try run(inside(netns) + ["/usr/sbin/ip", "-d", "-j", "link", "show", "dev", name])
        guard output.status == 0 else { return nil }
        let list = try JSONSerialization.jsonObject(with: Data(output.stdout.utf8)) as? [[String: Any]]
        return list?.first
    }

    /// IPv4 addresses of a link as "a.b.c.d/len".
    static func addresses(_ name: String, netns: String? = nil) throws -> [String] {
        let output = try run(inside(netns) + ["/usr/sbin/ip", "-4", "-j", "addr", "show", "dev", name])
        guard output.status == 0,
              let list = try JSONSerialization.jsonObject(with: Data(output.stdout.utf8)) as? [[String: Any]],
              let infos = list.first?["addr_info"] as? [[String: Any]] else { return [] }
        return infos.compactMap { info in
            guard let local = info["local"] as? String, let length = info["prefixlen"] as? Int else { return nil }
            return "\(local)/\(length)"
        }
    }

    /// The main table's default route as (gateway, dev).
    static func defaultRoute(netns: String) throws -> (gateway: String, device: String)? {
        let output = try run(inside(netns) + ["/usr/sbin/ip", "-4", "-j", "route", "show", "default"])
        guard let list = try JSONSerialization.jsonObject(with: Data(output.stdout.utf8)) as? [[String: Any]],
              let route = list.first, let gateway = route["gateway"] as? String,
              let device = route["dev"] as? String else { return nil }
        return (gateway, device)
    }

    /// An ICMP echo from `netns` (nil: the host) answered within a few one-echo tries.
    static func ping(_ address: IPv4Address, from netns: String? = nil) throws -> Bool {
        try Ping.reaches(address.description, through: inside(netns))
    }

    /// No answer to three echoes from the host over two seconds: the address is gone.
    static func silent(_ address: IPv4Address) throws -> Bool {
        try run(["/bin/busybox", "ping", "-c", "3", "-w", "2", address.description]).status != 0
    }

    static func flags(_ link: [String: Any]) -> [String] { link["flags"] as? [String] ?? [] }
}

/// Per-test network resources with unique names. `cleanUp()` removes what the test made
/// itself (its holders, its bridge, links it registered), waits for the veth pairs to die
/// with their namespaces, and only then looks: any link still carrying the test's prefix or
/// its mark is a leak, reported before it is removed by force.
final class TestNetwork: @unchecked Sendable {
    let prefix: String
    let subnet: IPv4Network
    var gateway: IPv4Interface { IPv4Interface(address: subnet.firstHost, prefixLength: subnet.prefixLength) }
    private var holders: [NetnsHolder] = []
    private var ownLinks: [String] = []
    private let lock = Mutex(())

    init(_ label: String = #function) throws {
        prefix = uniquePrefix(label)
        subnet = try Self.freeSubnet()
        ownLinks = [bridge]
    }

    /// The n-th host address of the subnet (gateway is 1).
    func host(_ n: UInt32) -> IPv4Interface {
        IPv4Interface(address: IPv4Address(subnet.network.value + n), prefixLength: subnet.prefixLength)
    }

    var bridge: String { prefix + "br" }
    func veth(_ n: Int) -> String { prefix + "v\(n)" }

    /// A link the test creates itself (a foreign bridge): deleted by `cleanUp()` before it looks.
    func made(_ name: String) -> String {
        lock.withLock { _ in ownLinks.append(name) }
        return name
    }

    func holder() throws -> NetnsHolder {
        let holder = try NetnsHolder()
        lock.withLock { _ in holders.append(holder) }
        return holder
    }

    /// What of the test's links is on the host: by name prefix and by the mark of its
    /// installation (`LinkOwner(installation: prefix, …)`), read with `ip -j`.
    func links() -> [Inventory.Link] {
        Inventory.take(Inventory.Scope(prefixes: [prefix], installations: [prefix])).links
    }

    /// Removes what the test made, then returns every link of the test still there
    /// (each one a leak), removing those too.
    func cleanUp() -> [String] {
        let (holders, own) = lock.withLock { _ in (self.holders, ownLinks) }
        holders.forEach { $0.stop() }
        for name in own { _ = try? Witness.run(["/usr/sbin/ip", "link", "del", name]) }
        // A veth pair dies with its namespace, on a kernel work queue.
        _ = eventually(seconds: 5) { links().isEmpty }
        let leaked = links()
        for link in leaked { _ = try? Witness.run(["/usr/sbin/ip", "link", "del", link.name]) }
        return leaked.map { "\($0.name) (\($0.kind ?? "?"), alias \($0.alias ?? "none"))" }
    }

    /// A /24 in 10.213.0.0/16 that no host route overlaps and no other test in this
    /// process took.
    static func freeSubnet() throws -> IPv4Network {
        let routes = try NetlinkSession.host().snapshot().routes.filter { !$0.isDefault }
        return try taken.withLock { taken in
            for _ in 0..<500 {
                let octet = UInt32.random(in: 1...254)
                let candidate = IPv4Network(address: IPv4Address(0x0ad5_0000 | octet << 8), prefixLength: 24)
                if taken.contains(candidate) || routes.contains(where: { $0.destination.overlaps(candidate) }) { continue }
                taken.insert(candidate)
                return candidate
            }
            throw SystemError.failure("pick test subnet", "10.213.0.0/16", "no free /24")
        }
    }

    private static let taken = Mutex<Set<IPv4Network>>([])
}

/// The `SystemError` that `body` throws, or nil when it succeeds.
///
/// Tests check its fields (errno, operation, object) one by one, which reads better than
/// matching inside an `#expect(throws:)` closure.
func systemError(_ body: () throws -> Void) -> SystemError? {
    do {
        try body()
        return nil
    } catch let error as SystemError {
        return error
    } catch {
        Issue.record("expected a SystemError, got \(type(of: error))")
        return nil
    }
}
