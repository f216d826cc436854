import CNLRoute
import Glibc
import TuppFacts
import TuppManifest
import TuppSystem

/// rtnetlink dumps built and parsed with libnl's message and attribute API.
///
/// libnl-route's caches (rtnl_link_alloc_cache & co.) would do, but they cost: they ask
/// for every address family, parse each link's IPv6 configuration and statistics into
/// allocated objects, and read each reply twice (MSG_PEEK). Observation runs on every
/// plan for every container, so here the requests are narrowed (IPv4 only; link
/// statistics skipped with RTEXT_FILTER_SKIP_STATS) and replies are read straight into
/// `LinkInfo` / `AddressInfo` / `RouteInfo`.
extension NetlinkSocket {
    /// Three dumps: links, IPv4 addresses, IPv4 routes (every table).
    func snapshot() throws(SystemError) -> NetworkSnapshot {
        NetworkSnapshot(links: try dumpLinks(), addresses: try dumpAddresses(), routes: try dumpRoutes())
    }

    func dumpLinks() throws(SystemError) -> [LinkInfo] {
        try dump("dump links", type: RTM_GETLINK, header: ifinfomsg(), skipStatistics: true, RtnetlinkParser.link)
    }

    func dumpAddresses() throws(SystemError) -> [AddressInfo] {
        try dump("dump addresses", type: RTM_GETADDR, header: ifaddrmsg(ifa_family: UInt8(AF_INET), ifa_prefixlen: 0,
                                                                        ifa_flags: 0, ifa_scope: 0, ifa_index: 0),
                 RtnetlinkParser.address)
    }

    func dumpRoutes() throws(SystemError) -> [RouteInfo] {
        var header = rtmsg()
        header.rtm_family = UInt8(AF_INET)
        return try dump("dump routes", type: RTM_GETROUTE, header: header, RtnetlinkParser.route)
    }

    /// RTM_GETLINK for one name (not a dump); nil when the kernel has no such link.
    func link(named name: String) throws(SystemError) -> LinkInfo? {
        var found: LinkInfo?
        do {
            try request("look up link", name, type: RTM_GETLINK, header: ifinfomsg(), flags: 0, skipStatistics: true,
                        name: name) { message in
                found = RtnetlinkParser.link(message)
            }
        } catch where error.code == ENODEV {
            return nil
        }
        return found
    }

    /// A dump request, each reply parsed by `parse`; retried when the kernel flags it as
    /// interrupted because the table changed while it was being read (other containers
    /// starting or stopping), from scratch: what an interrupted dump delivered is dropped,
    /// or a link read before the interruption would be listed twice.
    private func dump<Header: BitwiseCopyable, Item>(_ operation: String, type: Int, header: Header, skipStatistics: Bool = false,
                                                     _ parse: (UnsafeMutablePointer<nlmsghdr>) -> Item?) throws(SystemError) -> [Item] {
        var attempt = 0
        while true {
            var items: [Item] = []
            do {
                try request(operation, "all", type: type, header: header, flags: NLM_F_DUMP,
                            skipStatistics: skipStatistics, name: nil) { message in
                    if let item = parse(message) { items.append(item) }
                }
                return items
            } catch where error.code == EAGAIN && attempt < 10 {
                attempt += 1
                usleep(UInt32(500 * attempt))  // let a burst of changes pass
            }
        }
    }

    /// Sends one request with `header` as its family header, hands every reply message
    /// to `receive`, and for a non-dump request also consumes the kernel's ack.
    private func request<Header: BitwiseCopyable>(_ operation: String, _ object: String, type: Int, header: Header, flags: Int32,
                                 skipStatistics: Bool, name: String?,
                                 _ receive: (UnsafeMutablePointer<nlmsghdr>) -> Void) throws(SystemError) {
        guard let message = nlmsg_alloc_simple(Int32(type), flags) else {
            throw SystemError(operation, object, errno: ENOMEM)
        }
        defer { nlmsg_free(message) }
        var rc = withUnsafeBytes(of: header) { bytes in
            nlmsg_append(message, UnsafeMutableRawPointer(mutating: bytes.baseAddress!), bytes.count, Int32(NLMSG_ALIGNTO))
        }
        if rc >= 0, skipStatistics { rc = nla_put_u32(message, Int32(IFLA_EXT_MASK), UInt32(RTEXT_FILTER_SKIP_STATS)) }
        if rc >= 0, let name { rc = nla_put_string(message, Int32(IFLA_IFNAME), name) }
        if rc < 0 { throw SystemError(operation, object, errno: LibNL.errnoValue(rc), detail: LibNL.describe(rc)) }

        try withoutActuallyEscaping(receive) { (receive) throws(SystemError) in
            let collector = ReplyCollector(receive)
            let callbacks = nl_cb_clone(nl_socket_get_cb(handle))!
            defer { nl_cb_put(callbacks) }
            nl_cb_set(callbacks, NL_CB_VALID, NL_CB_CUSTOM, replyCallback, Unmanaged.passUnretained(collector).toOpaque())
            try perform(operation, object) { nl_send_auto(handle, message) }
            try perform(operation, object) { nl_recvmsgs(handle, callbacks) }
            if flags & NLM_F_DUMP == 0 {
                try perform(operation, object) { nl_wait_for_ack(handle) }
            }
        }
    }
}

