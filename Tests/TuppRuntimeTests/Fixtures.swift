import Glibc
import Testing
import TuppManifest
import TuppRuntime
import TuppSystem
import TuppTestSupport

/// A busybox root in a temporary directory (not btrfs: storage is another module's
/// job) plus a runtime directory, removed — after stopping the container — by `cleanup`.
final class ContainerFixture {
    static let applets = ["sh", "ls", "cat", "ps", "hostname", "sleep", "mount", "mknod", "echo", "true",
                          "false", "grep", "stty", "tty", "env", "kill", "readlink", "pwd", "wc", "head", "tail", "seq",
                          "id", "dd", "setsid", "touch", "mkdir", "stat"]

    let temp: TemporaryDirectory
    let root: String
    let directory: String
    let name: String
    let runtime = Runtime()
    /// The cgroup parent of this fixture's container: one per test, so a leftover names
    /// the test that left it.
    let cgroupParent: String

    init(_ label: String = #function) throws {
        temp = try TemporaryDirectory("tupp-runtime")
        name = uniquePrefix(label)
        cgroupParent = "tupp-test-\(name)"
        root = temp.path + "/root"
        directory = temp.path + "/run"
        for dir in ["bin", "proc", "sys", "dev", "tmp", "etc", "root"] {
            try Files.createDirectory("\(root)/\(dir)")
        }
        guard let busybox = try Files.read(Self.busyboxPath) else {
            throw SystemError.failure("read", Self.busyboxPath, "busybox-static is not installed")
        }
        try Files.writeAtomically("\(root)/bin/busybox", busybox, mode: 0o755)
        for applet in Self.applets {
            try Errno.check("symlink", "\(root)/bin/\(applet)") { symlink("busybox", "\(root)/bin/\(applet)") }
        }
    }

    static var busyboxPath: String { access("/bin/busybox", X_OK) == 0 ? "/bin/busybox" : "/usr/bin/busybox" }

    /// A container of this fixture, in its own cgroup (this host's hierarchies, or
    /// `layout`) with tupp's default seccomp profile.
    func config(_ command: [String] = ["sleep", "100000"], namespaces: Set<Namespace> = Set(Namespace.allCases),
                restart: RestartPolicy = .no, stopTimeout: Double = 2, logLimitBytes: Int = 1 << 20,
                layout: CgroupLayout? = nil) throws -> ContainerConfig {
        let placement = CgroupPlacement(layout: try layout ?? CgroupLayout.host(), parent: cgroupParent)
        return ContainerConfig(name: name, rootfs: root, namespaces: namespaces, mounts: [.tmpfs(at: "/tmp", options: ["size=1m"])],
                               command: command, restart: restart, stopTimeout: stopTimeout, logLimitBytes: logLimitBytes,
                               cgroup: placement)
    }

    /// Stops whatever runs (also after a failed expectation) and removes the container's
    /// cgroup, checks from outside that nothing of the container is left — no process
    /// naming or descending from the test's directory or sharing a container's pid
    /// namespace, no mount on or from it, no cgroup of its parent — then removes every file
    /// (and, after a reported leak, what leaked).
    func cleanup(sourceLocation: SourceLocation = #_sourceLocation) {
        try? runtime.stop(directory: directory, timeout: 1)
        try? runtime.remove(directory: directory)
        let left = Inventory.take(Inventory.Scope(prefixes: [cgroupParent], directories: [temp.path]))
        #expect(left.isEmpty, "left behind after stop:\n\(left)", sourceLocation: sourceLocation)
        for process in left.processes where process.isLive { kill(process.pid, SIGKILL) }
        for mount in left.mounts.reversed() { umount2(mount.mountPoint, Int32(MNT_DETACH)) }
        temp.remove()
    }

    /// This fixture's cgroup directories that exist, in every hierarchy (v1 and v2),
    /// parent included: empty after cleanup.
    func cgroupLeftovers() -> [String] {
        let roots = ((try? MountInfo.read()) ?? []).filter { $0.fsType == "cgroup" || $0.fsType == "cgroup2" }.map(\.mountPoint)
        return roots.map { "\($0)/\(cgroupParent)" }.filter { Files.exists($0) }
    }

    /// Writes /etc/passwd and /etc/group into the root.
    func writeUsers(passwd: String, group: String) throws {
        try Files.writeAtomically("\(root)/etc/passwd", text: passwd, mode: 0o644)
        try Files.writeAtomically("\(root)/etc/group", text: group, mode: 0o644)
    }

    /// Runs `command` inside the container through `tupp-shim exec`; its stderr joins
    /// stdout (assertions read `output`).
    func exec(_ command: [String], env: [String: String] = [:], workdir: String? = nil) throws -> Output {
        try Spawn.run(runtime.execCommand(directory: directory, command: command, env: env, workdir: workdir),
                      stderrToStdout: true)
    }

