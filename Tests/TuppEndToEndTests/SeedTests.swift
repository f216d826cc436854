import Glibc
import Testing
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

    func inode(_ pid: String, _ kind: String) -> UInt64? { namespaceInode(pid: pid, kind: kind) }

    /// `userns`: the same walkthrough with `defaults: { userns: auto }` — container root an
    /// unprivileged host user — must pass unchanged.
    @Test(arguments: [false, true]) func seedWalkthrough(userns: Bool) throws {
        guard try Host.require(.root, .btrfs, .command("/bin/busybox"), .command("/usr/bin/nsenter"), .command("/bin/btrfs")) else { return }
        let i = try Installation()
        defer {
            i.cleanup()
            #expect(i.leftovers().isEmpty, "left behind: \(i.leftovers())")
        }
        let hostMountsBefore = Set(try MountInfo.read().map(\.mountPoint))
        let hostname = try #require(try Files.readText("/proc/sys/kernel/hostname")).trimmingCharacters()

        // Step 0: before the network is attached only lo exists inside.
        let full = (userns ? "defaults: { userns: auto }\n" : "") + (try Self.seedManifest(i))
        let withoutNetwork = full.split(separator: "\n", omittingEmptySubsequences: false)
            .filter { !$0.contains("attach: docker") && !$0.hasPrefix("    network:") && !$0.contains("interface: eth0") && !$0.contains("address: 10.214") }
            .joined(separator: "\n")
        let manifest = try i.manifest("tupperware.yaml", withoutNetwork)
        let first = try i.tupp("apply", manifest)
        #expect(first.status == 0, "\(first)")
        let linksBefore = try i.tupp("exec", "tupperware", "--", "cat", "/proc/net/dev")
        #expect(linksBefore.stdout.contains("lo:") && !linksBefore.stdout.contains("eth0"), "\(linksBefore)")

        // Now the seed's manifest, network included: plugged in place, same process.
        let pidBefore = try #require(Int32(try i.tupp("status", "--json").stdout.split(separator: "\"pid\":").dropFirst().first?.prefix { $0.isNumber } ?? ""))
        try i.manifest("tupperware.yaml", full)
        let apply = try i.tupp("apply", manifest)
        #expect(apply.status == 0, "\(apply)")
        #expect(apply.stdout.contains("container.tupperware: updating… done"), "\(apply.stdout)")
        let status = try i.tupp("status", "--json")
        #expect(status.stdout.contains("\"pid\":\(pidBefore)"), "network attached in place: \(status.stdout)")

        // btrfs: the snapshot's parent is the image; a file in the snapshot is not in the image.
        let pool = "\(i.root.path)/pool"
        let image = try Spawn.run(["/bin/btrfs", "subvolume", "show", "\(pool)/images/box"])
        let snapshot = try Spawn.run(["/bin/btrfs", "subvolume", "show", "\(pool)/containers/tupperware"])
        let imageUUID = try #require(field("UUID:", in: image.stdout))
        #expect(field("Parent UUID:", in: snapshot.stdout) == imageUUID, "\(snapshot.stdout)")
        #expect(try Spawn.run(["/usr/bin/touch", "\(pool)/containers/tupperware/NICK_WAS_HERE"]).status == 0)
        #expect(Files.exists("\(pool)/containers/tupperware/NICK_WAS_HERE"))
        #expect(!Files.exists("\(pool)/images/box/NICK_WAS_HERE"))
        #expect(lines(try i.tupp("exec", "tupperware", "--", "ls", "/")).contains("NICK_WAS_HERE"))

        // Inside: hostname, processes, mounts, links, route.
        #expect(try i.tupp("exec", "tupperware", "--", "hostname").stdout == "tupperware\n")
        #expect(try Files.readText("/proc/sys/kernel/hostname")?.trimmingCharacters() == hostname)
        let ps = lines(try i.tupp("exec", "tupperware", "--", "ps", "-o", "pid,comm"))
        #expect(ps.dropFirst().first?.trimmingCharacters().hasPrefix("1 ") == true, "\(ps)")
        #expect(ps.count <= 4, "only the container's processes: \(ps)")
        let mountinfo = try i.tupp("exec", "tupperware", "--", "cat", "/proc/self/mountinfo").stdout
        let mounts = mountinfo.split(separator: "\n").map { $0.split(separator: " ") }
        #expect(mounts.first { $0[4] == "/" }?[3] == "/containers/tupperware", "\(mountinfo)")
        for target in ["/proc", "/dev", "/dev/pts", "/dev/shm", "/sys"] {
            #expect(mounts.contains { $0[4] == Substring(target) }, "\(target) mounted: \(mountinfo)")
        }
        // No old root, nothing shared; the only host paths are the name files tupp binds.
        let hostPaths = mounts.filter { $0[3].hasPrefix(Substring(i.root.path)) }.map { String($0[4]) }.sorted()
        #expect(hostPaths == ["/etc/hosts", "/etc/resolv.conf"], "\(mountinfo)")
        #expect(mounts.filter { ["/etc/hosts", "/etc/resolv.conf"].contains(String($0[4])) }.allSatisfy { $0[5].hasPrefix("ro") }, "\(mountinfo)")
        #expect(!mountinfo.contains("oldroot") && !mountinfo.contains("shared:"))
        let netdev = try i.tupp("exec", "tupperware", "--", "cat", "/proc/net/dev").stdout
        let interfaces = netdev.split(separator: "\n").dropFirst(2).map { String($0).trimmingCharacters().prefix { $0 != ":" } }
        #expect(Set(interfaces) == ["lo", "eth0"], "\(netdev)")
        let route = try i.tupp("exec", "tupperware", "--", "ip", "route").stdout
        #expect(route.contains("default via \(i.address(1)) dev eth0"), "\(route)")

        // Traffic, only inside the test's own bridge.
        let inward = try Ping.untilAnswered { try i.tupp(["exec", "tupperware", "--", "ping"] + Ping.once(i.address(1))) }
        #expect(inward.status == 0, "container → gateway: \(inward)")
        let outward = try Ping.untilAnswered { try Spawn.run(["/bin/busybox", "ping"] + Ping.once(i.address(3))) }
        #expect(outward.status == 0, "host → container: \(outward)")

        // Namespaces: five new ones, seen by lsns and /proc.
        let pid = String(pidBefore)
        for kind in ["mnt", "uts", "ipc", "net", "pid"] {
            #expect(inode(pid, kind) != nil && inode(pid, kind) != inode("1", kind), "\(kind) namespace is new")
        }
        let lsns = try Spawn.run(["/usr/bin/lsns", "-p", pid, "-o", "TYPE,NS", "-n"])
        let lsnsTypes = Set(lsns.stdout.split(separator: "\n").compactMap { $0.split(separator: " ").first.map(String.init) })
        #expect(lsnsTypes.isSuperset(of: ["mnt", "uts", "ipc", "net", "pid"]), "\(lsns)")
        let hostMountsAfter = Set(try MountInfo.read().map(\.mountPoint))
        // Other suites run in parallel and mount their own pools: look at ours only.
        let ours = hostMountsAfter.subtracting(hostMountsBefore).filter { $0.hasPrefix(i.root.path) }
        #expect(ours == [pool], "only the pool mount is new on the host: \(ours)")
        #expect(!hostMountsAfter.contains { $0.hasPrefix("\(pool)/containers/") }, "no container mount leaks to the host")

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
        let hostUserNamespace = inode(pid, "user")
        if userns {
            #expect(hostUserNamespace != inode("self", "user"))
            let map = try i.tupp("exec", "tupperware", "--", "cat", "/proc/self/uid_map").stdout.split(whereSeparator: \.isWhitespace)
            #expect(map.count == 3 && map[0] == "0" && map[2] == "65536", "\(map)")
            #expect(try procUID(pidBefore) == map.dropFirst().first.map(String.init))
            #expect(mountinfo.split(separator: "\n").first { $0.split(separator: " ")[4] == "/" }?.contains("idmapped") == true, "\(mountinfo)")
        } else {
            #expect(hostUserNamespace == inode("self", "user"))
        }

        #expect(processesMounting(root: "/containers/tupperware", ofFilesystemAt: pool).contains(pidBefore))
        let poolDevice = try #require(try MountInfo.read().last { $0.mountPoint == pool }?.device)

        // Destroy leaves nothing: no subvolume, mount, loop device, link, process or state.
        let destroy = try i.tupp("destroy", "--include-storage", manifest)
        #expect(destroy.status == 0, "\(destroy)")
        // No namespace: no process is left in the container's user namespace, and no
        // process anywhere has a mount of its snapshot (idmapped or not).
        let members = ((try? Files.list("/proc")) ?? []).filter { Int32($0) != nil && inode($0, "user") == hostUserNamespace }
        #expect(!userns || members.isEmpty, "left in the user namespace: \(members)")
        let mounting = ((try? Files.list("/proc")) ?? []).filter { p in
            Int32(p) != nil && ((try? Files.readText("/proc/\(p)/mountinfo")) ?? nil)?.contains(" \(poolDevice) /containers/tupperware ") == true
        }
        #expect(mounting.isEmpty, "mounts of the snapshot left in \(mounting)")
        #expect(i.leftovers().isEmpty, "\(i.leftovers())")
        #expect(!Files.exists("\(i.root.path)/pool.img"))
    }

    @Test func tarballImport() throws {
        guard try Host.require(.root, .btrfs, .command("/bin/busybox"), .command("/bin/tar")) else { return }
        let i = try Installation()
        defer {
            i.cleanup()
            #expect(i.leftovers().isEmpty, "left behind: \(i.leftovers())")
        }
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
        #expect(try i.tupp("exec", "tupperware-tar", "--", "hostname").stdout == "tupperware\n")
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
