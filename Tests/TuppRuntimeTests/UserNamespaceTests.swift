import Glibc
import Testing
import TuppBase
import TuppFacts
import TuppManifest
import TuppRuntime
import TuppSystem
import TuppTestSupport

/// `userns: auto` in the runtime: a container whose root is an unprivileged host user,
/// witnessed from the host (/proc, stat, ps, nsenter) and from inside (tupp-shim exec).
@Suite(.serialized)
struct UserNamespaceTests {
    /// A block of 65,536 host ids of tupp's default range, different for each test.
    static func mapping(_ label: String = #function) -> IDMapping {
        let block = StableHash.fnv1a(label + String(getpid())) % 4000
        let base = 0x7000_0000 + block * 65536
        return .block(uid: base, gid: base)
    }

    /// The fixture's container with its own user namespace.
    func start(_ fixture: ContainerFixture, _ mapping: IDMapping?, configure: (inout ContainerConfig) -> Void = { _ in }) throws -> ProcessObservation {
        var config = try fixture.config()
        config.userNamespace = mapping
        configure(&config)
        return try fixture.runtime.start(config, directory: fixture.directory)
    }

    func procField(_ pid: Int32, _ name: String) throws -> [String] {
        (try procStatus(pid, name) ?? "").split(whereSeparator: \.isWhitespace).map(String.init)
    }

    @Test func rootInsideIsAnUnprivilegedHostUserAndNothingIsChowned() throws {
        guard try Host.require(.root, .command(ContainerFixture.busyboxPath), .command("/bin/ps")) else { return }
        let fixture = try ContainerFixture()
        defer { fixture.cleanup() }
        let mapping = Self.mapping()
        let base = mapping.uids[0].outside
        let busyboxBefore = try #require(try Files.status(fixture.root + "/bin/busybox"))
        let binBefore = try #require(try Files.status(fixture.root + "/bin"))
        let observation = try start(fixture, mapping)

        // Inside: root of its own user namespace, mapped to the block.
        #expect(try fixture.exec(["cat", "/proc/self/uid_map"]).output.split(whereSeparator: \.isWhitespace) == ["0", "\(base)", "65536"])
        #expect(try fixture.exec(["cat", "/proc/self/gid_map"]).output.split(whereSeparator: \.isWhitespace) == ["0", "\(base)", "65536"])
        #expect(try fixture.exec(["id", "-u"]).output == "0\n")
        #expect(try fixture.exec(["id", "-g"]).output == "0\n")
        // Host: the init runs as the block's first id, in a user namespace of its own.
        #expect(try procField(observation.initPID, "Uid") == Array(repeating: "\(base)", count: 4))
        #expect(try procField(observation.initPID, "Gid") == Array(repeating: "\(base)", count: 4))
        #expect(try Spawn.run(["/bin/ps", "-o", "uid=", "-p", String(observation.initPID)]).stdout.trimmingCharacters() == "\(base)")
        #expect(namespaceInode(pid: String(observation.initPID), kind: "user") != namespaceInode(pid: "self", kind: "user"))
        #expect(observation.userNamespace == mapping, "observed from /proc/PID/uid_map")

        // The image's files appear owned by 0; what root creates inside is stored as 0.
        #expect(try fixture.exec(["stat", "-c", "%u:%g", "/bin/busybox"]).output == "0:0\n")
        #expect(try fixture.sh("touch /created-inside && mkdir /dir-inside && stat -c %u:%g /created-inside /dir-inside").output == "0:0\n0:0\n")
        for path in ["/created-inside", "/dir-inside"] {
            let onDisk = try #require(try Files.status(fixture.root + path))
            #expect(onDisk.st_uid == 0 && onDisk.st_gid == 0, "\(path) stored unshifted")
        }
        // A user of the container is the block's id + its uid on the host, and its own uid on disk.
        #expect(try fixture.sh("touch /as-1000 && chown 1000:1001 /as-1000 && stat -c %u:%g /as-1000").output == "1000:1001\n")
        let chowned = try #require(try Files.status(fixture.root + "/as-1000"))
        #expect(chowned.st_uid == 1000 && chowned.st_gid == 1001)
        // No chown happened to the image's files: ownership and change time as before.
        let busyboxAfter = try #require(try Files.status(fixture.root + "/bin/busybox"))
        let binAfter = try #require(try Files.status(fixture.root + "/bin"))
        #expect(busyboxAfter.st_uid == 0 && busyboxAfter.st_ctim.tv_sec == busyboxBefore.st_ctim.tv_sec && busyboxAfter.st_ctim.tv_nsec == busyboxBefore.st_ctim.tv_nsec)
        #expect(binAfter.st_ctim.tv_sec == binBefore.st_ctim.tv_sec && binAfter.st_ctim.tv_nsec == binBefore.st_ctim.tv_nsec)

        // The rootfs is an idmapped mount; the host's mount table has nothing of it.
        let mounts = MountInfo.parse(try fixture.exec(["cat", "/proc/self/mountinfo"]).output)
        #expect(mounts.first { $0.mountPoint == "/" }?.options.contains("idmapped") == true, "\(mounts.map(\.options))")
        #expect(try fixture.hostMountsOfThisTest().isEmpty)
        // /dev's nodes belong to container root, made by tupp (mknod is not allowed inside).
        #expect(try fixture.exec(["stat", "-c", "%u:%g %a %t,%T", "/dev/null"]).output == "0:0 666 1,3\n")
        #expect(try fixture.exec(["mknod", "/tmp/null2", "c", "1", "3"]).status != 0)
        // The netns's ping range is the container's whole gid range, in its ids.
        #expect(try fixture.exec(["cat", "/proc/sys/net/ipv4/ping_group_range"]).output == "0\t65535\n")
    }

