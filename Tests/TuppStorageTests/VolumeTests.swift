import CTuppSys
import Glibc
import Testing
import TuppFacts
import TuppManifest
import TuppStorage
import TuppSystem
import TuppTestSupport

/// Volumes on a real loop pool: btrfs-progs, stat(2), lgetxattr and dd are the witnesses.
@Suite("Volumes: create, quotas, seeding", .serialized)
struct VolumeTests {
    /// `btrfs subvolume list` of the pool, one path per line (relative to the filesystem).
    static func listedSubvolumes(_ pool: TestPool) throws -> [String] {
        try command(["btrfs", "subvolume", "list", pool.root]).output.split(separator: "\n").compactMap { line in
            // "ID 257 gen 9 top level 5 path volumes/data"
            let words = line.split(separator: " ")
            return words.firstIndex(of: "path").map { words[($0 + 1)...].joined(separator: " ") }
        }
    }

    /// `btrfs qgroup show --raw` rows: qgroup id "0/N" → (referenced, exclusive, max referenced).
    static func qgroups(_ pool: TestPool) throws -> [String: (rfer: UInt64, excl: UInt64, max: String)] {
        _ = try command(["btrfs", "filesystem", "sync", pool.root])
        var rows: [String: (UInt64, UInt64, String)] = [:]
        for line in try command(["btrfs", "qgroup", "show", "-re", "--raw", pool.root]).output.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
            guard fields.count >= 4, fields[0].hasPrefix("0/"), let rfer = UInt64(fields[1]), let excl = UInt64(fields[2]) else { continue }
            rows[fields[0]] = (rfer, excl, fields[3])
        }
        return rows
    }

    /// dd of `megabytes` MiB of zeros to `path` with an fsync at the end: the exit status and what it said.
    static func write(_ path: String, megabytes: Int) throws -> Output {
        try command(["dd", "if=/dev/zero", "of=\(path)", "bs=1M", "count=\(megabytes)", "conv=fsync"], allowFailure: true)
    }

    @Test func createObserveDelete() async throws {
        try await withPool { pool in
            let volumes = VolumeStore(poolRoot: pool.root)
            var points: [String] = []
            let created = try volumes.create("data", settings: VolumeSettings(owner: VolumeOwner(uid: 999, gid: 998), mode: 0o700)) {
                points.append($0)
            }
            let path = "\(pool.root)/volumes/data"
            #expect(points.count == 2 && points.first?.contains("create subvolume") == true && points.last?.contains("move into place") == true,
                    "\(points)")

            // btrfs-progs sees a subvolume with the id and uuid we report.
            let show = try command(["btrfs", "subvolume", "show", path]).output
            #expect(show.contains(created.subvolume.uuid) && show.contains("Subvolume ID:") && show.contains("\t\(created.subvolume.id)\n"),
                    "\(show)")
            #expect(try Self.listedSubvolumes(pool).contains("volumes/data"))
            let st = try #require(try Files.status(path))
            #expect(st.st_uid == 999 && st.st_gid == 998 && st.st_mode & 0o7777 == 0o700)

            // Observation agrees, and nothing is mistaken for an image leftover or a stray subvolume.
            _ = try volumes.create("plain")
            let contents = try volumes.contents()
            #expect(contents.volumes["data"]?.subvolume.uuid == created.subvolume.uuid)
            #expect(contents.volumes["data"]?.owner == VolumeOwner(uid: 999, gid: 998) && contents.volumes["data"]?.mode == 0o700)
            #expect(contents.volumes["plain"]?.owner == VolumeOwner(uid: 0, gid: 0) && contents.volumes["plain"]?.mode == 0o755)
            #expect(contents.leftovers.isEmpty && contents.others.isEmpty && contents.snapshots.isEmpty)
            #expect(try Files.list("\(pool.root)/volumes/.staging").isEmpty)
            #expect(try pool.store.contents().others.isEmpty)

            // No volume declares a size: quotas stay off.
            #expect(!contents.quotas.enabled && contents.volumes["data"]?.usage == nil)
            #expect(try command(["btrfs", "qgroup", "show", pool.root], allowFailure: true).status != 0)

            // A volume is created once: the second create is refused and changes nothing.
            try Files.writeAtomically("\(path)/kept", text: "mine")
            let again = expectFailure { _ = try volumes.create("data") }
            #expect(again?.code == EEXIST, "\(again.map(render) ?? "")")
            #expect(fileText("\(path)/kept") == "mine")

            // Owner and mode change in place, and drift is what stat shows.
            try volumes.setOwnerAndMode("data", owner: VolumeOwner(uid: 5, gid: 6), mode: 0o750)
            let changed = try #require(try Files.status(path))
            #expect(changed.st_uid == 5 && changed.st_gid == 6 && changed.st_mode & 0o7777 == 0o750)
            chmod(path, 0o777)
            let drifted = try #require(try volumes.contents().volumes["data"])
            #expect(drifted.mode == 0o777 && drifted.owner == VolumeOwner(uid: 5, gid: 6))

            try volumes.delete("data")
            #expect(!Files.exists(path))
            #expect(try !Self.listedSubvolumes(pool).contains("volumes/data"))
            #expect(try volumes.contents().volumes.keys.sorted() == ["plain"])
            #expect(expectFailure { try volumes.delete("data") }?.code == ENOENT)
        }
    }

    @Test func aVolumeIsNeverVisibleHalfMade() async throws {
        try await withPool { pool in
            try makeTar("\(pool.directory.path)/app.tar", """
            dir(tf, "srv/data")
            for i in range(50):
                add(tf, "srv/data/f%d" % i, b"x" * 1000)
            """)
            _ = try await pool.store.importImage(name: "app", from: .tar(path: "\(pool.directory.path)/app.tar"))
            let volumes = VolumeStore(poolRoot: pool.root)
            // At every point between side effects — where a crash could stop it — the
            // volume is either absent or complete.
            var seen: [String] = []
            _ = try volumes.create("data", settings: VolumeSettings(size: 64 << 20), seed: VolumeSeed(image: "app", path: "/srv/data")) { label in
                let now = try? volumes.contents()
                #expect(now?.volumes["data"] == nil, "visible at \(label)")
                seen.append(label)
            }
            #expect(seen.count == 5, "\(seen)")  // quotas, subvolume, limit, seed, move
            #expect(try Files.list("\(pool.root)/volumes/data").count == 50)

            // A failure at the last step (the name was taken meanwhile) leaves nothing behind.
            let failure = expectFailure {
                _ = try volumes.create("late") { label in
                    if label.contains("move into place") { mkdir("\(pool.root)/volumes/late", 0o700) }
                }
            }
            #expect(failure?.code == EEXIST)
            #expect(try volumes.contents().leftovers.isEmpty)
            #expect(try Files.list("\(pool.root)/volumes/.staging").isEmpty)
            #expect(try Files.list("\(pool.root)/volumes/late").isEmpty)  // the stranger's directory is untouched
            rmdir("\(pool.root)/volumes/late")

            // What a crash leaves is reported per volume and removed.
            // (An unfinished receive is a writable subvolume among the snapshots.)
            _ = try command(["btrfs", "subvolume", "create", "\(pool.root)/volumes/.staging/create-data-0123456789ab"])
            try Files.createDirectory("\(pool.root)/volumes/.staging/export-data-0123456789ab")
            _ = try command(["btrfs", "subvolume", "snapshot", "-r", "\(pool.root)/volumes/data",
                             "\(pool.root)/volumes/.staging/export-data-0123456789ab/20260101T000000Z"])
            try Files.createDirectory("\(pool.root)/volumes/.snapshots/data")
            _ = try command(["btrfs", "subvolume", "create", "\(pool.root)/volumes/.snapshots/data/t1"])
            let leftovers = try volumes.contents().leftovers
            #expect(Set(leftovers.map(\.kind)) == [.create, .export, .receive] && leftovers.allSatisfy { $0.volume == "data" })
            #expect(try volumes.contents().snapshots.isEmpty)
            for leftover in leftovers { try volumes.removeLeftover(leftover) }
            #expect(try Files.list("\(pool.root)/volumes/.staging").isEmpty)
            #expect(!Files.exists("\(pool.root)/volumes/.snapshots/data"))
            #expect(try Self.listedSubvolumes(pool).allSatisfy { !$0.contains(".staging") && !$0.contains(".snapshots") })
            // A volume cannot be removed as a leftover.
            let data = try #require(try volumes.contents().volumes["data"])
            #expect(expectFailure { try volumes.removeLeftover(VolumeLeftover(kind: .create, volume: "data", subvolume: data.subvolume)) } != nil)
        }
    }

    @Test func aWritePastTheSizeFailsAndNothingElseIsLimited() async throws {
        try await withPool(size: 512 << 20) { pool in
            let volumes = VolumeStore(poolRoot: pool.root)
            let small = try volumes.create("small", settings: VolumeSettings(size: 8 << 20))
            _ = try volumes.create("big")
            let qgroup = "0/\(small.subvolume.id)"

            // Quotas came on with the first size; btrfs-progs shows the limit.
            #expect(try Self.qgroups(pool)[qgroup]?.max == "\(8 << 20)")
            let limited = try Self.write("\(pool.root)/volumes/small/fill", megabytes: 16)
            #expect(limited.status != 0 && limited.output.contains("Disk quota exceeded"), "\(limited.output)")
            // Another volume and the pool itself are not limited.
            #expect(try Self.write("\(pool.root)/volumes/big/fill", megabytes: 16).status == 0)
            #expect(try Self.write("\(pool.root)/host-file", megabytes: 16).status == 0)
            unlink("\(pool.root)/host-file")

            // Usage as btrfs-progs counts it.
            let rows = try Self.qgroups(pool)
            let observed = try volumes.contents()
            #expect(observed.quotas == QuotaStatus(enabled: true))
            let usage = try #require(observed.volumes["small"]?.usage)
            #expect(usage.referenced == rows[qgroup]?.rfer && usage.exclusive == rows[qgroup]?.excl && usage.limit == 8 << 20)
            #expect(usage.referenced > 4 << 20 && usage.referenced <= 8 << 20)
            #expect(observed.volumes["big"]?.usage?.referenced ?? 0 >= 16 << 20 && observed.volumes["big"]?.usage?.limit == nil)

            // Grown in place: the write now fits.
            try volumes.setLimit("small", bytes: 64 << 20)
            #expect(try Self.qgroups(pool)[qgroup]?.max == "\(64 << 20)")
            #expect(try Self.write("\(pool.root)/volumes/small/fill", megabytes: 16).status == 0)

            // A limit changed by hand is observed, and setting it again repairs it.
            _ = try command(["btrfs", "qgroup", "limit", "2M", "\(pool.root)/volumes/small"])
            let drifted = try #require(try volumes.contents().volumes["small"])
            #expect(drifted.usage?.limit == 2 << 20)
            try volumes.setLimit("small", bytes: 64 << 20)
            #expect(try Self.qgroups(pool)[qgroup]?.max == "\(64 << 20)")

            // No size: the limit goes; no volume with a size: quotas can go.
            try volumes.setLimit("small", bytes: nil)
            #expect(try Self.qgroups(pool)[qgroup]?.max == "none")
            try volumes.disableQuotas()
            #expect(try command(["btrfs", "qgroup", "show", pool.root], allowFailure: true).status != 0)
            #expect(try volumes.contents().quotas == .disabled)
        }
    }

    /// Image content at /srv/data (owners, modes, a hard link, symlinks, an xattr), a
    /// symlink to it, one that climbs out, and a file.
    static let seedImage = """
    dir(tf, "srv", mode=0o755)
    dir(tf, "srv/data", mode=0o750, uid=70, gid=71)
    add(tf, "srv/data/conf", b"config\\n", mode=0o640, uid=70, gid=71)
    add(tf, "srv/data/tool", b"#!/bin/sh\\n", mode=0o4755)
    hard(tf, "srv/data/conf-again", "srv/data/conf", mode=0o640, uid=70, gid=71)
    sym(tf, "srv/data/abs", "/etc/passwd")
    sym(tf, "srv/data/rel", "../outside")
    dir(tf, "srv/data/sub", mode=0o700, uid=70, gid=71)
    ti = info("srv/data/sub/noted", size=4, mode=0o600)
    ti.pax_headers = {"SCHILY.xattr.user.note": "kept"}
    tf.addfile(ti, io.BytesIO(b"note"))
    sym(tf, "link", "srv/data")
    sym(tf, "escape", "../../../../../../../../etc")
    add(tf, "file", b"not a directory")
    """

    @Test func seedingCopiesTheImageOnceAndStaysInside() async throws {
        try await withPool { pool in
            try makeTar("\(pool.directory.path)/app.tar", Self.seedImage)
            _ = try await pool.store.importImage(name: "app", from: .tar(path: "\(pool.directory.path)/app.tar"))
            let volumes = VolumeStore(poolRoot: pool.root)
            let source = "\(pool.root)/images/app/srv/data"

            let seeded = try volumes.create("seeded", seed: VolumeSeed(image: "app", path: "/srv/data"))
            guard case .copied(let entries, let bytes) = seeded.seed else {
                Issue.record("not seeded: \(seeded.seed)")
                return
            }
            #expect(entries == 8 && bytes == 7 + 10 + 4, "\(entries) entries, \(bytes) bytes")
            let volume = "\(pool.root)/volumes/seeded"
            let differences = try TreeSnapshot(volume).differences(from: TreeSnapshot(source))
            #expect(differences.isEmpty, "\(differences)")
            let root = try #require(try Files.status(volume))
            #expect(root.st_uid == 70 && root.st_gid == 71 && root.st_mode & 0o7777 == 0o750)
            #expect(xattr("\(volume)/sub/noted", "user.note") == Array("kept".utf8))
            #expect(symlinkTarget("\(volume)/abs") == "/etc/passwd")

            // The target through a symlink of the image, resolved in the image.
            let viaLink = try volumes.create("via-link", seed: VolumeSeed(image: "app", path: "/link"))
            #expect(viaLink.seed == seeded.seed)
            #expect(try TreeSnapshot("\(pool.root)/volumes/via-link").differences(from: TreeSnapshot(source)).isEmpty)
            // A symlink climbing out stays inside the image (which has no /etc): nothing to seed,
            // where following it on the host would have copied the host's /etc.
            let escape = try volumes.create("escape", seed: VolumeSeed(image: "app", path: "/escape"))
            #expect(escape.seed == .nothingAtTarget)
            #expect(try Files.list("\(pool.root)/volumes/escape").isEmpty)
            #expect(try volumes.create("file", seed: VolumeSeed(image: "app", path: "/file")).seed == .nothingAtTarget)
            #expect(try volumes.create("absent", seed: VolumeSeed(image: "app", path: "/nothing/here")).seed == .nothingAtTarget)
            #expect(expectFailure { _ = try volumes.create("bad", seed: VolumeSeed(image: "app", path: "/srv/../etc")) } != nil)

            // Declared owner and mode win over the image's; the content is the image's.
            _ = try volumes.create("owned", settings: VolumeSettings(owner: VolumeOwner(uid: 1, gid: 2), mode: 0o711),
                                   seed: VolumeSeed(image: "app", path: "/srv/data"))
            let owned = try #require(try Files.status("\(pool.root)/volumes/owned"))
            #expect(owned.st_uid == 1 && owned.st_gid == 2 && owned.st_mode & 0o7777 == 0o711)
            #expect(fileText("\(pool.root)/volumes/owned/conf") == "config\n")

            // Never again: changed data survives a second create of the same volume.
            try Files.writeAtomically("\(volume)/conf", text: "changed", mode: 0o640)
            #expect(expectFailure { _ = try volumes.create("seeded", seed: VolumeSeed(image: "app", path: "/srv/data")) }?.code == EEXIST)
            #expect(fileText("\(volume)/conf") == "changed")
            #expect(fileText("\(source)/conf") == "config\n")
        }
    }
}