    /// Follows the container's log (`logs --follow`) into a file until the supervisor is
    /// gone; what arrived there.
    func followLog() throws -> [UInt8] {
        let copy = temp.path + "/followed"
        let out = try FileDescriptor.open(copy, O_WRONLY | O_CREAT | O_TRUNC, mode: 0o600)
        try runtime.logs(directory: directory, follow: true, to: out.rawValue)
        return try Files.read(copy) ?? []
    }

    /// Host mounts on or from this test's directory. (Not a before/after comparison of
    /// the whole table: other tests on the machine mount and unmount concurrently.)
    func hostMountsOfThisTest() throws -> [MountInfo] {
        try MountInfo.read().filter { $0.mountPoint.hasPrefix(temp.path) || $0.root.hasPrefix(temp.path) }
    }

    func sh(_ script: String) throws -> Output { try exec(["sh", "-c", script]) }
}

extension Inventory.Process {
    var isLive: Bool { ProcEntry.read(pid)?.startTime == startTime }
}

/// Polls `condition` every 20 ms for up to `timeout` seconds.
func waitUntil(_ timeout: Double = 5, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Monotonic.nanoseconds() + UInt64(timeout * 1e9)
    while Monotonic.nanoseconds() < deadline {
        if try condition() { return true }
        usleep(20_000)
    }
    return try condition()
}

func hostHostname() -> String {
    var buffer = [CChar](repeating: 0, count: 256)
    gethostname(&buffer, 255)
    return String(decoding: buffer.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// Live pids on the host (for before/after comparisons).
func hostPIDs() throws -> Set<Int32> {
    Set(try Files.list("/proc").compactMap { Int32($0) })
}


/// The SystemError `body` throws; nil (and a recorded issue) when it throws nothing.
/// Not `#expect(throws:)`: that renders the error, and rendering an errno currently traps
/// in TuppSystem (Errno.names has duplicate keys: EWOULDBLOCK == EAGAIN on Linux).
func thrownError(sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void) -> SystemError? {
    do {
        try body()
    } catch let error as SystemError {
        return error
    } catch {
        Issue.record("expected a SystemError, got \(type(of: error))", sourceLocation: sourceLocation)
        return nil
    }
    Issue.record("expected an error, but the call succeeded", sourceLocation: sourceLocation)
    return nil
}

/// The kernel's word on a process's cgroups: /proc/PID/cgroup, turned into directories
/// of this host's hierarchies. `controller` nil: the unified (v2) hierarchy.
func kernelCgroupDirectory(of pid: Int32, controller: String?) throws -> String? {
    guard let text = try Files.readText("/proc/\(pid)/cgroup") else { return nil }
    let mounts = try MountInfo.read()
    for line in text.split(separator: "\n") {
        let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false).map(String.init)
        guard fields.count == 3 else { continue }
        let controllers = fields[1].split(separator: ",").map(String.init)
        if let controller {
            guard controllers.contains(controller),
                  let mount = mounts.first(where: { $0.fsType == "cgroup" && $0.superOptions.contains(controller) }) else { continue }
            return mount.mountPoint + fields[2]
        } else if fields[1].isEmpty, let mount = mounts.first(where: { $0.fsType == "cgroup2" }) {
            return mount.mountPoint + (fields[2] == "/" ? "" : fields[2])
        }
    }
    return nil
}

/// A file of a cgroup directory, read on the host.
func cgroupFile(_ directory: String?, _ file: String) throws -> String {
    guard let directory else { throw SystemError.failure("read", file, "no cgroup directory") }
    guard let text = try Files.readText("\(directory)/\(file)") else { throw SystemError("read", "\(directory)/\(file)", errno: ENOENT) }
    return text.trimmingCharacters()
}

/// The value of KEY in a "KEY VALUE" file (memory.oom_control, pids.events, memory.events).
func cgroupField(_ key: String, _ text: String) -> Int? {
    text.split(separator: "\n").compactMap { line -> Int? in
        let words = line.split(separator: " ")
        return words.count == 2 && words[0] == key ? Int(words[1]) : nil
    }.first
}

/// The "Name:" line of /proc/PID/status, without the name.
func procStatus(_ pid: Int32, _ name: String) throws -> String? {
    try Files.readText("/proc/\(pid)/status")?.split(separator: "\n")
        .first { $0.hasPrefix(name + ":") }.map { String($0.dropFirst(name.count + 1)).trimmingCharacters() }
}

/// Pids whose command line is exactly `argv`, among `pids`.
func processes(among pids: [Int32], commandLine argv: [String]) -> [Int32] {
    pids.filter { pid in
        guard let bytes = (try? Files.read("/proc/\(pid)/cmdline")) ?? nil else { return false }
        return bytes.split(separator: 0).map { String(decoding: $0, as: UTF8.self) } == argv
    }
}

/// One write(2) to a cgroup file (they take no temp file and rename).
func writeCgroupFile(_ path: String, _ text: String) throws {
    let fd = try FileDescriptor.open(path, O_WRONLY)
    try fd.writeAll(Array(text.utf8), describedAs: path)
}
