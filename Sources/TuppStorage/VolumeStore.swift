import CTuppSys
import Glibc
import TuppFacts
import TuppManifest
import TuppSystem

/// Volumes: data that outlives containers and images. Each is a btrfs subvolume
/// `volumes/NAME` of the pool, with an optional qgroup limit, read-only snapshots in
/// `volumes/.snapshots/NAME/TAG` and send streams for export (VolumeStream.swift).
///
/// Work in progress lives in `volumes/.staging` and reaches its final name by one rename,
/// so no half-made volume is ever visible under its name; what a crash leaves there is
/// reported as a leftover. Every change calls `checkpoint` right before each of its side
/// effects, with a label naming it: the engine's crash tests stop the process there.
public struct VolumeStore: Sendable {
    public let poolRoot: String

    /// Called before each side effect of a change (e.g. TuppEngine's Checkpoint.pass).
    public typealias Checkpoint = (String) -> Void

    static let directory = "volumes"
    static let snapshotsDirectory = ".snapshots"
    static let stagingDirectory = ".staging"

    public init(poolRoot: String) {
        self.poolRoot = poolRoot
    }

    var images: ImageStore { ImageStore(poolRoot: poolRoot) }

    // MARK: - Observation

    /// Every volume, snapshot and leftover of the pool, with owners, modes and qgroups.
    public func contents() throws -> VolumeContents {
        try contents(from: images.contents())
    }

    /// The same from a walk already made (the engine walks the pool once per plan): adds
    /// one stat per volume and one read of the quota tree.
    public func contents(from pool: PoolContents) throws -> VolumeContents {
        var result = VolumeContents()
        let root = try openRoot()
        let (quotas, usage) = try Quotas.read(root, describedAs: poolRoot)
        result.quotas = quotas
        guard !pool.volumeArea.isEmpty else { return result }
        let volumes = try? root.openAt(Self.directory, O_RDONLY | O_DIRECTORY | O_NOFOLLOW)
        for subvolume in pool.volumeArea {
            let parts = subvolume.path.split(separator: "/").map(String.init)
            switch Self.classify(parts, readOnly: subvolume.readOnly) {
            case .volume(let name):
                var st = stat()
                guard let volumes, fstatat(volumes.rawValue, name, &st, AT_SYMLINK_NOFOLLOW) == 0 else {
                    throw SystemError("stat volume", "\(poolRoot)/\(subvolume.path)")
                }
                result.volumes[name] = VolumeFacts(name: name, subvolume: subvolume,
                                                   owner: VolumeOwner(uid: st.st_uid, gid: st.st_gid),
                                                   mode: UInt32(st.st_mode & 0o7777), usage: usage[subvolume.id])
            case .snapshot(let volume, let tag):
                result.snapshots[volume, default: [:]][tag] = VolumeSnapshotFacts(volume: volume, tag: tag, subvolume: subvolume,
                                                                                  usage: usage[subvolume.id])
            case .leftover(let kind, let volume):
                result.leftovers.append(VolumeLeftover(kind: kind, volume: volume, subvolume: subvolume))
            case .other:
                result.others.append(subvolume)
            }
        }
        return result
    }

    enum Place: Equatable {
        case volume(String)
        case snapshot(volume: String, tag: String)
        case leftover(VolumeLeftover.Kind, volume: String)
        case other
    }

    /// Where a subvolume path ("volumes/…", split at '/') sits in the layout. tupp's
    /// snapshots are read-only from birth; a writable one among them is a receive that
    /// did not finish (btrfs receive makes its subvolume read-only last).
    static func classify(_ parts: [String], readOnly: Bool) -> Place {
        guard parts.count >= 2, parts[0] == directory else { return .other }
        if parts.count == 2 {
            return (try? VolumeNames.validate(volume: parts[1])) != nil ? .volume(parts[1]) : .other
        }
        if parts[1] == snapshotsDirectory, parts.count == 4,
           (try? VolumeNames.validate(volume: parts[2])) != nil, (try? VolumeNames.validate(tag: parts[3])) != nil {
            return readOnly ? .snapshot(volume: parts[2], tag: parts[3]) : .leftover(.receive, volume: parts[2])
        }
        if parts[1] == stagingDirectory, parts.count <= 4, let (kind, volume) = parseStagingName(parts[2]), kind != .receive {
            // create-…: the subvolume itself; export-…/TAG: a snapshot inside a directory.
            if (kind == .create) == (parts.count == 3) { return .leftover(kind, volume: volume) }
        }
        return .other
    }

