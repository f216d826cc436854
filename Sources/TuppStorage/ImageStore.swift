import CBtrfsUtil
import CTuppSys
import Glibc
import TuppBase
import TuppFacts
import TuppManifest
import TuppRegistry
import TuppSystem

/// The result of an import.
public struct ImportedImage: Sendable, Equatable {
    public var info: SubvolumeInfo
    /// The source's identity, computed from the very bytes that were imported.
    public var digest: String
    /// Things skipped on purpose (device nodes, trusted.* xattrs), one line each.
    public var warnings: [String]
    public var entries: Int
    public var bytesRead: UInt64
    public var seconds: Double
    /// The image config's container defaults (OCI and registry sources).
    public var config: ImageConfig?
    /// Chain IDs of the image's layers, bottom to top (OCI and registry sources).
    public var layers: [String] = []
    /// Layers that were already in the layer store.
    public var reusedLayers = 0
    /// Layer blob bytes fetched from a registry.
    public var downloadedBytes: UInt64 = 0
}

/// Images (read-only subvolumes in images/) and container snapshots (containers/).
public struct ImageStore: Sendable {
    public let poolRoot: String
    /// Where registry credentials are looked up (read only when a registry asks).
    public var credentials: CredentialStore
    /// How registry requests are retried.
    public var retry: RetryPolicy

    static let leftoverPrefix = PoolContents.importPrefix

    public init(poolRoot: String, credentials: CredentialStore = .standard(), retry: RetryPolicy = RetryPolicy()) {
        self.poolRoot = poolRoot
        self.credentials = credentials
        self.retry = retry
    }

    // MARK: - Observation

    /// Classifies every subvolume below the pool root. One libbtrfsutil iteration.
    public func contents() throws -> PoolContents {
        let (subvolumeRoot, prefix) = try locateInSubvolume(poolRoot)
        let root = try FileDescriptor.open(subvolumeRoot, O_RDONLY | O_DIRECTORY)
        var contents = PoolContents()
        for var subvolume in try Btrfs.subvolumes(below: root, describedAs: poolRoot) {
            guard subvolume.path.hasPrefix(prefix) else { continue }
            subvolume.path = String(subvolume.path.dropFirst(prefix.count))
            let parts = subvolume.path.split(separator: "/")
            if parts.count == 2 && parts[0] == "images" {
                if parts[1].hasPrefix(Self.leftoverPrefix) {
                    contents.leftovers.append(subvolume)
                } else {
                    contents.images[String(parts[1])] = subvolume
                }
            } else if parts.count == 2 && parts[0] == "containers" {
                contents.containers[String(parts[1])] = subvolume
            } else if parts.count >= 2 && parts[0] == "volumes" {
                contents.volumeArea.append(subvolume)
            } else if parts.count >= 2 && parts[0] == Substring(LayerStore.directory) {
                contents.layerArea.append(subvolume)
            } else {
                contents.others.append(subvolume)
            }
        }
        return contents
    }

    /// The subvolume at `relativePath` ("images/box"), nil when nothing is there.
    public func subvolume(_ relativePath: String) throws -> SubvolumeInfo? {
        let path = try absolute(relativePath)
        let raw = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        if raw < 0 {
            if errno == ENOENT { return nil }
            throw SystemError("open subvolume", path)
        }
        let fd = FileDescriptor(adopting: raw)
        guard Btrfs.isSubvolume(fd) else { return nil }
        return try Btrfs.info(fd, path: relativePath)
    }

    /// The subvolume containing `path` and the path's place in it: ("/mnt", "a/b/") for
    /// the directory /mnt/a/b, ("/pool", "") for a pool that is a subvolume itself (a
    /// mounted pool). Subvolume paths from the iterator are relative to that subvolume.
    private func locateInSubvolume(_ path: String) throws(SystemError) -> (subvolume: String, prefix: String) {
        var current = Paths.canonical(path) ?? path
        var prefix = ""
        while current != "/" {
            var st = stat()
            try Errno.check("stat", current) { stat(current, &st) }
            if st.st_ino == 256 { break }  // BTRFS_FIRST_FREE_OBJECTID: a subvolume's root
            prefix = Paths.basename(current) + "/" + prefix
            current = Paths.dirname(current)
        }
        return (current, prefix)
    }

    // MARK: - Identity

    /// "sha256:<hex>" of the source: the tar file, the busybox binary, the OCI manifest
    /// digest, or the directory tree. File digests are cached in `cacheDirectory`;
    /// `updatingCache` false reads the cache but writes nothing (for a plan).
    public static func identify(_ source: Image.Source, cacheDirectory: String, updatingCache: Bool = true) throws -> String {
        try SourceIdentity(cacheDirectory: cacheDirectory, updatesCache: updatingCache).identify(source)
    }

