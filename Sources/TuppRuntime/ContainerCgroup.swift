import Glibc
import TuppBase
import TuppManifest
import TuppSystem

/// Where containers' cgroups go: a parent directory per installation in every hierarchy
/// ("tupp-<installation id>"), one directory per container below it. tupp creates both
/// and removes both (the parent when its last container goes); it never writes to a
/// cgroup it did not create, except to enable controllers for its parent on cgroup v2.
public struct CgroupPlacement: Sendable, Equatable {
    public var layout: CgroupLayout
    /// The per-installation parent's name.
    public var parent: String

    public init(layout: CgroupLayout, parent: String) {
        self.layout = layout
        self.parent = parent
    }

    /// This host's hierarchies, parent "tupp-<installation>".
    public static func installation(_ installation: String) throws(SystemError) -> CgroupPlacement {
        CgroupPlacement(layout: try CgroupLayout.host(), parent: "tupp-\(installation)")
    }

    /// The hierarchies a container joins: all of v2; on v1 those whose controllers tupp
    /// uses here — blkio only where an I/O weight takes effect (each hierarchy joined
    /// costs a mkdir, a migration and an rmdir per container).
    public var hierarchies: [CgroupLayout.Hierarchy] {
        guard layout.version == .v1, layout.ioWeightFile == nil else { return layout.hierarchies }
        return layout.hierarchies.filter { $0.controllers != ["blkio"] }
    }

    /// The cgroup of the container `name`.
    public func cgroup(for name: String) -> ContainerCgroup {
        let hierarchies = hierarchies
        let directories = hierarchies.map { "\($0.mountPoint)/\(parent)/\(name)" }
        var kill = directories.first, oom: String?
        switch layout.version {
        case .v1:
            for (hierarchy, directory) in zip(hierarchies, directories) {
                if hierarchy.controllers.contains("freezer") { kill = directory }
                if hierarchy.controllers.contains("memory") { oom = "\(directory)/memory.oom_control" }
            }
        case .v2:
            if layout.controllers.contains("memory"), let directory = directories.first { oom = "\(directory)/memory.events" }
        }
        return ContainerCgroup(directories: directories, killDirectory: kill, oomFile: oom)
    }
}

/// One container's cgroup: its directory in each hierarchy (one on v2), the directory
/// stop kills through, and the file counting OOM kills. Files are found by name in the
/// directories — v1 and v2 name theirs differently — so the operations below work the
/// same on both.
public struct ContainerCgroup: Sendable, Equatable {
    public var directories: [String]
    /// v2: the directory (cgroup.kill); v1: the freezer's.
    public var killDirectory: String?
    /// memory.oom_control (v1) or memory.events (v2); nil without a memory controller.
    public var oomFile: String?

    public init(directories: [String], killDirectory: String?, oomFile: String?) {
        self.directories = directories
        self.killDirectory = killDirectory
        self.oomFile = oomFile
    }

    // MARK: Create and configure

    /// Creates the directories (a leftover of a crashed run is emptied and replaced, so
    /// nothing of it — processes, device programs — carries over), then writes the limits
    /// and the device policy. Called before the container's init exists.
    public func create(limits: ResourceLimits, devices: [DeviceRule], layout: CgroupLayout) throws(SystemError) {
        for directory in directories where Files.exists(directory) {
            try remove(directory: directory, removingParent: false)
        }
        for directory in directories {
            let parent = Paths.dirname(directory)
            if mkdir(parent, 0o755) != 0 && errno != EEXIST { throw SystemError("create cgroup", parent) }
            try Errno.check("create cgroup", directory) { mkdir(directory, 0o755) }
        }
        if layout.version == .v2, let directory = directories.first {
            try enableControllers(for: directory, layout: layout)
        }
        // A new cgroup starts unlimited, at the default weights: only declared limits to write.
        _ = try apply(limits: limits, layout: layout, declaredOnly: true)
        switch layout.version {
        case .v1:
            guard let devicesDirectory = directory(containing: "devices.allow") else {
                throw SystemError.failure("apply device policy", directories.joined(separator: ", "), "the v1 devices controller is not mounted")
            }
            for write in DevicePolicy.v1Writes(devices) { try Files.writeCgroup("\(devicesDirectory)/\(write.file)", write.value) }
        case .v2:
            if let directory = directories.first { try DevicePolicy.attachProgram(devices, to: directory) }
        }
    }

