import CTuppSys
import Glibc
import Testing
import TuppFacts
import TuppManifest
import TuppStorage
import TuppSystem
import TuppTestSupport

/// The rich tree most import tests use: modes incl. setuid/sticky, owners, symlinks,
/// hard links, a FIFO, xattrs incl. security.capability, a device node to be skipped.
let richTarBody = """
dir(tf, "./", mode=0o755)
dir(tf, "etc", mode=0o755)
add(tf, "etc/passwd", b"root:x:0:0::/root:/bin/sh\\n", mode=0o644)
add(tf, "etc/shadow", b"secret\\n", mode=0o640, gid=42)
dir(tf, "bin")
add(tf, "bin/tool", b"#!/bin/sh\\necho tool\\n", mode=0o4755, uid=0, gid=0)
hard(tf, "bin/tool-again", "bin/tool")
sym(tf, "bin/sh", "/bin/tool")
sym(tf, "etc/rel", "../bin/tool")
dir(tf, "home/user", mode=0o700, uid=1000, gid=1000)
add(tf, "home/user/notes", b"mine", mode=0o600, uid=1000, gid=1000)
dir(tf, "tmp", mode=0o1777)
ti = info("bin/ping", size=4, mode=0o755)
ti.pax_headers = {"SCHILY.xattr.security.capability": "\\x01\\x00\\x00\\x02\\x00\\x20\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00", "SCHILY.xattr.user.origin": "tupp-test"}
tf.addfile(ti, io.BytesIO(b"ping"))
tf.addfile(info("run/fifo", type=tarfile.FIFOTYPE, mode=0o600))
dir(tf, "dev")
tf.addfile(info("dev/null", type=tarfile.CHRTYPE, mode=0o666, devmajor=1, devminor=3))
tf.addfile(info("dev/sda", type=tarfile.BLKTYPE, mode=0o660, devmajor=8, devminor=0))
"""

