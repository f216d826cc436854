import CNLRoute
import CTuppSys
import Glibc
import Synchronization
import TuppFacts
import TuppManifest
import TuppSystem

/// A netlink (rtnetlink) conversation with one network namespace, through libnl-route-3.
///
/// A session owns one socket. The socket is bound to the namespace it was created in for
/// its whole life, whichever thread uses it later: `host()` talks to the caller's
/// namespace, `inNamespace(_:)` to a container's. Calls are serialised; each operation
/// is synchronous (request, then the kernel's ack or error).
///
/// A session inside a container's namespace holds a reference to that namespace (every
/// socket does): while it exists, the namespace — and the container's veth pair — cannot
/// die. Drop such sessions as soon as the work is done.
public final class NetlinkSession: Sendable {
    /// "host", or the netns path the session was opened in.
    public let namespace: String
    private let socket: Mutex<NetlinkSocket>

    init(_ socket: sending NetlinkSocket) {
        namespace = socket.namespace
        self.socket = Mutex(socket)
    }

    /// A session in the calling thread's network namespace (the host's, for tupp).
    public static func host() throws(SystemError) -> NetlinkSession {
        NetlinkSession(try NetlinkSocket(namespace: "host"))
    }

    /// A session inside the network namespace at `netnsPath` (e.g. /proc/PID/ns/net): the
    /// socket is created on a short-lived thread that joined the namespace, and stays
    /// there after the thread is gone.
    public static func inNamespace(_ netnsPath: String) throws(SystemError) -> NetlinkSession {
        NetlinkSession(try NamespaceSockets.open(netnsPath))
    }

    /// Runs `body` with exclusive use of the socket. Everything below throws only
    /// `SystemError`; closures cannot spell that without annotations, hence the cast.
    func withSocket<T: Sendable>(_ body: (NetlinkSocket) throws -> T) throws(SystemError) -> T {
        do {
            return try socket.withLock { socket in try body(socket) }
        } catch let error as SystemError {
            throw error
        } catch {
            throw SystemError.failure("netlink request in", namespace, "\(error)")
        }
    }

    // MARK: Observation

    /// Links, IPv4 addresses and IPv4 routes (all tables): one dump each.
    public func snapshot() throws(SystemError) -> NetworkSnapshot {
        try withSocket { try $0.snapshot() }
    }

    /// One link by name (a single RTM_GETLINK), or nil.
    public func link(named name: String) throws(SystemError) -> LinkInfo? {
        try withSocket { try $0.link(named: name) }
    }

    // MARK: Links

    /// Creates a bridge that is up, carries `address` (the gateway, with the subnet's
    /// prefix), has a fixed MAC and the ownership `alias`.
    ///
    /// The MAC defaults to `LinkNames.mac(for: address.address)`: a bridge without an
    /// explicit MAC takes its lowest port's, so it would change whenever containers come
    /// and go, and every neighbour would have to re-learn the gateway.
    /// Three round trips: create (with MTU, MAC, up), alias (the kernel ignores
    /// IFLA_IFALIAS on creation), address. Fails with EEXIST if `name` exists.
    public func createBridge(name: String, address: IPv4Interface, mtu: Int? = nil, alias: String,
                             mac: MACAddress? = nil) throws(SystemError) {
        try Self.validate(name)
        try withSocket { socket in
            let bridge = rtnl_link_alloc()!
            defer { rtnl_link_put(bridge) }
            _ = rtnl_link_set_type(bridge, "bridge")
            rtnl_link_set_name(bridge, name)
            rtnl_link_set_flags(bridge, UInt32(IFF_UP))
            if let mtu { rtnl_link_set_mtu(bridge, UInt32(mtu)) }
            let hardware = LibNL.address(mac ?? LinkNames.mac(for: address.address))
            rtnl_link_set_addr(bridge, hardware)
            nl_addr_put(hardware)
            try socket.perform("create bridge", name) { rtnl_link_add(socket.handle, bridge, NLM_F_CREATE | NLM_F_EXCL) }
            Checkpoint.pass("bridge \(name) created")
            do {
                try socket.modifyLink(named: name, "set alias of") { rtnl_link_set_ifalias($0, alias) }
                Checkpoint.pass("bridge \(name) marked")
                let created = try socket.requireLink(named: name)
                try socket.addAddress(address, toLink: created.index, linkName: name)
                Checkpoint.pass("bridge \(name) addressed")
            } catch {
                _ = try? socket.deleteLink(named: name)
                throw error
            }
        }
    }