    /// Delegates the cgroup to the container's root (`delegateCgroup`, cgroup v2 only), as
    /// systemd's Delegate= does: the directory and the files that manage its subtree —
    /// cgroup.procs, cgroup.threads, cgroup.subtree_control — become `owner`'s (the host ids
    /// of container root), so it creates child cgroups and moves its processes among them.
    /// The limit files stay host root's: the container cannot raise its own limits.
    public func delegate(to owner: (uid: UInt32, gid: UInt32)) throws(SystemError) {
        guard directories.count == 1, let directory = directories.first, Files.exists("\(directory)/cgroup.controllers") else {
            throw SystemError.failure("delegate cgroup", directories.joined(separator: ", "), "delegation needs cgroup v2 (one unified hierarchy)")
        }
        for path in [directory] + ["cgroup.procs", "cgroup.threads", "cgroup.subtree_control"].map({ "\(directory)/\($0)" }) {
            try Errno.check("chown", "\(path) to \(owner.uid):\(owner.gid)") { chown(path, owner.uid, owner.gid) }
        }
    }

    /// v2 only offers a controller to a cgroup whose parents enable it in their
    /// cgroup.subtree_control: enables what the limits need, from the root down.
    private func enableControllers(for directory: String, layout: CgroupLayout) throws(SystemError) {
        let wanted = layout.controllers.intersection(["memory", "pids", "cpu", "io"])
        guard !wanted.isEmpty, let root = layout.hierarchies.first?.mountPoint else { return }
        var ancestors: [String] = []
        var path = Paths.dirname(directory)
        while path.hasPrefix(root) && path.count >= root.count {
            ancestors.insert(path, at: 0)
            if path == root { break }
            path = Paths.dirname(path)
        }
        for ancestor in ancestors {
            let enabled = Set(((try Files.readText("\(ancestor)/cgroup.subtree_control")) ?? "").split(whereSeparator: \.isWhitespace).map(String.init))
            let missing = wanted.subtracting(enabled).sorted()
            if missing.isEmpty { continue }
            try Files.writeCgroup("\(ancestor)/cgroup.subtree_control", missing.map { "+\($0)" }.joined(separator: " "))
        }
    }

    /// Writes every limit `layout` can enforce (unset ones at their unlimited value) and
    /// returns what was written. A memory limit below what the container uses now is not
    /// written (the kernel would reclaim or OOM-kill to reach it): it is returned as a
    /// refusal, and the other limits are applied.
    @discardableResult
    public func apply(limits: ResourceLimits, layout: CgroupLayout, declaredOnly: Bool = false) throws(SystemError) -> ResourceUpdate {
        var settings = CgroupFiles.settings(for: limits, on: layout)
        if declaredOnly {
            var kinds = Set(limits.declared)
            if kinds.contains(.memory) { kinds.insert(.memorySwap) }  // Docker's implied swap limit
            settings.removeAll { !kinds.contains($0.kind) }
        }
        var refused: [ResourceRefusal] = []
        if let memory = limits.memory, let used = usage().memory, memory < used {
            refused.append(ResourceRefusal(kind: .memory, reason: "the container uses \(used) bytes now, more than the new limit of \(memory); not lowered (stop it or free memory first)"))
            settings.removeAll { $0.kind == .memory || $0.kind == .memorySwap }
        }
        let currentSwap = read("memory.memsw.limit_in_bytes").flatMap { Int(CgroupFiles.normalize(file: "memory.memsw.limit_in_bytes", text: $0)) }
        for setting in CgroupFiles.orderMemory(settings, currentSwapLimit: currentSwap) {
            guard let directory = directory(containing: setting.file) else {
                throw SystemError.failure("set \(setting.kind.rawValue) limit", "\(setting.file) in \(directories.joined(separator: ", "))", "no such file in the container's cgroup")
            }
            try Files.writeCgroup("\(directory)/\(setting.file)", setting.value)
        }
        return ResourceUpdate(written: settings, refused: refused)
    }

