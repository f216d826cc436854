import CNLRoute
import Glibc
import TuppFacts
import TuppManifest
import TuppSystem

/// Everything needed to connect one container's network namespace to a bridge.
public struct ContainerPlug: Hashable, Sendable {
    /// The container's network namespace, e.g. /proc/PID/ns/net of its supervisor.
    public var netnsPath: String
    /// The host end of the veth pair (`LinkNames.hostVeth`).
    public var hostName: String
    /// The bridge the host end is enslaved to.
    public var bridge: String
    /// The peer's name inside the container ("eth0").
    public var interface: String
    public var address: IPv4Interface
    public var gateway: IPv4Address
    /// The peer's MAC; `LinkNames.mac(for: address.address)` by default.
    public var mac: MACAddress
    /// For both ends; nil takes the bridge's MTU.
    public var mtu: Int?
    /// Ownership marker for the host end (`LinkOwner.alias`).
    public var alias: String

    public init(netnsPath: String, hostName: String, bridge: String, interface: String = "eth0",
                address: IPv4Interface, gateway: IPv4Address, mac: MACAddress? = nil, mtu: Int? = nil, alias: String) {
        self.netnsPath = netnsPath
        self.hostName = hostName
        self.bridge = bridge
        self.interface = interface
        self.address = address
        self.gateway = gateway
        self.mac = mac ?? LinkNames.mac(for: address.address)
        self.mtu = mtu
        self.alias = alias
    }
}

/// What `ensurePlugged` found wrong and put right.
public enum PlugRepair: Hashable, Sendable, CustomStringConvertible {
    /// The pair was missing (never made, or deleted by hand) and was created.
    case createdPair
    case attachedToBridge
    case broughtUpHostEnd
    case restoredAlias
    case broughtUpLoopback
    case broughtUpInterface
    case replacedAddress
    case replacedDefaultRoute

    public var description: String {
        switch self {
        case .createdPair: "created the veth pair"
        case .attachedToBridge: "attached the host end to the bridge"
        case .broughtUpHostEnd: "brought the host end up"
        case .restoredAlias: "restored the host end's alias"
        case .broughtUpLoopback: "brought lo up"
        case .broughtUpInterface: "brought the container interface up"
        case .replacedAddress: "set the container address"
        case .replacedDefaultRoute: "set the default route"
        }
    }
}

extension NetlinkSession {
    /// Neither end of a pair gets an IPv6 address (`addrgenmode none`, as Docker leaves a
    /// network without IPv6): the networks are IPv4, and a link-local address on each new
    /// pair made it multicast (DAD, MLD) to every port of the bridge — with 1,000
    /// containers on one bridge, most of the kernel's time went there. Set on each end
    /// while the container's end is still down, so the pair never has one; lo keeps ::1.
    /// (Through netlink, not net.ipv6.conf.*: every network namespace adds a same-named
    /// entry under /proc/sys/net, so a path lookup there grows with the container count.)
    /// nil when the kernel has no IPv6.
    static let addressMode: UInt8? = Files.exists("/proc/sys/net/ipv6") ? UInt8(IN6_ADDR_GEN_MODE_NONE.rawValue) : nil

