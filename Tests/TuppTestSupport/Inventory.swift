import Glibc
import TuppBase
import TuppFacts
import TuppSystem

/// What one test could have left on the host, seen from outside tupp: `ip -j` for links,
/// /proc/self/mountinfo, /sys/block for loop devices, `nft -j` for tables, the cgroup
/// trees, /run/netns, /proc for processes, and the test's own directory for pool files
/// and state.
///
/// Other tests and other engineers run on this machine at the same time, so an inventory
/// is scoped to what this test could have made: names starting with its prefixes, links
/// marked with (or named after) its installations, paths under its directories — never
/// "the whole host".
public struct Inventory: Sendable, CustomStringConvertible {
    /// What to look for.
    public struct Scope: Sendable {
        /// Link, table, cgroup and netns names starting with one of these are the test's.
        public var prefixes: [String] = []
        /// Installation identities (tupp's, from the state directory; or what a test
        /// passed as `installation` to `LinkOwner`): links marked with them, host veth
        /// names derived from them, their nft table and cgroups.
        public var installations: [String] = []
        /// Container names, for the host veth names derived from each installation.
        public var containers: Set<String> = []
        /// Mounts on or from these, loop devices backed by files in them, processes
        /// naming them, pool image files inside them.
        public var directories: [String] = []
        /// State directories: everything inside one is listed.
        public var stateDirectories: [String] = []

        public init(prefixes: [String] = [], installations: [String] = [], containers: Set<String> = [],
                    directories: [String] = [], stateDirectories: [String] = []) {
            self.prefixes = prefixes
            self.installations = installations
            self.containers = containers
            self.directories = directories
            self.stateDirectories = stateDirectories
        }
    }

    public struct Link: Sendable, Equatable {
        public var name: String
        public var kind: String?
        public var alias: String?
        public var master: String?
        /// The peer lives in another network namespace (a veth's host end).
        public var peerElsewhere: Bool
        public var owner: LinkOwner? { alias.flatMap(LinkOwner.init(alias:)) }
    }

    public struct Mount: Sendable, Equatable {
        public var mountPoint: String
        /// The mounted path inside its filesystem (field 4): what a bind mount shows.
        public var root: String
        public var source: String
        public var fsType: String
        /// The per-mount options ("ro,nosuid,…").
        public var options: [String]
        /// Optional fields of mountinfo: "shared:N", "master:N", …
        public var propagation: [String]
    }

    public struct Process: Sendable, Equatable {
        public enum Role: String, Sendable {
            /// `tupp-shim run DIR`: the supervisor of the container whose runtime directory is DIR.
            case supervisor
            /// A process in a container's pid namespace (its init and what the init started).
            case container
            /// Anything else the test started or tupp left: a tupp, an exec, a stray child.
            case other
        }
        public var pid: Int32
        public var startTime: UInt64
        public var role: Role
        /// For supervisors: the container (the runtime directory's name); for container
        /// processes: their supervisor's container.
        public var container: String?
        public var commandLine: String
    }

    public var links: [Link] = []
    public var mounts: [Mount] = []
    /// "/dev/loopN ← FILE"
    public var loopDevices: [String] = []
    public var nftTables: [String] = []
    public var cgroups: [String] = []
    public var namedNetns: [String] = []
    public var processes: [Process] = []
    /// Files with a btrfs superblock: pool images.
    public var poolFiles: [String] = []
    /// Paths inside the state directories, relative to them.
    public var stateFiles: [String] = []

    public var isEmpty: Bool { lines.isEmpty }

    /// One line per object.
    public var lines: [String] {
        links.map { "link \($0.name) (\($0.kind ?? "?"), alias \($0.alias ?? "none")\($0.master.map { ", on \($0)" } ?? ""))" }
            + mounts.map { "mount \($0.mountPoint) (\($0.fsType) from \($0.source))" }
            + loopDevices.map { "loop device \($0)" }
            + nftTables.map { "nft table \($0)" }
            + cgroups.map { "cgroup \($0)" }
            + namedNetns.map { "netns /run/netns/\($0)" }
            + processes.map { "process \($0.pid) (\($0.role.rawValue)\($0.container.map { " of \($0)" } ?? "")): \($0.commandLine)" }
            + poolFiles.map { "pool file \($0)" }
            + stateFiles.map { "state \($0)" }
    }

    public var description: String { lines.isEmpty ? "nothing" : lines.joined(separator: "\n") }

