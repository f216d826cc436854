import Glibc
import Testing
import TuppSystem
import TuppTestSupport

/// A pool, the busybox image, `images` (extra entries, indented two spaces), and the
/// volumes and containers given as YAML.
func volumesManifest(volumes: String, containers: String, images: String = "", project: String? = nil) -> String {
    """
    version: 1
    \(project.map { "project: \($0)" } ?? "")
    storage:
      root: {{ROOT}}/pool
      device: { file: {{ROOT}}/pool.img, size: 256MiB }
    images:
      box: { busybox: /bin/busybox }
    \(images)
    volumes:
    \(volumes)
    containers:
    \(containers)
    """
}

/// `service` with a volume mount.
func user(_ name: String, of volume: String, at target: String, extra: String = "") -> String {
    service(name, extra: "    mounts: [{ type: volume, source: \(volume), target: \(target) }]" + (extra.isEmpty ? "" : "\n" + extra))
}

/// What outside tools see of volumes: btrfs-progs, find(1), diff(1), stat(2).
enum Witness {
    static func btrfs(_ arguments: String...) throws -> Output { try Spawn.run(["/bin/btrfs"] + arguments, stderrToStdout: true) }

    /// The UUID `btrfs subvolume show` prints; nil when `path` is no subvolume.
    static func subvolumeUUID(_ path: String) throws -> String? {
        field("UUID:", in: try btrfs("subvolume", "show", path))
    }

    static func field(_ name: String, in output: Output) -> String? {
        guard output.status == 0 else { return nil }
        for line in output.stdout.split(separator: "\n") {
            let text = String(line).trimmingCharacters()
            if text.hasPrefix(name) { return String(text.dropFirst(name.count)).trimmingCharacters() }
        }
        return nil
    }

    /// The qgroup limit (max_rfer, raw) of the subvolume at `path`: "none", a byte count,
    /// or nil when quotas are off.
    static func limit(_ pool: String, _ path: String) throws -> String? {
        guard let id = field("Subvolume ID:", in: try btrfs("subvolume", "show", path)) else { return nil }
        let show = try btrfs("qgroup", "show", "-r", "--raw", pool)
        guard show.status == 0 else { return nil }
        for line in show.stdout.split(separator: "\n") {
            let columns = line.split(separator: " ", omittingEmptySubsequences: true)
            if columns.first == "0/\(id)", columns.count >= 4 { return String(columns[3]) }
        }
        return nil
    }

    /// Every entry below `path`: name, type, mode, owner, size (of files: a directory's
    /// differs between filesystems), link target (find -printf).
    static func tree(_ path: String) throws -> [String] {
        let out = try Spawn.run(["/usr/bin/find", path, "-mindepth", "1", "-printf", "%P %y %m %U:%G %s %l\\n"])
        return out.stdout.split(separator: "\n").map { line in
            var fields = line.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
            if fields.count > 4, fields[fields.count - 5] == "d" { fields[fields.count - 2] = "-" }
            return fields.joined(separator: " ")
        }.sorted()
    }

    /// Same entries, same metadata and the same bytes in every file.
    static func identical(_ a: String, _ b: String) throws -> Bool {
        try tree(a) == tree(b) && Spawn.run(["/usr/bin/diff", "-r", "--no-dereference", a, b]).status == 0
    }

    static func stat(_ path: String) throws -> (owner: String, mode: UInt32)? {
        guard let st = try Files.status(path) else { return nil }
        return ("\(st.st_uid):\(st.st_gid)", UInt32(st.st_mode & 0o7777))
    }
}