    /// The digest a registry reference stands for: one HEAD for a tag, no request at
    /// all for a reference pinned by digest. Registry sources are not `Image.Source`s
    /// yet; the manifest's `registry:` maps to `RegistrySource`.
    public func resolve(_ registry: RegistrySource) throws -> String {
        try RegistryClient(reference: registry.reference,
                           options: RegistryOptions(security: registry.security, credentials: credentials, retry: retry)).resolve()
    }

    // MARK: - Import

    /// Pulls a registry image into images/NAME through the layer store (see
    /// `importImage` for OCI layouts, which take the same path): only layers the store
    /// lacks are fetched — a few at a time while earlier ones unpack — and unpacked;
    /// each layer's progress goes to `layerProgress`; the image's config is kept in
    /// `metadata(of:)`. Atomic like every import.
    public func pullImage(name: String, from registry: RegistrySource, progress: ((ImportProgress) -> Void)? = nil,
                          layerProgress: (@Sendable (LayerProgress) -> Void)? = nil) async throws -> ImportedImage {
        try Self.validate(name: name, kind: "image")
        return try importLayered(name: name, from: .registry(registry), progress: progress, layerProgress: layerProgress)
    }

    /// Builds images/NAME from `source`, atomically: everything goes into a temporary
    /// subvolume images/.import-NAME-<random>, which is synced, made read-only and only
    /// then renamed into place (swapped with an existing images/NAME, which is deleted
    /// after). Any failure or cancellation deletes the temporary subvolume; a crash
    /// leaves it to be found in `contents().leftovers`.
    ///
    /// `cacheDirectory` is the one `identify` uses. A tarball whose digest is cached for
    /// its current (device, inode, size, mtime, ctime) is not hashed again — the stamp is
    /// checked on the descriptor read from, before and after extraction; otherwise the
    /// digest computed while extracting is stored there for the next plan.
    ///
    /// OCI layouts go through the layer store (`LayerStore`): only layers it lacks are
    /// unpacked, each reported to `layerProgress`, and the image is a snapshot of its
    /// top layer with its config in `metadata(of:)`.
    public func importImage(name: String, from source: Image.Source, cacheDirectory: String? = nil,
                            progress: ((ImportProgress) -> Void)? = nil,
                            layerProgress: (@Sendable (LayerProgress) -> Void)? = nil) async throws -> ImportedImage {
        try Self.validate(name: name, kind: "image")
        if case .oci(let layout, let tag) = source {
            return try importLayered(name: name, from: .layout(path: layout, tag: tag), progress: progress, layerProgress: layerProgress)
        }
        let images = try openPoolDirectory("images")
        let temporary = "\(Self.leftoverPrefix)\(name)-\(Self.randomSuffix())"
        let temporaryPath = "\(poolRoot)/images/\(temporary)"
        try Btrfs.createSubvolume(in: images, named: temporary, describedAs: temporaryPath)
        Checkpoint.pass("temporary subvolume created")
        do {
            let rootfs = try images.openAt(temporary, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, describedAs: temporaryPath)
            let meter = ProgressMeter(totalBytes: nil, callback: progress)
            let writer = RootfsWriter(root: rootfs, sourceName: "")
            let digest = try await populate(writer, from: source, meter: meter, cacheDirectory: cacheDirectory)
            meter.finish(entries: writer.entriesWritten)
            try Btrfs.sync(rootfs, describedAs: temporaryPath)
            Checkpoint.pass("contents written")
            try Btrfs.setReadOnly(rootfs, true, describedAs: temporaryPath)
            Checkpoint.pass("made read-only")
            var warnings = writer.warnings
            if let note = try moveIntoPlace(images, temporary: temporary, name: name) { warnings.append(note) }
            Checkpoint.pass("renamed into place")
            let final = try images.openAt(name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, describedAs: "\(poolRoot)/images/\(name)")
            return ImportedImage(info: try Btrfs.info(final, path: "images/\(name)"), digest: digest,
                                 warnings: warnings, entries: writer.entriesWritten,
                                 bytesRead: meter.bytesRead, seconds: meter.elapsedSeconds)
        } catch {
            try? Btrfs.deleteSubvolume(in: images, named: temporary, describedAs: temporaryPath)
            throw error
        }
    }

