import CTuppSys
import Glibc
import TuppBase
import TuppFacts
import TuppRegistry
import TuppSystem

/// One layer in the store: a read-only subvolume `layers/<hex of chain ID>` holding the
/// rootfs as it is with this layer and every one below it applied.
public struct LayerInfo: Sendable, Equatable {
    /// "sha256:<hex>": the OCI ChainID, naming this layer together with all below it.
    public var chainID: String
    public var subvolume: SubvolumeInfo
    /// The layer this one is a snapshot of, nil for a base layer (or when that one was
    /// deleted by hand).
    public var parentChainID: String?
    /// Images whose rootfs is built on this layer (directly or through layers above it).
    public var images: [String]
}

/// Layers unpacked once and shared, the way Docker's btrfs driver keeps them: each
/// layer's subvolume is a snapshot of the one below it with the layer's tar applied, so
/// images sharing base layers share their extents, and an image is a read-only snapshot
/// of its top layer.
///
/// Which images use which layer is read from btrfs itself: an image subvolume's parent
/// UUID is its top layer's UUID, a layer's parent UUID the layer below.
public struct LayerStore: Sendable {
    public let poolRoot: String

    static let directory = "layers"
    /// Where blobs are downloaded before they are unpacked (partial ones kept to resume).
    static let downloads = ".downloads"
    /// `<hex of chain ID>.json` per layer: what btrfs cannot tell about it (its size),
    /// written before the layer is renamed into place.
    static let metadata = ".meta"

    public init(poolRoot: String) {
        self.poolRoot = poolRoot
    }

    /// Every layer, with the images using it. One pass over the pool's subvolumes.
    public func layers() throws -> [LayerInfo] {
        try Self.layers(in: ImageStore(poolRoot: poolRoot).contents()).layers
    }

    /// Pure: the layers in `contents` (with the images using each) and the temporary
    /// subvolumes of layer imports that did not finish.
    public static func layers(in contents: PoolContents) -> (layers: [LayerInfo], leftovers: [SubvolumeInfo]) {
        let area = classify(contents.layerArea)
        return (describe(layers: area.layers, images: contents.images), area.leftovers)
    }

    /// The bytes of each layer's own content (its uncompressed tar) by chain ID, as
    /// recorded when it was unpacked; layers unpacked before tupp recorded sizes are missing.
    public func sizes() -> [String: UInt64] {
        var out: [String: UInt64] = [:]
        let directory = "\(poolRoot)/\(Self.directory)/\(Self.metadata)"
        for file in (try? Files.list(directory)) ?? [] where file.hasSuffix(".json") {
            guard let bytes = try? Files.read("\(directory)/\(file)", limit: 1 << 16), let json = try? JSON.parse(bytes),
                  let size = json["size"]?.int, size >= 0 else { continue }
            out["sha256:\(file.dropLast(5))"] = UInt64(size)
        }
        return out
    }

    /// Layers no image uses: what `deleteUnused` removes.
    public func unusedLayers() throws -> [LayerInfo] {
        try layers().filter { $0.images.isEmpty }
    }

    /// Whether `layers/<chain ID>` exists (and is a subvolume).
    public func has(_ chainID: String) throws -> Bool {
        try ImageStore(poolRoot: poolRoot).subvolume(Self.relativePath(chainID)) != nil
    }

    /// Pure: the layers that no image would use once `deleted` images are gone — what a
    /// plan that removes those images lists as freed.
    public static func freed(byDeleting deleted: Set<String>, from layers: [LayerInfo]) -> [LayerInfo] {
        layers.filter { Set($0.images).isSubset(of: deleted) }
    }

    /// Deletes one layer, refused while an image uses it (checked live, not trusted
    /// from an earlier listing).
    public func delete(_ chainID: String) throws {
        guard ImageReference.isDigest(chainID) else {
            throw SystemError.failure("delete layer", chainID, "not a sha256 chain ID")
        }
        let contents = try ImageStore(poolRoot: poolRoot).contents()
        guard let layer = Self.describe(layers: Self.classify(contents.layerArea).layers, images: contents.images)
            .first(where: { $0.chainID == chainID }) else {
            return
        }
        guard layer.images.isEmpty else {
            throw SystemError("delete layer", "\(poolRoot)/\(layer.subvolume.path)", errno: EBUSY,
                              detail: "used by image(s) \(layer.images.joined(separator: ", ")); delete those first")
        }
        let layersDirectory = try openLayersDirectory()
        try Btrfs.deleteSubvolume(in: layersDirectory, named: Digest.encoded(chainID), describedAs: "\(poolRoot)/\(layer.subvolume.path)")
        unlink(metadataPath(chainID))
        rmdir("\(poolRoot)/\(Self.directory)/\(Self.metadata)")   // gone with the last layer
    }

