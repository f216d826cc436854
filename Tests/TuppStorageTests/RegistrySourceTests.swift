import Glibc
import Testing
import TuppManifest
import TuppRegistry
import TuppStorage
import TuppSystem

/// The manifest's `registry:` value as the distribution client takes it.
@Suite struct RegistrySourceTests {
    @Test func theManifestsValuesBecomeTheClientsSettings() throws {
        let source = try RegistrySource(RegistryImage(reference: "127.0.0.1:5000/team/app:1", platform: "linux/arm64/v8", insecure: true))
        #expect(source.reference.registry == "127.0.0.1:5000" && source.reference.repository == "team/app" && source.reference.tag == "1")
        #expect(source.platform == Platform(os: "linux", architecture: "arm64", variant: "v8"))
        #expect(source.security == TransportSecurity(allowPlainHTTP: true))
        let digest = "sha256:" + String(repeating: "c", count: 64)
        #expect(source.pinned(to: digest).reference.description == "127.0.0.1:5000/team/app:1@\(digest)")
    }

    @Test func aCAFileThatCannotBeReadIsRefusedBeforeAnyConnection() throws {
        let missing = "/nonexistent-\(getpid())/ca.pem"
        let error = #expect(throws: SystemError.self) {
            try RegistrySource(RegistryImage(reference: "registry.example.org/app:1", ca: missing))
        }
        #expect(error?.code == ENOENT && error?.object == "registry.example.org/app:1" && error?.detail?.contains(missing) == true)
        let readable = try RegistrySource(RegistryImage(reference: "registry.example.org/app:1", ca: "/etc/hostname"))
        #expect(readable.security.caFile == "/etc/hostname" && !readable.security.allowPlainHTTP)
    }
}
