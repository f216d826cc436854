import TuppManifest
import TuppRegistry
import TuppSystem

extension RegistrySource {
    /// The manifest's `registry:` image as the distribution client takes it (the loader
    /// checked the reference and the platform where they were written).
    public init(_ image: RegistryImage) throws(SystemError) {
        let platform = try image.platform.map { (text) throws(SystemError) in try Platform.parse(text) }
        self.init(reference: try ImageReference.parse(image.reference), platform: platform,
                  security: TransportSecurity(allowPlainHTTP: image.insecure, caFile: image.ca))
    }
}
