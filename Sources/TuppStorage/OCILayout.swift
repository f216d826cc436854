import Crypto
import FoundationEssentials
import Glibc
import TuppSystem

/// An OCI image layout directory (image-spec `image-layout.md`): oci-layout,
/// index.json and content-addressed blobs/sha256/<hex>.
struct OCILayout {
    struct Platform: Decodable, Equatable {
        var architecture: String
        var os: String
        var variant: String?

        var description: String { [os, architecture, variant].compactMap { $0 }.joined(separator: "/") }
    }

    struct Descriptor: Decodable {
        var mediaType: String?
        var digest: String
        var size: Int64
        var annotations: [String: String]?
        var platform: Platform?

        var refName: String? { annotations?["org.opencontainers.image.ref.name"] }
    }

    struct Index: Decodable {
        var manifests: [Descriptor]
    }

    struct Manifest: Decodable {
        var mediaType: String?
        var layers: [Descriptor]
    }

    static let indexTypes: Set<String> = [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]

    static let layerTypes: Set<String> = [
        "application/vnd.oci.image.layer.v1.tar",
        "application/vnd.oci.image.layer.v1.tar+gzip",
        "application/vnd.oci.image.layer.v1.tar+zstd",
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    ]

    let path: String

    /// The manifest selected by `tag` (or the only one), through nested indexes, with
    /// its digest and decoded content. The manifest blob's digest is verified.
    func resolve(tag: String?) throws -> (digest: String, manifest: Manifest) {
        guard let layoutText = try Files.readText("\(path)/oci-layout", limit: 4096),
              layoutText.contains("imageLayoutVersion") else {
            throw SystemError("read OCI layout", "\(path)/oci-layout", errno: ENOENT, detail: "not an OCI image layout")
        }
        guard let indexBytes = try Files.read("\(path)/index.json", limit: 16 << 20) else {
            throw SystemError("read OCI layout", "\(path)/index.json", errno: ENOENT)
        }
        let index: Index = try decode(indexBytes, what: "\(path)/index.json")
        var descriptor = try select(from: index.manifests, tag: tag, in: "\(path)/index.json")
        var depth = 0
        while let type = descriptor.mediaType, Self.indexTypes.contains(type) {
            depth += 1
            guard depth < 8 else { throw SystemError.failure("read OCI layout", path, "indexes nested too deeply") }
            let nested: Index = try decode(try readBlob(descriptor, limit: 16 << 20), what: "index \(descriptor.digest)")
            descriptor = try select(from: nested.manifests, tag: nil, in: "index \(descriptor.digest)")
        }
        let manifest: Manifest = try decode(try readBlob(descriptor, limit: 16 << 20), what: "manifest \(descriptor.digest)")
        return (descriptor.digest, manifest)
    }

    /// Picks by tag, else the only entry, else linux/amd64 among platforms.
    private func select(from candidates: [Descriptor], tag: String?, in what: String) throws -> Descriptor {
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
        if let native = pool.first(where: { $0.platform?.os == "linux" && $0.platform?.architecture == "amd64" }) {
            return native
        }
        let platforms = pool.compactMap { $0.platform?.description }
        throw SystemError.failure("select OCI manifest", what,
                                  "ambiguous: \(pool.count) manifests (\(platforms.joined(separator: ", "))) and none for linux/amd64")
    }

    /// blobs/<algorithm>/<hex> for a digest; the digest is validated first so it cannot
    /// name a path outside blobs/.
    func blobPath(_ digest: String) throws(SystemError) -> String {
        let parts = digest.split(separator: ":", maxSplits: 1)
        guard parts.count == 2, parts[0] == "sha256", parts[1].utf8.count == 64,
              parts[1].utf8.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }) else {
            throw SystemError.failure("read OCI blob", "\(path): \(digest)", "unsupported or malformed digest (sha256:<64 hex> expected)")
        }
        return "\(path)/blobs/sha256/\(parts[1])"
    }

    /// A small blob (index, manifest), read whole and checked against its descriptor.
    func readBlob(_ descriptor: Descriptor, limit: Int) throws -> [UInt8] {
        let file = try blobPath(descriptor.digest)
        guard let bytes = try Files.read(file, limit: limit) else {
            throw SystemError("read OCI blob", file, errno: ENOENT, detail: "blob \(descriptor.digest) is missing")
        }
        let actual = "sha256:" + Hex.encode(SHA256.hash(data: bytes))
        guard actual == descriptor.digest else {
            throw SystemError.failure("verify OCI blob", file, "digest mismatch: expected \(descriptor.digest), content is \(actual)")
        }
        guard Int64(bytes.count) == descriptor.size else {
            throw SystemError.failure("verify OCI blob", file, "size mismatch: expected \(descriptor.size) bytes, found \(bytes.count)")
        }
        return bytes
    }

    private func decode<T: Decodable>(_ bytes: [UInt8], what: String) throws -> T {
        do {
            return try JSONDecoder().decode(T.self, from: Data(bytes))
        } catch {
            throw SystemError.failure("parse OCI JSON", what, "\(error)")
        }
    }
}
