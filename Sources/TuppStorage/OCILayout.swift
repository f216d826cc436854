import Glibc
import TuppRegistry
import TuppSystem

/// An OCI image layout directory (image-spec `image-layout.md`): oci-layout,
/// index.json and content-addressed blobs/sha256/<hex>.
struct OCILayout {
    let path: String

    /// The manifest selected by `tag` (or the only one), through nested indexes, with
    /// its digest and decoded content. The manifest blob's digest is verified. Among
    /// several platforms, `platform` (default: the host's) decides.
    func resolve(tag: String?, platform: Platform = .host) throws -> (digest: String, manifest: ImageManifest) {
        guard let layoutText = try Files.readText("\(path)/oci-layout", limit: 4096),
              layoutText.contains("imageLayoutVersion") else {
            throw SystemError("read OCI layout", "\(path)/oci-layout", errno: ENOENT, detail: "not an OCI image layout")
        }
        guard let indexBytes = try Files.read("\(path)/index.json", limit: 16 << 20) else {
            throw SystemError("read OCI layout", "\(path)/index.json", errno: ENOENT)
        }
        let index = try ImageIndex.decode(indexBytes, what: "\(path)/index.json")
        var descriptor = try select(from: index, tag: tag, platform: platform, in: "\(path)/index.json")
        var depth = 0
        while let type = descriptor.mediaType, MediaType.indexes.contains(type) {
            depth += 1
            guard depth < 8 else { throw SystemError.failure("read OCI layout", path, "indexes nested too deeply") }
            let nested = try ImageIndex.decode(try readBlob(descriptor, limit: 16 << 20), what: "\(path) index \(descriptor.digest)")
            descriptor = try select(from: nested, tag: nil, platform: platform, in: "index \(descriptor.digest)")
        }
        let manifest = try ImageManifest.decode(try readBlob(descriptor, limit: 16 << 20), what: "\(path) manifest \(descriptor.digest)")
        return (descriptor.digest, manifest)
    }

    /// The image config the manifest points at.
    func config(of manifest: ImageManifest) throws -> ImageConfigFile {
        try ImageConfigFile.decode(try readBlob(manifest.config, limit: 8 << 20), what: "\(path) config \(manifest.config.digest)")
    }

    /// Picks by tag, else the only entry, else the platform's among several.
    private func select(from index: ImageIndex, tag: String?, platform: Platform, in what: String) throws -> Descriptor {
        let candidates = index.manifests
        var pool = candidates
        let tags = Array(Set(candidates.compactMap(\.refName))).sorted()
        if let tag {
            pool = candidates.filter { $0.refName == tag }
            guard !pool.isEmpty else {
                throw SystemError.failure("select OCI manifest", "\(path):\(tag)",
                                          "no such tag; the layout has: \(tags.isEmpty ? "no tags" : tags.joined(separator: ", "))")
            }
        }
        if pool.count == 1 { return pool[0] }
        if pool.isEmpty { throw SystemError.failure("select OCI manifest", what, "lists no manifests") }
        if tag == nil && tags.count > 1 {
            throw SystemError.failure("select OCI manifest", path,
                                      "ambiguous: the layout has several tags (\(tags.joined(separator: ", "))); name one as oci: DIR:TAG")
        }
        let subset = ImageIndex(mediaType: index.mediaType, manifests: pool)
        if let match = subset.select(platform) { return match }
        throw SystemError.failure("select OCI manifest", what,
                                  "ambiguous: \(pool.count) manifests (\(subset.platformList)) and none for \(platform)")
    }

    /// blobs/<algorithm>/<hex> for a digest; the digest is validated first so it cannot
    /// name a path outside blobs/.
    func blobPath(_ digest: String) throws(SystemError) -> String {
        guard ImageReference.isDigest(digest) else {
            throw SystemError.failure("read OCI blob", "\(path): \(digest)", "unsupported or malformed digest (sha256:<64 hex> expected)")
        }
        return "\(path)/blobs/sha256/\(Digest.encoded(digest))"
    }

    /// A small blob (index, manifest, config), read whole and checked against its descriptor.
    func readBlob(_ descriptor: Descriptor, limit: Int) throws -> [UInt8] {
        let file = try blobPath(descriptor.digest)
        guard let bytes = try Files.read(file, limit: limit) else {
            throw SystemError("read OCI blob", file, errno: ENOENT, detail: "blob \(descriptor.digest) is missing")
        }
        let actual = Digest.sha256(bytes)
        guard actual == descriptor.digest else {
            throw SystemError.failure("verify OCI blob", file, "digest mismatch: expected \(descriptor.digest), content is \(actual)")
        }
        guard Int64(bytes.count) == descriptor.size else {
            throw SystemError.failure("verify OCI blob", file, "size mismatch: expected \(descriptor.size) bytes, found \(bytes.count)")
        }
        return bytes
    }
}