extension Installation {
    /// `tupp ARGUMENTS > file`.
    func tupp(_ arguments: [String], stdoutTo path: String) throws -> Int32 {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw SystemError("open", path) }
        defer { close(fd) }
        return Spawn.wait(try Spawn.start([Built.tupp, "--state-dir", state] + arguments, stdout: fd, stderr: 2, environment: ["NO_COLOR=1"]))
    }

    /// `tupp ARGUMENTS < file`, with its output.
    func tupp(_ arguments: [String], stdinFrom path: String) throws -> Output {
        try Spawn.run(["/bin/sh", "-c", "exec \"$0\" \"$@\" < \"$STREAM\"", Built.tupp, "--state-dir", state] + arguments,
                      environment: ["NO_COLOR=1", "STREAM=\(path)"])
    }

    /// Everything goes, volumes and the pool's file included; nothing may be left.
    func expectCleanIncludingVolumes(_ manifests: String..., sourceLocation: SourceLocation = #_sourceLocation) throws {
        let destroy = try tupp(["destroy", "--include-volumes", "--include-storage"] + manifests)
        #expect(destroy.status == 0, "\(destroy)", sourceLocation: sourceLocation)
        #expect(leftovers().isEmpty, "\(leftovers())", sourceLocation: sourceLocation)
    }

    /// A rootfs for a `directory:` image: static busybox with the applets the tests run,
    /// and /srv/data owned and moded unlike root's — what a new volume mounted there gets.
    func seededRootfs() throws -> String {
        let rootfs = "\(root.path)/rootfs"
        for directory in ["bin", "proc", "sys", "dev", "tmp", "etc", "srv"] { try Files.createDirectory("\(rootfs)/\(directory)") }
        guard let busybox = try Files.read("/bin/busybox") else { throw SystemError.failure("read", "/bin/busybox", "missing") }
        try Files.writeAtomically("\(rootfs)/bin/busybox", busybox, mode: 0o755)
        for applet in ["sh", "sleep", "cat", "ls", "dd", "echo", "rm", "stat"] { symlink("busybox", "\(rootfs)/bin/\(applet)") }
        let data = "\(rootfs)/srv/data"
        try Files.createDirectory(data)
        try Files.createDirectory("\(data)/sub")
        try Files.writeAtomically("\(data)/config", text: "seeded\n", mode: 0o640)
        try Files.writeAtomically("\(data)/sub/nested", text: "nested\n", mode: 0o600)
        chown(data, 1234, 1234)
        chmod(data, 0o711)
        chown("\(data)/config", 999, 999)
        chown("\(data)/sub", 1000, 1000)
        chmod("\(data)/sub", 0o750)
        return rootfs
    }
}

