import Crypto
import Glibc
import TuppBase
import TuppFacts
import TuppSystem

/// The OCI image-spec documents tupp reads (and the Docker v2 forms they grew out of):
/// descriptors, manifests, indexes and the image config. Registry pulls and OCI layouts
/// share them.
public enum MediaType {
    public static let ociManifest = "application/vnd.oci.image.manifest.v1+json"
    public static let ociIndex = "application/vnd.oci.image.index.v1+json"
    public static let dockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
    public static let dockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"

    public static let indexes: Set<String> = [ociIndex, dockerManifestList]
    public static let manifests: Set<String> = [ociManifest, dockerManifest]

    /// Docker's schema 1 (signed JSON, no config): long deprecated, refused by name.
    public static let schema1: Set<String> = [
        "application/vnd.docker.distribution.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
    ]

    /// The Accept header of a manifest request: every form tupp can follow.
    public static let manifestAccept = [ociIndex, dockerManifestList, ociManifest, dockerManifest].joined(separator: ", ")

    public static let layers: Set<String> = [
        "application/vnd.oci.image.layer.v1.tar",
        "application/vnd.oci.image.layer.v1.tar+gzip",
        "application/vnd.oci.image.layer.v1.tar+zstd",
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    ]
}

/// os/architecture[/variant], as in `--platform linux/arm64/v8`.
public struct Platform: Sendable, Hashable, CustomStringConvertible {
    public var os: String
    public var architecture: String
    public var variant: String?

    public init(os: String, architecture: String, variant: String? = nil) {
        self.os = os
        self.architecture = architecture
        self.variant = variant
    }

    public var description: String { [os, architecture, variant].compactMap { $0 }.joined(separator: "/") }

    /// {"os": …, "architecture": …, "variant": …}, as descriptors and configs carry it.
    public init(_ object: JSONObject) throws(SystemError) {
        self.init(os: try object.requiredString("os"), architecture: try object.requiredString("architecture"),
                  variant: try object.string("variant"))
    }

    public var json: JSON.Node {
        .object([("architecture", .string(architecture)), ("os", .string(os))] + (variant.map { [("variant", .string($0))] } ?? []))
    }

    public static func parse(_ text: String) throws(SystemError) -> Platform {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard (2...3).contains(parts.count), parts.allSatisfy({ !$0.isEmpty }) else {
            throw SystemError.failure("parse platform", "'\(text)'", "expected OS/ARCH or OS/ARCH/VARIANT, such as linux/arm64")
        }
        return Platform(os: parts[0], architecture: parts[1], variant: parts.count == 3 ? parts[2] : nil).normalized
    }

    /// The platform this host runs, in the image-spec's (Go's) names.
    public static var host: Platform {
        var info = utsname()
        uname(&info)
        let machine = withUnsafeBytes(of: info.machine) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        return fromMachine(machine)
    }

    /// uname's machine name → GOARCH (and variant).
    static func fromMachine(_ machine: String) -> Platform {
        switch machine {
        case "x86_64": return Platform(os: "linux", architecture: "amd64")
        case "aarch64", "arm64": return Platform(os: "linux", architecture: "arm64", variant: "v8")
        case "armv7l", "armv7": return Platform(os: "linux", architecture: "arm", variant: "v7")
        case "armv6l": return Platform(os: "linux", architecture: "arm", variant: "v6")
        case "i386", "i486", "i586", "i686": return Platform(os: "linux", architecture: "386")
        case "ppc64le", "s390x", "riscv64", "mips64": return Platform(os: "linux", architecture: machine)
        default: return Platform(os: "linux", architecture: machine)
        }
    }

    /// Aliases folded the way containerd does: arm64's default variant is v8, arm's v7.
    public var normalized: Platform {
        var p = self
        p.os = p.os.lowercased()
        switch p.architecture.lowercased() {
        case "x86_64", "x86-64": p.architecture = "amd64"; p.variant = nil
        case "aarch64", "arm64": p.architecture = "arm64"; if p.variant == nil || p.variant == "8" { p.variant = "v8" }
        case "armhf": p.architecture = "arm"; p.variant = "v7"
        case "armel": p.architecture = "arm"; p.variant = "v6"
        case "arm": if p.variant == nil { p.variant = "v7" }
        case "i386", "386": p.architecture = "386"
        default: p.architecture = p.architecture.lowercased()
        }
        return p
    }