    /// Connects a container: a veth pair whose host end (`hostName`) is enslaved to the
    /// bridge, up, in hairpin mode (`setHairpin`) and marked with `alias`, and whose peer
    /// is born inside the container's namespace as `interface` with `mac` and `mtu`; then,
    /// inside: lo up, the interface up, `address`, and the default route via `gateway`.
    /// Call on the host session.
    ///
    /// The peer is created in place (IFLA_NET_NS_FD on the veth peer, which libnl's veth
    /// support encodes through rtnl_link_fill_info): moving a link between namespaces
    /// afterwards costs 20–50 ms of kernel wait. The kernel refuses to bring a veth peer
    /// up during creation (ENOTCONN: the pair is not linked yet), hence the inside steps.
    /// On failure the pair is deleted again, so nothing is left half-made. Neither end
    /// gets an IPv6 address (`addressMode`).
    public func plug(_ plug: ContainerPlug) throws(SystemError) {
        try Self.validate(plug.hostName)
        try Self.validate(plug.interface)
        let netns = try FileDescriptor.open(plug.netnsPath, O_RDONLY)
        try withSocket { socket in
            let bridge = try socket.requireLink(named: plug.bridge)
            try socket.createVethPair(plug, bridgeIndex: bridge.index, mtu: plug.mtu ?? bridge.mtu,
                                      peerNamespace: netns.rawValue)
        }
        // Between these two points the host end carries no ownership mark yet.
        Checkpoint.pass("veth \(plug.hostName) created")
        do {
            try withSocket {
                try $0.modifyLink(named: plug.hostName, "set alias and IPv6 address mode of") { link in
                    rtnl_link_set_ifalias(link, plug.alias)
                    if let mode = Self.addressMode { _ = rtnl_link_inet6_set_addr_gen_mode(link, mode) }
                }
            }
            Checkpoint.pass("veth \(plug.hostName) marked")
            try withSocket { try $0.setHairpin(plug.hostName) }
            Checkpoint.pass("veth \(plug.hostName) in hairpin mode")
            let inside = NetlinkSession(try NamespaceSockets.open(plug.netnsPath))
            try inside.withSocket { socket in
                try socket.setUp("lo")
                Checkpoint.pass("lo up inside")
                try socket.withoutIPv6Address(plug.interface)
                try socket.setUp(plug.interface)
                Checkpoint.pass("\(plug.interface) up inside")
                let peer = try socket.requireLink(named: plug.interface)
                try socket.addAddress(plug.address, toLink: peer.index, linkName: plug.interface)
                Checkpoint.pass("\(plug.interface) addressed inside")
                try socket.replaceDefaultRoute(via: plug.gateway, linkIndex: peer.index, linkName: plug.interface)
                Checkpoint.pass("default route set inside")
            }
        } catch {
            _ = try? deleteLink(name: plug.hostName)
            throw error
        }
    }

    /// Changes a running container's address in place: inside its namespace, `address`
    /// becomes the interface's only IPv4 address and the default route points at
    /// `gateway` again (removing the last address of a subnet flushes routes through it).
    /// The process keeps running; sockets bound to the old address break, as they must.
    public func readdress(netnsPath: String, interface: String, to address: IPv4Interface,
                          gateway: IPv4Address) throws(SystemError) {
        let inside = try NetlinkSession.inNamespace(netnsPath)
        try inside.withSocket { socket in
            let link = try socket.requireLink(named: interface)
            _ = try socket.replaceAddresses(on: interface, with: address)
            try socket.replaceDefaultRoute(via: gateway, linkIndex: link.index, linkName: interface)
        }
    }