@Suite("Image import and snapshots", .serialized)
struct ImageTests {
    @Test func busyboxImageSnapshotAndReadOnly() async throws {
        try await withPool { pool in
            var reports: [ImportProgress] = []
            let image = try await pool.store.importImage(name: "box", from: .busybox(path: "/bin/busybox")) { reports.append($0) }
            let root = "\(pool.root)/images/box"
            #expect(image.info.readOnly && image.info.parentUUID == nil)
            #expect(reports.last?.finished == true)

            let binary = try #require(try Files.status("\(root)/bin/busybox"))
            let source = try #require(try Files.status("/bin/busybox"))
            #expect(binary.st_mode & 0o7777 == 0o755 && binary.st_size == source.st_size)
            #expect(try Files.read("\(root)/bin/busybox") == (try Files.read("/bin/busybox")))
            let applets = try command(["/bin/busybox", "--list-full"]).output.split(separator: "\n")
            for applet in applets where applet != "bin/busybox" {
                #expect(symlinkTarget("\(root)/\(applet)") == "/bin/busybox", "\(applet)")
            }
            #expect(fileText("\(root)/etc/passwd")?.hasPrefix("root:x:0:0:") == true)
            for file in ["etc/group", "etc/hosts", "etc/hostname"] { #expect(Files.exists("\(root)/\(file)")) }
            #expect((try Files.status("\(root)/tmp")?.st_mode ?? 0) & 0o7777 == 0o1777)
            #expect((try Files.status("\(root)/root")?.st_mode ?? 0) & 0o7777 == 0o700)
            for directory in ["proc", "sys", "dev"] { #expect(Files.isDirectory("\(root)/\(directory)")) }
            #expect(image.digest == (try ImageStore.identify(.busybox(path: "/bin/busybox"), cacheDirectory: pool.directory.path + "/cache")))

            // Read-only: a write into the image fails with EROFS.
            let fd = open("\(root)/etc/new", O_WRONLY | O_CREAT, 0o644)
            #expect(fd < 0 && errno == EROFS)
            if fd >= 0 { close(fd) }

            // Snapshot: btrfs-progs names the image as its parent; its writes stay its own.
            let snapshot = try pool.store.snapshot(image: "box", container: "web")
            #expect(snapshot.parentUUID == image.info.uuid && !snapshot.readOnly && snapshot.path == "containers/web")
            let show = try command(["btrfs", "subvolume", "show", "\(pool.root)/containers/web"]).output
            #expect(show.contains("Parent UUID:") && show.contains(image.info.uuid), "\(show)")
            try Files.writeAtomically("\(pool.root)/containers/web/etc/only-here", text: "x")
            #expect(Files.exists("\(pool.root)/containers/web/etc/only-here"))
            #expect(!Files.exists("\(root)/etc/only-here"))

            let contents = try pool.store.contents()
            #expect(contents.images.keys.sorted() == ["box"] && contents.containers.keys.sorted() == ["web"])
            #expect(contents.containers["web"]?.parentUUID == contents.images["box"]?.uuid)
            #expect(contents.leftovers.isEmpty)

            // A second snapshot of the same name is refused; deletion removes it.
            expectFailure { _ = try pool.store.snapshot(image: "box", container: "web") }
            try pool.store.deleteSubvolume("containers/web")
            #expect(try pool.store.contents().containers.isEmpty)
        }
    }

    @Test(.requires(storageFeatures), arguments: ["", "gz", "xz", "bz2"])
    func tarImportPreservesEverything(compression: String) async throws {
        try await withPool { pool in
            let tar = "\(pool.directory.path)/rootfs.tar\(compression.isEmpty ? "" : "." + compression)"
            try makeTar(tar, richTarBody, compression: compression)
            try await checkRichImport(pool, source: .tar(path: tar), name: "rich")
        }
    }

    @Test func zstdTarImport() async throws {
        guard try Host.require(.command("/usr/bin/zstd")) else { return }
        try await withPool { pool in
            let plain = "\(pool.directory.path)/rootfs.tar"
            try makeTar(plain, richTarBody)
            try command(["zstd", "-q", "-f", plain, "-o", plain + ".zst"])
            try await checkRichImport(pool, source: .tar(path: plain + ".zst"), name: "zst")
        }
    }

    func checkRichImport(_ pool: TestPool, source: Image.Source, name: String) async throws {
        let image = try await pool.store.importImage(name: name, from: source)
        let root = "\(pool.root)/images/\(name)"
        func st(_ path: String) throws -> stat { try #require(try Files.status("\(root)/\(path)")) }
        #expect(try st("bin/tool").st_mode & 0o7777 == 0o4755, "setuid kept (chmod after chown)")
        #expect(try st("etc/shadow").st_gid == 42 && (try st("etc/shadow").st_mode & 0o777) == 0o640)
        #expect(try st("home/user").st_uid == 1000 && (try st("home/user").st_mode & 0o777) == 0o700)
        #expect(try st("home/user/notes").st_uid == 1000)
        #expect(try st("tmp").st_mode & 0o7777 == 0o1777)
        #expect(try st("bin/tool").st_ino == (try st("bin/tool-again").st_ino), "hard link")
        #expect(try st("bin/tool").st_nlink == 2)
        #expect(try st("bin/sh").st_mode & S_IFMT == S_IFLNK)
        #expect(try st("run/fifo").st_mode & S_IFMT == S_IFIFO)
        #expect(try st("etc/passwd").st_mtim.tv_sec == 1_700_000_000)
        #expect(try st("etc").st_mtim.tv_sec == 1_700_000_000, "directory times applied after their contents")
        #expect(try Files.status("\(root)/dev/null") == nil && (try Files.status("\(root)/dev/sda")) == nil)
        #expect(image.warnings.contains { $0.contains("dev/null") && $0.contains("1:3") })
        #expect(image.warnings.contains { $0.contains("dev/sda") })
        #expect(xattr("\(root)/bin/ping", "user.origin") == Array("tupp-test".utf8))
        let capability = try #require(xattr("\(root)/bin/ping", "security.capability"))
        #expect(capability.count == 20 && capability[0] == 1 && capability[5] == 0x20, "cap_net_raw survives chown/chmod")
        let getcap = try command(["getcap", "\(root)/bin/ping"], allowFailure: true)
        if getcap.status == 0 { #expect(getcap.output.contains("cap_net_raw")) }
        #expect(image.digest == (try ImageStore.identify(source, cacheDirectory: pool.directory.path + "/cache")))
        #expect(image.entries >= 15)
    }

    @Test func sparseFilesKeepTheirHoles() async throws {
        try await withPool { pool in
            let tree = "\(pool.directory.path)/tree"
            try Files.createDirectory(tree)
            try command(["truncate", "-s", "64M", "\(tree)/sparse"])
            try command(["sh", "-c", "printf data | dd of=\(tree)/sparse bs=1 seek=33554432 conv=notrunc status=none"])
            let tar = "\(pool.directory.path)/sparse.tar"
            try command(["tar", "--sparse", "-C", tree, "-cf", tar, "."])
            _ = try await pool.store.importImage(name: "sparse", from: .tar(path: tar))
            _ = try await pool.store.importImage(name: "copied", from: .directory(path: tree))
            for image in ["sparse", "copied"] {
                let st = try #require(try Files.status("\(pool.root)/images/\(image)/sparse"))
                #expect(st.st_size == 64 << 20)
                #expect(Int(st.st_blocks) * 512 < 1 << 20, "\(image): \(st.st_blocks) blocks allocated")
                let fd = open("\(pool.root)/images/\(image)/sparse", O_RDONLY)
                defer { close(fd) }
                var bytes = [UInt8](repeating: 0, count: 4)
                #expect(pread(fd, &bytes, 4, 33_554_432) == 4 && bytes == Array("data".utf8))
            }
        }
    }

    @Test func directorySourceIsCopiedExactly() async throws {
        try await withPool { pool in
            // The rich tree extracted by GNU tar (outside witness) is the source directory.
            let tar = "\(pool.directory.path)/rich.tar"
            try makeTar(tar, richTarBody)
            let tree = "\(pool.directory.path)/tree"
            try Files.createDirectory(tree)
            try command(["tar", "--xattrs", "--xattrs-include=*", "-C", tree, "-xpf", tar])
            let image = try await pool.store.importImage(name: "copy", from: .directory(path: tree))
            var expected = try TreeSnapshot(tree, withMtimes: true)
            // Device nodes in the source are skipped, each with a warning.
            #expect(expected.nodes.removeValue(forKey: "dev/null")?.type == "chr")
            #expect(expected.nodes.removeValue(forKey: "dev/sda")?.type == "blk")
            #expect(image.warnings.count == 2)
            let actual = try TreeSnapshot("\(pool.root)/images/copy", withMtimes: true)
            #expect(actual.differences(from: expected) == [])
            #expect(xattr("\(pool.root)/images/copy/bin/ping", "security.capability") == xattr("\(tree)/bin/ping", "security.capability"))
            #expect(image.digest == (try ImageStore.identify(.directory(path: tree), cacheDirectory: pool.directory.path + "/cache")))
        }
    }

    @Test func reimportReplacesAtomicallyAndSnapshotsKeepTheOldImage() async throws {
        try await withPool { pool in
            let tar = "\(pool.directory.path)/v.tar"
            try makeTar(tar, "add(tf, \"version\", b\"1\")")
            let first = try await pool.store.importImage(name: "app", from: .tar(path: tar))
            let snapshot = try pool.store.snapshot(image: "app", container: "c1")
            try makeTar(tar, "add(tf, \"version\", b\"2\")")
            let second = try await pool.store.importImage(name: "app", from: .tar(path: tar))
            #expect(first.uuid != second.uuid && first.digest != second.digest)
            #expect(fileText("\(pool.root)/images/app/version") == "2")
            #expect(fileText("\(pool.root)/containers/c1/version") == "1")
            let contents = try pool.store.contents()
            #expect(contents.images["app"]?.uuid == second.info.uuid)
            // The container is now a snapshot of an older image: the planner's drift signal.
            #expect(contents.containers["c1"]?.parentUUID == first.info.uuid && snapshot.parentUUID == first.info.uuid)
            #expect(contents.leftovers.isEmpty && contents.others.isEmpty)
        }
    }
}

extension ImportedImage {
    var uuid: String { info.uuid }
}


@Suite("Archive names", .serialized)
struct ArchiveNameTests {
    @Test func utf8NamesSurviveInPaxAndGnuFormats() async throws {
        try await withPool { pool in
            let work = pool.directory.path
            // PAX stores UTF-8 in its path record; GNU/ustar store the raw bytes.
            try command(["python3", "-c", """
            import io, sys, tarfile
            for fmt, out in ((tarfile.PAX_FORMAT, sys.argv[1]), (tarfile.GNU_FORMAT, sys.argv[2])):
                with tarfile.open(out, "w", format=fmt, encoding="utf-8") as tf:
                    for name in ("café", "日本/ファイル", "x" * 150 + "é"):
                        ti = tarfile.TarInfo(name); data = name.encode(); ti.size = len(data)
                        tf.addfile(ti, io.BytesIO(data))
            """, "\(work)/pax.tar", "\(work)/gnu.tar"])
            for format in ["pax", "gnu"] {
                _ = try await pool.store.importImage(name: format, from: .tar(path: "\(work)/\(format).tar"))
                let root = "\(pool.root)/images/\(format)"
                #expect(fileText("\(root)/café") == "café", "\(format)")
                #expect(fileText("\(root)/日本/ファイル") == "日本/ファイル", "\(format)")
                #expect(fileText("\(root)/\(String(repeating: "x", count: 150))é") != nil, "\(format)")
            }
        }
    }

    @Test func nonUTF8NameIsRefusedClearly() async throws {
        try await withPool { pool in
            let tar = "\(pool.directory.path)/latin1.tar"
            try command(["python3", "-c", """
            import io, sys, tarfile
            with tarfile.open(sys.argv[1], "w", format=tarfile.GNU_FORMAT, encoding="latin-1") as tf:
                ti = tarfile.TarInfo("caf\\u00e9"); tf.addfile(ti, io.BytesIO(b""))
            """, tar])
            do {
                _ = try await pool.store.importImage(name: "latin", from: .tar(path: tar))
                Issue.record("a non-UTF-8 name was accepted")
            } catch let error as SystemError {
                #expect(error.object.contains(tar) && error.detail?.contains("UTF-8") == true, "\(render(error))")
            }
            #expect(try pool.store.contents().leftovers.isEmpty)
        }
    }
}