    /// Whether an image built for `candidate` runs here as `self` asks.
    public func accepts(_ candidate: Platform) -> Bool {
        let want = normalized, have = candidate.normalized
        guard want.os == have.os, want.architecture == have.architecture else { return false }
        return want.variant == nil || have.variant == nil || want.variant == have.variant
    }
}

/// A pointer to content: its media type, digest and size (image-spec descriptor.md).
public struct Descriptor: Sendable, Equatable {
    public var mediaType: String?
    public var digest: String
    public var size: Int64
    public var annotations: [String: String]?
    public var platform: Platform?
    public var urls: [String]?

    public init(mediaType: String?, digest: String, size: Int64, platform: Platform? = nil) {
        self.mediaType = mediaType
        self.digest = digest
        self.size = size
        self.platform = platform
    }

    /// org.opencontainers.image.ref.name: the tag in an OCI layout's index.
    public var refName: String? { annotations?["org.opencontainers.image.ref.name"] }

    public init(_ object: JSONObject) throws(SystemError) {
        mediaType = try object.string("mediaType")
        digest = try object.requiredString("digest")
        guard let size = try object.int("size"), size >= 0 else {
            throw SystemError.failure("read JSON", object.what, "descriptor \(digest) has no valid \"size\"")
        }
        self.size = size
        annotations = try object.stringMap("annotations")
        platform = try object.object("platform").map { (platform) throws(SystemError) in try Platform(platform) }
        urls = try object.strings("urls")
    }
}

/// An image index or Docker manifest list.
public struct ImageIndex: Sendable {
    public var mediaType: String?
    public var manifests: [Descriptor]

    public init(mediaType: String?, manifests: [Descriptor]) {
        self.mediaType = mediaType
        self.manifests = manifests
    }

    public init(_ object: JSONObject) throws(SystemError) {
        mediaType = try object.string("mediaType")
        manifests = []
        for entry in try object.objects("manifests") ?? [] { manifests.append(try Descriptor(entry)) }
    }

    /// An index.json or index blob.
    public static func decode(_ bytes: [UInt8], what: String) throws(SystemError) -> ImageIndex {
        try ImageIndex(try JSONObject.parse(bytes, what: what))
    }

    /// The entry for `platform`: an exact variant before a looser match; entries for
    /// attestations (platform unknown/unknown) never match.
    public func select(_ platform: Platform) -> Descriptor? {
        let candidates = manifests.filter { $0.platform.map(platform.accepts) ?? false }
        let want = platform.normalized
        return candidates.first { $0.platform?.normalized.variant == want.variant } ?? candidates.first
    }

    /// "linux/amd64, linux/arm64/v8" for error messages.
    public var platformList: String {
        let names = manifests.compactMap { $0.platform?.description }.filter { $0 != "unknown/unknown" }
        return names.isEmpty ? "no platforms" : names.joined(separator: ", ")
    }
}

/// An image manifest: one config and the layers bottom to top.
public struct ImageManifest: Sendable {
    public var mediaType: String?
    public var config: Descriptor
    public var layers: [Descriptor]

    public init(_ object: JSONObject) throws(SystemError) {
        mediaType = try object.string("mediaType")
        guard let config = try object.object("config") else {
            throw SystemError.failure("read manifest", object.what, "it has no \"config\"")
        }
        self.config = try Descriptor(config)
        layers = []
        for entry in try object.objects("layers") ?? [] { layers.append(try Descriptor(entry)) }
    }

    public static func decode(_ bytes: [UInt8], what: String) throws(SystemError) -> ImageManifest {
        try ImageManifest(try JSONObject.parse(bytes, what: what))
    }
}

/// What a manifest request answered, told apart by media type (or, when the server or
/// layout does not say, by shape: an index has `manifests`).
public enum ManifestDocument: Sendable {
    case index(ImageIndex)
    case manifest(ImageManifest)

