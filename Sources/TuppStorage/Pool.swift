import CTuppSys
import Glibc
import Subprocess
import SystemPackage
import TuppBase
import TuppFacts
import TuppManifest
import TuppSystem

/// Operations on the pool. Each one is safe to repeat: it does only what is missing.
/// A crash checkpoint follows each side effect (`Checkpoint`): creating a pool is five
/// steps a crash can fall between.
public enum Pool {
    /// Reads the live state; never fails — what cannot be read is reported as absent.
    public static func observe(_ config: Storage) -> PoolObservation {
        let root = Paths.canonical(config.root) ?? config.root
        var observation = PoolObservation(rootExists: false, rootMode: nil, onBtrfs: false, mounted: false,
                                          mountSource: nil, loopDevice: nil, backingFile: nil,
                                          fileExists: false, fileSize: nil, filesystemSize: nil, backedByDevice: false)
        var st = stat()
        if stat(root, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR {
            observation.rootExists = true
            observation.rootMode = UInt32(st.st_mode & 0o7777)
            observation.onBtrfs = isBtrfs(root)
        }
        if observation.rootExists, let mount = mount(at: root) {
            observation.mounted = true
            observation.mountSource = mount.source
            if mount.source.hasPrefix("/dev/loop") {
                observation.loopDevice = mount.source
                observation.backingFile = LoopDevice.backingFile(of: mount.source)
                if let device = config.device, let backing = observation.backingFile {
                    observation.backedByDevice = backing == (Paths.canonical(device.file) ?? device.file)
                }
            }
            if let fd = try? FileDescriptor.open(root, O_RDONLY | O_DIRECTORY) {
                var total: UInt64 = 0
                if tupp_btrfs_total_bytes(fd.rawValue, &total) == 0 { observation.filesystemSize = total }
            }
        }
        if let device = config.device, let fileStat = try? Files.status(device.file) {
            observation.fileExists = true
            observation.fileSize = UInt64(fileStat.st_size)
        }
        return observation
    }

    /// Makes the pool exist. With a device: creates the sparse file and formats it
    /// (only when the file does not exist yet — an existing file is never reformatted),
    /// attaches and mounts it. Without one: the root must already be on btrfs.
    /// Either way the root ends with mode 0700 and images/ and containers/ in it.
    public static func create(_ config: Storage) async throws {
        guard let device = config.device else {
            try Files.createDirectory(config.root, mode: 0o700)
            Checkpoint.pass("root directory created")
            guard isBtrfs(config.root) else {
                throw SystemError.failure("use pool", config.root,
                                          "not on btrfs; put the root on a btrfs filesystem or set storage.device to have tupp create one")
            }
            try prepareLayout(config.root)
            Checkpoint.pass("layout prepared")
            return
        }
        if try Files.status(device.file) == nil {
            try createImageFile(device)
            Checkpoint.pass("image file created")
            do {
                try await format(device.file)
            } catch {
                try? Files.remove(device.file)
                throw error
            }
            Checkpoint.pass("image file formatted")
        } else if try isBlank(device.file) {
            // Left by a create that died between ftruncate and mkfs: nothing to lose.
            try await format(device.file)
            Checkpoint.pass("image file formatted")
        }
        try mount(config)
    }

    /// Attaches the existing image file to a loop device and mounts it at the root,
    /// unless it is already mounted there.
    public static func mount(_ config: Storage) throws {
        guard let device = config.device else {
            throw SystemError.failure("mount pool", config.root, "the pool has no device to mount")
        }
        let observation = observe(config)
        if observation.mounted {
            guard observation.backedByDevice else {
                throw SystemError.failure("mount pool", config.root,
                                          "\(observation.mountSource ?? "another filesystem") is already mounted there, not \(device.file)")
            }
            try prepareLayout(config.root)
            Checkpoint.pass("layout prepared")
            return
        }
        guard observation.fileExists else {
            throw SystemError("mount pool", device.file, errno: ENOENT, detail: "the image file is missing")
        }
        try Files.createDirectory(config.root, mode: 0o700)
        Checkpoint.pass("mount point created")
        // `loop` stays open until the mount holds the device; if mounting fails (or tupp
        // dies), closing it lets autoclear detach the device again.
        let (loopPath, loop) = try LoopDevice.attach(device.file)
        Checkpoint.pass("loop device attached")
        try Errno.check("mount btrfs", "\(loopPath) (\(device.file)) on \(config.root)") {
            Glibc.mount(loopPath, config.root, "btrfs", 0, nil)
        }
        withExtendedLifetime(loop) {}
        Checkpoint.pass("mounted")
        try prepareLayout(config.root)
        Checkpoint.pass("layout prepared")
    }

    /// Grows the image file to the configured size and the filesystem with it, online.
    /// Shrinking is refused: btrfs can shrink, but tupp never risks pool data for it.
    public static func grow(_ config: Storage) throws {
        guard let device = config.device else {
            throw SystemError.failure("grow pool", config.root, "the pool has no device; grow the filesystem holding it instead")
        }
        guard let fileStat = try Files.status(device.file) else {
            throw SystemError("grow pool", device.file, errno: ENOENT, detail: "the image file is missing")
        }
        let current = UInt64(fileStat.st_size)
        if device.size < current {
            throw SystemError.failure("grow pool", device.file,
                                      "refusing to shrink from \(current) to \(device.size) bytes; shrinking a pool is not supported — keep size ≥ \(current)")
        }
        if device.size > current {
            let fd = try FileDescriptor.open(device.file, O_WRONLY)
            try Errno.check("extend image file", device.file) { ftruncate(fd.rawValue, off_t(device.size)) }
            Checkpoint.pass("image file extended")
        }
        var observation = observe(config)
        if !observation.mounted {
            try mount(config)
            observation = observe(config)
        }
        guard let loop = observation.loopDevice, observation.backedByDevice else {
            throw SystemError.failure("grow pool", config.root, "not mounted from a loop device backed by \(device.file)")
        }
        try LoopDevice.refreshCapacity(loop)
        Checkpoint.pass("loop device capacity refreshed")
        let rootFD = try FileDescriptor.open(config.root, O_RDONLY | O_DIRECTORY)
        try Errno.check("resize btrfs to max", "\(config.root) (\(loop))") { tupp_btrfs_resize(rootFD.rawValue, "max") }
        Checkpoint.pass("filesystem grown")
    }

    /// Unmounts the pool and makes sure its loop device is detached. Fails (EBUSY) while
    /// anything still uses it — a running container, a mount below the root.
    public static func unmountAndDetach(_ config: Storage) throws {
        guard let device = config.device else { return }
        let observation = observe(config)
        guard observation.mounted else { return }
        guard observation.backedByDevice else {
            throw SystemError.failure("unmount pool", config.root,
                                      "mounted from \(observation.mountSource ?? "?"), not from \(device.file); leaving it alone")
        }
        let root = Paths.canonical(config.root) ?? config.root
        if umount2(root, 0) != 0 {
            let code = errno
            throw SystemError("unmount pool", root, errno: code,
                              detail: code == EBUSY ? "still in use; stop containers and unmount what is mounted below it" : nil)
        }
        Checkpoint.pass("unmounted")
        if let loop = observation.loopDevice {
            try LoopDevice.waitForDetach(loop, from: device.file)
        }
        Checkpoint.pass("loop device detached")
    }

    /// Deletes the image file — all pool data. Only for `destroy --include-storage`;
    /// refused while the file is mounted or attached to a loop device.
    public static func removeFile(_ config: Storage) throws {
        guard let device = config.device else { return }
        let attached = LoopDevice.devices(backing: device.file)
        guard attached.isEmpty else {
            throw SystemError.failure("remove pool image", device.file,
                                      "still attached to \(attached.joined(separator: ", ")); unmount the pool first")
        }
        try Files.remove(device.file)
        Checkpoint.pass("image file deleted")
    }

    // MARK: - Helpers

    static func isBtrfs(_ path: String) -> Bool {
        var fs = statfs()
        return statfs(path, &fs) == 0 && UInt64(UInt(bitPattern: fs.f_type)) == UInt64(TUPP_BTRFS_SUPER_MAGIC)
    }

    /// The topmost mount exactly at `path`.
    static func mount(at path: String) -> MountInfo? {
        guard let table = try? MountInfo.read() else { return nil }
        return table.last { $0.mountPoint == path }
    }

    static func prepareLayout(_ root: String) throws(SystemError) {
        try Errno.check("set mode 0700 on pool root", root) { chmod(root, 0o700) }
        for name in ["images", "containers"] {
            let path = "\(root)/\(name)"
            if mkdir(path, 0o700) != 0 && errno != EEXIST { throw SystemError("create directory", path) }
        }
    }

    /// True only for a file with no blocks allocated at all and no btrfs superblock:
    /// the remains of an interrupted create. Anything else is never reformatted.
    static func isBlank(_ file: String) throws(SystemError) -> Bool {
        let fd = try FileDescriptor.open(file, O_RDONLY)
        var st = stat()
        try Errno.check("stat", file) { fstat(fd.rawValue, &st) }
        guard st.st_blocks == 0 else { return false }
        var magic = [UInt8](repeating: 0, count: 8)
        // The primary superblock is at 64 KiB; its magic "_BHRfS_M" at offset 64 in it.
        let n = pread(fd.rawValue, &magic, 8, 65536 + 64)
        return n <= 0 || magic != Array("_BHRfS_M".utf8)
    }

    static func createImageFile(_ device: Storage.Device) throws(SystemError) {
        try Files.createDirectory(Paths.dirname(device.file), mode: 0o755)
        let fd = try FileDescriptor.open(device.file, O_WRONLY | O_CREAT | O_EXCL, mode: 0o600)
        do {
            // Sparse: ftruncate allocates nothing; btrfs writes only what it uses.
            try Errno.check("size image file", device.file) { ftruncate(fd.rawValue, off_t(device.size)) }
        } catch {
            try? Files.remove(device.file)
            throw error
        }
    }

    /// mkfs.btrfs — the one external command tupp runs for storage.
    static func format(_ file: String) async throws {
        let candidates = ["/usr/sbin/mkfs.btrfs", "/sbin/mkfs.btrfs", "/usr/bin/mkfs.btrfs", "/bin/mkfs.btrfs"]
        let executable: Executable = candidates.first { access($0, X_OK) == 0 }
            .map { .path(FilePath($0)) } ?? .name("mkfs.btrfs")
        let result = try await run(executable, arguments: ["-q", file],
                                   output: .discarded, error: .string(limit: 16 << 10))
        guard result.terminationStatus.isSuccess else {
            let message = result.standardError.trimmingCharacters()
            throw SystemError.failure("format btrfs", file, "mkfs.btrfs \(result.terminationStatus): \(message)")
        }
    }
}