/// Volumes end to end (issue 13): data that outlives containers, images and destroy;
/// seeding once; quotas felt inside the container; snapshots carried to a second pool;
/// nothing deleted implicitly, nothing deleted while mounted. Witnessed with btrfs-progs,
/// find, diff, stat, dd inside the container, and the files on the host.
@Suite(.serialized) struct VolumeEngineTests {
    @Test func dataOutlivesReplacementRemovalAndDestroy() throws {
        guard try ready(), try Host.require(.command("/bin/btrfs")) else { return }
        let i = try Installation()
        defer { i.cleanupLeavingNothing() }
        let images = "  box2: { busybox: /bin/busybox }"
        let db = user("db", of: "data", at: "/data")
        let m = try i.manifest("m.yaml", volumesManifest(volumes: "  data: {}", containers: db, images: images))
        try i.apply(m)
        let volume = "\(i.root.path)/pool/volumes/data"
        let uuid = try #require(try Witness.subvolumeUUID(volume))
        #expect(try i.tupp("exec", "db", "--", "sh", "-c", "echo kept > /data/marker && echo lost > /outside").status == 0)
        #expect(try Files.readText("\(volume)/marker") == "kept\n", "written through the container into the volume on the host")

        // A new image replaces the container; the plan says which data stays and which goes.
        try i.manifest("m.yaml", volumesManifest(volumes: "  data: {}", containers: db.replacing("image: box\n", with: "image: box2\n"), images: images))
        let plan = try i.tupp("plan", m)
        #expect(plan.stdout.contains("-/+ container \"db\""), "\(plan.stdout)")
        #expect(plan.stdout.contains("! the writable snapshot containers/db is discarded: changes made inside the container outside /data are lost"))
        #expect(plan.stdout.contains("! kept: volume data (at /data)"), "\(plan.stdout)")
        try i.apply(m)
        #expect(try i.tupp("exec", "db", "--", "cat", "/data/marker").stdout == "kept\n")
        #expect(try i.tupp("exec", "db", "--", "cat", "/outside").status != 0, "what the note called lost is lost")
        #expect(try Witness.subvolumeUUID(volume) == uuid)

        // The container goes, the volume stays; declared again, it finds the data.
        try i.manifest("m.yaml", volumesManifest(volumes: "  data: {}", containers: "", images: images))
        let removed = try i.tupp("apply", m)
        #expect(removed.status == 0 && removed.stdout.contains("container.db: destroying… done"), "\(removed)")
        #expect(try i.tupp("status", "db").status != 0)
        #expect(try Witness.subvolumeUUID(volume) == uuid && (try Files.readText("\(volume)/marker")) == "kept\n")
        try i.manifest("m.yaml", volumesManifest(volumes: "  data: {}", containers: db, images: images))
        try i.apply(m)
        #expect(try i.tupp("exec", "db", "--", "cat", "/data/marker").stdout == "kept\n")

        // destroy keeps it (the pool's file too), and the next apply finds it.
        let destroy = try i.tupp("destroy", m)
        #expect(destroy.status == 0 && destroy.stdout.contains("Warning: volume.data is kept with its data"), "\(destroy)")
        #expect(!(try MountInfo.read().contains { $0.mountPoint == "\(i.root.path)/pool" }), "the pool is unmounted")
        #expect(try i.tupp("destroy", "--include-storage", m).stdout.contains("--include-storage would delete volume.data with the pool's file"))
        try i.apply(m)
        #expect(try i.tupp("exec", "db", "--", "cat", "/data/marker").stdout == "kept\n")
        #expect(try Witness.subvolumeUUID(volume) == uuid)
        #expect(try i.tupp("plan", "--detailed-exitcode", m).status == 0)

        // Kept by one destroy, deleted by a later one with the pool's file.
        #expect(try i.tupp("destroy", m).status == 0)
        let unmounted = try i.tupp("destroy", "--include-volumes", m)
        #expect(unmounted.status == 1 && unmounted.stderr.contains("run tupp apply to mount it"), "\(unmounted)")
        try i.expectCleanIncludingVolumes(m)
    }