    public static func decode(_ bytes: [UInt8], mediaType: String?, what: String) throws(SystemError) -> ManifestDocument {
        let declared = mediaType.map { $0.split(separator: ";").first.map(String.init)?.trimmingCharacters() ?? $0 }
        if let declared, MediaType.schema1.contains(declared) {
            throw SystemError.failure("read manifest", what, "Docker schema 1 manifests are not supported; push the image again with a current client")
        }
        let object = try JSONObject.parse(bytes, what: what)
        let type = try object.string("mediaType") ?? declared
        let isIndex = type.map { MediaType.indexes.contains($0) } ?? false
        let isManifest = type.map { MediaType.manifests.contains($0) } ?? false
        if isIndex || (!isManifest && object.has("manifests") && !object.has("config")) {
            return .index(try ImageIndex(object))
        }
        guard object.has("config") else {
            throw SystemError.failure("read manifest", what, "neither an image manifest nor an index (media type \(type ?? "not given"))")
        }
        return .manifest(try ImageManifest(object))
    }
}

/// Reading the `config` object of an image config (its JSON, or what `ImageConfig.json`
/// wrote); the value itself is a fact in TuppFacts, shared with the pure planner.
extension ImageConfig {
    /// Reads the `config` object of an image config (or what `json` wrote).
    public init(_ c: JSONObject) throws(SystemError) {
        func present(_ text: String?) -> String? { text.flatMap { $0.isEmpty ? nil : $0 } }
        var health: Healthcheck?
        if let h = try c.object("Healthcheck"), let test = try h.strings("Test"), !test.isEmpty {
            health = Healthcheck(test: test, intervalNanoseconds: try h.int("Interval") ?? 0, timeoutNanoseconds: try h.int("Timeout") ?? 0,
                                 startPeriodNanoseconds: try h.int("StartPeriod") ?? 0, retries: Int(try h.int("Retries") ?? 0))
        }
        self.init(entrypoint: try c.strings("Entrypoint"), cmd: try c.strings("Cmd"), env: try c.strings("Env") ?? [],
                  workingDir: present(try c.string("WorkingDir")), user: present(try c.string("User")),
                  stopSignal: present(try c.string("StopSignal")), healthcheck: health)
    }
}

/// The image config blob: platform, container defaults and the layers' DiffIDs.
public struct ImageConfigFile: Sendable, Equatable {
    public var platform: Platform
    public var config: ImageConfig
    /// sha256 of each layer's uncompressed tar, bottom to top.
    public var diffIDs: [String]

    public static func decode(_ bytes: [UInt8], what: String) throws(SystemError) -> ImageConfigFile {
        let raw = try JSONObject.parse(bytes, what: what)
        let diffIDs = try raw.object("rootfs")?.strings("diff_ids") ?? []
        if let bad = diffIDs.first(where: { !ImageReference.isDigest($0) }) {
            throw SystemError.failure("read image config", what, "rootfs.diff_ids has '\(bad)', not a sha256 digest")
        }
        let config = try raw.object("config").map { (c) throws(SystemError) in try ImageConfig(c) } ?? ImageConfig()
        let variant = try raw.string("variant")
        let platform = Platform(os: try raw.string("os") ?? "linux", architecture: try raw.string("architecture") ?? "unknown",
                                variant: variant?.isEmpty == false ? variant : nil)
        return ImageConfigFile(platform: platform, config: config, diffIDs: diffIDs)
    }
}

public enum Digest {
    /// "sha256:<hex>" of `bytes`.
    public static func sha256(_ bytes: some Sequence<UInt8>) -> String {
        var hasher = SHA256()
        hasher.update(data: Array(bytes))
        return "sha256:" + hex(hasher.finalize())
    }

    public static func hex(_ bytes: some Sequence<UInt8>) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 15)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The <hex> of "sha256:<hex>" (callers validated the digest).
    public static func encoded(_ digest: String) -> String { String(digest.dropFirst("sha256:".count)) }

    /// ChainIDs (image-spec config.md, "Layer ChainID"): the identity of a layer
    /// together with everything below it. ChainID(L0) = DiffID(L0);
    /// ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln)).
    public static func chainIDs(_ diffIDs: [String]) -> [String] {
        var chain: [String] = []
        for diffID in diffIDs {
            chain.append(chain.last.map { sha256(Array("\($0) \(diffID)".utf8)) } ?? diffID)
        }
        return chain
    }
}