    /// "KIND-VOLUME-SUFFIX" → (kind, volume); nil for anything else.
    static func parseStagingName(_ name: String) -> (VolumeLeftover.Kind, String)? {
        guard let dash = name.firstIndex(of: "-"), let kind = VolumeLeftover.Kind(rawValue: String(name[..<dash])),
              let last = name.lastIndex(of: "-"), last > dash else { return nil }
        let volume = String(name[name.index(after: dash)..<last])
        guard (try? VolumeNames.validate(volume: volume)) != nil else { return nil }
        return (kind, volume)
    }

    /// A name in volumes/.staging for work on `volume`.
    static func stagingName(_ kind: VolumeLeftover.Kind, _ volume: String) -> String {
        "\(kind.rawValue)-\(volume)-\(ImageStore.randomSuffix())"
    }

    // MARK: - Create and delete

    /// What a new volume's seeding did.
    public enum SeedOutcome: Sendable, Equatable {
        case notRequested
        /// The image has no directory at the path (nothing, or a file): the volume starts empty.
        case nothingAtTarget
        case copied(entries: Int, bytes: UInt64)
    }

    public struct CreatedVolume: Sendable, Equatable {
        public var subvolume: SubvolumeInfo
        public var seed: SeedOutcome
        /// Things skipped while seeding (device nodes, trusted.* xattrs), one line each.
        public var warnings: [String]
    }

    /// Creates volumes/NAME: in volumes/.staging, the subvolume gets its limit (quotas are
    /// turned on first when they are off), its seed, its owner and mode, is synced, and is
    /// then renamed into place — refused if the name is taken (EEXIST), so a volume is
    /// seeded once and never again. Unless seeded or declared, the root is 0:0, 0755.
    /// A failure deletes the staging subvolume; a crash leaves it as a leftover.
    public func create(_ name: String, settings: VolumeSettings = VolumeSettings(), seed: VolumeSeed? = nil,
                       checkpoint: Checkpoint = { _ in }) throws -> CreatedVolume {
        try VolumeNames.validate(volume: name)
        let volumes = try openVolumesDirectory()
        let path = "\(poolRoot)/\(Self.directory)/\(name)"
        if faccessat(volumes.rawValue, name, F_OK, AT_SYMLINK_NOFOLLOW) == 0 {
            throw SystemError("create volume", path, errno: EEXIST, detail: "it exists already; a volume is never recreated or reseeded")
        }
        if settings.size != nil { try ensureQuotas(checkpoint: checkpoint) }
        let staging = try openStagingDirectory(volumes)
        let temporary = Self.stagingName(.create, name)
        let temporaryPath = "\(poolRoot)/\(Self.directory)/\(Self.stagingDirectory)/\(temporary)"
        checkpoint("volume \(name): create subvolume \(Self.stagingDirectory)/\(temporary)")
        try Btrfs.createSubvolume(in: staging, named: temporary, describedAs: temporaryPath)
        do {
            let volume = try staging.openAt(temporary, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, describedAs: temporaryPath)
            if let size = settings.size {
                checkpoint("volume \(name): set qgroup limit")
                try Quotas.setLimit(try openRoot(), subvolume: try Btrfs.info(volume, path: temporaryPath).id, bytes: size,
                                    describedAs: temporaryPath)
            }
            var outcome = SeedOutcome.notRequested
            var warnings: [String] = []
            if let seed {
                checkpoint("volume \(name): seed from image \(seed.image) at \(seed.path)")
                (outcome, warnings) = try copySeed(seed, into: volume, volumeName: name)
            }
            let seeded = if case .copied = outcome { true } else { false }
            let owner = settings.owner ?? (seeded ? nil : VolumeSettings.defaultOwner)
            let mode = settings.mode ?? (seeded ? nil : VolumeSettings.defaultMode)
            try Self.setOwnerAndMode(volume, owner: owner, mode: mode, describedAs: temporaryPath)
            try Btrfs.sync(volume, describedAs: temporaryPath)
            checkpoint("volume \(name): move into place")
            try Errno.check("move volume into place", "\(temporaryPath) → \(path)") {
                tupp_renameat2(staging.rawValue, temporary, volumes.rawValue, name, UInt32(TUPP_RENAME_NOREPLACE))
            }
            let placed = try volumes.openAt(name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, describedAs: path)
            return CreatedVolume(subvolume: try Btrfs.info(placed, path: "\(Self.directory)/\(name)"), seed: outcome,
                                 warnings: warnings)
        } catch {
            try? Btrfs.deleteSubvolume(in: staging, named: temporary, describedAs: temporaryPath)
            throw error
        }
    }

