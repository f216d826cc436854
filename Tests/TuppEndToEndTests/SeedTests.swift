import Glibc
import Testing
import TuppBase
import TuppSystem
import TuppTestSupport

/// The seed walkthrough, end to end: manifests/tupperware.yaml applied in an isolated
/// installation, every step checked with tools tupp did not write (btrfs-progs,
/// iproute2, nsenter, lsns, ping, /proc).
@Suite(.serialized) struct SeedTests {
    /// manifests/tupperware.yaml with this test's paths, bridge and subnet.
    static func seedManifest(_ i: Installation, file: String = "tupperware.yaml") throws -> String {
        let text = try #require(try Files.readText("\(Built.repository)manifests/\(file)"))
        let substitutions = [
            ("/var/lib/tupp/pool.img", "\(i.root.path)/pool.img"),
            ("/var/lib/tupp/pool", "\(i.root.path)/pool"),
            ("bridge: tupp0", "bridge: \(i.bridge)"),
            ("172.17.0.0/16", i.subnet),
            ("172.17.0.1", i.address(1)),
            ("172.17.42.3/16", "\(i.address(3))/24"),
            ("172.17.42.4/16", "\(i.address(4))/24"),
        ]
        var derived = text
        for (from, to) in substitutions where text.contains(from) {
            derived = derived.replacing(from, with: to)
        }
        // The manifest must still be the seed's: if these moved, this test must follow.
        #expect(!derived.contains("/var/lib/tupp") && !derived.contains("172.17.") && !derived.contains("bridge: tupp0"))
        return derived
    }

    func lines(_ output: Output) -> [String] { output.stdout.split(separator: "\n").map(String.init) }

    func inode(_ pid: String, _ kind: String) -> UInt64? { ProcEntry.namespace(pid, kind) }