    /// Takes the inventory now.
    public static func take(_ scope: Scope) -> Inventory {
        var inventory = Inventory()
        inventory.links = links(scope)
        inventory.mounts = mounts(scope)
        inventory.loopDevices = loopDevices(scope)
        inventory.nftTables = nftTables(scope)
        inventory.cgroups = cgroups(scope)
        inventory.namedNetns = ((try? Files.list("/run/netns")) ?? []).filter { name in scope.matchesName(name) }.sorted()
        inventory.processes = processes(scope)
        inventory.poolFiles = scope.directories.flatMap { poolFiles(under: $0, depth: 3) }.sorted()
        inventory.stateFiles = scope.stateDirectories.flatMap { directory in
            Files.exists(directory) ? ["\(directory)/"] + list(directory, relativeTo: directory) : []
        }
        return inventory
    }

    // MARK: Links

    static func links(_ scope: Scope) -> [Link] {
        let tags = Set(scope.installations.map(LinkOwner.tag(forInstallation:)))
        let derived = Set(scope.installations.flatMap { installation in
            scope.containers.map { LinkNames.hostVeth(installation: installation, container: $0) }
        })
        return allLinks().filter { link in
            scope.matchesName(link.name) || derived.contains(link.name) || link.owner.map { tags.contains($0.installationTag) } == true
        }
    }

    /// Every link of the host's network namespace, from `ip -d -j link show`.
    static func allLinks() -> [Link] {
        guard let output = try? Spawn.run(["/usr/sbin/ip", "-d", "-j", "link", "show"]), output.status == 0,
              case .array(let items)? = try? JSON.parse(Array(output.stdout.utf8)) else { return [] }
        return items.compactMap { item in
            guard let name = item["ifname"]?.string else { return nil }
            let alias = item["ifalias"]?.string
            return Link(name: name, kind: item["linkinfo"]?["info_kind"]?.string, alias: alias?.isEmpty == true ? nil : alias,
                        master: item["master"]?.string, peerElsewhere: item["link_netnsid"] != nil)
        }
    }

    // MARK: Mounts and loop devices

    static func mounts(_ scope: Scope) -> [Mount] {
        let loops = loopDevices(scope).map { String($0.prefix { $0 != " " }) }
        return readMountInfo("/proc/self/mountinfo").filter { mount in
            scope.directories.contains { mount.mountPoint.hasPrefix($0 + "/") || mount.mountPoint == $0 || mount.source.hasPrefix($0 + "/") }
                || loops.contains(mount.source)
        }
    }