    /// Copies what the image has at `seed.path` into `volume`. The path is resolved inside
    /// the image (openat2 RESOLVE_IN_ROOT); below it nothing is followed (DirectoryCopier).
    private func copySeed(_ seed: VolumeSeed, into volume: FileDescriptor,
                          volumeName: String) throws -> (SeedOutcome, [String]) {
        try ImageStore.validate(name: seed.image, kind: "image")
        guard case .success(let relative) = RootfsPath.normalize(String(seed.path.drop { $0 == "/" })), !relative.isEmpty,
              seed.path.hasPrefix("/") else {
            throw SystemError.failure("seed volume \(volumeName)", "'\(seed.path)'",
                                      "the mount target must be an absolute path other than / without '..'")
        }
        let imagePath = "\(poolRoot)/images/\(seed.image)"
        let image = try FileDescriptor.open(imagePath, O_RDONLY | O_DIRECTORY | O_NOFOLLOW)
        let raw = tupp_openat2(image.rawValue, relative, UInt64(O_RDONLY | O_DIRECTORY | O_CLOEXEC), 0,
                               UInt64(TUPP_RESOLVE_IN_ROOT | TUPP_RESOLVE_NO_MAGICLINKS))
        if raw < 0 {
            if errno == ENOENT || errno == ENOTDIR { return (.nothingAtTarget, []) }
            throw SystemError("open seed", "\(imagePath) at \(seed.path)")
        }
        let source = FileDescriptor(adopting: raw)
        let writer = RootfsWriter(root: volume, sourceName: "image \(seed.image) at \(seed.path)")
        var copier = DirectoryCopier(directory: source, describedAs: "\(imagePath)\(seed.path)", writer: writer,
                                     progress: ProgressMeter(totalBytes: nil, callback: nil))
        try copier.copy()
        return (.copied(entries: writer.entriesWritten, bytes: copier.bytes), writer.warnings)
    }

    /// Deletes volumes/NAME (and any subvolume a container made inside it). Refused with
    /// EBUSY while it is mounted anywhere — a running container's bind included. Its
    /// snapshots stay (deleteSnapshot removes them).
    public func delete(_ name: String, checkpoint: Checkpoint = { _ in }) throws {
        try VolumeNames.validate(volume: name)
        _ = try openVolume(name)
        checkpoint("volume \(name): delete subvolume")
        try images.deleteSubvolume("\(Self.directory)/\(name)")
    }

    // MARK: - In-place changes

    /// Sets the owner and/or mode of the volume's root directory, in place (also while
    /// a container uses it).
    public func setOwnerAndMode(_ name: String, owner: VolumeOwner?, mode: UInt32?, checkpoint: Checkpoint = { _ in }) throws {
        let volume = try openVolume(name)
        checkpoint("volume \(name): set owner and mode")
        try Self.setOwnerAndMode(volume, owner: owner, mode: mode, describedAs: "\(poolRoot)/\(Self.directory)/\(name)")
    }