    /// `userns`: the same walkthrough with `defaults: { userns: auto }` — container root an
    /// unprivileged host user — must pass unchanged.
    @Test(arguments: [false, true]) func seedWalkthrough(userns: Bool) throws {
        guard try Host.require(.root, .btrfs, .command("/bin/busybox"), .command("/usr/bin/nsenter"), .command("/bin/btrfs"),
                               .command("/usr/bin/lsns"), .command("/usr/bin/python3")) else { return }
        let i = try Installation()
        defer { i.finish() }
        let hostname = try #require(try Files.readText("/proc/sys/kernel/hostname")).trimmingCharacters()

        // Step 0: before the network is attached only lo exists inside.
        let full = (userns ? "defaults: { userns: auto }\n" : "") + (try Self.seedManifest(i))
        let withoutNetwork = full.split(separator: "\n", omittingEmptySubsequences: false)
            .filter { !$0.contains("attach: docker") && !$0.hasPrefix("    network:") && !$0.contains("interface: eth0") && !$0.contains("address: 10.214") }
            .joined(separator: "\n")
        let manifest = try i.manifest("tupperware.yaml", withoutNetwork)
        let first = try i.tupp("apply", manifest)
        #expect(first.status == 0, "\(first)")
        let original = try i.initProcess(of: "tupperware")
        func links() throws -> Set<String> {
            let out = try Spawn.run(["/usr/bin/nsenter", "-t", String(original.pid), "-n", "/sbin/ip", "-j", "link", "show"])
            guard case .array(let items) = try JSON.parse(Array(out.stdout.utf8)) else { return [] }
            return Set(items.compactMap { $0["ifname"]?.string })
        }
        #expect(try links() == ["lo"], "only lo before the network is attached")

        // Now the seed's manifest, network included: plugged in place, same process.
        try i.manifest("tupperware.yaml", full)
        let apply = try i.tupp("apply", manifest)
        #expect(apply.status == 0, "\(apply)")
        #expect(apply.stdout.contains("container.tupperware: updating… done"), "\(apply.stdout)")
        #expect(try i.initProcess(of: "tupperware") == original, "network attached in place: the same init (pid and start time)")
        i.expectOnlyDeclared("the seed, running")

        // btrfs: the snapshot's parent is the image; a file in the snapshot is not in the image.
        let pool = "\(i.root.path)/pool"
        let image = try Spawn.run(["/bin/btrfs", "subvolume", "show", "\(pool)/images/box"])
        let snapshot = try Spawn.run(["/bin/btrfs", "subvolume", "show", "\(pool)/containers/tupperware"])
        let imageUUID = try #require(field("UUID:", in: image.stdout))
        #expect(field("Parent UUID:", in: snapshot.stdout) == imageUUID, "\(snapshot.stdout)")
        #expect(try Spawn.run(["/usr/bin/touch", "\(pool)/containers/tupperware/NICK_WAS_HERE"]).status == 0)
        #expect(Files.exists("\(pool)/containers/tupperware/NICK_WAS_HERE"))
        #expect(!Files.exists("\(pool)/images/box/NICK_WAS_HERE"))
        #expect(lines(try i.nsenter("tupperware", ["/bin/ls", "/"])).contains("NICK_WAS_HERE"), "the container's / is the snapshot")
        #expect(lines(try i.tupp("exec", "tupperware", "--", "ls", "/")).contains("NICK_WAS_HERE"), "and tupp exec sees the same")

        // Inside, seen from outside: hostname (nsenter into its UTS namespace), processes
        // (/proc by pid namespace), mounts (/proc/PID/mountinfo), links and route (ip in its netns).
        #expect(try i.liveHostname(of: "tupperware") == "tupperware")
        #expect(try Files.readText("/proc/sys/kernel/hostname")?.trimmingCharacters() == hostname)
        let pidNamespace = ProcEntry.namespace(String(original.pid), "pid")
        let inside = ProcEntry.all().filter { $0.pidNamespace == pidNamespace }
        #expect(Set(inside.map(\.pid)).contains(original.pid) && inside.allSatisfy { $0.pid == original.pid || $0.parent == original.pid },
                "only the command and its children: \(inside.map(\.commandLine))")
        let status = try #require(try Files.readText("/proc/\(original.pid)/status"))
        #expect(status.split(separator: "\n").first { $0.hasPrefix("NSpid:") }?.hasSuffix("\t1") == true, "the command is PID 1 inside: \(status)")
        let mounts = Inventory.readMountInfo("/proc/\(original.pid)/mountinfo")
        #expect(Inventory.mountRoot("/", in: "/proc/\(original.pid)/mountinfo") == "/containers/tupperware")
        for target in ["/proc", "/dev", "/dev/pts", "/dev/shm", "/sys"] {
            #expect(mounts.contains { $0.mountPoint == target }, "\(target) mounted: \(mounts.map(\.mountPoint))")
        }
        #expect(!mounts.contains { $0.mountPoint.contains("oldroot") }, "no old root")
        #expect(!mounts.contains { $0.propagation.contains { $0.hasPrefix("shared:") } }, "nothing shared with the host")
        // The only host paths are the name files tupp binds, read-only.
        let hostPaths = mounts.filter { $0.root.hasPrefix(i.root.path) }
        #expect(hostPaths.map(\.mountPoint).sorted() == ["/etc/hosts", "/etc/resolv.conf"], "\(mounts)")
        #expect(hostPaths.allSatisfy { $0.options.contains("ro") }, "\(hostPaths)")
        #expect(try links() == ["lo", "eth0"])
        let route = try Spawn.run(["/usr/bin/nsenter", "-t", String(original.pid), "-n", "/sbin/ip", "-j", "route", "show", "default"]).stdout
        #expect(route.contains("\"gateway\":\"\(i.address(1))\"") && route.contains("\"dev\":\"eth0\""), "\(route)")

        // Traffic, only inside the test's own bridge: from the container's namespace and from the host.
        let inward = try Ping.untilAnswered { try i.tupp(["exec", "tupperware", "--", "ping"] + Ping.once(i.address(1))) }
        #expect(inward.status == 0, "container → gateway: \(inward)")
        let outward = try Ping.untilAnswered { try Spawn.run(["/bin/busybox", "ping"] + Ping.once(i.address(3))) }
        #expect(outward.status == 0, "host → container: \(outward)")