    @Test func capabilitiesSeccompAndTheCgroupKeepWorking() throws {
        guard try Host.require(.root, .command(ContainerFixture.busyboxPath)) else { return }
        let fixture = try ContainerFixture()
        defer {
            fixture.cleanup()
            #expect(fixture.cgroupLeftovers().isEmpty)
        }
        let observation = try start(fixture, Self.mapping())
        let pid = observation.initPID
        #expect(try procField(pid, "CapEff") == ["00000000000005fb"])
        #expect(try procField(pid, "CapBnd") == ["00000000000005fb"])
        #expect(try procField(pid, "NoNewPrivs") == ["1"])
        #expect(try procField(pid, "Seccomp") == ["2"])
        #expect(try fixture.sh("grep -E '^(CapEff|Seccomp):' /proc/self/status").output == "CapEff:\t00000000000005fb\nSeccomp:\t2\n")
        // The init is in the container's cgroup, and stop kills through it.
        let cgroup = try #require(fixture.runtime.cgroup(directory: fixture.directory))
        let layout = try CgroupLayout.host()
        let controller = layout.version == .v1 ? "freezer" : nil
        let directory = try kernelCgroupDirectory(of: pid, controller: controller)
        #expect(directory.map { cgroup.directories.contains($0) } == true, "\(directory ?? "none") in \(cgroup.directories)")
        try fixture.runtime.stop(directory: fixture.directory, timeout: 1)
        #expect(!isProcessAlive(pid))
    }