    private func populate(_ writer: RootfsWriter, from source: Image.Source, meter: ProgressMeter,
                          cacheDirectory: String?) async throws -> String {
        switch source {
        case .tar(let path):
            writer.sourceName = path
            let identity = SourceIdentity(cacheDirectory: cacheDirectory)
            let probe = try FileDescriptor.open(path, O_RDONLY)
            let (cached, stampBefore) = try identity.cachedDigest(of: path, fd: probe)
            let input = try ArchiveInput(path: path, hashing: cached == nil)
            let (_, stampOpened) = try identity.cachedDigest(of: path, fd: input.fd)
            var st = stat()
            if fstat(input.fd.rawValue, &st) == 0 { meter.totalBytes = UInt64(st.st_size) }
            try ArchiveExtractor(progress: meter).extract(input, into: writer, label: path)
            try writer.finish()
            let (_, stampAfter) = try identity.cachedDigest(of: path, fd: input.fd)
            guard stampBefore == stampOpened, stampOpened == stampAfter else {
                throw SystemError.failure("import image", path, "the file changed while it was being imported; run again")
            }
            if let cached { return cached }
            let digest = try input.finishDigest()!
            try identity.store(digest, of: path, stamp: stampAfter)
            return digest

        case .oci:
            throw SystemError.failure("import image", "\(source)", "OCI layouts are imported through the layer store")

        case .directory(let path):
            writer.sourceName = path
            var copier = DirectoryCopier(source: path, writer: writer, progress: meter)
            try copier.copy()
            return try SourceIdentity(cacheDirectory: nil).identify(source)

        case .busybox(let path):
            writer.sourceName = path
            return try await BusyboxImage(binary: path).build(into: writer, meter: meter)
        }
    }

    /// Renames the finished temporary subvolume to `name`, swapping atomically with an
    /// existing image. Returns a warning when the replaced image could not be deleted.
    func moveIntoPlace(_ images: FileDescriptor, temporary: String, name: String) throws -> String? {
        let object = "\(poolRoot)/images/\(temporary) → \(name)"
        if tupp_renameat2(images.rawValue, temporary, images.rawValue, name, UInt32(TUPP_RENAME_NOREPLACE)) == 0 {
            return nil
        }
        guard errno == EEXIST else { throw SystemError("rename image into place", object) }
        try Errno.check("swap image into place", object) {
            tupp_renameat2(images.rawValue, temporary, images.rawValue, name, UInt32(TUPP_RENAME_EXCHANGE))
        }
        Checkpoint.pass("swapped with the previous image")
        // The previous image now sits at the temporary name.
        do {
            try Btrfs.deleteSubvolume(in: images, named: temporary, describedAs: "\(poolRoot)/images/\(temporary)")
            return nil
        } catch {
            return "replaced image left behind at images/\(temporary) (\(error.operation) failed, errno \(error.code)); remove it as a leftover"
        }
    }

    // MARK: - Snapshots and deletion

    /// A writable snapshot of images/IMAGE as containers/CONTAINER.
    public func snapshot(image: String, container: String) throws -> SubvolumeInfo {
        try Self.validate(name: image, kind: "image")
        try Self.validate(name: container, kind: "container")
        let images = try openPoolDirectory("images")
        let containers = try openPoolDirectory("containers")
        let imagePath = "\(poolRoot)/images/\(image)"
        let source = try images.openAt(image, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, describedAs: imagePath)
        let target = "\(poolRoot)/containers/\(container)"
        try Btrfs.createSnapshot(of: source, in: containers, named: container, describedAs: "\(imagePath) → \(target)")
        let snapshot = try containers.openAt(container, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, describedAs: target)
        return try Btrfs.info(snapshot, path: "containers/\(container)")
    }

    /// Deletes the subvolume at `relativePath` and any subvolume nested in it. Refused
    /// while anything is mounted at or below it, or while it (or something inside it) is
    /// bind-mounted — here or in any other mount namespace, such as a running
    /// container's, which the host's own mount table does not show.
    public func deleteSubvolume(_ relativePath: String) throws {
        let path = try absolute(relativePath)
        try refuseWhileMounted(path, operation: "delete subvolume")
        let parent = try FileDescriptor.open(Paths.dirname(path), O_RDONLY | O_DIRECTORY)
        try Btrfs.deleteSubvolume(in: parent, named: Paths.basename(path), describedAs: path)
    }

    /// Deletes a temporary subvolume left by an interrupted import.
    public func removeLeftover(_ info: SubvolumeInfo) throws {
        let parts = info.path.split(separator: "/")
        guard parts.count == 2, parts[0] == "images", parts[1].hasPrefix(Self.leftoverPrefix) else {
            throw SystemError.failure("remove leftover", info.path, "not a temporary import subvolume")
        }
        try deleteSubvolume(info.path)
    }

