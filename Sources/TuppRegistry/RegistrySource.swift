/// An image in a registry and how to reach it: what the manifest's `registry:`,
/// `platform:`, `insecure:` and `ca:` say.
public struct RegistrySource: Sendable, Equatable {
    public var reference: ImageReference
    /// The platform to pick from a multi-platform image; nil: the host's.
    public var platform: Platform?
    /// Plain HTTP (`insecure`) or TLS with an extra CA file (`ca`).
    public var security: TransportSecurity

    public init(reference: ImageReference, platform: Platform? = nil, security: TransportSecurity = TransportSecurity()) {
        self.reference = reference
        self.platform = platform
        self.security = security
    }
}

extension RegistrySource {
    /// The same image pinned to `digest` (what its tag resolved to).
    public func pinned(to digest: String) -> RegistrySource {
        RegistrySource(reference: reference.pinned(to: digest), platform: platform, security: security)
    }
}