    /// Sets the volume's limit, or removes it (nil), in place. Turns quotas on first when a
    /// limit is set and they are off.
    public func setLimit(_ name: String, bytes: UInt64?, checkpoint: Checkpoint = { _ in }) throws {
        let volume = try openVolume(name)
        let path = "\(poolRoot)/\(Self.directory)/\(name)"
        if bytes != nil { try ensureQuotas(checkpoint: checkpoint) }
        checkpoint("volume \(name): \(bytes == nil ? "remove" : "set") qgroup limit")
        try Quotas.setLimit(try openRoot(), subvolume: try Btrfs.info(volume, path: path).id, bytes: bytes, describedAs: path)
    }

    // MARK: - Quotas

    /// Turns quotas on (and waits for the first count). Nothing when they are on.
    public func enableQuotas(checkpoint: Checkpoint = { _ in }) throws {
        try ensureQuotas(checkpoint: checkpoint)
    }

    /// Turns quotas off: every limit and usage number goes with them.
    public func disableQuotas(checkpoint: Checkpoint = { _ in }) throws {
        let root = try openRoot()
        guard try Quotas.read(root, describedAs: poolRoot).0.enabled else { return }
        checkpoint("pool: disable quotas")
        try Quotas.disable(root, describedAs: poolRoot)
    }

    /// Recounts every qgroup: the repair for `QuotaStatus.inconsistent`.
    public func rescanQuotas(checkpoint: Checkpoint = { _ in }) throws {
        let root = try openRoot()
        checkpoint("pool: rescan quotas")
        try Quotas.rescan(root, describedAs: poolRoot)
    }

    private func ensureQuotas(checkpoint: Checkpoint) throws {
        let root = try openRoot()
        guard !(try Quotas.read(root, describedAs: poolRoot).0.enabled) else { return }
        checkpoint("pool: enable quotas")
        try Quotas.enable(root, describedAs: poolRoot)
    }

    // MARK: - Snapshots

    /// A read-only snapshot volumes/.snapshots/NAME/TAG of the volume as it is now: one
    /// ioctl, so it appears complete and read-only at once. EEXIST when the tag is taken.
    public func snapshot(_ name: String, tag: String, checkpoint: Checkpoint = { _ in }) throws -> VolumeSnapshotFacts {
        try VolumeNames.validate(tag: tag)
        let volume = try openVolume(name)
        let directory = try openSnapshotDirectory(of: name)
        let path = "\(poolRoot)/\(Self.directory)/\(Self.snapshotsDirectory)/\(name)/\(tag)"
        checkpoint("volume \(name): snapshot \(tag)")
        try Btrfs.createSnapshot(of: volume, in: directory, named: tag, readOnly: true,
                                 describedAs: "\(poolRoot)/\(Self.directory)/\(name) → \(path)")
        let snapshot = try directory.openAt(tag, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, describedAs: path)
        let info = try Btrfs.info(snapshot, path: "\(Self.directory)/\(Self.snapshotsDirectory)/\(name)/\(tag)")
        return VolumeSnapshotFacts(volume: name, tag: tag, subvolume: info, usage: nil)
    }

    /// Deletes the snapshot NAME@TAG (refused while mounted anywhere).
    public func deleteSnapshot(_ name: String, tag: String, checkpoint: Checkpoint = { _ in }) throws {
        try VolumeNames.validate(volume: name)
        try VolumeNames.validate(tag: tag)
        let relative = "\(Self.directory)/\(Self.snapshotsDirectory)/\(name)/\(tag)"
        guard try images.subvolume(relative) != nil else {
            throw SystemError("delete snapshot", "\(poolRoot)/\(relative)", errno: ENOENT, detail: "no snapshot \(name)@\(tag)")
        }
        checkpoint("volume \(name): delete snapshot \(tag)")
        try images.deleteSubvolume(relative)
        // The volume's snapshot directory goes with its last snapshot.
        _ = rmdir("\(poolRoot)/\(Self.directory)/\(Self.snapshotsDirectory)/\(name)")
    }

