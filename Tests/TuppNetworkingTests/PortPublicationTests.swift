import Testing
import TuppManifest
import TuppNetworking

@Suite("Published ports: parsing and overlap (no root)")
struct PortPublicationTests {
    static func ip(_ text: String) -> IPv4Address { IPv4Address(text)! }

    @Test func shortFormsParseIntoOneValueType() throws {
        #expect(try PortPublication.parse("8080:80")
            == PortPublication(hostPorts: PortRange(8080), containerPorts: PortRange(80), protocol: .tcp))
        #expect(try PortPublication.parse("127.0.0.1:5432:5432")
            == PortPublication(hostAddress: Self.ip("127.0.0.1"), hostPorts: PortRange(5432), containerPorts: PortRange(5432)))
        #expect(try PortPublication.parse("53:53/udp")
            == PortPublication(hostPorts: PortRange(53), containerPorts: PortRange(53), protocol: .udp))
        #expect(try PortPublication.parse("9000-9002:9000-9002")
            == PortPublication(hostPorts: PortRange(9000, 9002), containerPorts: PortRange(9000, 9002)))
        #expect(try PortPublication.parse("0.0.0.0:8080:80/tcp") == PortPublication.parse("8080:80"))
        #expect(try PortPublication.parse("192.0.2.7:9000-9001:7000-7001/udp")
            == PortPublication(hostAddress: Self.ip("192.0.2.7"), hostPorts: PortRange(9000, 9001),
                               containerPorts: PortRange(7000, 7001), protocol: .udp))
    }

    @Test func theLongFormGivesTheSameValue() throws {
        #expect(try PortPublication.parse(host: "0.0.0.0:8080", container: 80, protocol: "tcp") == PortPublication.parse("8080:80"))
        #expect(try PortPublication.parse(host: "8080", container: 80) == PortPublication.parse("8080:80"))
        #expect(try PortPublication.parse(host: "127.0.0.1:5353", container: "53", protocol: "udp")
            == PortPublication.parse("127.0.0.1:5353:53/udp"))
        #expect(try PortPublication.parse(host: "9000-9002", container: "9000-9002") == PortPublication.parse("9000-9002:9000-9002"))
    }

    @Test(arguments: [
        ("80", "give the host port too"),
        ("127.0.0.1::80", "give the host port"),
        ("[::1]:8080:80", "IPv6 host addresses are not supported"),
        ("8080:80/sctp", "protocol must be tcp or udp"),
        ("8080:80/TCP", "protocol must be tcp or udp"),
        ("0:80", "host port \"0\" must be a port"),
        ("65536:80", "host port \"65536\" must be a port"),
        ("8080:080", "container port \"080\" must be a port"),
        ("+8080:80", "host port \"+8080\" must be a port"),
        ("9002-9000:9000-9002", "host port \"9002-9000\""),
        ("9000-9002:80", "must be as many (3 ≠ 1)"),
        ("300.0.0.1:80:80", "is not an IPv4 address"),
        ("localhost:80:80", "is not an IPv4 address"),
        ("224.0.0.1:80:80", "is not a unicast address"),
        ("1.2.3.4:5:6:7", "expected [ADDRESS:]HOSTPORT:CONTAINERPORT"),
        ("", "give the host port too"),
    ])
    func badEntriesAreRefusedWithAReason(_ text: String, _ reason: String) {
        do {
            let parsed = try PortPublication.parse(text)
            Issue.record("\"\(text)\" parsed as \(parsed)")
        } catch {
            #expect(error.text == text)
            #expect(error.description.contains(reason), "\(error)")
        }
    }

    @Test func badLongFormsAreRefused() {
        #expect(throws: PortSyntaxError.self) { try PortPublication.parse(host: "0.0.0.0:8080", container: 0) }
        #expect(throws: PortSyntaxError.self) { try PortPublication.parse(host: "a:b:c", container: 80) }
        #expect(throws: PortSyntaxError.self) { try PortPublication.parse(host: "8080", container: 80, protocol: "icmp") }
        #expect(throws: PortSyntaxError.self) { try PortPublication.parse(host: ":8080", container: 80) }
    }

    @Test func theDescriptionIsACanonicalShortFormThatParsesBack() throws {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<2000 {
            let lower = UInt16.random(in: 1...65000, using: &generator)
            let count = UInt16.random(in: 0...3, using: &generator)
            let shift = UInt16.random(in: 0...400, using: &generator)
            let address: IPv4Address? = Bool.random(using: &generator) ? nil : IPv4Address(UInt32.random(in: 0x0100_0000...0xdfff_ffff))
            let publication = PortPublication(hostAddress: address, hostPorts: PortRange(lower, lower + count),
                                              containerPorts: PortRange(lower + shift, lower + shift + count),
                                              protocol: Bool.random(using: &generator) ? .tcp : .udp)
            #expect(try PortPublication.parse(publication.description) == publication, "\(publication)")
        }
        #expect(try PortPublication.parse("8080:80").description == "0.0.0.0:8080:80/tcp")
    }

    @Test func overlapNeedsProtocolPortsAndAddress() throws {
        func p(_ text: String) throws -> PortPublication { try PortPublication.parse(text) }
        #expect(try p("8080:80").overlaps(p("8080:81")))
        #expect(try p("8080:80").overlaps(p("127.0.0.1:8080:80")))  // every address includes loopback
        #expect(try p("9000-9005:9000-9005").overlaps(p("9005:80")))
        #expect(try !p("8080:80").overlaps(p("8080:80/udp")))
        #expect(try !p("127.0.0.1:8080:80").overlaps(p("127.0.0.2:8080:80")))
        #expect(try !p("9000-9005:9000-9005").overlaps(p("9006:80")))
        #expect(try p("127.0.0.1:8080:80").isLoopbackOnly && p("127.0.0.1:8080:80").coversLoopback)
        #expect(try !p("8080:80").isLoopbackOnly && p("8080:80").coversLoopback)
        #expect(try !p("192.0.2.1:8080:80").coversLoopback)
    }
}
