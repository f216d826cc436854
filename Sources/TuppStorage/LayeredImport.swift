import CBtrfsUtil
import Glibc
import Synchronization
import TuppBase
import TuppFacts
import TuppRegistry
import TuppSystem

/// Where an image built from layers comes from.
enum LayeredSource {
    case layout(path: String, tag: String?)
    case registry(RegistrySource)
}

/// An image resolved to its layers, before anything is fetched.
struct LayeredImage {
    var identity: String
    var manifestDigest: String
    var platform: Platform
    var config: ImageConfigFile
    var layers: [Descriptor]
    var reference: String?
    /// Names the image in errors and labels: the reference, or the layout directory.
    var name: String
    /// Where blob i is: fetched (registry) or already on disk (layout).
    var origin: Origin

    enum Origin {
        case registry(RegistryClient)
        case layout(OCILayout)
    }
}

/// A layered image's identity, config and layers, read without fetching or unpacking
/// any layer: what a plan needs to know about an image it is about to pull.
public struct ImageDescription: Sendable, Equatable {
    /// The source's identity (what `ImportedImage.digest` and the metadata say).
    public var digest: String
    public var platform: Platform
    public var config: ImageConfig
    /// Chain IDs, bottom to top: the layers the image is built on.
    public var layers: [String]
}

extension ImageStore {
    /// The digest, config and layers of a registry image: its manifest (by the
    /// reference's tag or digest), the platform's manifest from an index, and the config
    /// blob — a few small requests.
    public func describe(_ registry: RegistrySource) throws -> ImageDescription {
        try describe(.registry(registry))
    }

    /// The same for an OCI layout, read from its directory.
    public func describe(layout: String, tag: String?) throws -> ImageDescription {
        try describe(.layout(path: layout, tag: tag))
    }

    func describe(_ source: LayeredSource) throws -> ImageDescription {
        let image = try resolveLayered(source)
        return ImageDescription(digest: image.identity, platform: image.platform, config: image.config.config,
                                layers: Digest.chainIDs(image.config.diffIDs))
    }

    /// The manifest, config and layer list of an OCI or registry source. For a
    /// registry: the manifest by tag or digest, an index narrowed to the platform, and
    /// the config blob — a few small requests, no layer yet.
    func resolveLayered(_ source: LayeredSource) throws -> LayeredImage {
        switch source {
        case .layout(let layout, let tag):
            let oci = OCILayout(path: layout)
            let (digest, manifest) = try oci.resolve(tag: tag)
            let config = try oci.config(of: manifest)
            return LayeredImage(identity: digest, manifestDigest: digest, platform: config.platform, config: config,
                                layers: manifest.layers, reference: nil, name: layout, origin: .layout(oci))
        case .registry(let registry):
            let client = RegistryClient(reference: registry.reference,
                                        options: RegistryOptions(security: registry.security, credentials: credentials, retry: retry))
            let wanted = registry.platform ?? .host
            let top = try client.manifest(registry.reference.manifestReference)
            var manifestDigest = top.digest
            let manifest: ImageManifest
            switch top.document {
            case .manifest(let single):
                manifest = single
            case .index(let index):
                guard let entry = index.select(wanted) else {
                    throw SystemError.failure("select platform", registry.reference.description,
                                              "the image has no manifest for \(wanted); it has: \(index.platformList)")
                }
                let platformManifest = try client.manifest(entry.digest)
                guard case .manifest(let selected) = platformManifest.document else {
                    throw SystemError.failure("select platform", registry.reference.description,
                                              "the index entry for \(wanted) (\(entry.digest)) is another index")
                }
                manifest = selected
                manifestDigest = platformManifest.digest
            }
            let config = try ImageConfigFile.decode(try client.smallBlob(manifest.config),
                                                    what: "\(registry.reference) config \(manifest.config.digest)")
            guard wanted.accepts(config.platform) else {
                throw SystemError.failure("select platform", registry.reference.description,
                                          "the image is built for \(config.platform) only, not \(wanted)")
            }
            return LayeredImage(identity: top.digest, manifestDigest: manifestDigest, platform: config.platform, config: config,
                                layers: manifest.layers, reference: registry.reference.description,
                                name: registry.reference.description, origin: .registry(client))
        }
    }

