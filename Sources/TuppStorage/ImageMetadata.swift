import Glibc
import TuppBase
import TuppFacts
import TuppRegistry
import TuppSystem

/// What an image built from layers carries besides its rootfs: where it came from and
/// the image config's container defaults.
///
/// Stored as `images/.meta/<subvolume UUID>.json`, written before the image is renamed
/// into place. Keyed by the UUID, it can never describe another subvolume: an image
/// replaced by any other import simply has none, and a crash at any point leaves no
/// metadata that lies.
public struct ImageMetadata: Sendable, Equatable {
    /// The UUID of the image subvolume this describes.
    public var subvolumeUUID: String
    /// The source's identity: the registry's manifest (or index) digest, or the OCI
    /// layout's manifest digest — what `identify` answers.
    public var digest: String
    /// The platform's own manifest (differs from `digest` when that is an index).
    public var manifestDigest: String
    public var platform: Platform
    public var config: ImageConfig
    /// Chain IDs, bottom to top: the image is a snapshot of the last.
    public var layers: [String]
    /// For registry images, the reference pulled ("host/repo:tag").
    public var reference: String?

    var json: JSON.Node {
        .object([
            ("config", config.json), ("digest", .string(digest)), ("layers", .array(layers.map { .string($0) })),
            ("manifestDigest", .string(manifestDigest)), ("platform", platform.json),
        ] + (reference.map { [("reference", .string($0))] } ?? []) + [("subvolumeUUID", .string(subvolumeUUID))])
    }

    init(subvolumeUUID: String, digest: String, manifestDigest: String, platform: Platform, config: ImageConfig,
         layers: [String], reference: String?) {
        self.subvolumeUUID = subvolumeUUID
        self.digest = digest
        self.manifestDigest = manifestDigest
        self.platform = platform
        self.config = config
        self.layers = layers
        self.reference = reference
    }

    init(_ object: JSONObject) throws(SystemError) {
        guard let platform = try object.object("platform"), let config = try object.object("config") else {
            throw SystemError.failure("read image metadata", object.what, "platform or config missing")
        }
        self.init(subvolumeUUID: try object.requiredString("subvolumeUUID"), digest: try object.requiredString("digest"),
                  manifestDigest: try object.requiredString("manifestDigest"), platform: try Platform(platform),
                  config: try ImageConfig(config), layers: try object.strings("layers") ?? [], reference: try object.string("reference"))
    }
}

extension ImageStore {
    static let metadataDirectory = ".meta"

    /// The metadata of images/NAME, nil when it has none (not built from layers, or
    /// built by a version of tupp that did not record it).
    public func metadata(of name: String) throws -> ImageMetadata? {
        try Self.validate(name: name, kind: "image")
        guard let image = try subvolume("images/\(name)") else { return nil }
        let path = "\(poolRoot)/images/\(Self.metadataDirectory)/\(image.uuid).json"
        guard let bytes = try Files.read(path, limit: 16 << 20) else { return nil }
        guard let object = try? JSONObject.parse(bytes, what: path), let metadata = try? ImageMetadata(object),
              metadata.subvolumeUUID == image.uuid else {
            throw SystemError.failure("read image metadata", path, "not valid image metadata; delete the file and import the image again")
        }
        return metadata
    }

    /// Writes the metadata of a subvolume not yet in place (atomically, synced).
    func writeMetadata(_ metadata: ImageMetadata) throws {
        let directory = "\(poolRoot)/images/\(Self.metadataDirectory)"
        if mkdir(directory, 0o700) != 0 && errno != EEXIST { throw SystemError("create directory", directory) }
        try Files.writeAtomically("\(directory)/\(metadata.subvolumeUUID).json", text: metadata.json.serialized() + "\n", mode: 0o600)
    }

    /// Deletes metadata files whose subvolume is gone.
    func pruneMetadata(keeping contents: PoolContents) {
        let directory = "\(poolRoot)/images/\(Self.metadataDirectory)"
        let live = Set(contents.images.values.map(\.uuid) + contents.leftovers.map(\.uuid))
        for file in (try? Files.list(directory)) ?? [] where file.hasSuffix(".json") {
            if !live.contains(String(file.dropLast(5))) { unlink("\(directory)/\(file)") }
        }
    }
}