/// Carries the Swift closure through libnl's C callback.
private final class ReplyCollector {
    let receive: (UnsafeMutablePointer<nlmsghdr>) -> Void
    init(_ receive: @escaping (UnsafeMutablePointer<nlmsghdr>) -> Void) { self.receive = receive }
}

private let replyCallback: nl_recvmsg_msg_cb_t = { message, argument in
    guard let message, let argument, let header = nlmsg_hdr(message) else { return Int32(NL_OK.rawValue) }
    Unmanaged<ReplyCollector>.fromOpaque(argument).takeUnretainedValue().receive(header)
    return Int32(NL_OK.rawValue)
}

/// Reads RTM_NEWLINK / RTM_NEWADDR / RTM_NEWROUTE messages. Attribute lengths are
/// checked before every read; malformed attributes are ignored, not trusted.
enum RtnetlinkParser {
    typealias Attributes = [UnsafeMutablePointer<nlattr>?]

    static func attributes(_ message: UnsafeMutablePointer<nlmsghdr>, headerSize: Int, maximum: Int) -> Attributes? {
        var table = Attributes(repeating: nil, count: maximum + 1)
        guard nlmsg_parse(message, Int32(headerSize), &table, Int32(maximum), nil) >= 0 else { return nil }
        return table
    }

    static func u32(_ attribute: UnsafeMutablePointer<nlattr>?) -> UInt32? {
        guard let attribute, nla_len(attribute) >= 4 else { return nil }
        return nla_get_u32(attribute)
    }

    static func string(_ attribute: UnsafeMutablePointer<nlattr>?) -> String? {
        guard let attribute, nla_len(attribute) > 0, let data = nla_data(attribute) else { return nil }
        let bytes = UnsafeRawBufferPointer(start: data, count: Int(nla_len(attribute)))
        return String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
    }

    static func ipv4(_ attribute: UnsafeMutablePointer<nlattr>?) -> IPv4Address? {
        guard let attribute, nla_len(attribute) == 4, let data = nla_data(attribute) else { return nil }
        let b = data.assumingMemoryBound(to: UInt8.self)
        return IPv4Address(UInt32(b[0]) << 24 | UInt32(b[1]) << 16 | UInt32(b[2]) << 8 | UInt32(b[3]))
    }

    static func link(_ message: UnsafeMutablePointer<nlmsghdr>) -> LinkInfo? {
        guard message.pointee.nlmsg_type == UInt16(RTM_NEWLINK),
              nlmsg_datalen(message) >= MemoryLayout<ifinfomsg>.size,
              let table = attributes(message, headerSize: MemoryLayout<ifinfomsg>.size, maximum: Int(IFLA_LINK_NETNSID)),
              let name = string(table[Int(IFLA_IFNAME)]) else { return nil }
        let info = nlmsg_data(message).load(as: ifinfomsg.self)
        var kind: String?
        if let linkInfo = table[Int(IFLA_LINKINFO)] {
            var nested = Attributes(repeating: nil, count: Int(IFLA_INFO_KIND) + 1)
            if nla_parse_nested(&nested, Int32(IFLA_INFO_KIND), linkInfo, nil) >= 0 {
                kind = string(nested[Int(IFLA_INFO_KIND)])
            }
        }
        var mac: MACAddress?
        if let address = table[Int(IFLA_ADDRESS)], nla_len(address) == 6, let data = nla_data(address) {
            mac = MACAddress(bytes: Array(UnsafeRawBufferPointer(start: data, count: 6)))
        }
        let index = Int(info.ifi_index)
        let peer = u32(table[Int(IFLA_LINK)]).map(Int.init)
        let alias = string(table[Int(IFLA_IFALIAS)])
        return LinkInfo(
            index: index, name: name, kind: kind,
            masterIndex: u32(table[Int(IFLA_MASTER)]).flatMap { $0 > 0 ? Int($0) : nil },
            isUp: info.ifi_flags & UInt32(IFF_UP) != 0,
            hasCarrier: info.ifi_flags & interfaceLowerUp != 0,
            mtu: Int(u32(table[Int(IFLA_MTU)]) ?? 0),
            alias: alias?.isEmpty == false ? alias : nil,
            mac: mac,
            peerIndex: peer.flatMap { $0 > 0 && $0 != index ? $0 : nil },
            peerNetnsID: u32(table[Int(IFLA_LINK_NETNSID)]).map { Int32(bitPattern: $0) })
    }