    /// Builds images/NAME from layers: resolves the source, unpacks into the layer
    /// store only the layers it lacks (fetching them first for a registry, on a few
    /// threads while earlier layers unpack), then makes the image a read-only snapshot
    /// of the top layer, renamed into place with its metadata.
    func importLayered(name: String, from source: LayeredSource, progress: ((ImportProgress) -> Void)?,
                       layerProgress: (@Sendable (LayerProgress) -> Void)?) throws -> ImportedImage {
        let image = try resolveLayered(source)
        let what = image.name
        let layers = image.layers
        guard image.config.diffIDs.count == layers.count else {
            throw SystemError.failure("read image config", what,
                                      "the manifest lists \(layers.count) layers, the config \(image.config.diffIDs.count) DiffIDs")
        }
        for (index, layer) in layers.enumerated() {
            if let type = layer.mediaType, !MediaType.layers.contains(type) {
                throw SystemError.failure("import layer \(index + 1)/\(layers.count)", "\(what) (\(layer.digest))", "unsupported media type \(type)")
            }
        }
        let store = LayerStore(poolRoot: poolRoot)
        let chain = Digest.chainIDs(image.config.diffIDs)
        let present = Set(LayerStore.classify(try contents().layerArea).layers.keys)
        let missing = layers.indices.filter { !present.contains(Digest.encoded(chain[$0])) }
        let meter = ProgressMeter(totalBytes: missing.reduce(0) { $0 + UInt64(max(0, layers[$1].size)) }, callback: progress)
        let reportLock = Mutex(())
        func report(_ index: Int, _ phase: LayerProgress.Phase, bytes: UInt64, rate: Double = 0) {
            guard let layerProgress else { return }
            let update = LayerProgress(index: index, count: layers.count, digest: layers[index].digest, phase: phase,
                                       bytes: bytes, total: UInt64(max(0, layers[index].size)), bytesPerSecond: rate)
            reportLock.withLock { _ in layerProgress(update) }
        }

        var prefetcher: BlobPrefetcher?
        defer { prefetcher?.finish() }
        if case .registry(let client) = image.origin, !missing.isEmpty {
            let directory = try store.downloadDirectory()
            prefetcher = try BlobPrefetcher(indices: missing, width: 3) { index, isCancelled in
                try client.download(layers[index], into: directory, progress: { transfer in
                    report(index, .downloading, bytes: transfer.bytes, rate: transfer.bytesPerSecond)
                }, isCancelled: isCancelled)
            }
        }

        var warnings: [String] = []
        var entries = 0
        var downloaded: UInt64 = 0
        for index in layers.indices {
            let layer = layers[index]
            let label = "\(what) layer \(index + 1)/\(layers.count) (\(layer.digest))"
            if present.contains(Digest.encoded(chain[index])) {
                report(index, .present, bytes: UInt64(max(0, layer.size)))
                continue
            }
            let blob: String
            var verifyBlob: String?
            switch image.origin {
            case .registry:
                blob = try prefetcher!.wait(index)
                downloaded += UInt64(max(0, layer.size))
            case .layout(let oci):
                blob = try oci.blobPath(layer.digest)
                verifyBlob = layer.digest
            }
            report(index, .unpacking, bytes: UInt64(max(0, layer.size)))
            let started = Monotonic.nanoseconds()
            let unpacked = try store.unpack(blob: blob, blobDigest: verifyBlob, blobSize: layer.size,
                                            compression: LayerCompression(mediaType: layer.mediaType), diffID: image.config.diffIDs[index], chainID: chain[index],
                                            parent: index > 0 ? chain[index - 1] : nil, label: label, meter: meter)
            if case .registry = image.origin { unlink(blob) }
            warnings += unpacked.warnings
            entries += unpacked.entries
            let seconds = Double(Monotonic.nanoseconds() - started) / 1e9
            report(index, .done, bytes: UInt64(max(0, layer.size)), rate: seconds > 0 ? Double(max(0, layer.size)) / seconds : 0)
        }
        prefetcher?.finish()
        prefetcher = nil

        // The image: a read-only snapshot of the top layer (an empty subvolume for an
        // image without layers), under a temporary name until its metadata is written.
        let images = try openPoolDirectory("images")
        let temporary = "\(Self.leftoverPrefix)\(name)-\(Self.randomSuffix())"
        let temporaryPath = "\(poolRoot)/images/\(temporary)"
        if let top = chain.last {
            let layersDirectory = try store.openLayersDirectory()
            let topPath = "\(poolRoot)/\(LayerStore.relativePath(top))"
            let source = try layersDirectory.openAt(Digest.encoded(top), O_RDONLY | O_DIRECTORY | O_NOFOLLOW, describedAs: topPath)
            try Btrfs.createSnapshot(of: source, in: images, named: temporary, readOnly: true, describedAs: "\(topPath) → \(temporaryPath)")
        } else {
            try Btrfs.createSubvolume(in: images, named: temporary, describedAs: temporaryPath)
        }
        Checkpoint.pass("images/\(name) made from its top layer, not in place yet")
        do {
            let rootfs = try images.openAt(temporary, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, describedAs: temporaryPath)
            if chain.isEmpty { try Btrfs.setReadOnly(rootfs, true, describedAs: temporaryPath) }
            let info = try Btrfs.info(rootfs, path: "images/\(temporary)")
            try writeMetadata(ImageMetadata(subvolumeUUID: info.uuid, digest: image.identity, manifestDigest: image.manifestDigest,
                                            platform: image.platform, config: image.config.config, layers: chain,
                                            reference: image.reference))
            try Btrfs.sync(rootfs, describedAs: temporaryPath)
            if let note = try moveIntoPlace(images, temporary: temporary, name: name) { warnings.append(note) }
        } catch {
            try? Btrfs.deleteSubvolume(in: images, named: temporary, describedAs: temporaryPath)
            throw error
        }
        let final = try images.openAt(name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, describedAs: "\(poolRoot)/images/\(name)")
        pruneMetadata(keeping: try contents())
        meter.finish(entries: entries)
        return ImportedImage(info: try Btrfs.info(final, path: "images/\(name)"), digest: image.identity,
                             warnings: warnings, entries: entries, bytesRead: meter.bytesRead, seconds: meter.elapsedSeconds,
                             config: image.config.config, layers: chain, reusedLayers: layers.count - missing.count,
                             downloadedBytes: downloaded)
    }
}