    /// Observes one container's connection and repairs what drifted, without restarting
    /// anything: a missing pair is recreated (deleting either end deletes both), as is a
    /// host end whose peer is not this namespace's interface; a detached or down host end
    /// is re-attached, a lost alias restored, and inside the namespace lo, the interface,
    /// the address and the default route are put back.
    /// Returns what was repaired; empty when everything was in place.
    @discardableResult
    public func ensurePlugged(_ plug: ContainerPlug) throws(SystemError) -> [PlugRepair] {
        guard let host = try link(named: plug.hostName) else {
            try self.plug(plug)
            return [.createdPair]
        }
        var repairs: [PlugRepair] = []
        let bridge = try withSocket { try $0.requireLink(named: plug.bridge) }
        if host.masterIndex != bridge.index {
            try attach(name: plug.hostName, toBridge: plug.bridge)
            Checkpoint.pass("veth \(plug.hostName) attached to \(plug.bridge)")
            try withSocket { try $0.setHairpin(plug.hostName) }  // a new bridge port starts without it
            repairs.append(.attachedToBridge)
            Checkpoint.pass("veth \(plug.hostName) in hairpin mode")
        } else if !host.isUp {
            try setUp(name: plug.hostName)
            repairs.append(.broughtUpHostEnd)
            Checkpoint.pass("veth \(plug.hostName) up")
        }
        if host.alias != plug.alias {
            // Unmarked: plug() stopped before its mark, which comes with the address mode.
            try withSocket { try $0.withoutIPv6Address(plug.hostName) }
            try setAlias(name: plug.hostName, alias: plug.alias)
            repairs.append(.restoredAlias)
            Checkpoint.pass("veth \(plug.hostName) marked")
        }
        let inside = try NetlinkSession.inNamespace(plug.netnsPath)
        let seen = try inside.snapshot()
        guard let peer = seen.link(named: plug.interface), peer.peerIndex == host.index, host.peerIndex == peer.index else {
            // The host end's peer lives elsewhere (an earlier namespace of this container
            // that something still holds open): the name is ours, so start over.
            try deleteLink(name: plug.hostName)
            Checkpoint.pass("stale veth \(plug.hostName) deleted")
            try self.plug(plug)
            return [.createdPair]
        }
        if seen.link(named: "lo")?.isUp == false {
            try inside.setUp(name: "lo")
            repairs.append(.broughtUpLoopback)
            Checkpoint.pass("lo up inside")
        }
        if !peer.isUp {
            try inside.withSocket { try $0.withoutIPv6Address(plug.interface) }
            try inside.setUp(name: plug.interface)
            repairs.append(.broughtUpInterface)
            Checkpoint.pass("\(plug.interface) up inside")
        }
        if seen.addresses(onLink: peer.index) != [plug.address] {
            try inside.replaceAddresses(on: plug.interface, with: plug.address)
            repairs.append(.replacedAddress)
            Checkpoint.pass("\(plug.interface) addressed inside")
        }
        let route = seen.defaultRoute
        if route?.gateway != plug.gateway || route?.linkIndex != peer.index || repairs.contains(.replacedAddress) {
            try inside.replaceDefaultRoute(via: plug.gateway, on: plug.interface)
            repairs.append(.replacedDefaultRoute)
            Checkpoint.pass("default route set inside")
        }
        return repairs
    }
}

extension NetlinkSocket {
    /// `addrgenmode none` on `name` (see `NetlinkSession.addressMode`); before it comes up.
    func withoutIPv6Address(_ name: String) throws(SystemError) {
        guard let mode = NetlinkSession.addressMode else { return }
        try modifyLink(named: name, "set IPv6 address mode of") { _ = rtnl_link_inet6_set_addr_gen_mode($0, mode) }
    }

    /// One RTM_NEWLINK: the veth with its host end named, enslaved and up, and its peer
    /// named, addressed and sized inside the namespace behind `peerNamespace`.
    func createVethPair(_ plug: ContainerPlug, bridgeIndex: Int, mtu: Int, peerNamespace: Int32) throws(SystemError) {
        guard let host = rtnl_link_veth_alloc() else {
            throw SystemError("allocate veth", plug.hostName, errno: ENOMEM)
        }
        defer { rtnl_link_put(host) }
        rtnl_link_set_name(host, plug.hostName)
        rtnl_link_set_master(host, Int32(bridgeIndex))
        rtnl_link_set_flags(host, UInt32(IFF_UP))
        rtnl_link_set_mtu(host, UInt32(mtu))

        let peer = rtnl_link_veth_get_peer(host)!
        defer { rtnl_link_put(peer) }
        rtnl_link_set_name(peer, plug.interface)
        let mac = LibNL.address(plug.mac)
        rtnl_link_set_addr(peer, mac)
        nl_addr_put(mac)
        rtnl_link_set_mtu(peer, UInt32(mtu))
        rtnl_link_set_ns_fd(peer, peerNamespace)

        try perform("create veth pair", "\(plug.hostName) ⇄ \(plug.interface) in \(plug.netnsPath)") {
            rtnl_link_add(handle, host, NLM_F_CREATE | NLM_F_EXCL)
        }
    }
}
