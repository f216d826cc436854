import TuppManifest

/// Plan-time check that a declared subnet does not collide with the host's routing.
///
/// A bridge subnet that overlaps a route tupp does not own (the uplink's LAN, a VPN, a
/// DNS resolver's network, a blackhole) would silently steal or lose that traffic, so the
/// planner refuses it and names the route.
public enum RouteConflicts {
    /// Routes in `snapshot` (any table, any type) whose destination overlaps `subnet`,
    /// except default routes (everything overlaps 0.0.0.0/0) and routes leaving through
    /// `ignoringLinks` (tupp's own bridge for this network, whose prefix and local routes
    /// are expected). Sorted by table, destination and link for stable messages.
    public static func conflicting(subnet: IPv4Network, in snapshot: NetworkSnapshot,
                                   ignoringLinks: Set<Int> = []) -> [RouteInfo] {
        snapshot.routes.filter { route in
            guard !route.isDefault, route.destination.overlaps(subnet) else { return false }
            if let link = route.linkIndex, ignoringLinks.contains(link) { return false }
            return true
        }.sorted { a, b in
            (a.table, a.destination.network.value, a.destination.prefixLength, a.linkIndex ?? 0)
                < (b.table, b.destination.network.value, b.destination.prefixLength, b.linkIndex ?? 0)
        }
    }

    /// "10.0.0.0/8 via 192.0.2.1 dev eth0 (table main, proto boot)", for error messages.
    public static func describe(_ route: RouteInfo, in snapshot: NetworkSnapshot) -> String {
        var text = route.destination.description
        if let gateway = route.gateway { text += " via \(gateway)" }
        if let index = route.linkIndex {
            text += " dev \(snapshot.link(index: index)?.name ?? "#\(index)")"
        } else {
            text += " (no device: type \(route.type))"
        }
        let table = switch route.table {
        case RouteInfo.mainTable: "main"
        case RouteInfo.localTable: "local"
        default: String(route.table)
        }
        let proto = switch route.protocol {
        case RouteInfo.kernelProtocol: "kernel"
        case RouteInfo.bootProtocol: "boot"
        case RouteInfo.staticProtocol: "static"
        default: String(route.protocol)
        }
        return text + " (table \(table), proto \(proto))"
    }
}