    /// Deletes the temporary subvolume `name` (in layers/) of a layer import that did not
    /// finish. Refuses anything else.
    public func removeLeftover(_ name: String) throws {
        guard name.hasPrefix(ImageStore.leftoverPrefix), !name.contains("/") else {
            throw SystemError.failure("remove leftover", "\(poolRoot)/\(Self.directory)/\(name)", "not a temporary layer import")
        }
        let layersDirectory = try openLayersDirectory()
        let raw = openat(layersDirectory.rawValue, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        if raw < 0 && errno == ENOENT { return }
        if raw >= 0 { close(raw) }
        try Btrfs.deleteSubvolume(in: layersDirectory, named: name, describedAs: "\(poolRoot)/\(Self.directory)/\(name)")
    }

    func metadataPath(_ chainID: String) -> String {
        "\(poolRoot)/\(Self.directory)/\(Self.metadata)/\(Digest.encoded(chainID)).json"
    }

    /// Records what btrfs cannot tell about a layer about to be renamed into place.
    func writeMetadata(chainID: String, size: UInt64, diffID: String) throws {
        let directory = "\(poolRoot)/\(Self.directory)/\(Self.metadata)"
        if mkdir(directory, 0o700) != 0 && errno != EEXIST { throw SystemError("create directory", directory) }
        let json = JSON.object([("chainID", .string(chainID)), ("diffID", .string(diffID)), ("size", .int(Int64(clamping: size)))])
        try Files.writeAtomically(metadataPath(chainID), text: json.serialized() + "\n", mode: 0o600)
    }

    /// Deletes the metadata of layers that are gone.
    func pruneMetadata(keeping layers: some Sequence<String>) {
        let directory = "\(poolRoot)/\(Self.directory)/\(Self.metadata)"
        let live = Set(layers)
        for file in (try? Files.list(directory)) ?? [] where file.hasSuffix(".json") && !live.contains(String(file.dropLast(5))) {
            unlink("\(directory)/\(file)")
        }
        rmdir(directory)   // gone with the last layer; kept (ENOTEMPTY) otherwise
    }

    /// Deletes every layer no image uses, interrupted layer imports, downloads left
    /// behind and the metadata of deleted images; returns the chain IDs deleted. Run under the host lock: a pull running
    /// at the same time would lose its layers.
    @discardableResult
    public func deleteUnused() throws -> [String] {
        let contents = try ImageStore(poolRoot: poolRoot).contents()
        var deleted: [String] = []
        let layersDirectory = try openLayersDirectory()
        let area = Self.classify(contents.layerArea)
        for layer in Self.describe(layers: area.layers, images: contents.images) where layer.images.isEmpty {
            let name = Paths.basename(layer.subvolume.path)
            try Btrfs.deleteSubvolume(in: layersDirectory, named: name, describedAs: "\(poolRoot)/\(layer.subvolume.path)")
            deleted.append(layer.chainID)
        }
        try removeLeftovers(area.leftovers)
        try Files.removeTree("\(poolRoot)/\(Self.directory)/\(Self.downloads)")
        ImageStore(poolRoot: poolRoot).pruneMetadata(keeping: contents)
        pruneMetadata(keeping: area.layers.keys.filter { !deleted.contains("sha256:\($0)") })
        return deleted
    }

    /// Deletes temporary subvolumes of layer imports that were interrupted (a crash or
    /// a kill): nothing refers to them, and they never have a layer's final name.
    func removeLeftovers(_ leftovers: [SubvolumeInfo]) throws {
        guard !leftovers.isEmpty else { return }
        let layersDirectory = try openLayersDirectory()
        for leftover in leftovers {
            try Btrfs.deleteSubvolume(in: layersDirectory, named: Paths.basename(leftover.path),
                                      describedAs: "\(poolRoot)/\(leftover.path)")
        }
    }

    // MARK: - Pure

    /// The subvolumes below layers/: layers by the hex of their chain ID, and temporary
    /// subvolumes of interrupted layer imports. Anything else there is not tupp's.
    public static func classify(_ area: [SubvolumeInfo]) -> (layers: [String: SubvolumeInfo], leftovers: [SubvolumeInfo]) {
        var layers: [String: SubvolumeInfo] = [:]
        var leftovers: [SubvolumeInfo] = []
        for subvolume in area {
            let parts = subvolume.path.split(separator: "/")
            guard parts.count == 2, parts[0] == Substring(directory) else { continue }
            let name = String(parts[1])
            if name.hasPrefix(ImageStore.leftoverPrefix) {
                leftovers.append(subvolume)
            } else if ImageReference.isDigest("sha256:\(name)") {
                layers[name] = subvolume
            }
        }
        return (layers, leftovers)
    }

    /// "layers/<hex>" for "sha256:<hex>".
    static func relativePath(_ chainID: String) -> String { "\(directory)/\(Digest.encoded(chainID))" }

    /// Layer subvolumes (keyed by their directory name, the chain ID's hex) with their
    /// parents and users, from the UUID links btrfs keeps between snapshots.
    static func describe(layers: [String: SubvolumeInfo], images: [String: SubvolumeInfo]) -> [LayerInfo] {
        var byUUID: [String: String] = [:]
        for (hex, info) in layers { byUUID[info.uuid] = hex }
        var users: [String: Set<String>] = [:]
        for (name, image) in images {
            var current = image.parentUUID.flatMap { byUUID[$0] }
            var seen: Set<String> = []
            while let hex = current, seen.insert(hex).inserted {
                users[hex, default: []].insert(name)
                current = layers[hex]?.parentUUID.flatMap { byUUID[$0] }
            }
        }
        return layers.keys.sorted().map { hex in
            let info = layers[hex]!
            return LayerInfo(chainID: "sha256:\(hex)", subvolume: info,
                             parentChainID: info.parentUUID.flatMap { byUUID[$0] }.map { "sha256:\($0)" },
                             images: (users[hex] ?? []).sorted())
        }
    }

    // MARK: - Unpacking

    /// What unpacking one layer did.
    struct Unpacked {
        var warnings: [String]
        var entries: Int
    }

    /// Builds `layers/<chainID>` from a layer blob, atomically: a writable snapshot of
    /// the parent layer (or an empty subvolume) under a temporary name, the tar applied
    /// with whiteouts, its DiffID checked against `diffID` (and the blob against
    /// `blobDigest` when that was not verified before), then synced, made read-only and
    /// renamed into place. Any failure deletes the temporary subvolume.
    func unpack(blob: String, blobDigest: String?, blobSize: Int64, compression: LayerCompression,
                diffID: String, chainID: String, parent: String?, label: String, meter: ProgressMeter) throws -> Unpacked {
        let layersDirectory = try openLayersDirectory()
        let hex = Digest.encoded(chainID)
        let temporary = "\(ImageStore.leftoverPrefix)\(hex.prefix(16))-\(ImageStore.randomSuffix())"
        let temporaryPath = "\(poolRoot)/\(Self.directory)/\(temporary)"
        if let parent {
            let parentPath = "\(poolRoot)/\(Self.relativePath(parent))"
            let source = try layersDirectory.openAt(Digest.encoded(parent), O_RDONLY | O_DIRECTORY | O_NOFOLLOW, describedAs: parentPath)
            try Btrfs.createSnapshot(of: source, in: layersDirectory, named: temporary, describedAs: "\(parentPath) → \(temporaryPath)")
        } else {
            try Btrfs.createSubvolume(in: layersDirectory, named: temporary, describedAs: temporaryPath)
        }
        Checkpoint.pass("layer \(hex.prefix(12)) being unpacked")
        do {
            let rootfs = try layersDirectory.openAt(temporary, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, describedAs: temporaryPath)
            let writer = RootfsWriter(root: rootfs, sourceName: label)
            writer.layerMode = true
            writer.beginLayer(name: label)
            let file = try ArchiveInput(path: blob, hashing: blobDigest != nil)
            let stream = try DecompressedInput(file, compression: compression, label: label)
            try ArchiveExtractor(progress: meter).extract(stream, into: writer, label: label)
            try writer.finish()
            let actualDiffID = try stream.finishDiffID()
            if let blobDigest {
                let actual = try file.finishDigest()!
                guard actual == blobDigest else {
                    throw SystemError.failure("verify layer", blob, "digest mismatch: expected \(blobDigest), content is \(actual) (\(label))")
                }
            }
            guard Int64(file.bytesRead) == blobSize else {
                throw SystemError.failure("verify layer", blob, "size mismatch: expected \(blobSize) bytes, read \(file.bytesRead) (\(label))")
            }
            guard actualDiffID == diffID else {
                throw SystemError.failure("verify layer", label,
                                          "DiffID mismatch: the image config says \(diffID), the layer's uncompressed content is \(actualDiffID)")
            }
            meter.completeInput(bytes: file.bytesRead)
            try writeMetadata(chainID: chainID, size: stream.uncompressedBytes, diffID: diffID)
            try Btrfs.sync(rootfs, describedAs: temporaryPath)
            try Btrfs.setReadOnly(rootfs, true, describedAs: temporaryPath)
            if tupp_renameat2(layersDirectory.rawValue, temporary, layersDirectory.rawValue, hex, UInt32(TUPP_RENAME_NOREPLACE)) != 0 {
                guard errno == EEXIST else { throw SystemError("rename layer into place", "\(temporaryPath) → \(hex)") }
                // Built meanwhile by someone else: theirs is the same content.
                try Btrfs.deleteSubvolume(in: layersDirectory, named: temporary, describedAs: temporaryPath)
            }
            Checkpoint.pass("layer \(hex.prefix(12)) in place")
            return Unpacked(warnings: writer.warnings, entries: writer.entriesWritten)
        } catch {
            try? Btrfs.deleteSubvolume(in: layersDirectory, named: temporary, describedAs: temporaryPath)
            throw error
        }
    }

    func openLayersDirectory() throws(SystemError) -> FileDescriptor {
        let path = "\(poolRoot)/\(Self.directory)"
        if mkdir(path, 0o700) != 0 && errno != EEXIST { throw SystemError("create directory", path) }
        return try FileDescriptor.open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW)
    }

    /// layers/.downloads, created when missing.
    func downloadDirectory() throws(SystemError) -> String {
        _ = try openLayersDirectory()
        let path = "\(poolRoot)/\(Self.directory)/\(Self.downloads)"
        if mkdir(path, 0o700) != 0 && errno != EEXIST { throw SystemError("create directory", path) }
        return path
    }
}