    /// Converges an existing bridge: up, `mtu` when given, and exactly `address` as its
    /// IPv4 address (other IPv4 addresses are removed — call this only on a bridge tupp
    /// owns). Returns true when something had to change.
    @discardableResult
    public func updateBridge(name: String, address: IPv4Interface, mtu: Int? = nil) throws(SystemError) -> Bool {
        try withSocket { socket -> Bool in
            let bridge = try socket.requireLink(named: name)
            guard bridge.kind == "bridge" else {
                throw SystemError.failure("update bridge", name, "is a \(bridge.kind ?? "non-virtual") link, not a bridge")
            }
            var changed = false
            if !bridge.isUp || (mtu != nil && bridge.mtu != mtu) {
                try socket.modifyLink(named: name, "bring up / set MTU of") { link in
                    rtnl_link_set_flags(link, UInt32(IFF_UP))
                    if let mtu { rtnl_link_set_mtu(link, UInt32(mtu)) }
                }
                changed = true
            }
            return try socket.replaceAddresses(on: name, with: address) || changed
        }
    }

    /// Deletes a link (for a veth, both ends). Returns false when it did not exist.
    @discardableResult
    public func deleteLink(name: String) throws(SystemError) -> Bool {
        try withSocket { try $0.deleteLink(named: name) }
    }

    /// Deletes the host end of a veth pair whose other end's network namespace is being
    /// freed: waits up to `timeout` seconds for the kernel to remove the pair with the
    /// namespace and deletes it only if it is still there (the namespace was pinned).
    /// Namespaces that die together are cleaned up in one batch — 20 pairs in ~60 ms on
    /// a 2-core VM, where deleting each costs a ~20 ms RCU grace period.
    /// Returns false when the link was already gone.
    @discardableResult
    public func deleteLinkAfterItsNamespace(name: String, timeout: Double = 0.5) throws(SystemError) -> Bool {
        guard if_nametoindex(name) != 0 else { return false }
        let deadline = Monotonic.nanoseconds() + UInt64(max(0, timeout) * 1e9)
        while Monotonic.nanoseconds() < deadline {
            usleep(1_000)
            if if_nametoindex(name) == 0 { return true }
        }
        return try deleteLink(name: name)
    }

    public func setUp(name: String) throws(SystemError) {
        try withSocket { try $0.setUp(name) }
    }

    /// Sets IFLA_IFALIAS; an empty alias clears it.
    public func setAlias(name: String, alias: String) throws(SystemError) {
        try withSocket { try $0.modifyLink(named: name, "set alias of") { rtnl_link_set_ifalias($0, alias) } }
    }

    public func setMTU(name: String, mtu: Int) throws(SystemError) {
        try withSocket { try $0.modifyLink(named: name, "set MTU \(mtu) of") { rtnl_link_set_mtu($0, UInt32(mtu)) } }
    }

    /// Enslaves `name` to `bridge` (IFLA_MASTER) and brings it up.
    public func attach(name: String, toBridge bridge: String) throws(SystemError) {
        try withSocket { socket in
            let master = try socket.requireLink(named: bridge)
            try socket.modifyLink(named: name, "attach to \(bridge)") { link in
                rtnl_link_set_master(link, Int32(master.index))
                rtnl_link_set_flags(link, UInt32(IFF_UP))
            }
        }
    }

    // MARK: Addresses and routes

    /// Makes `address` the only IPv4 address of `name`. Returns true when something changed.
    @discardableResult
    public func replaceAddresses(on name: String, with address: IPv4Interface) throws(SystemError) -> Bool {
        try withSocket { try $0.replaceAddresses(on: name, with: address) }
    }

    /// Sets (or replaces) the main table's default route: via `gateway` out of `name`.
    public func replaceDefaultRoute(via gateway: IPv4Address, on name: String) throws(SystemError) {
        try withSocket { socket in
            let link = try socket.requireLink(named: name)
            try socket.replaceDefaultRoute(via: gateway, linkIndex: link.index, linkName: name)
        }
    }

    static func validate(_ name: String) throws(SystemError) {
        guard LinkNames.isValid(name) else {
            throw SystemError("check link name", "\"\(name)\"", errno: EINVAL,
                              detail: "interface names are 1–15 bytes without '/', ':', '%' or whitespace")
        }
    }
}

/// Opening sockets inside other network namespaces.
enum NamespaceSockets {
    /// One socket inside the namespace at `netnsPath`, made on a throw-away thread.
    static func open(_ netnsPath: String) throws(SystemError) -> NetlinkSocket {
        do {
            return try NamespaceThread.run(joining: [(netnsPath, Int32(TUPP_CLONE_NEWNET))]) {
                try NetlinkSocket(namespace: netnsPath)
            }
        } catch let error as SystemError {
            throw error
        } catch {
            throw SystemError.failure("open netlink socket in", netnsPath, "\(error)")
        }
    }
}

extension NetlinkSession {
    /// Moves an existing link into another network namespace (IFLA_NET_NS_FD on an
    /// existing link). tupp never needs this for containers — `plug` creates the peer in
    /// place, because a move waits 20–50 ms in the kernel — but it is how a link created
    /// elsewhere (or by hand) is handed over.
    public func moveLink(name: String, toNamespace netnsPath: String) throws(SystemError) {
        let netns = try FileDescriptor.open(netnsPath, O_RDONLY)
        try withSocket { socket in
            try socket.modifyLink(named: name, "move to \(netnsPath)") { rtnl_link_set_ns_fd($0, netns.rawValue) }
        }
    }
}
