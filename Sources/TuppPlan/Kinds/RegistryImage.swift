import TuppManifest

/// What observation learnt about a registry image's reference.
public enum RegistryResolution: Sendable, Equatable {
    /// Pinned by digest: the reference says it, no request was made.
    case pinned(String)
    /// A tag the registry resolved (one HEAD).
    case resolved(String)
    /// The registry was not asked (`--refresh=false`).
    case notAsked
    /// The registry did not answer (refused, timed out, only 5xx); why, for the warning.
    case unreachable(String)

    /// False when the registry was asked and did not answer: asking it more is futile.
    public var answered: Bool {
        if case .unreachable = self { false } else { true }
    }
}

extension ImageKind {
    /// The digest a registry image is planned with, and the warning the plan shows.
    ///
    /// `pulled`: the digest of the image as pulled from the same source (nil when not
    /// pulled, or pulled from another reference or platform). A tag the registry was not
    /// asked about, or could not be asked about, is taken as unchanged — the image stays
    /// what was pulled; an image not pulled yet has no digest until apply pulls it.
    public static func registryDigest(_ registry: RegistryImage, name: String, resolution: RegistryResolution,
                                      pulled: String?) -> (digest: String?, warning: String?) {
        switch resolution {
        case .pinned(let digest), .resolved(let digest):
            return (digest, nil)
        case .notAsked:
            return (pulled, nil)
        case .unreachable(let why):
            let host = registry.reference.split(separator: "/").first.map(String.init) ?? registry.reference
            if let pulled {
                return (pulled, "image.\(name): registry \(host) did not answer (\(why)); \(registry.reference) is taken as unchanged (\(pulled), as pulled)")
            }
            return (nil, "image.\(name): registry \(host) did not answer (\(why)); \(registry.reference) cannot be pulled until it does")
        }
    }

    /// A registry image named differently with the same digest and platform — a tag pinned
    /// to the digest it points to, the usual GitOps step — is the same content: its new
    /// name is recorded in place; nothing is pulled, no container is replaced.
    public static func check(_ change: inout Plan.ResourceChange) {
        guard let before = change.before, let after = change.after, let digest = after[ImageAttribute.digest],
              before[ImageAttribute.digest] == digest,
              let old = before[ImageAttribute.source]?.string, let new = after[ImageAttribute.source]?.string,
              let was = registryName(old), let now = registryName(new), was.platform == now.platform else { return }
        for index in change.reasons.indices where change.reasons[index].path == ImageAttribute.source {
            change.reasons[index].effect = .inPlace
        }
    }

    /// The reference and platform of a registry source's description, nil for another kind.
    static func registryName(_ source: String) -> (reference: String, platform: String?)? {
        let prefix = "registry: "
        guard source.hasPrefix(prefix) else { return nil }
        let rest = source.dropFirst(prefix.count)
        // A reference never holds '(': the last one opens the platform.
        if rest.hasSuffix(")"), let open = rest.lastIndex(of: "("), open > rest.startIndex {
            return (String(rest[..<rest.index(before: open)]), String(rest[rest.index(after: open)...].dropLast()))
        }
        return (String(rest), nil)
    }

    /// The digest recorded for image `name` when it was pulled from `image`'s source.
    public static func pulledDigest(_ image: Image, record: Record?) -> String? {
        guard let record, record.status == .ready,
              record.attributes[ImageAttribute.source] == .string(image.source.description) else { return nil }
        return record.attributes[ImageAttribute.digest]?.string
    }
}
