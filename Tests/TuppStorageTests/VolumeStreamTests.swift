import CTuppSys
import Glibc
import Testing
import TuppFacts
import TuppManifest
@testable import TuppStorage
import TuppSystem
import TuppTestSupport

/// Snapshots, export and import between two loop pools: btrfs-progs and a tree comparison
/// (stat, readlink, content) are the witnesses.
@Suite("Volumes: snapshots, export, import", .serialized)
struct VolumeStreamTests {
    /// Exports `reference` into a new file; the file's path and size.
    static func export(_ store: VolumeStore, _ reference: String, since: String? = nil, to path: String) throws -> (String, UInt64) {
        let fd = try FileDescriptor.open(path, O_WRONLY | O_CREAT | O_EXCL, mode: 0o600)
        let result = try store.export(try VolumeReference.parse(reference), since: since, to: fd.rawValue)
        let size = UInt64(try #require(try Files.status(path)).st_size)
        #expect(result.bytes == size)
        return (path, size)
    }

    static func importFile(_ store: VolumeStore, _ name: String, _ path: String, replacing: Bool = false) async throws -> VolumeStore.ImportedVolume {
        let fd = try FileDescriptor.open(path, O_RDONLY)
        return try await store.importStream(into: name, from: fd.rawValue, replacing: replacing)
    }

    /// The SystemError `body` throws; nil (and a recorded issue) when it succeeds.
    static func failure(sourceLocation: SourceLocation = #_sourceLocation, _ body: () async throws -> Void) async -> SystemError? {
        do {
            try await body()
            Issue.record("expected a failure", sourceLocation: sourceLocation)
        } catch let error as SystemError {
            return error
        } catch {
            Issue.record("unexpected \(type(of: error))", sourceLocation: sourceLocation)
        }
        return nil
    }

    static func differences(_ a: String, _ b: String) throws -> [String] {
        try TreeSnapshot(a, withMtimes: true).differences(from: TreeSnapshot(b, withMtimes: true))
    }

    /// Nothing in volumes/.staging, for either pool.
    static func expectNoStaging(_ pool: TestPool, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let staging = "\(pool.root)/volumes/.staging"
        let entries = Files.exists(staging) ? try Files.list(staging) : []
        #expect(entries.isEmpty, "\(entries)", sourceLocation: sourceLocation)
    }

    @Test func snapshotExportImportIncremental() async throws {
        try await withPool(size: 512 << 20) { source in
            try await withPool(size: 512 << 20) { target in
                let a = VolumeStore(poolRoot: source.root), b = VolumeStore(poolRoot: target.root)
                let work = source.directory.path
                _ = try a.create("data", settings: VolumeSettings(owner: VolumeOwner(uid: 999, gid: 999), mode: 0o700))
                let live = "\(source.root)/volumes/data"
                try Files.createDirectory("\(live)/db")
                try Files.writeAtomically("\(live)/db/table", text: "rows 1-100\n", mode: 0o600)
                link("\(live)/db/table", "\(live)/db/table-link")
                symlink("db/table", "\(live)/current")
                chown("\(live)/db", 999, 999)
                _ = try command(["dd", "if=/dev/urandom", "of=\(live)/blob", "bs=1M", "count=4"])
                #expect(lsetxattr("\(live)/blob", "user.origin", "test", 4, 0) == 0)

                // A read-only snapshot: btrfs-progs says so, and writes fail.
                let t1 = try a.snapshot("data", tag: "t1")
                let t1Path = "\(source.root)/volumes/.snapshots/data/t1"
                #expect(try command(["btrfs", "subvolume", "show", t1Path]).output.contains("readonly"))
                #expect(try command(["btrfs", "property", "get", "-ts", t1Path, "ro"]).output.contains("ro=true"))
                let fd = open("\(t1Path)/new", O_WRONLY | O_CREAT, 0o600)
                #expect(fd < 0 && errno == EROFS)
                #expect(expectFailure { _ = try a.snapshot("data", tag: "t1") }?.code == EEXIST)
                #expect(try a.contents().snapshots(of: "data").map(\.tag) == ["t1"])

                // Full stream of t1 into the other pool: identical trees.
                let (full, fullSize) = try Self.export(a, "data@t1", to: "\(work)/t1.stream")
                let imported = try await Self.importFile(b, "data", full)
                #expect(imported.snapshot.tag == "t1" && !imported.replaced)
                #expect(imported.snapshot.subvolume.receivedUUID == t1.subvolume.uuid)
                let targetLive = "\(target.root)/volumes/data"
                let firstDifferences = try Self.differences(t1Path, targetLive)
                #expect(firstDifferences.isEmpty, "\(firstDifferences)")
                #expect(try Self.differences(t1Path, "\(target.root)/volumes/.snapshots/data/t1").isEmpty)
                let shown = try command(["btrfs", "subvolume", "show", "\(target.root)/volumes/.snapshots/data/t1"]).output
                #expect(shown.contains("Received UUID") && shown.contains(t1.subvolume.uuid), "\(shown)")
                #expect(xattr("\(targetLive)/blob", "user.origin") == Array("test".utf8))
                let root = try #require(try Files.status(targetLive))
                #expect(root.st_uid == 999 && root.st_mode & 0o7777 == 0o700)

                // Changes, t2, and a stream of only the differences.
                try Files.writeAtomically("\(live)/db/table", text: "rows 1-200\n", mode: 0o600)
                try Files.writeAtomically("\(live)/added", text: "new\n")
                unlink("\(live)/current")
                _ = try a.snapshot("data", tag: "t2")
                let (incremental, incrementalSize) = try Self.export(a, "data@t2", since: "t1", to: "\(work)/t2.stream")
                #expect(incrementalSize * 10 < fullSize, "incremental \(incrementalSize) vs full \(fullSize)")

                // Not applicable to a volume without t1, and refused before anything is received.
                let orphan = await Self.failure { _ = try await Self.importFile(b, "other", incremental) }
                #expect(orphan?.detail?.contains("parent is not a snapshot of this volume") == true, "\(orphan.map(render) ?? "")")
                #expect(try b.contents().volumes["other"] == nil && b.contents().snapshots["other"] == nil)
                try Self.expectNoStaging(target)

                // Onto the previous import: an existing volume is replaced only when asked.
                let refused = await Self.failure { _ = try await Self.importFile(b, "data", incremental) }
                #expect(refused?.code == EEXIST)
                let second = try await Self.importFile(b, "data", incremental, replacing: true)
                #expect(second.replaced && second.previousKeptAs == nil && second.snapshot.tag == "t2")
                let t2Path = "\(source.root)/volumes/.snapshots/data/t2"
                let secondDifferences = try Self.differences(t2Path, targetLive)
                #expect(secondDifferences.isEmpty, "\(secondDifferences)")
                #expect(try b.contents().snapshots(of: "data").map(\.tag) == ["t1", "t2"])

                // A replaced volume with changes of its own is kept as a snapshot.
                try Files.writeAtomically("\(targetLive)/local-only", text: "made on the target")
                try Files.writeAtomically("\(live)/added", text: "newer\n")
                _ = try a.snapshot("data", tag: "t3")
                let (third, _) = try Self.export(a, "data@t3", since: "t2", to: "\(work)/t3.stream")
                let replaced = try await Self.importFile(b, "data", third, replacing: true)
                let kept = try #require(replaced.previousKeptAs)
                #expect(fileText("\(target.root)/volumes/.snapshots/data/\(kept)/local-only") == "made on the target")
                #expect(!Files.exists("\(targetLive)/local-only") && fileText("\(targetLive)/added") == "newer\n")

                // A live export goes through a temporary snapshot that does not stay.
                let (liveStream, _) = try Self.export(a, "data", to: "\(work)/live.stream")
                #expect(try a.contents().snapshots(of: "data").map(\.tag) == ["t1", "t2", "t3"])
                try Self.expectNoStaging(source)
                let copy = try await Self.importFile(b, "copy", liveStream)
                #expect(try Self.differences(live, "\(target.root)/volumes/copy").isEmpty)
                #expect(copy.snapshot.tag.hasSuffix("Z"))
                // The imported volume is writable; the snapshot it came from is not.
                try Files.writeAtomically("\(target.root)/volumes/copy/probe", text: "w")
                let denied = open("\(target.root)/volumes/.snapshots/copy/\(copy.snapshot.tag)/probe", O_WRONLY | O_CREAT, 0o600)
                #expect(denied < 0 && errno == EROFS)

                // Deleting a snapshot; the volume and the others stay.
                try a.deleteSnapshot("data", tag: "t1")
                #expect(!Files.exists(t1Path) && Files.exists(t2Path) && Files.exists(live))
                try Self.expectNoStaging(source)
                try Self.expectNoStaging(target)
                #expect(try a.contents().leftovers.isEmpty && b.contents().leftovers.isEmpty)
            }
        }
    }

    /// Runs the real `btrfs receive` (chrooted, as tupp does, but without tupp's check)
    /// on a stream file into a fresh directory of the pool: the witness that a hand-made
    /// stream is one receive accepts and acts on. Returns the directory.
    static func receiveUnchecked(_ pool: TestPool, _ stream: String, into name: String) throws -> String {
        let directory = "\(pool.root)/\(name)"
        try Files.createDirectory(directory, mode: 0o700)
        let result = try command(["sh", "-c", "exec btrfs receive --chroot -e \"$1\" < \"$2\"", "sh", directory, stream], allowFailure: true)
        #expect(result.status == 0, "\(result.output)")
        return directory
    }

    static func le64(_ value: UInt64) -> [UInt8] { (0..<8).map { UInt8((value >> (8 * $0)) & 0xff) } }

    @Test func hostileAndBrokenStreamsChangeNothing() async throws {
        try await withPool { pool in
            let store = VolumeStore(poolRoot: pool.root)
            let work = pool.directory.path
            typealias S = VolumeUnitTests
            // The hand-made streams carry the CRC a real one does: compare on the kernel's first command.
            _ = try store.create("data")
            _ = try command(["dd", "if=/dev/urandom", "of=\(pool.root)/volumes/data/blob", "bs=64k", "count=32"])
            try Files.writeAtomically("\(pool.root)/volumes/data/secret", text: "top secret")
            let t1 = try store.snapshot("data", tag: "t1")
            let (full, size) = try Self.export(store, "data@t1", to: "\(work)/t1.stream")
            let real = try #require(try Files.read(full))
            let length = Int(real[17]) | Int(real[18]) << 8 | Int(real[19]) << 16 | Int(real[20]) << 24
            let stored = UInt32(real[23]) | UInt32(real[24]) << 8 | UInt32(real[25]) << 16 | UInt32(real[26]) << 24
            #expect(S.Stream.crc32c(Array(real[17..<23]) + [0, 0, 0, 0] + Array(real[27..<27 + length])) == stored)

            // A stream that clones another volume's file: receive alone finds the source by
            // its received UUID (here a copy of data@t1) and does it; tupp refuses before
            // receive reads that command.
            _ = try await Self.importFile(store, "copy", full)
            let victim = try #require(SendStreamCheck.uuidBytes(t1.subvolume.uuid))
            let theft = S.Stream(commands: [
                (1, [S.path("t1"), (1, S.own), (2, Self.le64(1))]),
                (3, [S.path("stolen"), (3, Self.le64(257))]),
                (16, [S.path("stolen"), (18, Self.le64(0)), (24, Self.le64(10)), (20, victim), (21, Self.le64(1)),
                      (22, Array("secret".utf8)), (23, Self.le64(0))]),
                (21, []),
            ])
            try Files.writeAtomically("\(work)/theft.stream", theft.bytes)
            let witness = try Self.receiveUnchecked(pool, "\(work)/theft.stream", into: "witness-theft")
            #expect(fileText("\(witness)/t1/stolen") == "top secret")
            let refused = await Self.failure { _ = try await Self.importFile(store, "evil", "\(work)/theft.stream") }
            #expect(refused?.detail?.contains("not a snapshot of this volume") == true, "\(refused.map(render) ?? "")")
            #expect(try store.contents().volumes["evil"] == nil && store.contents().snapshots["evil"] == nil)
            #expect(!Files.exists("\(pool.root)/volumes/.snapshots/evil"))

            // A stream that writes beside its subvolume: receive does; tupp refuses.
            let climb = S.full([(3, [S.path("../outside-marker"), (3, Self.le64(257))])])
            try Files.writeAtomically("\(work)/climb.stream", climb.bytes)
            let climbed = try Self.receiveUnchecked(pool, "\(work)/climb.stream", into: "witness-climb")
            #expect(Files.exists("\(climbed)/outside-marker"))
            let error = await Self.failure { _ = try await Self.importFile(store, "evil", "\(work)/climb.stream") }
            #expect(error?.detail?.contains("'..'") == true, "\(error.map(render) ?? "")")
            #expect(try command(["find", pool.root, "-name", "outside-marker"]).output.split(separator: "\n") == ["\(climbed)/outside-marker"])
            for directory in [witness, climbed] {
                _ = try command(["btrfs", "subvolume", "delete", "\(directory)/t1"])
                try Files.removeTree(directory)
            }

            // A device node.
            let device = S.full([(5, [S.path("sda"), (3, Self.le64(257)), (5, Self.le64(0o60660)), (8, Self.le64(8 << 8))])])
            try Files.writeAtomically("\(work)/device.stream", device.bytes)
            let deviceError = await Self.failure { _ = try await Self.importFile(store, "evil", "\(work)/device.stream") }
            #expect(deviceError?.detail?.contains("device node") == true)

            // Not a stream; a real stream cut in half.
            try Files.writeAtomically("\(work)/garbage.stream", Array("definitely not btrfs".utf8) + [UInt8](repeating: 0, count: 100))
            _ = await Self.failure { _ = try await Self.importFile(store, "evil", "\(work)/garbage.stream") }
            try Files.writeAtomically("\(work)/half.stream", Array(real.prefix(Int(size) / 2)))
            let cut = await Self.failure { _ = try await Self.importFile(store, "restored", "\(work)/half.stream") }
            #expect(cut?.detail?.contains("truncated") == true, "\(cut.map(render) ?? "")")
            let after = try store.contents()
            #expect(after.volumes.keys.sorted() == ["copy", "data"] && after.snapshots.keys.sorted() == ["copy", "data"])
            #expect(after.leftovers.isEmpty)
            try Self.expectNoStaging(pool)

            // The whole stream into the same pool under another name works; twice is a retry.
            let restored = try await Self.importFile(store, "restored", full)
            #expect(try Self.differences("\(pool.root)/volumes/data", "\(pool.root)/volumes/restored").isEmpty)
            try store.delete("restored")
            let retried = try await Self.importFile(store, "restored", full)
            #expect(restored.received && !retried.received)
            #expect(retried.snapshot.subvolume.uuid == restored.snapshot.subvolume.uuid)
            #expect(try Self.differences("\(pool.root)/volumes/data", "\(pool.root)/volumes/restored").isEmpty)
        }
    }
}
