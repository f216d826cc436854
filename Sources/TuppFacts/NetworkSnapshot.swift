import TuppManifest

/// One network interface as the kernel reports it (RTM_NEWLINK).
public struct LinkInfo: Hashable, Sendable {
    public var index: Int
    public var name: String
    /// IFLA_INFO_KIND: "bridge", "veth", …; nil for physical and loopback devices.
    public var kind: String?
    /// The bridge (or bond) this link is enslaved to.
    public var masterIndex: Int?
    /// Administratively up (IFF_UP).
    public var isUp: Bool
    /// The lower layer is up (IFF_LOWER_UP): for a veth, its peer is up too.
    public var hasCarrier: Bool
    public var mtu: Int
    /// IFLA_IFALIAS; tupp's ownership marker (see `LinkOwner`).
    public var alias: String?
    public var mac: MACAddress?
    /// IFLA_LINK: for a veth, the peer's index — in the peer's namespace when
    /// `peerNetnsID` is set.
    public var peerIndex: Int?
    /// IFLA_LINK_NETNSID: the id, in this namespace, of the namespace the peer lives in.
    /// Set only when the peer is in another namespace.
    public var peerNetnsID: Int32?

    public init(index: Int, name: String, kind: String? = nil, masterIndex: Int? = nil, isUp: Bool = false,
                hasCarrier: Bool = false, mtu: Int = 1500, alias: String? = nil, mac: MACAddress? = nil,
                peerIndex: Int? = nil, peerNetnsID: Int32? = nil) {
        self.index = index
        self.name = name
        self.kind = kind
        self.masterIndex = masterIndex
        self.isUp = isUp
        self.hasCarrier = hasCarrier
        self.mtu = mtu
        self.alias = alias
        self.mac = mac
        self.peerIndex = peerIndex
        self.peerNetnsID = peerNetnsID
    }

    /// The ownership marker in the alias, when tupp wrote one.
    public var owner: LinkOwner? { alias.flatMap(LinkOwner.init(alias:)) }
}

/// One IPv4 address on a link (RTM_NEWADDR).
public struct AddressInfo: Hashable, Sendable {
    public var linkIndex: Int
    public var interface: IPv4Interface

    public init(linkIndex: Int, interface: IPv4Interface) {
        self.linkIndex = linkIndex
        self.interface = interface
    }
}

/// One IPv4 route (RTM_NEWROUTE), from any table.
public struct RouteInfo: Hashable, Sendable {
    public var destination: IPv4Network
    /// The first next hop's gateway; nil for on-link routes.
    public var gateway: IPv4Address?
    /// The first next hop's output link; nil for blackhole/unreachable routes.
    public var linkIndex: Int?
    /// RT_TABLE_*: 254 main, 255 local (see `RouteInfo.mainTable`).
    public var table: UInt32
    /// RTPROT_*: 2 kernel (made for an address), 3 boot (ip route add), 4 static, …
    public var `protocol`: UInt8
    /// RT_SCOPE_*: 0 universe, 253 link, 254 host.
    public var scope: UInt8
    /// RTN_*: 1 unicast, 2 local, 3 broadcast, 6 blackhole, 7 unreachable, …
    public var type: UInt8
    /// The metric (RTA_PRIORITY).
    public var priority: UInt32

    public static let mainTable: UInt32 = 254
    public static let localTable: UInt32 = 255
    public static let kernelProtocol: UInt8 = 2
    public static let bootProtocol: UInt8 = 3
    public static let staticProtocol: UInt8 = 4
    public static let universeScope: UInt8 = 0
    public static let linkScope: UInt8 = 253
    public static let unicastType: UInt8 = 1

    public init(destination: IPv4Network, gateway: IPv4Address? = nil, linkIndex: Int? = nil,
                table: UInt32 = RouteInfo.mainTable, protocol: UInt8 = RouteInfo.bootProtocol,
                scope: UInt8 = RouteInfo.universeScope, type: UInt8 = RouteInfo.unicastType, priority: UInt32 = 0) {
        self.destination = destination
        self.gateway = gateway
        self.linkIndex = linkIndex
        self.table = table
        self.protocol = `protocol`
        self.scope = scope
        self.type = type
        self.priority = priority
    }

    /// 0.0.0.0/0.
    public var isDefault: Bool { destination.prefixLength == 0 }
}

/// Everything tupp needs to know about one network namespace, read with one dump per
/// kind: links, IPv4 addresses, IPv4 routes (all tables).
public struct NetworkSnapshot: Hashable, Sendable {
    public var links: [LinkInfo]
    public var addresses: [AddressInfo]
    public var routes: [RouteInfo]

    public init(links: [LinkInfo] = [], addresses: [AddressInfo] = [], routes: [RouteInfo] = []) {
        self.links = links
        self.addresses = addresses
        self.routes = routes
    }

    public func link(named name: String) -> LinkInfo? { links.first { $0.name == name } }
    public func link(index: Int) -> LinkInfo? { links.first { $0.index == index } }
    public func addresses(onLink index: Int) -> [IPv4Interface] {
        addresses.filter { $0.linkIndex == index }.map(\.interface)
    }
    /// Routes in the main table whose first next hop leaves through `index`.
    public func mainRoutes(onLink index: Int) -> [RouteInfo] {
        routes.filter { $0.linkIndex == index && $0.table == RouteInfo.mainTable }
    }
    /// The default route of the main table, if any.
    public var defaultRoute: RouteInfo? {
        routes.first { $0.isDefault && $0.table == RouteInfo.mainTable && $0.type == RouteInfo.unicastType }
    }
}