    @Test func aNewVolumeIsSeededFromTheImageOnceAndNeverAgain() throws {
        guard try ready(), try Host.require(.command("/bin/btrfs"), .command("/usr/bin/find"), .command("/usr/bin/diff")) else { return }
        let i = try Installation()
        defer { i.cleanupLeavingNothing() }
        let rootfs = try i.seededRootfs()
        let images = "  seeded: { directory: {{ROOT}}/rootfs }"
        let app = user("app", of: "data", at: "/srv/data").replacing("image: box\n", with: "image: seeded\n")
        let m = try i.manifest("m.yaml", volumesManifest(volumes: "  data: {}", containers: app, images: images))
        let plan = try i.tupp("plan", m)
        #expect(plan.stdout.contains("! seeded once from what image seeded holds at /srv/data"), "\(plan.stdout)")
        try i.apply(m)
        let volume = "\(i.root.path)/pool/volumes/data"
        #expect(try Witness.identical("\(rootfs)/srv/data", volume), "\((try? Witness.tree(volume)) ?? [])")
        #expect(try Witness.stat(volume)! == ("1234:1234", 0o711), "the root takes the target's owner and mode")
        #expect(try Witness.stat("\(volume)/config")! == ("999:999", 0o640) && Witness.stat("\(volume)/sub")! == ("1000:1000", 0o750))
        #expect(try i.tupp("exec", "app", "--", "cat", "/srv/data/config").stdout == "seeded\n")

        // Changed inside; then the image changes (the container is replaced) and the
        // container is removed and declared again: the volume is never seeded again.
        #expect(try i.tupp("exec", "app", "--", "sh", "-c", "echo mine > /srv/data/config && rm /srv/data/sub/nested").status == 0)
        try Files.writeAtomically("\(rootfs)/srv/data/new-in-v2", text: "v2\n", mode: 0o644)
        let replaced = try i.tupp("apply", m)
        #expect(replaced.status == 0 && replaced.stdout.contains("container.app: replacing… done"), "\(replaced)")
        try i.manifest("m.yaml", volumesManifest(volumes: "  data: {}", containers: "", images: images))
        try i.apply(m)
        try i.manifest("m.yaml", volumesManifest(volumes: "  data: {}", containers: app, images: images))
        try i.apply(m)
        #expect(try Files.readText("\(volume)/config") == "mine\n")
        #expect(!Files.exists("\(volume)/sub/nested") && !Files.exists("\(volume)/new-in-v2"))

        // Deleted by hand under the running container: shown loudly, created EMPTY (never
        // seeded again), and the container restarted onto the new one.
        #expect(try Witness.btrfs("subvolume", "delete", volume).status == 0)
        let loud = try i.tupp("plan", m)
        #expect(loud.stdout.hasPrefix("Changed outside tupp:\n  ~ volume.data: missing — will be created EMPTY"), "\(loud.stdout)")
        #expect(loud.stdout.contains("! created EMPTY") && loud.stdout.contains("# volume.data is created # restarts the process"), "\(loud.stdout)")
        try i.apply(m)
        #expect(try Witness.tree(volume).isEmpty, "\((try? Witness.tree(volume)) ?? [])")
        #expect(try i.tupp("exec", "app", "--", "sh", "-c", "echo again > /srv/data/config").status == 0)
        #expect(try Files.readText("\(volume)/config") == "again\n", "the container writes to the new volume")
        try i.expectCleanIncludingVolumes(m)
    }

    @Test func aSizeIsAQuotaInsideTheContainerAndHandChangesAreRepaired() throws {
        guard try ready(), try Host.require(.command("/bin/btrfs")) else { return }
        let i = try Installation()
        defer { i.cleanupLeavingNothing() }
        let volumes = "  db: { size: 8MiB, owner: \"999:999\", mode: \"0750\" }\n  scratch: {}"
        let app = service("app", extra: "    mounts: [{ type: volume, source: db, target: /db }, { type: volume, source: scratch, target: /scratch }]")
        let m = try i.manifest("m.yaml", volumesManifest(volumes: volumes, containers: app))
        try i.apply(m)
        let pool = "\(i.root.path)/pool"
        #expect(try Witness.limit(pool, "\(pool)/volumes/db") == "\(8 << 20)")
        #expect(try Witness.limit(pool, "\(pool)/volumes/scratch") == "none")
        #expect(try Witness.stat("\(pool)/volumes/db")! == ("999:999", 0o750))

        // Past the size, inside: EDQUOT. The other volume and the host write on.
        let full = try i.tupp("exec", "app", "--", "dd", "if=/dev/zero", "of=/db/fill", "bs=1M", "count=16")
        #expect(full.status != 0 && full.output.contains("Disk quota exceeded"), "\(full)")
        #expect(try i.tupp("exec", "app", "--", "dd", "if=/dev/zero", "of=/scratch/fill", "bs=1M", "count=16").status == 0)
        #expect(try Spawn.run(["/bin/dd", "if=/dev/zero", "of=\(pool)/host-fill", "bs=1M", "count=16"]).status == 0)
        try Files.remove("\(pool)/host-fill")

        // Limit and mode changed by hand: drift, repaired in place (same process).
        let pid = try i.pid("app")
        #expect(try Witness.btrfs("qgroup", "limit", "2M", "\(pool)/volumes/db").status == 0)
        chmod("\(pool)/volumes/db", 0o777)
        let drift = try i.tupp("plan", "--detailed-exitcode", m)
        #expect(drift.status == 2 && drift.stdout.contains("~ volume.db: qgroup limit changed outside tupp (8MiB → 2MiB)"), "\(drift.stdout)")
        #expect(drift.stdout.contains("~ volume.db: mode changed outside tupp (\"0750\" → \"0777\")"), "\(drift.stdout)")
        try i.apply(m)
        #expect(try Witness.limit(pool, "\(pool)/volumes/db") == "\(8 << 20)")
        #expect(try Witness.stat("\(pool)/volumes/db")!.mode == 0o750)
        #expect(try i.pid("app") == pid)

        // A bigger size, in place: the write fits now.
        try i.manifest("m.yaml", volumesManifest(volumes: volumes.replacing("8MiB", with: "32MiB"), containers: app))
        let grown = try i.tupp("apply", m)
        #expect(grown.stdout.contains("~ size = 8388608 (8MiB) -> 33554432 (32MiB)"), "\(grown.stdout)")
        #expect(try i.tupp("exec", "app", "--", "dd", "if=/dev/zero", "of=/db/fill", "bs=1M", "count=16").status == 0)
        #expect(try i.pid("app") == pid)

        // No size left anywhere: the limit goes, and quotas with it.
        try i.manifest("m.yaml", volumesManifest(volumes: "  db: { owner: \"999:999\", mode: \"0750\" }\n  scratch: {}", containers: app))
        try i.apply(m)
        #expect(try Witness.btrfs("qgroup", "show", pool).status != 0, "quotas are off")
        #expect(try i.tupp("plan", "--detailed-exitcode", m).status == 0)
        try i.expectCleanIncludingVolumes(m)
    }

