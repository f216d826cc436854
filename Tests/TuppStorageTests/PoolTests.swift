import Glibc
import Testing
import TuppBase
import TuppFacts
import TuppManifest
import TuppStorage
import TuppSystem
import TuppTestSupport

@Suite("Pool on a loop device", .serialized)
struct PoolTests {
    @Test func createObserveRemountGrowAndRefuseShrink() async throws {
        guard try storageHostReady() else { return }
        let pool = try await TestPool.make(size: 256 << 20)
        defer { pool.destroy() }
        let root = Paths.canonical(pool.root)!

        // Outside witnesses: findmnt and losetup.
        let mount = try command(["findmnt", "-n", "-o", "FSTYPE,SOURCE", "--mountpoint", root]).output
            .split(separator: " ", omittingEmptySubsequences: true).map { String($0).trimmingCharacters() }
        #expect(mount.first == "btrfs")
        let loop = try #require(mount.last)
        #expect(loop.hasPrefix("/dev/loop"))
        let backing = try command(["losetup", "-n", "-O", "BACK-FILE,AUTOCLEAR", loop]).output
        #expect(backing.contains(Paths.canonical(pool.config.device!.file)!))
        #expect(backing.trimmingCharacters().hasSuffix("1"), "autoclear set: \(backing)")

        var observed = Pool.observe(pool.config)
        #expect(observed.rootExists && observed.onBtrfs && observed.mounted)
        #expect(observed.rootMode == 0o700)
        #expect(observed.loopDevice == loop && observed.mountSource == loop)
        #expect(observed.backingFile == Paths.canonical(pool.config.device!.file))
        #expect(observed.fileExists && observed.fileSize == 256 << 20)
        #expect(observed.filesystemSize == 256 << 20)
        #expect(Files.isDirectory("\(root)/images") && Files.isDirectory("\(root)/containers"))
        // Sparse: far fewer blocks allocated than the apparent size.
        let st = try #require(try Files.status(pool.config.device!.file))
        #expect(Int64(st.st_blocks) * 512 < 64 << 20)

        // Unmount → observed as unmounted, loop gone; mount() brings it back.
        try Pool.unmountAndDetach(pool.config)
        observed = Pool.observe(pool.config)
        #expect(!observed.mounted && observed.loopDevice == nil && observed.fileExists)
        #expect(try command(["losetup", "-n", "-j", pool.config.device!.file]).output.isEmpty)
        try Pool.mount(pool.config)
        observed = Pool.observe(pool.config)
        #expect(observed.mounted && observed.backedByDevice)
        try Pool.mount(pool.config)  // already mounted: no-op

        // Grow 256 → 512 MiB online; btrfs itself reports the new device size.
        var bigger = pool.config
        bigger.device!.size = 512 << 20
        try Pool.grow(bigger)
        observed = Pool.observe(bigger)
        #expect(observed.fileSize == 512 << 20)
        #expect(observed.filesystemSize == 512 << 20)
        let usage = try command(["btrfs", "filesystem", "usage", "-b", root]).output
        #expect(usage.contains("Device size:") && usage.contains("\(512 << 20)"), "\(usage)")
        let statfs = try command(["stat", "-f", "-c", "%T %b %S", root]).output.split(separator: " ")
        #expect(statfs.first == "btrfs")
        #expect(UInt64(statfs[1])! * UInt64(String(statfs[2]).trimmingCharacters())! > 400 << 20)

        // Shrinking is refused and changes nothing.
        var smaller = bigger
        smaller.device!.size = 300 << 20
        expectFailure { try Pool.grow(smaller) }
        do { try Pool.grow(smaller) } catch { #expect(render(error).contains("refusing to shrink")) }
        #expect(Pool.observe(bigger).fileSize == 512 << 20)

        // The image file cannot be removed while attached.
        expectFailure { try Pool.removeFile(pool.config) }
    }

    @Test func blankImageFromAnInterruptedCreateIsFormattedButDataNeverIs() async throws {
        guard try storageHostReady() else { return }
        let directory = try TemporaryDirectory("tupp-storage")
        let config = Storage(root: "\(directory.path)/pool", device: Storage.Device(file: "\(directory.path)/pool.img", size: 256 << 20))
        defer {
            try? Pool.unmountAndDetach(config)
            let left = Inventory.take(Inventory.Scope(directories: [directory.path]))
            #expect(left.mounts.isEmpty && left.loopDevices.isEmpty, "left behind:\n\(left)")
            directory.remove()
        }
        // A file with data but no filesystem: never formatted, the mount error says why.
        try command(["sh", "-c", "truncate -s 256M \"$0\" && printf precious | dd of=\"$0\" conv=notrunc status=none", config.device!.file])
        let refused = await { () async -> SystemError? in
            do { try await Pool.create(config); return nil } catch { return error as? SystemError }
        }()
        #expect(refused?.operation == "mount btrfs")
        var head = [UInt8](repeating: 0, count: 8)
        let fd = open(config.device!.file, O_RDONLY)
        #expect(fd >= 0 && pread(fd, &head, 8, 0) == 8 && head == Array("precious".utf8))
        close(fd)
        #expect(!Pool.observe(config).mounted)
        // A blank sparse file (ftruncate done, mkfs never ran) is formatted and mounted.
        try Files.remove(config.device!.file)
        try command(["truncate", "-s", "256M", config.device!.file])
        try await Pool.create(config)
        #expect(Pool.observe(config).mounted)
    }

    @Test func rootNotOnBtrfsIsRefusedWithoutDevice() async throws {
        guard try storageHostReady() else { return }
        let directory = try TemporaryDirectory("tupp-storage")
        defer { directory.remove() }
        let type = try command(["stat", "-f", "-c", "%T", directory.path]).output.trimmingCharacters()
        guard type != "btrfs" else { return }  // /tmp on btrfs: nothing to refuse
        do {
            try await Pool.create(Storage(root: "\(directory.path)/pool"))
            Issue.record("a pool root outside btrfs was accepted")
        } catch {
            #expect(render(error).contains("not on btrfs"))
        }
    }

    @Test func existingBtrfsRootWithoutDevice() async throws {
        guard try storageHostReady() else { return }
        let pool = try await TestPool.make()
        defer { pool.destroy() }
        do { try await existingBtrfsRootWithoutDevice(pool) } catch { Issue.record("\(render(error))") }
    }

    func existingBtrfsRootWithoutDevice(_ pool: TestPool) async throws {
        // A directory inside a mounted btrfs is a valid device-less pool root.
        let inner = Storage(root: "\(pool.root)/containers/nested-pool")
        try await Pool.create(inner)
        let observed = Pool.observe(inner)
        #expect(observed.onBtrfs && !observed.mounted && observed.rootMode == 0o700)
        let store = ImageStore(poolRoot: inner.root)
        let image = try await store.importImage(name: "box", from: .busybox(path: "/bin/busybox"))
        #expect(image.info.path == "images/box")
        let contents = try store.contents()
        #expect(contents.images["box"]?.uuid == image.info.uuid)
        // The outer pool sees it as a subvolume that is not one of its own images.
        let outer = try pool.store.contents()
        #expect(outer.images.isEmpty)
        #expect(outer.others.contains { $0.path == "containers/nested-pool/images/box" })
    }
}
