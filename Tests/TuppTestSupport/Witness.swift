import Glibc
import TuppBase
import TuppSystem

/// A container's processes as /proc shows them — not as tupp reports them: its supervisor
/// (`tupp-shim run STATE/containers/NAME`) and the supervisor's child in a pid namespace
/// of its own, the container's init. Identified by pid and start time, so "the same
/// process" is a kernel fact.
public struct ContainerProcesses: Sendable, Equatable, CustomStringConvertible {
    public var supervisor: ProcessIdentity
    public var initProcess: ProcessIdentity

    public var description: String { "supervisor \(supervisor), init \(initProcess)" }
}

/// A pid with its start time (field 22 of /proc/PID/stat).
public struct ProcessIdentity: Sendable, Hashable, CustomStringConvertible {
    public var pid: Int32
    public var startTime: UInt64

    public init(_ entry: ProcEntry) {
        pid = entry.pid
        startTime = entry.startTime
    }

    public var description: String { "\(pid) (started at tick \(startTime))" }
    public var isAlive: Bool { ProcEntry.read(pid)?.startTime == startTime }
}

extension Installation {
    /// The running container `name`'s supervisor and init, from /proc; nil when either is missing.
    public func processes(of name: String) -> ContainerProcesses? {
        let entries = ProcEntry.all()
        let suffix = "/containers/\(name)"
        guard let supervisor = entries.first(where: { entry in
            let words = entry.commandLine.split(separator: " ")
            return words.count == 3 && words[0].hasSuffix("tupp-shim") && words[1] == "run"
                && words[2].hasPrefix(root.path) && words[2].hasSuffix(suffix)
        }) else { return nil }
        guard let child = entries.first(where: { $0.parent == supervisor.pid && $0.pidNamespace != supervisor.pidNamespace }) else {
            return nil
        }
        return ContainerProcesses(supervisor: ProcessIdentity(supervisor), initProcess: ProcessIdentity(child))
    }

    /// The container's init, which must be running.
    public func initProcess(of name: String) throws -> ProcessIdentity {
        guard let found = processes(of: name) else {
            throw SystemError.failure("find the init of", name, "no supervisor with a child in its own pid namespace in /proc")
        }
        return found.initProcess
    }

    /// `nsenter -t INIT -u hostname`: the hostname in the container's UTS namespace.
    public func liveHostname(of name: String) throws -> String {
        let pid = try initProcess(of: name).pid
        let out = try Spawn.run(["/usr/bin/nsenter", "-t", String(pid), "-u", "/bin/hostname"])
        guard out.status == 0 else { throw SystemError.failure("nsenter hostname", name, "\(out)") }
        return out.stdout.trimmingCharacters()
    }

    /// The IPv4 addresses ("a.b.c.d/len") on `interface` inside the container's network
    /// namespace, from `ip -j addr` run there with nsenter.
    public func liveAddresses(of name: String, interface: String = "eth0") throws -> [String] {
        let pid = try initProcess(of: name).pid
        let out = try Spawn.run(["/usr/bin/nsenter", "-t", String(pid), "-n", "/usr/sbin/ip", "-4", "-j", "addr", "show", "dev", interface])
        guard out.status == 0, case .array(let links) = try JSON.parse(Array(out.stdout.utf8)),
              case .array(let infos)? = links.first?["addr_info"] else { return [] }
        return infos.compactMap { info in
            guard let local = info["local"]?.string, case .int(let length)? = info["prefixlen"] else { return nil }
            return "\(local)/\(length)"
        }
    }

    /// The container's first address without its prefix length, as `ping` wants it; nil
    /// when it does not run or has no address.
    public func liveAddress(of name: String) throws -> String? {
        guard processes(of: name) != nil else { return nil }
        return try liveAddresses(of: name).first.map { String($0.prefix { $0 != "/" }) }
    }

    /// `liveAddress(of:)`: the address inside the container's network namespace (once what
    /// `tupp status` reported, which is the recorded one).
    public func address(of name: String) throws -> String? { try liveAddress(of: name) }

    /// Runs `command` in the container's namespaces through nsenter (not tupp exec):
    /// mount (and with it the root), uts, ipc, net and pid of its init.
    public func nsenter(_ name: String, _ command: [String]) throws -> Output {
        let pid = try initProcess(of: name).pid
        return try Spawn.run(["/usr/bin/nsenter", "-t", String(pid), "-m", "-u", "-i", "-n", "-p", "-r", "-w"] + command)
    }
}
