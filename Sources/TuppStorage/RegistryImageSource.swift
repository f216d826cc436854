import Glibc
import TuppManifest
import TuppRegistry
import TuppSystem

extension RegistrySource {
    /// The manifest's `registry:` image as the distribution client takes it (the loader
    /// checked the reference and the platform where they were written). A `ca` file that
    /// cannot be read is refused here, before any connection would fail on it.
    public init(_ image: RegistryImage) throws(SystemError) {
        let platform = try image.platform.map { (text) throws(SystemError) in try Platform.parse(text) }
        if let ca = image.ca, access(ca, R_OK) != 0 {
            throw SystemError("read the CA file of", "\(image.reference)", detail: "\(ca) (images.*.ca)")
        }
        self.init(reference: try ImageReference.parse(image.reference), platform: platform,
                  security: TransportSecurity(allowPlainHTTP: image.insecure, caFile: image.ca))
    }
}