    static func address(_ message: UnsafeMutablePointer<nlmsghdr>) -> AddressInfo? {
        guard message.pointee.nlmsg_type == UInt16(RTM_NEWADDR),
              nlmsg_datalen(message) >= MemoryLayout<ifaddrmsg>.size else { return nil }
        let info = nlmsg_data(message).load(as: ifaddrmsg.self)
        guard info.ifa_family == UInt8(AF_INET),
              let table = attributes(message, headerSize: MemoryLayout<ifaddrmsg>.size, maximum: Int(IFA_FLAGS)),
              let local = ipv4(table[Int(IFA_LOCAL)]) ?? ipv4(table[Int(IFA_ADDRESS)]) else { return nil }
        return AddressInfo(linkIndex: Int(info.ifa_index),
                           interface: IPv4Interface(address: local, prefixLength: Int(info.ifa_prefixlen)))
    }

    static func route(_ message: UnsafeMutablePointer<nlmsghdr>) -> RouteInfo? {
        guard message.pointee.nlmsg_type == UInt16(RTM_NEWROUTE),
              nlmsg_datalen(message) >= MemoryLayout<rtmsg>.size else { return nil }
        let info = nlmsg_data(message).load(as: rtmsg.self)
        guard info.rtm_family == UInt8(AF_INET),
              let table = attributes(message, headerSize: MemoryLayout<rtmsg>.size, maximum: Int(RTA_TABLE.rawValue)) else {
            return nil
        }
        let destination = ipv4(table[Int(RTA_DST.rawValue)]) ?? IPv4Address(0)
        var gateway = ipv4(table[Int(RTA_GATEWAY.rawValue)])
        var linkIndex = u32(table[Int(RTA_OIF.rawValue)]).map(Int.init)
        // Multipath: report the first next hop.
        if linkIndex == nil, let hops = table[Int(RTA_MULTIPATH.rawValue)], nla_len(hops) >= MemoryLayout<rtnexthop>.size,
           let data = nla_data(hops) {
            let hop = data.load(as: rtnexthop.self)
            linkIndex = Int(hop.rtnh_ifindex)
            let hopLength = min(Int(hop.rtnh_len), Int(nla_len(hops)))
            let headerLength = (MemoryLayout<rtnexthop>.size + 3) & ~3
            if hopLength > headerLength {
                var nested = Attributes(repeating: nil, count: Int(RTA_GATEWAY.rawValue) + 1)
                let first = (data + headerLength).assumingMemoryBound(to: nlattr.self)
                if nla_parse(&nested, Int32(RTA_GATEWAY.rawValue), first, Int32(hopLength - headerLength), nil) >= 0 {
                    gateway = ipv4(nested[Int(RTA_GATEWAY.rawValue)])
                }
            }
        }
        return RouteInfo(
            destination: IPv4Network(address: destination, prefixLength: Int(info.rtm_dst_len)),
            gateway: gateway, linkIndex: linkIndex.flatMap { $0 > 0 ? $0 : nil },
            table: u32(table[Int(RTA_TABLE.rawValue)]) ?? UInt32(info.rtm_table),
            protocol: info.rtm_protocol, scope: info.rtm_scope, type: info.rtm_type,
            priority: u32(table[Int(RTA_PRIORITY.rawValue)]) ?? 0)
    }
}

/// IFF_LOWER_UP (linux/if.h); glibc's net/if.h stops at IFF_DYNAMIC.
let interfaceLowerUp: UInt32 = 0x10000