    // MARK: Observe

    /// The text of `file` in whichever directory has it; nil when none does.
    public func read(_ file: String) -> String? {
        guard let directory = directory(containing: file) else { return nil }
        return try? Files.readText("\(directory)/\(file)", limit: 1 << 16)
    }

    /// The current text of every file `settings` names (for `CgroupFiles.drift`).
    public func read(_ settings: [CgroupFiles.Setting]) -> [String: String] {
        var out: [String: String] = [:]
        for setting in settings { out[setting.file] = read(setting.file) }
        return out
    }

    public func usage() -> ResourceUsage {
        let memory = (read("memory.current") ?? read("memory.usage_in_bytes")).flatMap(CgroupFiles.number)
        let pids = read("pids.current").flatMap(CgroupFiles.number)
        var cpu: UInt64?
        if let ns = read("cpuacct.usage").flatMap(CgroupFiles.number) {
            cpu = UInt64(ns)
        } else if let stat = read("cpu.stat"), let us = CgroupFiles.field("usage_usec", in: stat) {
            cpu = UInt64(us) * 1000
        }
        return ResourceUsage(memory: memory, pids: pids, cpuNanoseconds: cpu)
    }

    /// How many processes of the container the kernel's OOM killer killed since the
    /// cgroup was created; nil without a memory controller.
    public func oomKills() -> Int? {
        guard let oomFile, let text = try? Files.readText(oomFile, limit: 1 << 16) else { return nil }
        return CgroupFiles.field("oom_kill", in: text)
    }

    /// The pids in the cgroup (as the host's pid namespace numbers them).
    public func processes() -> [Int32] {
        guard let directory = killDirectory ?? directories.first else { return [] }
        // With a delegated cgroup the container's processes may live in child cgroups.
        return Self.subtree(of: directory).flatMap { dir -> [Int32] in
            guard let text = try? Files.readText("\(dir)/cgroup.procs", limit: 1 << 22) else { return [] }
            return text.split(separator: "\n").compactMap { Int32($0) }
        }
    }

    /// `directory` and the cgroups below it, deepest first.
    static func subtree(of directory: String) -> [String] {
        var out: [String] = []
        for name in (try? Files.list(directory)) ?? [] where Files.isDirectory("\(directory)/\(name)") {
            out += subtree(of: "\(directory)/\(name)")
        }
        return out + [directory]
    }

    /// The directory in which `file` exists.
    func directory(containing file: String) -> String? {
        directories.first { Files.exists("\($0)/\(file)") }
    }

    // MARK: Kill and remove

    /// SIGKILL to every process in the cgroup, also one that left the init's process tree
    /// (setsid, double fork): v2 cgroup.kill; v1 freeze, kill each, thaw. Returns once the
    /// cgroup is empty, or throws after `timeout` seconds.
    public func kill(timeout: Double = 5) throws(SystemError) {
        guard let directory = killDirectory ?? directories.first, Files.exists(directory) else { return }
        let deadline = Monotonic.nanoseconds() + UInt64(timeout * 1e9)
        var round = 0
        while !processes().isEmpty {
            if Monotonic.nanoseconds() > deadline {
                throw SystemError.failure("kill the processes of cgroup", directory, "\(processes().count) still there after \(timeout) s")
            }
            if round % 20 == 0 {
                if Files.exists("\(directory)/cgroup.kill") {
                    try Files.writeCgroup("\(directory)/cgroup.kill", "1")
                } else {
                    try killFrozen(directory)
                }
            }
            round += 1
            usleep(5_000)  // killed processes leave the cgroup once they have exited
        }
    }