    @Test func snapshotsExportAndImportIntoASecondPool() throws {
        guard try ready(), try Host.require(.command("/bin/btrfs"), .command("/usr/bin/find"), .command("/usr/bin/diff")) else { return }
        let source = try Installation()
        defer { source.cleanupLeavingNothing() }
        let target = try Installation()
        defer { target.cleanupLeavingNothing() }
        let writer = user("writer", of: "data", at: "/data")
        let m1 = try source.manifest("m.yaml", volumesManifest(volumes: "  data: {}", containers: writer))
        try source.apply(m1)
        let script = "dd if=/dev/urandom of=/data/big bs=1M count=4 2>/dev/null && mkdir -p /data/dir && echo one > /data/dir/small"
            + " && chmod 0640 /data/dir/small && chown 7:8 /data/dir && ln -s dir/small /data/link"
        #expect(try source.tupp("exec", "writer", "--", "sh", "-c", script).status == 0)
        let t1 = try source.tupp("volume", "snapshot", "data", "--name", "t1", m1)
        #expect(t1.status == 0 && t1.stdout == "Snapshot data@t1 taken.\n", "\(t1)")
        let snapshots = "\(source.root.path)/pool/volumes/.snapshots/data"
        #expect(Witness.field("Flags:", in: try Witness.btrfs("subvolume", "show", "\(snapshots)/t1")) == "readonly")

        let full = "\(source.root.path)/t1.stream", incremental = "\(source.root.path)/t2.stream"
        #expect(try source.tupp(["volume", "export", "data@t1", m1], stdoutTo: full) == 0)
        #expect(try source.tupp("exec", "writer", "--", "sh", "-c", "echo two > /data/dir/small && echo new > /data/added").status == 0)
        #expect(try source.tupp("volume", "snapshot", "data", "--name", "t2", m1).status == 0)
        #expect(try source.tupp(["volume", "export", "data@t2", "--since", "t1", m1], stdoutTo: incremental) == 0)
        let fullSize = try #require(try Files.status(full)).st_size, incrementalSize = try #require(try Files.status(incremental)).st_size
        #expect(incrementalSize > 0 && incrementalSize * 20 < fullSize, "incremental \(incrementalSize) B, full \(fullSize) B")

        let listed = try source.tupp("volume", "list", "--json", m1).stdout
        #expect(listed.contains("\"name\":\"data\",\"state\":\"present\"") && listed.contains("\"tag\":\"t1\"") && listed.contains("\"tag\":\"t2\"")
                && listed.contains("\"users\":[{\"container\":\"writer\",\"state\":\"running\"}]"), "\(listed)")

