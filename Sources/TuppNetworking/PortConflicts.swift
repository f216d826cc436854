import Glibc
import TuppFacts
import TuppManifest
import TuppSystem

/// One publication a container asks for.
public struct PortClaim: Hashable, Sendable, CustomStringConvertible {
    public var container: String
    public var publication: PortPublication

    public init(container: String, publication: PortPublication) {
        self.container = container
        self.publication = publication
    }

    public var description: String { "container \(container) publishes \(publication)" }
}

/// A socket of the host that takes connections (TCP LISTEN) or datagrams (unconnected UDP).
public struct HostSocket: Hashable, Sendable, CustomStringConvertible {
    /// nil: every address (0.0.0.0, or :: of a dual-stack socket).
    public var address: IPv4Address?
    public var port: UInt16
    public var `protocol`: TransportProtocol
    public var inode: UInt64

    public init(address: IPv4Address?, port: UInt16, protocol: TransportProtocol, inode: UInt64) {
        self.address = address
        self.port = port
        self.protocol = `protocol`
        self.inode = inode
    }

    public var description: String { "\(address?.description ?? "*"):\(port)/\(`protocol`.rawValue)" }
}

/// A process holding a socket open.
public struct SocketProcess: Hashable, Sendable, CustomStringConvertible {
    public var pid: Int32
    /// /proc/PID/comm.
    public var command: String

    public init(pid: Int32, command: String) {
        self.pid = pid
        self.command = command
    }

    public var description: String { "pid \(pid) (\(command))" }
}

/// Why a publication cannot be made, for the plan to show.
public enum PortConflict: Hashable, Sendable, CustomStringConvertible {
    /// Two containers of the desired state take the same connections.
    case publishedTwice(PortClaim, PortClaim)
    /// A host process listens where the publication would take its connections.
    case boundOnHost(PortClaim, HostSocket, [SocketProcess])
    /// Another tupp installation on this host publishes it.
    case publishedByAnotherInstallation(PortClaim, ForeignPortForward)

    public var claim: PortClaim {
        switch self {
        case .publishedTwice(let claim, _), .boundOnHost(let claim, _, _), .publishedByAnotherInstallation(let claim, _): claim
        }
    }

    public var description: String {
        switch self {
        case .publishedTwice(let claim, let other):
            return "port \(claim.publication) of container \(claim.container) is also published by container \(other.container) (\(other.publication)); give one of them another host port or address"
        case .boundOnHost(let claim, let socket, let processes):
            let owners = processes.isEmpty ? "a process tupp cannot see (another pid namespace?)"
                : processes.map(\.description).joined(separator: ", ")
            return "port \(claim.publication) of container \(claim.container) is taken on the host: \(socket) is open by \(owners); stop it or publish another port"
        case .publishedByAnotherInstallation(let claim, let foreign):
            return "port \(claim.publication) of container \(claim.container) is published by container \(foreign.forward.container) of another tupp installation (nftables table \(foreign.table))"
        }
    }
}

/// Plan-time checks that each published port is free. Pure: the facts come from
/// `HostSockets` and `PublishedPorts.otherInstallations`.
public enum PortConflicts {
    /// Every pair of claims that overlap (each pair once, in claim order).
    public static func amongClaims(_ claims: [PortClaim]) -> [PortConflict] {
        var conflicts: [PortConflict] = []
        for (i, claim) in claims.enumerated() {
            for other in claims[(i + 1)...] where claim.publication.overlaps(other.publication) {
                conflicts.append(.publishedTwice(claim, other))
            }
        }
        return conflicts
    }

    /// Claims whose connections a host socket would lose: same protocol, a port in the
    /// range, and the same address or a wildcard on either side (a publication on every
    /// address also takes 127.0.0.1, through the output hook).
    public static func withHostSockets(_ claims: [PortClaim], sockets: [HostSocket],
                                       owners: [UInt64: [SocketProcess]]) -> [PortConflict] {
        var conflicts: [PortConflict] = []
        for claim in claims {
            for socket in sockets where clash(claim.publication, socket) {
                conflicts.append(.boundOnHost(claim, socket, owners[socket.inode] ?? []))
            }
        }
        return conflicts
    }

    /// `publication` would take connections meant for `socket`.
    public static func clash(_ publication: PortPublication, _ socket: HostSocket) -> Bool {
        guard socket.protocol == publication.protocol, publication.hostPorts.contains(socket.port) else { return false }
        guard let mine = publication.hostAddress, let theirs = socket.address else { return true }
        return mine == theirs
    }

