import Glibc
import Testing
import TuppBase
import TuppFacts
import TuppManifest
import TuppStorage
import TuppSystem
import TuppTestSupport

@Suite("Identity, interruption, deletion", .serialized)
struct LifecycleTests {
    @Test func identifyFollowsTheSourceAndTheCacheAvoidsRereading() async throws {
        try await withPool { pool in
            let work = pool.directory.path
            let cache = "\(work)/cache"
            let tar = "\(work)/rootfs.tar"
            try makeTar(tar, "add(tf, \"a\", b\"one\")")
            let first = try ImageStore.identify(.tar(path: tar), cacheDirectory: cache)
            #expect(first == "sha256:" + (try sha256sum(tar)))

            // A cache hit does not read the file: poison the cached digest and it comes back.
            let cacheFiles = try Files.list(cache)
            #expect(cacheFiles.count == 1)
            let cacheFile = "\(cache)/\(cacheFiles[0])"
            let poisoned = try #require(fileText(cacheFile)).replacingOccurrences(of: String(first.dropFirst(7)), with: String(repeating: "0", count: 64))
            try Files.writeAtomically(cacheFile, text: poisoned)
            #expect(try ImageStore.identify(.tar(path: tar), cacheDirectory: cache) == "sha256:" + String(repeating: "0", count: 64))

            // A changed source is noticed (new mtime/ctime/size) and hashed again.
            try makeTar(tar, "add(tf, \"a\", b\"two\")")
            let second = try ImageStore.identify(.tar(path: tar), cacheDirectory: cache)
            let secondExpected = "sha256:" + (try sha256sum(tar))
            #expect(second != first && second == secondExpected)
            // Same size, same mtime restored: ctime still moves, so the rewrite is seen.
            try makeTar(tar, "add(tf, \"a\", b\"six\")")
            try command(["touch", "-d", "@1700000000", tar])
            let third = try ImageStore.identify(.tar(path: tar), cacheDirectory: cache)
            let thirdExpected = "sha256:" + (try sha256sum(tar))
            #expect(third == thirdExpected && third != second)

            // Directories: content, mode and symlink changes all change the digest.
            let tree = "\(work)/tree"
            try Files.createDirectory("\(tree)/sub")
            try Files.writeAtomically("\(tree)/sub/file", text: "x", mode: 0o644)
            let d1 = try ImageStore.identify(.directory(path: tree), cacheDirectory: cache)
            #expect(try ImageStore.identify(.directory(path: tree), cacheDirectory: cache) == d1)
            chmod("\(tree)/sub/file", 0o600)
            let d2 = try ImageStore.identify(.directory(path: tree), cacheDirectory: cache)
            try Files.writeAtomically("\(tree)/sub/file", text: "y", mode: 0o600)
            let d3 = try ImageStore.identify(.directory(path: tree), cacheDirectory: cache)
            symlink("sub/file", "\(tree)/link")
            let d4 = try ImageStore.identify(.directory(path: tree), cacheDirectory: cache)
            #expect(Set([d1, d2, d3, d4]).count == 4)

            // An import records the digest it computed; the next identify is a cache hit,
            // and a later import trusts the cache only while the file's stamp is unchanged.
            let fresh = "\(work)/fresh.tar"
            try makeTar(fresh, "add(tf, \"b\", b\"bee\")")
            let imported = try await pool.store.importImage(name: "fresh", from: .tar(path: fresh), cacheDirectory: cache)
            #expect(imported.digest == "sha256:" + (try sha256sum(fresh)))
            #expect(try ImageStore.identify(.tar(path: fresh), cacheDirectory: cache) == imported.digest)
            let again = try await pool.store.importImage(name: "fresh", from: .tar(path: fresh), cacheDirectory: cache)
            #expect(again.digest == imported.digest && again.info.uuid != imported.info.uuid)
            try makeTar(fresh, "add(tf, \"b\", b\"wasp\")")
            let changed = try await pool.store.importImage(name: "fresh", from: .tar(path: fresh), cacheDirectory: cache)
            #expect(changed.digest == "sha256:" + (try sha256sum(fresh)) && changed.digest != imported.digest)

            // Busybox: the binary's sha256.
            #expect(try ImageStore.identify(.busybox(path: "/bin/busybox"), cacheDirectory: cache) == "sha256:" + (try sha256sum("/bin/busybox")))
        }
    }

    @Test func failedImportKeepsThePreviousImageAndLeavesNoTemporarySubvolume() async throws {
        try await withPool { pool in
            let work = pool.directory.path
            let good = "\(work)/good.tar"
            try makeTar(good, "add(tf, \"version\", b\"good\")", compression: "gz")
            let original = try await pool.store.importImage(name: "app", from: .tar(path: good))
            // Many entries, then the stream is cut off in the middle.
            let big = "\(work)/big.tar.gz"
            try makeTar(big, "for i in range(2000):\n    add(tf, \"f%d\" % i, bytes(1000))", compression: "gz")
            let bytes = try #require(try Files.read(big))
            let truncated = "\(work)/truncated.tar.gz"
            try Files.writeAtomically(truncated, Array(bytes.prefix(bytes.count / 2)), mode: 0o644)
            do {
                _ = try await pool.store.importImage(name: "app", from: .tar(path: truncated))
                Issue.record("a truncated archive was imported")
            } catch let error as SystemError {
                #expect(error.object.contains(truncated), "\(render(error))")
            }
            let contents = try pool.store.contents()
            #expect(contents.leftovers.isEmpty)
            #expect(contents.images["app"]?.uuid == original.info.uuid)
            #expect(fileText("\(pool.root)/images/app/version") == "good")
        }
    }