        // A second pool: the pool alone, then the streams in order.
        let m2 = try target.manifest("m.yaml", volumesManifest(volumes: "", containers: ""))
        try target.apply(m2)
        let received = "\(target.root.path)/pool/volumes/data"
        let first = try target.tupp(["volume", "import", "data", m2], stdinFrom: full)
        #expect(first.status == 0 && first.stdout.contains("Imported data (snapshot data@t1)"), "\(first)")
        #expect(try Witness.identical("\(snapshots)/t1", received), "\((try? Witness.tree(received)) ?? [])")
        let refused = try target.tupp(["volume", "import", "data", m2], stdinFrom: incremental)
        #expect(refused.status != 0 && refused.stderr.contains("the volume exists; replace it explicitly"), "\(refused)")
        let second = try target.tupp(["volume", "import", "--replace", "data", m2], stdinFrom: incremental)
        #expect(second.status == 0, "\(second)")
        #expect(try Witness.identical("\(snapshots)/t2", received), "\((try? Witness.tree(received)) ?? [])")

        // Declared there now: tupp's already, never seeded, nothing to create.
        try target.manifest("m.yaml", volumesManifest(volumes: "  data: {}", containers: user("reader", of: "data", at: "/data")))
        let plan = try target.tupp("plan", m2)
        #expect(!plan.stdout.contains("volume.data will be created") && plan.stdout.contains("container.reader will be created"), "\(plan.stdout)")
        try target.apply(m2)
        #expect(try target.tupp("exec", "reader", "--", "cat", "/data/dir/small", "/data/added").stdout == "two\nnew\n")
        try target.expectCleanIncludingVolumes(m2)
        try source.expectCleanIncludingVolumes(m1)
    }

    @Test func aVolumeIsDeletedOnlyWhenPrunedAndNeverWhileMounted() throws {
        guard try ready(), try Host.require(.command("/bin/btrfs"), .command("/usr/bin/unshare")) else { return }
        let i = try Installation()
        defer { i.cleanupLeavingNothing() }
        let web = service("web")
        let db = user("db", of: "data", at: "/data", extra: "    protect: true")
        let m = try i.manifest("m.yaml", volumesManifest(volumes: "  data: {}\n  spare: {}", containers: db + web))
        try i.apply(m)
        let volumes = "\(i.root.path)/pool/volumes"
        try Files.writeAtomically("\(volumes)/data/precious", text: "x", mode: 0o644)

        // Left the manifest: kept (the container is protected, the volume is data).
        try i.manifest("m.yaml", volumesManifest(volumes: "", containers: web))
        let kept = try i.tupp("apply", m)
        #expect(kept.status == 0 && kept.stdout.contains("Warning: volume.data: kept (not declared; data retained"), "\(kept)")
        #expect(kept.stdout.contains("container.db is not in the manifest but protected"))
        #expect(try Witness.subvolumeUUID("\(volumes)/data") != nil && (try Witness.subvolumeUUID("\(volumes)/spare")) != nil)

        // Pruned while its container runs: refused, naming the container; nothing changes.
        let refused = try i.tupp("apply", "--prune-volumes", m)
        #expect(refused.status == 1 && refused.stdout.contains("volume.data cannot be deleted: container db mounts it"), "\(refused)")
        #expect(try Files.readText("\(volumes)/data/precious") == "x" && (try Witness.subvolumeUUID("\(volumes)/spare")) != nil)

        // Mounted by a process tupp does not know (in a mount namespace of its own): the
        // delete itself is refused, naming the namespace.
        let holder = try Spawn.start(["/usr/bin/unshare", "--mount", "--propagation", "private", "/bin/sh", "-c",
                                      "mount --bind \(volumes)/spare /mnt && exec sleep 60"])
        var reaped = false
        defer { if !reaped { kill(holder, SIGKILL); Spawn.wait(holder) } }
        for _ in 0..<100 where !((try? Files.readText("/proc/\(holder)/mountinfo"))?.contains(" /mnt ") ?? false) { usleep(50_000) }
        try i.manifest("m.yaml", volumesManifest(volumes: "  data: {}", containers: db + web))
        let busy = try i.tupp("apply", "--prune-volumes", m)
        #expect(busy.status == 1 && busy.output.contains("volume.spare: destroying… failed"), "\(busy)")
        #expect(busy.output.contains("EBUSY") && busy.output.contains("mount namespace of pid \(holder)"), "\(busy)")
        #expect(try Witness.subvolumeUUID("\(volumes)/spare") != nil)
        kill(holder, SIGKILL)
        Spawn.wait(holder)
        reaped = true

        // Unprotected, then removed with the volume: the container goes first, then the data.
        try i.manifest("m.yaml", volumesManifest(volumes: "  data: {}", containers: db.replacing("    protect: true\n", with: "") + web))
        try i.apply("--prune-volumes", m)
        try i.manifest("m.yaml", volumesManifest(volumes: "", containers: web))
        let pruned = try i.tupp("apply", "--prune-volumes", m)
        #expect(pruned.status == 0 && pruned.stdout.contains("! its data is deleted"), "\(pruned)")
        #expect(pruned.stdout.firstRange(of: "container.db: destroying")!.lowerBound < pruned.stdout.firstRange(of: "volume.data: destroying")!.lowerBound)
        #expect(try Witness.subvolumeUUID("\(volumes)/data") == nil && (try Witness.subvolumeUUID("\(volumes)/spare")) == nil)
        #expect(!Files.exists("\(i.state)/records/volume.data.json"))
        try i.expectCleanIncludingVolumes(m)
    }

    @Test func twoProjectsShareAVolumeLikeANetwork() throws {
        guard try ready(), try Host.require(.command("/bin/btrfs")) else { return }
        let i = try Installation()
        defer { i.cleanupLeavingNothing() }
        let alpha = try i.manifest("alpha.yaml", volumesManifest(volumes: "  shared: {}", containers: user("a", of: "shared", at: "/shared"),
                                                                project: "alpha"))
        let beta = try i.manifest("beta.yaml", volumesManifest(volumes: "  shared: {}", containers: user("b", of: "shared", at: "/shared"),
                                                              project: "beta"))
        try i.apply(alpha)
        let joined = try i.tupp("apply", beta)
        #expect(joined.status == 0 && joined.stdout.contains("now also declared by project beta (shared with project alpha)"), "\(joined)")
        #expect(try i.tupp("exec", "a", "--", "sh", "-c", "echo hello > /shared/note").status == 0)
        #expect(try i.tupp("exec", "b", "--", "cat", "/shared/note").stdout == "hello\n")

        // alpha lets go of it, even with --prune-volumes: beta still declares it.
        try i.manifest("alpha.yaml", volumesManifest(volumes: "", containers: "", project: "alpha"))
        let left = try i.tupp("apply", "--prune-volumes", alpha)
        #expect(left.status == 0 && left.stdout.contains("kept: also declared by project beta"), "\(left)")
        #expect(try i.tupp("exec", "b", "--", "cat", "/shared/note").stdout == "hello\n")
        // beta lets go of everything; the pool stays for alpha until alpha goes.
        #expect(try i.tupp("destroy", "--include-volumes", beta).status == 0)
        #expect(try Witness.subvolumeUUID("\(i.root.path)/pool/volumes/shared") == nil, "included and declared by no other project")
        try i.expectCleanIncludingVolumes(alpha)
    }
}