    /// Throws EBUSY, naming the mount and the namespace, while `path` is mounted anywhere
    /// (see `mountUsing`).
    func refuseWhileMounted(_ path: String, operation: String) throws {
        if let (mount, pid) = try mountUsing(path) {
            let place = pid.map { "in the mount namespace of pid \($0)" } ?? "at \(mount.mountPoint)"
            throw SystemError(operation, path, errno: EBUSY,
                              detail: "it is mounted \(place) (\(mount.mountPoint), \(mount.fsType) \(mount.root)); unmount it first")
        }
    }

    /// The first mount that pins `path`: in our namespace one at or below it, or one
    /// whose source is it or lies inside it; in other namespaces the latter (with the pid
    /// whose mountinfo showed it).
    private func mountUsing(_ path: String) throws -> (MountInfo, Int32?)? {
        let table = try MountInfo.read()
        if let below = MountInfo.mounts(under: path, in: table).first { return (below, nil) }
        // The mount holding the path, and where the path is inside that filesystem.
        guard let holder = table.filter({ path == $0.mountPoint || path.hasPrefix($0.mountPoint == "/" ? "/" : $0.mountPoint + "/") })
            .max(by: { $0.mountPoint.count < $1.mountPoint.count }) else { return nil }
        let inside = String(path.dropFirst(holder.mountPoint == "/" ? 0 : holder.mountPoint.count))
        let fsPath = Paths.normalize(holder.root + "/" + inside)
        func pins(_ mount: MountInfo) -> Bool {
            mount.device == holder.device && (mount.root == fsPath || mount.root.hasPrefix(fsPath + "/"))
        }
        if let bind = table.first(where: { $0.id != holder.id && pins($0) }) { return (bind, nil) }
        var seen: Set<UInt64> = []
        if let own = namespaceInode(pid: "self", kind: "mnt") { seen.insert(own) }
        // Every container is another namespace: look for the path's bytes before parsing,
        // so a destroy of N containers does not parse N² mount tables.
        let needle = Array(fsPath.utf8)
        for entry in (try? Files.list("/proc")) ?? [] {
            guard let pid = Int32(entry), let inode = namespaceInode(pid: entry, kind: "mnt"),
                  seen.insert(inode).inserted,
                  let bytes = try? Files.read("/proc/\(entry)/mountinfo"), Self.find(needle, in: bytes) else { continue }
            let mounts = MountInfo.parse(String(decoding: bytes, as: UTF8.self))
            if let bind = mounts.first(where: pins) { return (bind, pid) }
        }
        return nil
    }

    // MARK: - Helpers

    /// Whether `needle` occurs in `haystack` (plain loops: the generic collection search
    /// costs more than reading the file).
    static func find(_ needle: [UInt8], in haystack: [UInt8]) -> Bool {
        guard let first = needle.first, needle.count <= haystack.count else { return needle.isEmpty }
        return haystack.withUnsafeBufferPointer { h in
            needle.withUnsafeBufferPointer { n in
                var i = 0
                let last = h.count - n.count
                while i <= last {
                    if h[i] == first {
                        var j = 1
                        while j < n.count && h[i + j] == n[j] { j += 1 }
                        if j == n.count { return true }
                    }
                    i += 1
                }
                return false
            }
        }
    }

    func absolute(_ relativePath: String) throws -> String {
        guard case .success(let normalized) = RootfsPath.normalize(relativePath), !normalized.isEmpty else {
            throw SystemError.failure("resolve pool path", relativePath, "must be a relative path inside the pool without '..'")
        }
        return "\(Paths.canonical(poolRoot) ?? poolRoot)/\(normalized)"
    }

    func openPoolDirectory(_ name: String) throws(SystemError) -> FileDescriptor {
        let path = "\(poolRoot)/\(name)"
        if mkdir(path, 0o700) != 0 && errno != EEXIST { throw SystemError("create directory", path) }
        return try FileDescriptor.open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW)
    }

    /// Image and container names are single path components that cannot collide with
    /// tupp's temporary names.
    static func validate(name: String, kind: String) throws(SystemError) {
        let bytes = Array(name.utf8)
        guard !bytes.isEmpty, bytes.count <= 200, bytes.first != UInt8(ascii: "."),
              !bytes.contains(UInt8(ascii: "/")), !bytes.contains(0) else {
            throw SystemError.failure("validate \(kind) name", "'\(name)'",
                                      "must be 1–200 bytes, not start with '.', and contain no '/'")
        }
    }

    static func randomSuffix() -> String {
        Hex.encode((0..<6).map { _ in UInt8.random(in: 0...255) })
    }
}