        // Namespaces: five new ones, seen by /proc and by lsns, each different from the host's.
        let pid = String(original.pid)
        for kind in ["mnt", "uts", "ipc", "net", "pid"] {
            #expect(inode(pid, kind) != nil && inode(pid, kind) != inode("self", kind), "\(kind) namespace is new")
        }
        // lsns reads every process in /proc; under the whole suite it once printed nothing for
        // a container that was running: asked again (up to five times) before it counts.
        func lsns(_ pid: String) throws -> [String: String] {
            var found: [String: String] = [:]
            for attempt in 0..<5 where found.isEmpty {
                if attempt > 0 { usleep(100_000) }
                let out = try Spawn.run(["/usr/bin/lsns", "-p", pid, "-o", "TYPE,NS", "-n"]).stdout
                for line in out.split(separator: "\n") {
                    let words = line.split(separator: " ")
                    if words.count == 2 { found[String(words[0])] = String(words[1]) }
                }
            }
            return found
        }
        // "The host" is where tupp runs: this process's namespaces.
        let container = try lsns(pid), host = try lsns(String(getpid()))
        for kind in ["mnt", "uts", "ipc", "net", "pid"] {
            #expect(container[kind] != nil && container[kind] != host[kind], "lsns: \(kind) of the container \(container[kind] ?? "?") vs the host's \(host[kind] ?? "?")")
            #expect(container[kind] == inode(pid, kind).map(String.init), "lsns and /proc agree on \(kind)")
        }
        #expect(container["cgroup"] == host["cgroup"], "the namespaces not asked for are the host's")
        #expect((container["user"] != host["user"]) == userns, "lsns: a user namespace of its own only with userns: auto")
        // Only the pool is mounted on the host; the container's mounts are its own.
        i.expectOnlyDeclared("the seed, running")

        // Interactive: a shell through a pty, like the seed's `exec chroot / sh`.
        let script = """
            import pexpect, sys
            child = pexpect.spawn(sys.argv[1], sys.argv[2:], timeout=10, encoding="utf-8")
            child.expect(r"[#$] ")
            child.sendline("echo tty-$(tty | cut -c1-8) $((6 * 7))")
            child.expect("tty-/dev/pts 42")
            child.expect(r"[#$] ")
            child.sendline("exit 3")
            child.expect(pexpect.EOF)
            child.close()
            sys.exit(0 if child.exitstatus == 3 else 1)
            """
        let scriptPath = "\(i.root.path)/drive_tty.py"
        try Files.writeAtomically(scriptPath, text: script)
        let pty = try Spawn.run(["/usr/bin/python3", scriptPath, Built.tupp, "--state-dir", i.state, "exec", "-t", "tupperware", "sh"])
        #expect(pty.status == 0, "interactive exec: \(pty)")

        // Converged: a second apply changes nothing; plan agrees.
        let again = try i.tupp("apply", manifest)
        #expect(again.status == 0 && again.stdout.contains("No changes."), "\(again)")
        #expect(try i.tupp("plan", "--detailed-exitcode", manifest).status == 0)

        // With a user namespace: root inside is the range's first host id.
        let containerUserNamespace = try #require(PinnedNamespace(pid: original.pid, kind: "user"))
        if userns {
            #expect(containerUserNamespace.inode != inode("self", "user"))
            #expect(containerUserNamespace.members().contains { $0.hasPrefix("\(original.pid) ") }, "the witness sees the live one")
            let map = try i.tupp("exec", "tupperware", "--", "cat", "/proc/self/uid_map").stdout.split(whereSeparator: \.isWhitespace)
            #expect(map.count == 3 && map[0] == "0" && map[2] == "65536", "\(map)")
            #expect(try procUID(original.pid) == map.dropFirst().first.map(String.init))
            #expect(mounts.first { $0.mountPoint == "/" }?.options.contains("idmapped") == true, "\(mounts)")
        } else {
            #expect(containerUserNamespace.inode == inode("self", "user"))
        }

        #expect(processesMounting(root: "/containers/tupperware", ofFilesystemAt: pool).contains(original.pid))
        let poolDevice = try #require(try MountInfo.read().last { $0.mountPoint == pool }?.device)