    @Test func aRestartRunsInTheSameUserNamespace() throws {
        guard try Host.require(.root, .command(ContainerFixture.busyboxPath)) else { return }
        let fixture = try ContainerFixture()
        defer { fixture.cleanup() }
        var config = try fixture.config(["sh", "-c", "sleep 0.3; exit 3"], restart: .always)
        config.userNamespace = Self.mapping()
        let first = try fixture.runtime.start(config, directory: fixture.directory)
        let userns = namespaceInode(pid: String(first.initPID), kind: "user")
        var again = first
        #expect(waitUntil(10) {
            again = fixture.runtime.observe(directory: fixture.directory)
            return again.restarts >= 1 && again.isRunning
        })
        #expect(again.initPID != first.initPID)
        #expect(namespaceInode(pid: String(again.initPID), kind: "user") == userns)
        #expect(again.userNamespace == config.userNamespace)
    }

    @Test func aLeakedHostFileCannotBeWritten() throws {
        guard try Host.require(.root, .command(ContainerFixture.busyboxPath)) else { return }
        let inject = try Probe.path("inject")
        // The control first: without a user namespace, container root writes the host's
        // root-owned file — the check below would notice a missing user namespace.
        for mapping in [nil, Self.mapping()] {
            let fixture = try ContainerFixture()
            defer { fixture.cleanup() }
            let leak = fixture.temp.path + "/leak"
            try Files.createDirectory(leak, mode: 0o755)
            try Files.writeAtomically(leak + "/rootfile", text: "host's\n", mode: 0o644)
            try Files.writeAtomically(leak + "/secret", text: "host's secret\n", mode: 0o600)
            try Files.createDirectory(fixture.root + "/leak")
            let observation = try start(fixture, mapping)
            // A plain bind of the host directory into the container's mount namespace.
            let injected = try Spawn.run([inject, String(observation.initPID), leak, "/leak"])
            #expect(injected.stdout == "inject=ok\n", "\(injected)")
            #expect(try fixture.exec(["cat", "/leak/rootfile"]).output == "host's\n", "the leak is visible")
            let write = try fixture.sh("echo written >> /leak/rootfile")
            let secret = try fixture.exec(["cat", "/leak/secret"])
            if mapping == nil {
                #expect(write.status == 0 && secret.status == 0, "host root inside: \(write) \(secret)")
            } else {
                #expect(write.status != 0 && write.output.contains("Permission denied"), "\(write)")
                #expect(secret.status != 0 && secret.output.contains("Permission denied"), "\(secret)")
                // Unmapped host root shows as the overflow id.
                #expect(try fixture.exec(["stat", "-c", "%u", "/leak/rootfile"]).output == "65534\n")
                #expect(try Files.readText(leak + "/rootfile") == "host's\n")
            }
        }
    }

    @Test func aProcessEscapingTheMountNamespaceIsAnUnprivilegedHostUser() throws {
        guard try Host.require(.root, .command(ContainerFixture.busyboxPath), .command("/usr/bin/nsenter")) else { return }
        let fixture = try ContainerFixture()
        defer { fixture.cleanup() }
        // Host files in a directory anyone may traverse: only their owner and mode decide.
        try Errno.check("chmod", fixture.temp.path) { chmod(fixture.temp.path, 0o711) }
        let host = fixture.temp.path + "/host"
        try Files.createDirectory(host, mode: 0o755)
        try Files.writeAtomically(host + "/rootfile", text: "host's\n", mode: 0o644)
        try Files.writeAtomically(host + "/secret", text: "host's secret\n", mode: 0o600)
        try Files.createDirectory(host + "/mnt", mode: 0o755)
        let victim = try Spawn.start(["/bin/busybox", "sleep", "60"])
        defer {
            kill(victim, SIGKILL)
            Spawn.wait(victim)
        }
        let observation = try start(fixture, Self.mapping())
        let script = """
            cat \(host)/rootfile >/dev/null 2>&1 && echo read=ok || echo read=denied
            (echo x >> \(host)/rootfile) 2>/dev/null && echo write=ok || echo write=denied
            cat \(host)/secret >/dev/null 2>&1 && echo secret=ok || echo secret=denied
            kill -0 \(victim) 2>/dev/null && echo kill=ok || echo kill=denied
            mount -t tmpfs none \(host)/mnt 2>/dev/null && echo mount=ok || echo mount=denied
            chown 0 \(host)/rootfile 2>/dev/null && echo chown=ok || echo chown=denied
            """
        // The container's user namespace (root there, every capability of it) with the
        // host's mount namespace: a process that escaped the container's.
        let escaped = try Spawn.run(["/usr/bin/nsenter", "--target", String(observation.initPID), "--user", "--",
                                     "/bin/busybox", "sh", "-c", script], stderrToStdout: true)
        #expect(escaped.stdout == "read=ok\nwrite=denied\nsecret=denied\nkill=denied\nmount=denied\nchown=denied\n", "\(escaped)")
        // The same as host root (a container without a user namespace): everything allowed.
        let root = try Spawn.run(["/bin/busybox", "sh", "-c", script], stderrToStdout: true)
        umount2(host + "/mnt", Int32(MNT_DETACH))
        #expect(root.stdout == "read=ok\nwrite=ok\nsecret=ok\nkill=ok\nmount=ok\nchown=ok\n", "\(root)")
    }

    @Test func bindMountsAreIdmappedOrRefused() throws {
        guard try Host.require(.root, .command(ContainerFixture.busyboxPath)) else { return }
        let fixture = try ContainerFixture()
        defer { fixture.cleanup() }
        let shared = fixture.temp.path + "/shared"
        try Files.createDirectory(shared)
        try Files.writeAtomically(shared + "/hello", text: "from the host\n", mode: 0o644)
        _ = try start(fixture, Self.mapping()) { config in
            config.mounts += [.bind(shared, at: "/srv", options: ["nosuid"]), .bind(shared + "/hello", at: "/etc/hello", readonly: true)]
        }
        #expect(try fixture.exec(["stat", "-c", "%u", "/srv/hello"]).output == "0\n")
        #expect(try fixture.sh("echo inside > /srv/new && stat -c %u /srv/new").output == "0\n")
        #expect(try Files.status(shared + "/new")?.st_uid == 0)
        let readonly = try fixture.sh("echo x >> /etc/hello")
        #expect(readonly.status != 0 && readonly.output.contains("Read-only"), "\(readonly)")
        let mounts = MountInfo.parse(try fixture.exec(["cat", "/proc/self/mountinfo"]).output)
        #expect(mounts.first { $0.mountPoint == "/srv" }.map { $0.options.contains("idmapped") && $0.options.contains("nosuid") } == true)
        try fixture.runtime.stop(directory: fixture.directory, timeout: 1)

        // sysfs cannot be idmapped: refused at start, naming the source and why.
        let refused = thrownError {
            _ = try start(fixture, Self.mapping()) { config in config.mounts.append(.bind("/sys/fs", at: "/hostsys")) }
        }
        #expect(refused?.operation == "idmap")
        #expect(refused?.object.contains("bind /sys/fs (for /hostsys") == true, "\(refused?.object ?? "")")
        #expect(refused?.code == EINVAL)
        #expect(refused?.detail?.contains("cannot be idmapped") == true)
        #expect(fixture.runtime.observe(directory: fixture.directory).initPID == 0)
    }

    @Test func aDelegatedCgroupIsContainerRootsToManage() throws {
        guard let layout = try CgroupV2Tests.unifiedLayout() else { return }
        let mapping = Self.mapping()
        let base = UInt32(mapping.uids[0].outside)
        // The control first: without delegation the container cannot touch its cgroup.
        for delegated in [false, true] {
            let fixture = try ContainerFixture()
            defer {
                fixture.cleanup()
                #expect(fixture.cgroupLeftovers().isEmpty)
            }
            var config = try fixture.config(layout: layout)
            config.userNamespace = mapping
            config.delegateCgroup = delegated
            _ = try fixture.runtime.start(config, directory: fixture.directory)
            let directory = "\(layout.hierarchies[0].mountPoint)/\(fixture.cgroupParent)/\(fixture.name)"
            // The unified hierarchy's line of /proc/PID/cgroup (a hybrid host lists v1 ones too).
            func unified(_ text: String) -> String? { text.split(separator: "\n").first { $0.hasPrefix("0::") }.map(String.init) }
            let inner = try fixture.sh("mkdir /sys/fs/cgroup/inner && echo $$ > /sys/fs/cgroup/inner/cgroup.procs && cat /proc/self/cgroup")
            guard delegated else {
                #expect(inner.status != 0, "\(inner)")
                #expect(unified(try fixture.exec(["cat", "/proc/self/cgroup"]).output) == "0::/\(fixture.cgroupParent)/\(fixture.name)")
                #expect(try Files.status(directory)?.st_uid == 0)
                continue
            }
            // Host: the directory and the delegation files are container root's, the rest host root's.
            #expect(try Files.status(directory)?.st_uid == base)
            for file in ["cgroup.procs", "cgroup.threads", "cgroup.subtree_control"] {
                #expect(try Files.status("\(directory)/\(file)")?.st_uid == base, "\(file)")
            }
            #expect(try Files.status("\(directory)/cgroup.max.depth")?.st_uid == 0)
            // Inside: a cgroup namespace rooted at its cgroup, cgroup2 writable at /sys/fs/cgroup.
            #expect(unified(try fixture.exec(["cat", "/proc/self/cgroup"]).output) == "0::/")
            let mounts = MountInfo.parse(try fixture.exec(["cat", "/proc/self/mountinfo"]).output)
            #expect(mounts.first { $0.mountPoint == "/sys/fs/cgroup" }.map { $0.fsType == "cgroup2" && $0.options.contains("rw") } == true)
            #expect(inner.status == 0 && unified(inner.output) == "0::/inner", "\(inner)")
            #expect(try Files.status("\(directory)/inner")?.st_uid == base)
            let limit = try fixture.sh("echo 1 > /sys/fs/cgroup/cgroup.max.depth")
            #expect(limit.status != 0 && limit.output.contains("Permission denied"), "its limits stay tupp's: \(limit)")
            // A process left in the child cgroup dies with the container, and the child goes too.
            #expect(try fixture.sh("setsid sh -c 'echo $$ > /sys/fs/cgroup/inner/cgroup.procs; exec sleep 100004' </dev/null >/dev/null 2>&1 &").status == 0)
            var sleeper: Int32?
            #expect(waitUntil(5) {
                let members = ((try? cgroupFile(directory + "/inner", "cgroup.procs")) ?? "").split(separator: "\n").compactMap { Int32($0) }
                sleeper = processes(among: members, commandLine: ["sleep", "100004"]).first
                return sleeper != nil
            })
            try fixture.runtime.stop(directory: fixture.directory, timeout: 1)
            #expect(sleeper.map { !isProcessAlive($0) } == true)
            try fixture.runtime.remove(directory: fixture.directory)
            #expect(!Files.exists(directory + "/inner") && !Files.exists(directory))
        }
    }

    @Test func theHealthCheckRunsInTheUserNamespace() throws {
        guard try Host.require(.root, .command(ContainerFixture.busyboxPath)) else { return }
        let fixture = try ContainerFixture()
        defer { fixture.cleanup() }
        let mapping = Self.mapping()
        _ = try start(fixture, mapping) { config in
            config.healthcheck = Healthcheck(command: ["/bin/sh", "-c", "cat /proc/self/uid_map; id -u"], interval: 0.1, timeout: 2, retries: 1)
        }
        #expect(waitUntil(10) { fixture.runtime.observe(directory: fixture.directory).health == .healthy })
        let output = try #require(fixture.runtime.health(directory: fixture.directory)?.log.last?.output)
        #expect(output.split(whereSeparator: \.isWhitespace) == ["0", "\(mapping.uids[0].outside)", "65536", "0"], "\(output)")
    }

    @Test func aUserAReadOnlyRootAndADeviceWorkInside() throws {
        guard try Host.require(.root, .command(ContainerFixture.busyboxPath)) else { return }
        let fixture = try ContainerFixture()
        defer { fixture.cleanup() }
        try fixture.writeUsers(passwd: "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/:/bin/sh\n", group: "root:x:0:\napp:x:1000:\n")
        let mapping = Self.mapping()
        let base = mapping.uids[0].outside
        let hasFuse = Files.exists("/dev/fuse")
        let observation = try start(fixture, mapping) { config in
            config.user = UserSpec("app")
            config.readOnly = true
            if hasFuse { config.devices = [DeviceGrant(path: "/dev/fuse")] }
        }
        // The container's user 1000 is host uid base + 1000.
        #expect(try procField(observation.initPID, "Uid") == Array(repeating: "\(base + 1000)", count: 4))
        #expect(try fixture.exec(["id", "-u"]).output == "1000\n")
        let write = try fixture.exec(["touch", "/x"])
        #expect(write.status != 0 && write.output.contains("Read-only"), "\(write)")
        #expect(try fixture.exec(["sh", "-c", "touch /tmp/x && stat -c %u /tmp/x"]).output == "1000\n")
        if hasFuse {
            // The host's node: its numbers and owner (glibc's major()/minor() are macros).
            let host = try #require(try Files.status("/dev/fuse"))
            let dev = UInt64(host.st_rdev)
            let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & ~0xfff), minor = (dev & 0xff) | ((dev >> 12) & ~0xff)
            let inside = try fixture.exec(["stat", "-c", "%t,%T %u", "/dev/fuse"]).output
            #expect(inside == "\(String(major, radix: 16)),\(String(minor, radix: 16)) \(host.st_uid)\n", "\(inside)")
        }
    }
}