    // MARK: - Leftovers

    /// Deletes what an interrupted create, import or export left, and its directory.
    /// Only while no other tupp works on the pool (under the host lock): a running import
    /// or export has the same look.
    public func removeLeftover(_ leftover: VolumeLeftover, checkpoint: Checkpoint = { _ in }) throws {
        let parts = leftover.subvolume.path.split(separator: "/").map(String.init)
        let current = try images.subvolume(leftover.subvolume.path)
        guard let current, current.uuid == leftover.subvolume.uuid,
              case .leftover = Self.classify(parts, readOnly: current.readOnly) else {
            throw SystemError.failure("remove leftover", leftover.subvolume.path, "not a leftover of an interrupted create, import or export")
        }
        checkpoint("volume \(leftover.volume): remove leftover \(leftover.subvolume.path)")
        try images.deleteSubvolume(leftover.subvolume.path)
        if parts.count == 4 { _ = rmdir("\(poolRoot)/\(parts[0...2].joined(separator: "/"))") }
    }

    // MARK: - Helpers

    static func setOwnerAndMode(_ directory: FileDescriptor, owner: VolumeOwner?, mode: UInt32?,
                                describedAs object: String) throws(SystemError) {
        if let owner {
            try Errno.check("set owner \(owner) of", object) { fchown(directory.rawValue, owner.uid, owner.gid) }
        }
        // After chown, which clears setgid.
        if let mode {
            try Errno.check("set mode \(String(mode, radix: 8)) of", object) { fchmod(directory.rawValue, mode_t(mode)) }
        }
    }

    /// The pool root: where quota ioctls go (it is in no volume).
    func openRoot() throws(SystemError) -> FileDescriptor {
        try FileDescriptor.open(poolRoot, O_RDONLY | O_DIRECTORY)
    }

    /// volumes/NAME, which must be a subvolume.
    func openVolume(_ name: String) throws -> FileDescriptor {
        try VolumeNames.validate(volume: name)
        let path = "\(poolRoot)/\(Self.directory)/\(name)"
        let raw = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        if raw < 0 {
            let code = errno
            throw SystemError("open volume", path, errno: code, detail: code == ENOENT ? "no volume \(name)" : nil)
        }
        let fd = FileDescriptor(adopting: raw)
        guard Btrfs.isSubvolume(fd) else {
            throw SystemError.failure("open volume", path, "not a subvolume; tupp did not make it")
        }
        return fd
    }

    func openVolumesDirectory() throws -> FileDescriptor {
        try images.openPoolDirectory(Self.directory)
    }

    func openStagingDirectory(_ volumes: FileDescriptor) throws(SystemError) -> FileDescriptor {
        try Self.openDirectory(Self.stagingDirectory, in: volumes, describedAs: "\(poolRoot)/\(Self.directory)/\(Self.stagingDirectory)")
    }

    /// volumes/.snapshots/NAME, made when missing.
    func openSnapshotDirectory(of name: String) throws -> FileDescriptor {
        let volumes = try openVolumesDirectory()
        let snapshots = try Self.openDirectory(Self.snapshotsDirectory, in: volumes,
                                               describedAs: "\(poolRoot)/\(Self.directory)/\(Self.snapshotsDirectory)")
        return try Self.openDirectory(name, in: snapshots,
                                      describedAs: "\(poolRoot)/\(Self.directory)/\(Self.snapshotsDirectory)/\(name)")
    }

    /// `parent/name` as a directory (mode 0700, made when missing), never through a symlink.
    static func openDirectory(_ name: String, in parent: FileDescriptor, describedAs object: String) throws(SystemError) -> FileDescriptor {
        if mkdirat(parent.rawValue, name, 0o700) != 0 && errno != EEXIST { throw SystemError("create directory", object) }
        return try parent.openAt(name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, describedAs: object)
    }
}