    /// Claims another installation's rules already take.
    public static func withOtherInstallations(_ claims: [PortClaim], _ foreign: [ForeignPortForward]) -> [PortConflict] {
        var conflicts: [PortConflict] = []
        for claim in claims {
            let p = claim.publication
            for other in foreign where other.forward.protocol == p.protocol && other.forward.ports.overlaps(p.hostPorts) {
                if let mine = p.hostAddress, let theirs = other.forward.destination, mine != theirs { continue }
                if conflicts.contains(where: {
                    if case .publishedByAnotherInstallation(claim, let seen) = $0 { return seen.table == other.table && seen.forward.container == other.forward.container }
                    return false
                }) { continue }  // its prerouting and output rules are one publication
                conflicts.append(.publishedByAnotherInstallation(claim, other))
            }
        }
        return conflicts
    }
}

/// The host's bound sockets, from /proc/net/{tcp,udp}{,6}, and the processes holding them.
public enum HostSockets {
    /// TCP sockets in LISTEN and unconnected UDP sockets of the calling thread's network
    /// namespace that could take IPv4 connections.
    public static func bound() throws(SystemError) -> [HostSocket] {
        var sockets: [HostSocket] = []
        for (file, proto, v6) in [("tcp", TransportProtocol.tcp, false), ("tcp6", .tcp, true),
                                  ("udp", .udp, false), ("udp6", .udp, true)] {
            // thread-self: /proc/self/net is the main thread's namespace, not this thread's.
            let path = "/proc/thread-self/net/\(file)"
            guard let text = try Files.readText(path, limit: 256 << 20) else { continue }  // no IPv6 in this kernel
            sockets += parse(text, protocol: proto, ipv6: v6)
        }
        return sockets
    }

    /// The sockets of one /proc/net table that take connections or datagrams. Pure.
    ///
    /// Addresses are the kernel's `%08X` of network-order words, so they read byte-swapped
    /// on little-endian machines. In the v6 tables, `::` (maybe dual-stack: the table does
    /// not show IPV6_V6ONLY) counts as every address, and `::ffff:a.b.c.d` as a.b.c.d;
    /// other IPv6 addresses cannot take IPv4 connections and are left out.
    public static func parse(_ text: String, protocol proto: TransportProtocol, ipv6: Bool) -> [HostSocket] {
        let wanted = proto == .tcp ? "0A" : "07"  // TCP_LISTEN; TCP_CLOSE is an unconnected UDP socket
        var sockets: [HostSocket] = []
        for line in text.split(separator: "\n").dropFirst() {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 10, fields[3] == wanted, let inode = UInt64(fields[9]) else { continue }
            let local = fields[1].split(separator: ":")
            guard local.count == 2, let port = UInt16(local[1], radix: 16), port != 0 else { continue }
            let hex = local[0]
            let address: IPv4Address?
            if ipv6 {
                guard hex.count == 32 else { continue }
                let words = stride(from: 0, to: 32, by: 8).map { offset -> UInt32 in
                    let start = hex.index(hex.startIndex, offsetBy: offset)
                    return UInt32(bigEndian: UInt32(hex[start..<hex.index(start, offsetBy: 8)], radix: 16) ?? 0)
                }
                if words == [0, 0, 0, 0] {
                    address = nil
                } else if words[0] == 0, words[1] == 0, words[2] == 0xffff {
                    address = words[3] == 0 ? nil : IPv4Address(words[3])
                } else {
                    continue
                }
            } else {
                guard hex.count == 8, let raw = UInt32(hex, radix: 16) else { continue }
                let value = UInt32(bigEndian: raw)
                address = value == 0 ? nil : IPv4Address(value)
            }
            sockets.append(HostSocket(address: address, port: port, protocol: proto, inode: inode))
        }
        return sockets
    }

    /// The processes holding each of `inodes` open, from /proc/PID/fd links
    /// ("socket:[INODE]"). Costs a readlink per open descriptor on the host, so call it
    /// only for sockets that conflict.
    public static func owners(of inodes: Set<UInt64>) -> [UInt64: [SocketProcess]] {
        guard !inodes.isEmpty else { return [:] }
        var found: [UInt64: [SocketProcess]] = [:]
        for entry in (try? Files.list("/proc")) ?? [] {
            guard let pid = Int32(entry) else { continue }
            var holds = Set<UInt64>()
            for fd in (try? Files.list("/proc/\(pid)/fd")) ?? [] {
                guard let target = readLink("/proc/\(pid)/fd/\(fd)"), target.hasPrefix("socket:["), target.hasSuffix("]"),
                      let inode = UInt64(target.dropFirst(8).dropLast()), inodes.contains(inode) else { continue }
                holds.insert(inode)
            }
            guard !holds.isEmpty else { continue }
            let command = (try? Files.readText("/proc/\(pid)/comm", limit: 64))?.trimmingCharacters() ?? "?"
            for inode in holds { found[inode, default: []].append(SocketProcess(pid: pid, command: command)) }
        }
        return found.mapValues { $0.sorted { $0.pid < $1.pid } }
    }

    private static func readLink(_ path: String) -> String? {
        var buffer = [CChar](repeating: 0, count: 64)
        let n = readlink(path, &buffer, buffer.count - 1)
        guard n > 0 else { return nil }
        return String(decoding: buffer[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
