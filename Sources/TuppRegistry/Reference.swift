import TuppSystem

/// An image in a registry, as `docker pull` and every other client spell it:
/// `[HOST[:PORT]/]PATH[:TAG][@sha256:HEX]`.
///
/// No host means Docker Hub, and a one-part path there means `library/NAME`. The first
/// part is a host when it has a '.' or ':' or is `localhost`. Without tag and digest the
/// tag is `latest`; with a digest the tag is kept for display only, the digest decides.
public struct ImageReference: Sendable, Hashable, CustomStringConvertible {
    /// "docker.io", "registry.example.org:5000", "127.0.0.1:5000".
    public var registry: String
    /// "library/nginx", "team/app".
    public var repository: String
    public var tag: String?
    /// "sha256:<64 hex>" when pinned.
    public var digest: String?

    public static let dockerHub = "docker.io"

    public init(registry: String, repository: String, tag: String?, digest: String?) {
        self.registry = registry
        self.repository = repository
        self.tag = tag
        self.digest = digest
    }

    /// What the manifest endpoint is asked for: the digest when pinned, else the tag.
    public var manifestReference: String { digest ?? tag ?? "latest" }

    /// The host the API lives on (Docker Hub's API is not at docker.io itself).
    public var endpointHost: String { registry == Self.dockerHub ? "registry-1.docker.io" : registry }

    /// The canonical form: "docker.io/library/nginx:1.27", "host:5000/app@sha256:…".
    public var description: String {
        var text = "\(registry)/\(repository)"
        if let tag { text += ":\(tag)" }
        if let digest { text += "@\(digest)" }
        return text
    }

    /// The same image pinned to `digest` (what a tag resolved to).
    public func pinned(to digest: String) -> ImageReference {
        ImageReference(registry: registry, repository: repository, tag: tag, digest: digest)
    }

    public static func parse(_ text: String) throws(SystemError) -> ImageReference {
        func refuse(_ why: String) -> SystemError { SystemError.failure("parse image reference", "'\(text)'", why) }
        guard !text.isEmpty, text.utf8.count <= 512 else { throw refuse("must be 1–512 bytes") }
        var rest = Substring(text)
        var digest: String?
        if let at = rest.firstIndex(of: "@") {
            let value = String(rest[rest.index(after: at)...])
            guard isDigest(value) else { throw refuse("the digest must be sha256:<64 lowercase hex>, not '\(value)'") }
            digest = value
            rest = rest[..<at]
        }
        var tag: String?
        // A ':' after the last '/' starts the tag (one before it is a port).
        if let colon = rest.lastIndex(of: ":"), !rest[colon...].contains("/") {
            let value = String(rest[rest.index(after: colon)...])
            guard isTag(value) else { throw refuse("the tag '\(value)' must be 1–128 of [A-Za-z0-9_.-], not starting with '.' or '-'") }
            tag = value
            rest = rest[..<colon]
        }
        var parts = rest.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        var registry = dockerHub
        if parts.count > 1, parts[0].contains(".") || parts[0].contains(":") || parts[0] == "localhost" {
            registry = parts.removeFirst()
            guard isHost(registry) else { throw refuse("'\(registry)' is not a registry host[:port]") }
            if registry == "index.docker.io" || registry == "registry-1.docker.io" { registry = dockerHub }
        }
        guard !parts.isEmpty, parts.allSatisfy(isPathComponent) else {
            throw refuse("the image name must be lowercase path components of [a-z0-9] joined by '.', '_', '__' or '-'")
        }
        if registry == dockerHub && parts.count == 1 { parts.insert("library", at: 0) }
        let repository = parts.joined(separator: "/")
        guard repository.utf8.count <= 255 else { throw refuse("the image name is longer than 255 bytes") }
        if tag == nil && digest == nil { tag = "latest" }
        return ImageReference(registry: registry, repository: repository, tag: tag, digest: digest)
    }

    public static func isDigest(_ text: String) -> Bool {
        let parts = text.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
        return parts.count == 2 && parts[0] == "sha256" && parts[1].utf8.count == 64
            && parts[1].utf8.allSatisfy { isDigit($0) || (0x61...0x66).contains($0) }
    }

    static func isTag(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        guard (1...128).contains(bytes.count), bytes[0] != UInt8(ascii: "."), bytes[0] != UInt8(ascii: "-") else { return false }
        return bytes.allSatisfy { isAlphanumeric($0) || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "-") }
    }

    /// [a-z0-9]+ joined by one '.', one or two '_', or any number of '-'.
    static func isPathComponent(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        guard let first = bytes.first, let last = bytes.last, isLowerAlphanumeric(first), isLowerAlphanumeric(last) else { return false }
        var index = 0
        while index < bytes.count {
            if isLowerAlphanumeric(bytes[index]) { index += 1; continue }
            var end = index
            while end < bytes.count && !isLowerAlphanumeric(bytes[end]) { end += 1 }
            let separator = String(decoding: bytes[index..<end], as: UTF8.self)
            guard separator == "." || separator == "_" || separator == "__" || separator.allSatisfy({ $0 == "-" }) else { return false }
            index = end
        }
        return true
    }

    /// A DNS name or IPv4 address, optionally with a port; IPv6 in brackets.
    static func isHost(_ text: String) -> Bool {
        var host = Substring(text)
        if host.hasPrefix("[") {
            guard let close = host.firstIndex(of: "]") else { return false }
            let inside = host[host.index(after: host.startIndex)..<close]
            guard !inside.isEmpty, inside.utf8.allSatisfy({ isHexDigit($0) || $0 == UInt8(ascii: ":") }) else { return false }
            host = host[host.index(after: close)...]
            if host.isEmpty { return true }
            guard host.hasPrefix(":") else { return false }
            return isPort(host.dropFirst())
        }
        if let colon = host.firstIndex(of: ":") {
            guard isPort(host[host.index(after: colon)...]) else { return false }
            host = host[..<colon]
        }
        let labels = host.split(separator: ".", omittingEmptySubsequences: false)
        return !labels.isEmpty && labels.allSatisfy { label in
            let bytes = Array(label.utf8)
            return (1...63).contains(bytes.count) && bytes.first != UInt8(ascii: "-") && bytes.last != UInt8(ascii: "-")
                && bytes.allSatisfy { isAlphanumeric($0) || $0 == UInt8(ascii: "-") }
        }
    }

    private static func isPort(_ text: Substring) -> Bool {
        guard let value = Int(text), text.utf8.allSatisfy(isDigit) else { return false }
        return (1...65535).contains(value)
    }

    private static func isDigit(_ byte: UInt8) -> Bool { (0x30...0x39).contains(byte) }
    private static func isHexDigit(_ byte: UInt8) -> Bool { isDigit(byte) || (0x61...0x66).contains(byte | 0x20) }
    private static func isLowerAlphanumeric(_ byte: UInt8) -> Bool { isDigit(byte) || (0x61...0x7a).contains(byte) }
    private static func isAlphanumeric(_ byte: UInt8) -> Bool { isLowerAlphanumeric(byte) || (0x41...0x5a).contains(byte) }
}
