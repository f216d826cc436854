import Testing
import TuppRegistry
import TuppStorage
import TuppTestSupport

extension TestRegistry {
    func reference(_ repositoryAndTag: String) throws -> ImageReference {
        try ImageReference.parse("\(host)/\(repositoryAndTag)")
    }

    func source(_ repositoryAndTag: String, platform: Platform? = nil, useCA: Bool = true) throws -> RegistrySource {
        RegistrySource(reference: try reference(repositoryAndTag), platform: platform,
                       security: TransportSecurity(allowPlainHTTP: !tls, caFile: tls && useCA ? caFile : nil))
    }
}

/// Runs `body` with a pool and a registry, both torn down even when it fails.
func withRegistry(auth: TestRegistry.Auth = .none, tls: Bool = false, poolSize: UInt64 = 512 << 20,
                  _ body: (TestPool, TestRegistry) async throws -> Void) async throws {
    guard try storageHostReady(), try Host.require(.command("/usr/bin/docker-registry"), .command("/usr/bin/skopeo"),
                                                    .command("/usr/bin/umoci"), .command("/usr/bin/htpasswd")) else { return }
    try await withPool(size: poolSize) { pool in
        let registry = try TestRegistry(directory: "\(pool.directory.path)/registry", auth: auth, tls: tls)
        defer { registry.stop() }
        try await body(pool, registry)
    }
}
