import Glibc
import Testing
import TuppFacts
import TuppManifest
import TuppRuntime
import TuppStorage
import TuppSystem
import TuppTestSupport

/// Volumes as a container sees them: bind mounts of volumes/NAME made by the runtime,
/// in a container started from an image snapshot of the same pool. Witnesses: what
/// busybox inside says, the container's mountinfo, and the files on the host.
@Suite("Volumes in a container", .serialized)
struct VolumeMountTests {
    @Test func aContainerWritesToItsVolumesWithinTheirLimits() async throws {
        guard try Host.require(.root, .command("/bin/busybox")) else { return }
        try await withPool(size: 512 << 20) { pool in
            _ = try await pool.store.importImage(name: "box", from: .busybox(path: "/bin/busybox"))
            let name = uniquePrefix()
            _ = try pool.store.snapshot(image: "box", container: name)
            let volumes = VolumeStore(poolRoot: pool.root)
            _ = try volumes.create("db", settings: VolumeSettings(size: 8 << 20))
            _ = try volumes.create("scratch")
            _ = try volumes.create("config")
            let volume = { (volume: String) in "\(pool.root)/volumes/\(volume)" }
            try Files.writeAtomically("\(volume("config"))/app.conf", text: "from host\n", mode: 0o644)

            let runtime = Runtime()
            let directory = "\(pool.directory.path)/run"
            let config = ContainerConfig(name: name, rootfs: "\(pool.root)/containers/\(name)",
                                         mounts: [.bind(volume("db"), at: "/var/lib/db"),
                                                  .bind(volume("scratch"), at: "/scratch"),
                                                  .bind(volume("config"), at: "/etc/app", readonly: true)],
                                         command: ["sleep", "100000"], stopTimeout: 1)
            _ = try runtime.start(config, directory: directory)
            defer {
                try? runtime.stop(directory: directory, timeout: 1)
                try? runtime.remove(directory: directory)
            }
            func sh(_ script: String) throws -> Output {
                try Spawn.run(runtime.execCommand(directory: directory, command: ["sh", "-c", script]), stderrToStdout: true)
            }

            // Writes land in the volume on the host; a read-only volume reads but refuses writes.
            #expect(try sh("echo kept > /var/lib/db/small && cat /etc/app/app.conf").output == "from host\n")
            #expect(fileText("\(volume("db"))/small") == "kept\n")
            let readOnly = try sh("touch /etc/app/new")
            #expect(readOnly.status != 0 && readOnly.output.contains("Read-only file system"), "\(readOnly.output)")

            // Past the size: EDQUOT inside the container. The other volume is not limited.
            let full = try sh("dd if=/dev/zero of=/var/lib/db/fill bs=1M count=16")
            #expect(full.status != 0 && full.output.contains("Disk quota exceeded"), "\(full.output)")
            #expect(try sh("dd if=/dev/zero of=/scratch/fill bs=1M count=16").status == 0)
            #expect((try Files.status("\(volume("scratch"))/fill"))?.st_size == 16 << 20)
            let fill = try #require(try Files.status("\(volume("db"))/fill"))
            #expect(fill.st_size <= 8 << 20)

            let mounts = MountInfo.parse(try sh("cat /proc/self/mountinfo").output)
            #expect(mounts.first { $0.mountPoint == "/etc/app" }?.options.contains("ro") == true)
            #expect(mounts.first { $0.mountPoint == "/var/lib/db" }?.options.contains("rw") == true)
            #expect(mounts.first { $0.mountPoint == "/var/lib/db" }?.root.hasSuffix("/volumes/db") == true)

            // In use: a volume is not deleted under a running container.
            let busy = expectFailure { try volumes.delete("db") }
            #expect(busy?.code == EBUSY && busy?.detail?.contains("mount namespace") == true, "\(busy.map(render) ?? "")")

            // The container goes; its volumes and their data stay.
            try runtime.stop(directory: directory, timeout: 1)
            try runtime.remove(directory: directory)
            try pool.store.deleteSubvolume("containers/\(name)")
            #expect(fileText("\(volume("db"))/small") == "kept\n")
            #expect(try volumes.contents().volumes.keys.sorted() == ["config", "db", "scratch"])
            try volumes.delete("db")
        }
    }
}
