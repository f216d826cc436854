import Glibc
import Testing
import TuppFacts
import TuppSystem
import TuppTestSupport

/// `userns: auto` through the CLI: ranges in the plan and status, disjoint and stable; a
/// volume shared by two ranges; the snapshot untouched; a switch back restarts without
/// replacing; destroy leaves no namespace. Witnessed with /proc, stat(2), ps and btrfs-progs.
@Suite(.serialized) struct UserNamespaceEngineTests {
    /// The base host uid of `name` from `tupp status --json`.
    func base(_ i: Installation, _ name: String) throws -> UInt64? {
        let json = try i.tupp("status", "--json", name).stdout
        guard let range = json.split(separator: "\"uid_map\":\"").dropFirst().first?.prefix(while: { $0 != "\"" }) else { return nil }
        return IDMapLine(range)?.outside
    }

    func initPID(_ i: Installation, _ name: String) throws -> Int32? {
        Int32(try i.tupp("status", "--json", name).stdout.split(separator: "\"pid\":").dropFirst().first?.prefix { $0.isNumber } ?? "")
    }

    /// lstat(2): applets are symlinks, and their own metadata is what a chown would change.
    func lstat(_ path: String) throws -> stat? {
        var st = stat()
        return Glibc.lstat(path, &st) == 0 ? st : nil
    }


    @Test func sharedVolumeDisjointRangesAndNoChown() throws {
        guard try Host.require(.root, .btrfs, .command("/bin/busybox"), .command("/bin/btrfs"), .command("/bin/ps")) else { return }
        let i = try Installation()
        defer { i.finish() }
        let text = volumesManifest(volumes: "  data: {}", containers: user("a", of: "data", at: "/data") + user("b", of: "data", at: "/data"))
        let manifest = try i.manifest("userns.yaml", "defaults: { userns: auto }\n" + text)
        let plan = try i.tupp("plan", manifest)
        #expect(plan.stdout.contains("+ userns") && plan.stdout.contains("userns.uid_map"), "\(plan.stdout)")
        let apply = try i.tupp("apply", manifest)
        #expect(apply.status == 0, "\(apply)")

        // Two disjoint blocks of 65,536 ids, as status and the kernel show them.
        let a = try #require(try base(i, "a")), b = try #require(try base(i, "b"))
        #expect(a != b && (a + 65536 <= b || b + 65536 <= a), "\(a) \(b)")
        for (name, first) in [("a", a), ("b", b)] {
            let pid = try #require(try initPID(i, name))
            let map = try #require(try Files.readText("/proc/\(pid)/uid_map"))
            #expect(map.split(whereSeparator: \.isWhitespace) == ["0", "\(first)", "65536"])
            #expect(try Spawn.run(["/bin/ps", "-o", "uid=", "-p", String(pid)]).stdout.trimmingCharacters() == "\(first)")
            #expect(try i.tupp("exec", name, "--", "id", "-u").stdout == "0\n")
        }
        #expect(try i.tupp("status").stdout.contains("USERNS"))

        // The volume: both read and write as root (0) inside, stored as 0 on disk.
        let volume = "\(i.root.path)/pool/volumes/data"
        #expect(try i.tupp("exec", "a", "--", "sh", "-c", "echo a > /data/f && chown 1000:1000 /data/f && echo a > /data/root-owned").status == 0)
        #expect(try i.tupp("exec", "b", "--", "sh", "-c", "cat /data/f /data/root-owned && echo b >> /data/root-owned && stat -c %u:%g /data/f /data/root-owned").stdout
                == "a\na\n1000:1000\n0:0\n")
        #expect(try Witness.stat("\(volume)/f")?.owner == "1000:1000")
        #expect(try Witness.stat("\(volume)/root-owned")?.owner == "0:0")
        #expect(try Files.readText("\(volume)/root-owned") == "a\nb\n")

        // The snapshot: created inside, stored as 0; the image's files not chowned (same
        // owner and change time as in the image, which the snapshot shares).
        let pool = "\(i.root.path)/pool"
        #expect(try i.tupp("exec", "a", "--", "sh", "-c", "touch /made-inside && stat -c %u /made-inside").stdout == "0\n")
        #expect(try Witness.stat("\(pool)/containers/a/made-inside")?.owner == "0:0")
        // (/etc is left out: tupp creates the mount points of /etc/hosts and /etc/resolv.conf.)
        let applets = try Files.list("\(pool)/images/box/bin").map { "bin/\($0)" }
        #expect(applets.count > 50)
        for path in ["bin"] + applets {
            let image = try #require(try lstat("\(pool)/images/box/\(path)")), snapshot = try #require(try lstat("\(pool)/containers/a/\(path)"))
            #expect(snapshot.st_uid == image.st_uid && snapshot.st_ctim.tv_sec == image.st_ctim.tv_sec && snapshot.st_ctim.tv_nsec == image.st_ctim.tv_nsec, "\(path)")
        }