    /// /proc/PID/mountinfo read with its own small parser (mount points unescaped).
    public static func readMountInfo(_ path: String) -> [Mount] {
        guard let text = try? Files.readText(path, limit: 16 << 20) else { return [] }
        return text.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
            guard let dash = fields.firstIndex(of: "-"), dash >= 6, fields.count >= dash + 3 else { return nil }
            return Mount(mountPoint: unescape(fields[4]), root: unescape(fields[3]), source: unescape(fields[dash + 2]),
                         fsType: fields[dash + 1], options: fields[5].split(separator: ",").map(String.init),
                         propagation: Array(fields[6..<dash]))
        }
    }

    /// The root of the mount at `mountPoint` in /proc/PID/mountinfo (field 4).
    public static func mountRoot(_ mountPoint: String, in path: String) -> String? {
        guard let text = try? Files.readText(path, limit: 16 << 20) else { return nil }
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ").map(String.init)
            if fields.count > 4, unescape(fields[4]) == mountPoint { return unescape(fields[3]) }
        }
        return nil
    }

    static func unescape(_ field: String) -> String {
        guard field.contains("\\") else { return field }
        var bytes: [UInt8] = []
        var utf8 = Array(field.utf8)[...]
        while let byte = utf8.popFirst() {
            if byte == UInt8(ascii: "\\"), utf8.count >= 3, let value = UInt8(String(decoding: utf8.prefix(3), as: UTF8.self), radix: 8) {
                bytes.append(value)
                utf8 = utf8.dropFirst(3)
            } else {
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    static func loopDevices(_ scope: Scope) -> [String] {
        ((try? Files.list("/sys/block")) ?? []).filter { $0.hasPrefix("loop") }.sorted().compactMap { loop in
            guard let backing = (try? Files.readText("/sys/block/\(loop)/loop/backing_file"))?.trimmingCharacters(),
                  scope.directories.contains(where: { backing.hasPrefix($0 + "/") }) else { return nil }
            return "/dev/\(loop) ← \(backing)"
        }
    }

    // MARK: nftables, cgroups

    static func nftTables(_ scope: Scope) -> [String] {
        guard access("/usr/sbin/nft", X_OK) == 0, let output = try? Spawn.run(["/usr/sbin/nft", "-j", "list", "tables"]),
              output.status == 0, case .array(let items)? = try? JSON.parse(Array(output.stdout.utf8))["nftables"] else { return [] }
        return items.compactMap { item -> String? in
            guard let table = item["table"], let name = table["name"]?.string, let family = table["family"]?.string,
                  scope.matchesName(name) || scope.installations.contains(where: { name.contains($0) }) else { return nil }
            return "\(family) \(name)"
        }
    }

    static func cgroups(_ scope: Scope) -> [String] {
        var found: [String] = []
        func walk(_ directory: String, depth: Int) {
            guard depth > 0, let entries = try? Files.list(directory) else { return }
            for entry in entries.sorted() {
                let path = "\(directory)/\(entry)"
                guard Files.isDirectory(path), !isSymbolicLink(path) else { continue }
                if scope.matchesName(entry) || scope.installations.contains(where: { entry.contains($0) }) {
                    found.append(path)
                    found += list(path, relativeTo: nil, directoriesOnly: true)
                } else {
                    walk(path, depth: depth - 1)
                }
            }
        }
        walk("/sys/fs/cgroup", depth: 5)
        return found
    }

    // MARK: Processes

    static func processes(_ scope: Scope) -> [Process] {
        let entries = ProcEntry.all()
        let hostPIDNamespace = ProcEntry.namespace("self", "pid")
        var ours = Set(entries.filter { entry in
            scope.directories.contains { entry.commandLine.contains($0) || entry.executable.hasPrefix($0 + "/") }
        }.map(\.pid))
        // Descendants (a container's init and its children), and everything sharing a
        // container's pid namespace with them (what an exec joined it with).
        var changed = true
        while changed {
            changed = false
            let namespaces = Set(entries.filter { ours.contains($0.pid) && $0.pidNamespace != hostPIDNamespace }.compactMap(\.pidNamespace))
            for entry in entries where !ours.contains(entry.pid)
                && (ours.contains(entry.parent) || entry.pidNamespace.map(namespaces.contains) == true) {
                ours.insert(entry.pid)
                changed = true
            }
        }
        let byPID = Dictionary(uniqueKeysWithValues: entries.map { ($0.pid, $0) })
        func supervisedContainer(_ entry: ProcEntry) -> String? {
            let words = entry.commandLine.split(separator: " ")
            guard words.count == 3, words[0].hasSuffix("tupp-shim"), words[1] == "run" else { return nil }
            return Paths.basename(String(words[2]))
        }
        return entries.filter { ours.contains($0.pid) }.map { entry in
            if let container = supervisedContainer(entry) {
                return Process(pid: entry.pid, startTime: entry.startTime, role: .supervisor, container: container,
                               commandLine: entry.commandLine)
            }
            if entry.pidNamespace != hostPIDNamespace {
                // Up the parents to the supervisor that started this pid namespace's init.
                var current = entry
                while let parent = byPID[current.parent], parent.pidNamespace != hostPIDNamespace { current = parent }
                let supervisor = byPID[current.parent].flatMap(supervisedContainer)
                return Process(pid: entry.pid, startTime: entry.startTime, role: .container, container: supervisor,
                               commandLine: entry.commandLine)
            }
            return Process(pid: entry.pid, startTime: entry.startTime, role: .other, container: nil, commandLine: entry.commandLine)
        }
    }

    // MARK: Files

    /// Regular files of at least 1 MiB with a btrfs superblock, not descending into mounts.
    static func poolFiles(under directory: String, depth: Int) -> [String] {
        guard depth > 0, let entries = try? Files.list(directory) else { return [] }
        var found: [String] = []
        for entry in entries {
            let path = "\(directory)/\(entry)"
            var st = stat()
            guard lstat(path, &st) == 0 else { continue }
            if (st.st_mode & S_IFMT) == S_IFDIR {
                var parent = stat()
                if stat(directory, &parent) == 0, parent.st_dev == st.st_dev { found += poolFiles(under: path, depth: depth - 1) }
            } else if (st.st_mode & S_IFMT) == S_IFREG, st.st_size >= 1 << 20, hasBtrfsSuperblock(path) {
                found.append(path)
            }
        }
        return found
    }

    static func hasBtrfsSuperblock(_ path: String) -> Bool {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var magic = [UInt8](repeating: 0, count: 8)
        // The primary superblock is at 64 KiB; its magic "_BHRfS_M" at offset 64 in it.
        return pread(fd, &magic, 8, 65536 + 64) == 8 && magic == Array("_BHRfS_M".utf8)
    }

    /// Every path below `directory` (relative to `base` when given), depth first.
    static func list(_ directory: String, relativeTo base: String?, directoriesOnly: Bool = false) -> [String] {
        var out: [String] = []
        for entry in ((try? Files.list(directory)) ?? []).sorted() {
            let path = "\(directory)/\(entry)"
            let isDirectory = Files.isDirectory(path) && !isSymbolicLink(path)
            if isDirectory || !directoriesOnly {
                out.append(base.map { String(path.dropFirst($0.count + 1)) } ?? path)
            }
            if isDirectory { out += list(path, relativeTo: base, directoriesOnly: directoriesOnly) }
        }
        return out
    }

    static func isSymbolicLink(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFLNK
    }
}

extension Inventory.Scope {
    func matchesName(_ name: String) -> Bool { prefixes.contains { name.hasPrefix($0) } }
}

/// One process as /proc shows it.
public struct ProcEntry: Sendable {
    public var pid: Int32
    public var parent: Int32
    public var state: Character
    /// Field 22 of /proc/PID/stat: with the pid, the process's identity.
    public var startTime: UInt64
    public var commandLine: String
    /// Where /proc/PID/exe points ("" when unreadable).
    public var executable: String
    /// The inode of /proc/PID/ns/pid.
    public var pidNamespace: UInt64?

    /// A live process (zombies are not).
    public static func read(_ pid: Int32) -> ProcEntry? {
        guard let stat = try? Files.readText("/proc/\(pid)/stat"), let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 19, let state = fields[0].first, state != "Z", state != "X",
              let parent = Int32(fields[1]), let start = UInt64(fields[19]) else { return nil }
        let raw = (try? Files.read("/proc/\(pid)/cmdline", limit: 65536)) ?? []
        var commandLine = String(decoding: raw.map { $0 == 0 ? 32 : $0 }, as: UTF8.self)
        while commandLine.hasSuffix(" ") { commandLine.removeLast() }
        return ProcEntry(pid: pid, parent: parent, state: state, startTime: start, commandLine: commandLine,
                         executable: readLink("/proc/\(pid)/exe") ?? "", pidNamespace: namespace(String(pid), "pid"))
    }

    /// Every live process but this one.
    public static func all() -> [ProcEntry] {
        let me = getpid()
        return ((try? Files.list("/proc")) ?? []).compactMap(Int32.init).filter { $0 != me }.compactMap(read)
    }

    /// The inode of /proc/PID/ns/KIND ("self" for this process).
    public static func namespace(_ pid: String, _ kind: String) -> UInt64? {
        guard let link = readLink("/proc/\(pid)/ns/\(kind)"), let open = link.firstIndex(of: "["),
              let close = link.firstIndex(of: "]") else { return nil }
        return UInt64(link[link.index(after: open)..<close])
    }

    static func readLink(_ path: String) -> String? {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink(path, &buffer, buffer.count - 1)
        guard n >= 0 else { return nil }
        return String(decoding: buffer[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Processes holding something under `path` open — a descriptor, their working
    /// directory or root — as "pid P (command): fd N → target"; why a mount is busy.
    public static func holders(of path: String) -> [String] {
        var found: [String] = []
        for entry in all() + [read(getpid())].compactMap({ $0 }) {
            var links: [(String, String)] = []
            for fd in (try? Files.list("/proc/\(entry.pid)/fd")) ?? [] {
                if let target = readLink("/proc/\(entry.pid)/fd/\(fd)") { links.append(("fd \(fd)", target)) }
            }
            for what in ["cwd", "root"] {
                if let target = readLink("/proc/\(entry.pid)/\(what)") { links.append((what, target)) }
            }
            for (what, target) in links where target == path || target.hasPrefix(path + "/") {
                found.append("pid \(entry.pid) (\(entry.commandLine)): \(what) → \(target)")
            }
        }
        return found
    }

    /// The process is still the one this entry describes (same pid, same start time).
    public var isAlive: Bool { ProcEntry.read(pid)?.startTime == startTime }
}