        // Destroy leaves nothing: no subvolume, mount, loop device, link, process or state.
        let destroy = try i.tupp("destroy", "--include-storage", manifest)
        #expect(destroy.status == 0, "\(destroy)")
        // No namespace: no process is left in the container's user namespace, and no
        // process anywhere has a mount of its snapshot (idmapped or not).
        #expect(!userns || containerUserNamespace.members().isEmpty, "left in the user namespace: \(containerUserNamespace.members())")
        let mounting = ((try? Files.list("/proc")) ?? []).filter { p in
            Int32(p) != nil && ((try? Files.readText("/proc/\(p)/mountinfo")) ?? nil)?.contains(" \(poolDevice) /containers/tupperware ") == true
        }
        #expect(mounting.isEmpty, "mounts of the snapshot left in \(mounting)")
        i.expectNothingLeft()
        #expect(!Files.exists("\(i.root.path)/pool.img"))
    }

    @Test func tarballImport() throws {
        guard try Host.require(.root, .btrfs, .command("/bin/busybox"), .command("/bin/tar")) else { return }
        let i = try Installation()
        defer { i.finish() }
        // A docker-export-style rootfs: busybox and its applets, /etc, empty system dirs.
        let rootfs = "\(i.root.path)/rootfs"
        for dir in ["bin", "etc", "proc", "sys", "dev", "tmp", "root"] { try Files.createDirectory("\(rootfs)/\(dir)") }
        #expect(try Spawn.run(["/bin/cp", "/bin/busybox", "\(rootfs)/bin/busybox"]).status == 0)
        for applet in ["sh", "hostname", "ls", "cat", "sleep", "ps", "ip", "ping"] {
            #expect(symlink("busybox", "\(rootfs)/bin/\(applet)") == 0)
        }
        try Files.writeAtomically("\(rootfs)/etc/alpine-release", text: "3.18.0\n", mode: 0o644)
        #expect(try Spawn.run(["/bin/tar", "-C", rootfs, "-cf", "\(i.root.path)/tupperware-rootfs.tar", "."]).status == 0)

        let manifest = try i.manifest("tupperware-tar.yaml", try Self.seedManifest(i, file: "tupperware-tar.yaml"))
        let apply = try i.tupp("apply", manifest)
        #expect(apply.status == 0, "\(apply)")
        #expect(try i.tupp("exec", "tupperware-tar", "--", "cat", "/etc/alpine-release").stdout == "3.18.0\n")
        #expect(try i.liveHostname(of: "tupperware-tar") == "tupperware")
        #expect(try i.tupp("apply", manifest).stdout.contains("No changes."))

        // A new export replaces the image and, with it, the container.
        try Files.writeAtomically("\(rootfs)/etc/alpine-release", text: "3.19.0\n", mode: 0o644)
        #expect(try Spawn.run(["/bin/tar", "-C", rootfs, "-cf", "\(i.root.path)/tupperware-rootfs.tar", "."]).status == 0)
        let plan = try i.tupp("plan", "--detailed-exitcode", manifest)
        #expect(plan.status == 2)
        #expect(plan.stdout.contains("-/+ image \"exported\"") && plan.stdout.contains("-/+ container \"tupperware-tar\""), "\(plan.stdout)")
        #expect(plan.stdout.contains("image.exported is replaced # forces replacement"), "\(plan.stdout)")
        #expect(try i.tupp("apply", manifest).status == 0)
        #expect(try i.tupp("exec", "tupperware-tar", "--", "cat", "/etc/alpine-release").stdout == "3.19.0\n")
        #expect(try i.nsenter("tupperware-tar", ["/bin/cat", "/etc/alpine-release"]).stdout == "3.19.0\n")
        i.expectOnlyDeclared("after the image and its container were replaced")
    }

    /// The real uid of `pid` on the host (/proc/PID/status).
    func procUID(_ pid: Int32) throws -> String? {
        try Files.readText("/proc/\(pid)/status")?.split(separator: "\n").first { $0.hasPrefix("Uid:") }?
            .split(whereSeparator: \.isWhitespace).dropFirst().first.map(String.init)
    }

    func field(_ name: String, in text: String) -> String? {
        for line in text.split(separator: "\n") {
            let trimmed = String(line).trimmingCharacters()
            if trimmed.hasPrefix(name) { return String(trimmed.dropFirst(name.count)).trimmingCharacters() }
        }
        return nil
    }
}