        // Stable: a second apply changes nothing; a restart by hand keeps the range.
        #expect(try i.tupp("apply", manifest).stdout.contains("No changes."))
        let snapshotUUID = try Witness.subvolumeUUID("\(pool)/containers/b")
        let pidOfB = try #require(try initPID(i, "b"))
        let usernsOfB = try #require(PinnedNamespace(pid: pidOfB, kind: "user"))
        #expect(usernsOfB.members().contains { $0.hasPrefix("\(pidOfB) ") }, "the witness sees the live one")

        // Back to the host's namespace: the process restarts, the snapshot stays.
        let hostForB = volumesManifest(volumes: "  data: {}", containers: user("a", of: "data", at: "/data")
                                       + user("b", of: "data", at: "/data", extra: "    userns: host"))
        try i.manifest("userns.yaml", "defaults: { userns: auto }\n" + hostForB)
        let back = try i.tupp("plan", manifest)
        #expect(back.stdout.contains("container.b will be updated in place (the process restarts)"), "\(back.stdout)")
        #expect(back.stdout.contains("userns.uid_map") && back.stdout.contains("-> null"), "\(back.stdout)")
        #expect(!back.stdout.contains("forces replacement") && !back.stdout.contains("container.a"), "\(back.stdout)")
        #expect(try i.tupp("apply", manifest).status == 0)
        #expect(try Witness.subvolumeUUID("\(pool)/containers/b") == snapshotUUID)
        let hostB = try #require(try initPID(i, "b"))
        #expect(namespaceInode(pid: String(hostB), kind: "user") == namespaceInode(pid: "self", kind: "user"))
        #expect(try i.tupp("exec", "b", "--", "stat", "-c", "%u", "/data/root-owned").stdout == "0\n", "the same files, now unshifted")
        #expect(usernsOfB.members().isEmpty, "b's old user namespace is gone")

        // Destroy: no process of a's user namespace, no mount of its snapshot anywhere.
        let pidOfA = try #require(try initPID(i, "a"))
        let usernsOfA = try #require(PinnedNamespace(pid: pidOfA, kind: "user"))
        #expect(processesMounting(root: "/containers/a", ofFilesystemAt: pool).contains(pidOfA), "the witness sees the live one")
        // Read before destroy: the pool's device number, which the witness looks for after.
        let device = try #require(try MountInfo.read().last { $0.mountPoint == pool }?.device)
        #expect(try i.tupp("destroy", "--include-storage", "--include-volumes", manifest).status == 0)
        #expect(usernsOfA.members().isEmpty)
        let mounted = ((try? Files.list("/proc")) ?? []).filter { pid in
            Int32(pid) != nil && ((try? Files.readText("/proc/\(pid)/mountinfo")) ?? nil)?.contains(" \(device) /containers/a ") == true
        }
        #expect(mounted.isEmpty, "idmapped mounts left in \(mounted)")
    }

    @Test func delegatingACgroupNeedsCgroupV2() throws {
        guard try Host.require(.root, .btrfs, .command("/bin/busybox")) else { return }
        // On a v2-only host the runtime tests witness delegation; here, that a v1 host refuses it.
        guard try MountInfo.read().contains(where: { $0.fsType == "cgroup" && $0.superOptions.contains("memory") }) else { return }
        let i = try Installation()
        defer { i.finish() }
        let manifest = try i.manifest("delegate.yaml", volumesManifest(volumes: "  data: {}", containers: service("nested", extra: "    userns: auto\n    delegateCgroup: true")))
        let plan = try i.tupp("plan", manifest)
        #expect(plan.status == 1, "\(plan)")
        #expect(plan.output.contains("container.nested: delegateCgroup needs cgroup v2; this host's cgroup controllers are on v1"), "\(plan.output)")
        #expect(try i.tupp("apply", manifest).status != 0)
        #expect(try i.tupp("status").stdout.contains("No containers."))
    }
}
