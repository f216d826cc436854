import Glibc
import Testing
import TuppFacts
import TuppManifest
import TuppNetworking

@Suite("Published ports: conflicts (no root)")
struct PortConflictTests {
    static func claim(_ container: String, _ text: String) throws -> PortClaim {
        PortClaim(container: container, publication: try PortPublication.parse(text))
    }

    @Test func twoContainersPublishingTheSamePortConflict() throws {
        let claims = [try Self.claim("web", "8080:80"), try Self.claim("api", "127.0.0.1:8080:8080"),
                      try Self.claim("dns", "8080:53/udp"), try Self.claim("other", "127.0.0.2:8081:80")]
        let conflicts = PortConflicts.amongClaims(claims)
        #expect(conflicts == [.publishedTwice(claims[0], claims[1])])
        #expect(conflicts[0].description.contains("container web is also published by container api"))
    }

    /// /proc/net/tcp as a little-endian kernel prints it: 127.0.0.1:8080 and *:22
    /// listening, one established connection, a socket with port 0.
    static let tcp = """
          sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
           0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 23456 1 0000000000000000 100 0 0 10 0
           1: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1 0000000000000000 100 0 0 10 0
           2: 0200000A:D431 0300000A:1F90 01 00000000:00000000 00:00000000 00000000     0        0 222 1 0000000000000000 20 4 0 10 -1
           3: 0100007F:0000 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 333 1 0000000000000000 100 0 0 10 0
        """

    static let tcp6 = """
          sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
           0: 00000000000000000000000000000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 444 1 0000000000000000 100 0 0 10 0
           1: 0000000000000000FFFF00000100007F:1F91 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 555 1 0000000000000000 100 0 0 10 0
           2: 00000000000000000000000001000000:1F92 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 666 1 0000000000000000 100 0 0 10 0
        """

    static let udp = """
           sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
          1: 3500007F:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000   101        0 777 2 0000000000000000 0
          2: 0F02000A:B7A3 0100000A:0035 01 00000000:00000000 00:00000000 00000000     0        0 888 2 0000000000000000 0
        """

    @Test func procNetTablesAreReadAsTheKernelWritesThem() {
        let localhost = IPv4Address("127.0.0.1")!
        #expect(HostSockets.parse(Self.tcp, protocol: .tcp, ipv6: false) == [
            HostSocket(address: localhost, port: 8080, protocol: .tcp, inode: 23456),
            HostSocket(address: nil, port: 22, protocol: .tcp, inode: 111),
        ])
        #expect(HostSockets.parse(Self.tcp6, protocol: .tcp, ipv6: true) == [
            HostSocket(address: nil, port: 80, protocol: .tcp, inode: 444),
            HostSocket(address: localhost, port: 8081, protocol: .tcp, inode: 555),
        ])
        #expect(HostSockets.parse(Self.udp, protocol: .udp, ipv6: false) == [
            HostSocket(address: IPv4Address("127.0.0.53")!, port: 53, protocol: .udp, inode: 777),
        ])
    }

    @Test func aHostSocketConflictsWhenThePublicationWouldTakeItsConnections() throws {
        let sockets = HostSockets.parse(Self.tcp, protocol: .tcp, ipv6: false)
            + HostSockets.parse(Self.udp, protocol: .udp, ipv6: false)
        let owners: [UInt64: [SocketProcess]] = [23456: [SocketProcess(pid: 4242, command: "python3")]]
        func conflicts(_ text: String) throws -> [PortConflict] {
            PortConflicts.withHostSockets([try Self.claim("web", text)], sockets: sockets, owners: owners)
        }
        #expect(try conflicts("8080:80").count == 1)              // every address includes 127.0.0.1
        #expect(try conflicts("127.0.0.1:8080:80").count == 1)
        #expect(try conflicts("127.0.0.2:8080:80").isEmpty)
        #expect(try conflicts("192.0.2.1:22:22").count == 1)      // a wildcard listener takes every address
        #expect(try conflicts("8080:80/udp").isEmpty)
        #expect(try conflicts("53:53/udp").count == 1)
        #expect(try conflicts("8000-8100:8000-8100").count == 1)
        let message = try conflicts("8080:80")[0].description
        #expect(message.contains("127.0.0.1:8080/tcp is open by pid 4242 (python3)"), "\(message)")
    }

    @Test func anotherInstallationsPublicationConflictsOncePerContainer() throws {
        let theirs = [PortChain.prerouting, .output].map {
            ForeignPortForward(table: "tupp_other_ports", forward: PortForward(
                chain: $0, destination: nil, protocol: .tcp, ports: PortRange(8080), target: IPv4Address("10.9.0.2")!,
                targetPort: 80, container: "blog"))
        }
        let claims = [try Self.claim("web", "127.0.0.1:8080:80"), try Self.claim("api", "8081:80")]
        let conflicts = PortConflicts.withOtherInstallations(claims, theirs)
        #expect(conflicts == [.publishedByAnotherInstallation(claims[0], theirs[0])])
        #expect(conflicts[0].description.contains("container blog of another tupp installation (nftables table tupp_other_ports)"))
    }

    /// The host side read for real: a socket this test binds shows up, with this process
    /// as its owner. No root needed; loopback only.
    @Test func aSocketThisProcessBindsIsFoundWithItsOwner() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #expect(fd >= 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        #expect(bound == 0)
        #expect(listen(fd, 1) == 0)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        let port = UInt16(bigEndian: address.sin_port)

        let found = try HostSockets.bound().filter { $0.port == port && $0.protocol == .tcp }
        #expect(found.map(\.address) == [IPv4Address("127.0.0.1")!])
        let owners = HostSockets.owners(of: Set(found.map(\.inode)))
        #expect(owners[found[0].inode]?.map(\.pid) == [getpid()])
    }
}