    @Test func cancelledImportLeavesNothing() async throws {
        try await withPool { pool in
            let work = pool.directory.path
            let big = "\(work)/big.tar"
            try makeTar(big, "for i in range(20000):\n    add(tf, \"d%d/f%d\" % (i % 50, i), bytes(2000))")
            // Cancelled from inside its first progress report, once the import is under
            // way: polling from outside raced a fast import to its end under load.
            let task = Task {
                try await pool.store.importImage(name: "big", from: .tar(path: big)) { _ in
                    withUnsafeCurrentTask { $0?.cancel() }
                }
            }
            do {
                _ = try await task.value
                Issue.record("the import finished despite cancellation")
            } catch is CancellationError {
            } catch {
                Issue.record("unexpected \(render(error))")
            }
            let contents = try pool.store.contents()
            #expect(contents.images.isEmpty && contents.leftovers.isEmpty)
        }
    }

    @Test func leftoverFromACrashIsReportedAndRemovable() async throws {
        try await withPool { pool in
            // What a killed import leaves: a writable temporary subvolume with some content.
            try command(["btrfs", "subvolume", "create", "\(pool.root)/images/.import-app-dead01"])
            try Files.writeAtomically("\(pool.root)/images/.import-app-dead01/partial", text: "half")
            let contents = try pool.store.contents()
            #expect(contents.images.isEmpty)
            let leftover = try #require(contents.leftovers.first)
            #expect(leftover.path == "images/.import-app-dead01" && contents.leftovers.count == 1)
            // Only leftovers are accepted by removeLeftover.
            _ = try await pool.store.importImage(name: "box", from: .busybox(path: "/bin/busybox"))
            let image = try #require(try pool.store.contents().images["box"])
            expectFailure { try pool.store.removeLeftover(image) }
            try pool.store.removeLeftover(leftover)
            #expect(try pool.store.contents().leftovers.isEmpty)
            #expect(!Files.exists("\(pool.root)/images/.import-app-dead01"))
        }
    }

    @Test func deletionRefusesWhileMountedAndRemovesNestedSubvolumes() async throws {
        try await withPool { pool in
            _ = try await pool.store.importImage(name: "box", from: .busybox(path: "/bin/busybox"))
            _ = try pool.store.snapshot(image: "box", container: "web")
            let container = "\(pool.root)/containers/web"
            // A subvolume the container made inside itself.
            try command(["btrfs", "subvolume", "create", "\(container)/var-lib"])
            #expect(try pool.store.contents().others.map(\.path) == ["containers/web/var-lib"])

            // Something mounted below it: refused, naming the mount.
            try command(["mount", "-t", "tmpfs", "tmpfs", "\(container)/tmp"])
            var error = expectFailure { try pool.store.deleteSubvolume("containers/web") }
            #expect(error?.code == EBUSY && error?.detail?.contains("\(Paths.canonical(container)!)/tmp") == true)
            try command(["umount", "\(container)/tmp"])

            // Bind-mounted elsewhere (as a runtime does for a rootfs): refused too.
            let elsewhere = "\(pool.directory.path)/rootfs"
            try Files.createDirectory(elsewhere)
            try command(["mount", "--bind", container, elsewhere])
            error = expectFailure { try pool.store.deleteSubvolume("containers/web") }
            #expect(error?.detail?.contains(elsewhere) == true)
            try command(["umount", elsewhere])

            // Bind-mounted only inside another mount namespace (a running container's
            // rootfs): invisible in our mount table, still refused. The holder drops its
            // copies of the test pools' mounts (its own and concurrent tests'), keeping
            // only the bind — as a container does after pivot_root — so it pins nothing else.
            let holder = try command(["sh", "-c", """
                unshare --mount --propagation private sh -c 'mount --bind "$0" "$1" && for t in $(findmnt -rn -t btrfs -o TARGET); do case "$t" in "$1") ;; /tmp/tupp-storage.*) umount -l "$t";; esac; done; echo ready; exec sleep 30' "$0" "$1" > "$2" 2>&1 & echo $!
                """, container, elsewhere, "\(pool.directory.path)/holder.out"])
            let holderPID = try #require(Int32(holder.output.trimmingCharacters()))
            let holderStart = try #require(ProcessStat.read(holderPID)?.startTime)
            // Killed by pid + start time only, never a recycled pid.
            func stopHolder() {
                if ProcessStat.isAlive(pid: holderPID, startTime: holderStart) { kill(holderPID, SIGKILL) }
            }
            defer { stopHolder() }
            for _ in 0..<200 where fileText("\(pool.directory.path)/holder.out")?.contains("ready") != true { usleep(10_000) }
            #expect(fileText("\(pool.directory.path)/holder.out")?.contains("ready") == true, "the holder is ready within 2 s")
            #expect(!MountInfo.mounts(under: elsewhere, in: try MountInfo.read()).contains { $0.mountPoint == elsewhere })
            error = expectFailure { try pool.store.deleteSubvolume("containers/web") }
            #expect(error?.detail?.contains("mount namespace of pid") == true, "\(error.map(render) ?? "")")
            stopHolder()

            for _ in 0..<200 {
                if (try? pool.store.deleteSubvolume("containers/web")) != nil { break }
                usleep(10_000)  // the namespace goes away with its last process
            }
            let contents = try pool.store.contents()
            #expect(contents.containers.isEmpty && contents.others.isEmpty)
            #expect(!Files.exists(container))
            // Paths must stay inside the pool.
            #expect(expectFailure { try pool.store.deleteSubvolume("../escape") }?.detail?.contains("..") == true)
        }
    }
}