    private func killFrozen(_ freezer: String) throws(SystemError) {
        let state = "\(freezer)/freezer.state"
        let frozen = Files.exists(state)
        if frozen {
            try Files.writeCgroup(state, "FROZEN")
            for _ in 0..<200 where !(((try? Files.readText(state)) ?? "").hasPrefix("FROZEN")) { usleep(1_000) }
        }
        // Frozen, the listed processes can neither exit nor fork until the thaw: their
        // pids cannot be reused in between, so signalling by number is safe.
        for pid in processes() where pid > 1 { Glibc.kill(pid, SIGKILL) }
        if frozen { try Files.writeCgroup(state, "THAWED") }
    }

    /// Removes the container's directories — killing what still runs in them — and the
    /// installation's parent directories once no container is left in them.
    public func remove() throws(SystemError) {
        for directory in directories where Files.exists(directory) {
            try remove(directory: directory, removingParent: true)
        }
    }

    private func remove(directory: String, removingParent: Bool) throws(SystemError) {
        // Child cgroups a delegated container made go first (rmdir refuses a parent).
        for child in Self.subtree(of: directory).dropLast() where rmdir(child) != 0 && errno != ENOENT {
            let single = ContainerCgroup(directories: [directory], killDirectory: directory, oomFile: nil)
            try single.kill(timeout: 5)
            try Errno.check("remove cgroup", child) { rmdir(child) }
        }
        let deadline = Monotonic.nanoseconds() + 5_000_000_000
        while rmdir(directory) != 0 {
            let code = errno
            if code == ENOENT { break }
            guard code == EBUSY || code == EINTR, Monotonic.nanoseconds() < deadline else {
                throw SystemError("remove cgroup", directory, errno: code)
            }
            let single = ContainerCgroup(directories: [directory], killDirectory: directory, oomFile: nil)
            // Only v1 freezers can freeze; elsewhere the listed processes are killed directly.
            try single.kill(timeout: 5)
            usleep(2_000)
        }
        if removingParent {
            // Kept while other containers' cgroups are in it (the kernel says EBUSY, or
            // ENOTEMPTY). With none left, EBUSY is a child just removed that is still going
            // offline — v1 confirms a cgroup's death after an RCU grace period — and clears
            // within milliseconds: asked again, else the installation's directory stayed.
            let parent = Paths.dirname(directory)
            let deadline = Monotonic.nanoseconds() + 1_000_000_000
            while rmdir(parent) != 0 {
                let code = errno
                if code == ENOTEMPTY || code == ENOENT { break }
                guard code == EBUSY || code == EINTR else { throw SystemError("remove cgroup", parent, errno: code) }
                // A directory's link count is 2 + its subdirectories (kernfs): one stat, not a
                // walk of every other container's cgroup on each removal.
                if ((try? Files.status(parent)) ?? nil).map({ $0.st_nlink > 2 }) ?? true || Monotonic.nanoseconds() > deadline { break }
                usleep(2_000)
            }
        }
    }
}

/// What `apply(limits:)` did.
public struct ResourceUpdate: Sendable, Equatable {
    /// The files written, in order.
    public var written: [CgroupFiles.Setting]
    /// Limits not applied, with why (a memory limit below the current usage).
    public var refused: [ResourceRefusal]
}

extension Files {
    /// One write(2) of `text` to a cgroup file: the kernel takes each write as one value
    /// and answers an invalid one with an errno (EINVAL, EBUSY), which is reported.
    static func writeCgroup(_ path: String, _ text: String) throws(SystemError) {
        let fd = try FileDescriptor.open(path, O_WRONLY)
        let bytes = Array(text.utf8)
        let n = bytes.withUnsafeBytes { Glibc.write(fd.rawValue, $0.baseAddress, $0.count) }
        if n != bytes.count {
            throw SystemError("write \"\(text)\" to", path, errno: n < 0 ? errno : EIO)
        }
    }
}
