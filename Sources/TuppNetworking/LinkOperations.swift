import CNLRoute
import Glibc
import TuppFacts
import TuppManifest
import TuppSystem

/// The libnl requests behind `NetlinkSession`'s public operations. Each is one netlink
/// round trip (request + ack) unless it says otherwise.
extension NetlinkSocket {
    func requireLink(named name: String) throws(SystemError) -> LinkInfo {
        guard let link = try link(named: name) else {
            throw SystemError("look up link", located(name), errno: ENODEV)
        }
        return link
    }

    /// RTM_NEWLINK without NLM_F_CREATE on an existing link found by name: the kernel
    /// applies only the attributes `configure` sets (flags, master, mtu, alias…).
    func modifyLink(named name: String, _ operation: String, _ configure: (OpaquePointer) -> Void) throws(SystemError) {
        let change = rtnl_link_alloc()!
        defer { rtnl_link_put(change) }
        rtnl_link_set_name(change, name)
        configure(change)
        try perform(operation, name) { rtnl_link_add(handle, change, 0) }
    }

    /// Hairpin mode on the bridge port `name` (RTM_SETLINK, family AF_BRIDGE, as
    /// `bridge link set dev NAME hairpin on`): the bridge may send a frame back out of the
    /// port it came in on. A container reaching its own published port needs it where
    /// br_netfilter is loaded: the DNATed frame is then bridged, not routed, back to the
    /// container's own port. Docker sets it on every port for the same reason.
    func setHairpin(_ name: String) throws(SystemError) {
        let port = try requireLink(named: name)
        let change = rtnl_link_alloc()!
        defer { rtnl_link_put(change) }
        rtnl_link_set_ifindex(change, Int32(port.index))
        rtnl_link_set_family(change, AF_BRIDGE)
        _ = rtnl_link_bridge_set_flags(change, UInt32(RTNL_BRIDGE_HAIRPIN_MODE.rawValue))
        try perform("turn on hairpin mode of", name) { rtnl_link_change(handle, change, change, 0) }
    }

    func setUp(_ name: String) throws(SystemError) {
        try modifyLink(named: name, "bring up") { rtnl_link_set_flags($0, UInt32(IFF_UP)) }
    }

    /// RTM_DELLINK by name. Returns false when the link did not exist.
    func deleteLink(named name: String) throws(SystemError) -> Bool {
        let link = rtnl_link_alloc()!
        defer { rtnl_link_put(link) }
        rtnl_link_set_name(link, name)
        do {
            try perform("delete link", name) { rtnl_link_delete(handle, link) }
            return true
        } catch where error.code == ENODEV {
            return false
        }
    }

    /// RTM_NEWADDR with NLM_F_REPLACE, with the broadcast address filled in the way
    /// `ip addr add … brd +` would (the kernel does not derive it).
    func addAddress(_ interface: IPv4Interface, toLink index: Int, linkName: String) throws(SystemError) {
        let addr = try addressObject(interface, linkIndex: index)
        defer { rtnl_addr_put(addr) }
        if interface.prefixLength < 31 {
            let broadcast = LibNL.address(interface.network.broadcast)
            rtnl_addr_set_broadcast(addr, broadcast)
            nl_addr_put(broadcast)
        }
        try perform("add address \(interface) to", linkName) { rtnl_addr_add(handle, addr, NLM_F_REPLACE) }
    }

    /// RTM_DELADDR. Returns false when the address was not there.
    func deleteAddress(_ interface: IPv4Interface, fromLink index: Int, linkName: String) throws(SystemError) -> Bool {
        let addr = try addressObject(interface, linkIndex: index)
        defer { rtnl_addr_put(addr) }
        do {
            try perform("delete address \(interface) from", linkName) { rtnl_addr_delete(handle, addr, 0) }
            return true
        } catch where error.code == EADDRNOTAVAIL {
            return false
        }
    }

    private func addressObject(_ interface: IPv4Interface, linkIndex: Int) throws(SystemError) -> OpaquePointer {
        let addr = rtnl_addr_alloc()!
        rtnl_addr_set_family(addr, AF_INET)
        rtnl_addr_set_ifindex(addr, Int32(linkIndex))
        let local = LibNL.address(interface.address, prefixLength: interface.prefixLength)
        defer { nl_addr_put(local) }
        let rc = rtnl_addr_set_local(addr, local)
        if rc < 0 {
            rtnl_addr_put(addr)
            throw SystemError("build address", interface.description, errno: LibNL.errnoValue(rc), detail: LibNL.describe(rc))
        }
        return addr
    }

    /// Makes `interface` carry exactly `address` among IPv4 addresses: strays are deleted
    /// first (deleting a primary address would also take its same-subnet secondaries
    /// with it), then the address is added if missing. Costs one address dump.
    func replaceAddresses(on name: String, with address: IPv4Interface) throws(SystemError) -> Bool {
        let link = try requireLink(named: name)
        let present = try dumpAddresses().filter { $0.linkIndex == link.index }.map(\.interface)
        var changed = false
        for stray in present where stray != address {
            changed = try deleteAddress(stray, fromLink: link.index, linkName: name) || changed
        }
        if !present.contains(address) {
            try addAddress(address, toLink: link.index, linkName: name)
            changed = true
        }
        return changed
    }

    /// RTM_NEWROUTE with NLM_F_REPLACE: main table, 0.0.0.0/0 via `gateway` out of the
    /// link, protocol static.
    func replaceDefaultRoute(via gateway: IPv4Address, linkIndex: Int, linkName: String) throws(SystemError) {
        let route = rtnl_route_alloc()!
        defer { rtnl_route_put(route) }
        _ = rtnl_route_set_family(route, UInt8(AF_INET))
        rtnl_route_set_table(route, RouteInfo.mainTable)
        rtnl_route_set_protocol(route, RouteInfo.staticProtocol)
        rtnl_route_set_scope(route, RouteInfo.universeScope)
        _ = rtnl_route_set_type(route, RouteInfo.unicastType)
        let destination = LibNL.address(IPv4Address(0), prefixLength: 0)
        _ = rtnl_route_set_dst(route, destination)
        nl_addr_put(destination)
        let hop = rtnl_route_nh_alloc()!
        rtnl_route_nh_set_ifindex(hop, Int32(linkIndex))
        let via = LibNL.address(gateway)
        rtnl_route_nh_set_gateway(hop, via)
        nl_addr_put(via)
        rtnl_route_add_nexthop(route, hop)  // the route owns the next hop from here on
        try perform("set default route via \(gateway) on", linkName) { rtnl_route_add(handle, route, NLM_F_REPLACE) }
    }
}
