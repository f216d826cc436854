import Testing
import TuppManifest
import TuppManifestLoader

/// `registry:` images and the container fields the image config defaults: what the
/// loader makes of them, and where it points when they are wrong.
@Suite struct RegistryManifestTests {
    func load(_ body: String) -> Result<LoadedManifest, ManifestLoader.Failure> {
        ManifestLoaderTestSupport.load("version: 1\nstorage: { root: /tmp/pool }\n" + body, file: "/srv/site/m.yaml")
    }

    func manifest(_ body: String, sourceLocation: SourceLocation = #_sourceLocation) -> Manifest? {
        switch load(body) {
        case .success(let loaded): return loaded.manifest
        case .failure(let f):
            Issue.record("rejected: \(f.rendered())", sourceLocation: sourceLocation)
            return nil
        }
    }

    func errors(_ body: String) -> [String] {
        if case .failure(let f) = load(body) { return f.diagnostics.map { "\($0.mark.line):\($0.mark.column): \($0.message)" } }
        return []
    }

    @Test(arguments: [
        ("nginx", "docker.io/library/nginx:latest"),
        ("nginx:1.27", "docker.io/library/nginx:1.27"),
        ("index.docker.io/team/app", "docker.io/team/app:latest"),
        ("127.0.0.1:5000/team/app:1.4", "127.0.0.1:5000/team/app:1.4"),
        ("localhost/app@sha256:" + String(repeating: "ab", count: 32), "localhost/app@sha256:" + String(repeating: "ab", count: 32)),
    ])
    func referencesAreNormalized(_ written: String, _ canonical: String) throws {
        let m = try #require(manifest("images: { web: { registry: \"\(written)\" } }"))
        #expect(m.images["web"]?.source == .registry(RegistryImage(reference: canonical)))
        #expect(m.images["web"]?.source.carriesConfig == true)
    }

    @Test func platformInsecureAndCAAreRead() throws {
        let m = try #require(manifest("""
            images:
              a: { registry: "127.0.0.1:5000/a:1", insecure: true, platform: linux/aarch64 }
              b: { registry: "registry.example.org/b:1", ca: certs/ca.pem }
            """))
        #expect(m.images["a"]?.source == .registry(RegistryImage(reference: "127.0.0.1:5000/a:1", platform: "linux/arm64/v8", insecure: true)))
        // Relative to the manifest file, like every path in it.
        #expect(m.images["b"]?.source == .registry(RegistryImage(reference: "registry.example.org/b:1", ca: "/srv/site/certs/ca.pem")))
        #expect(m.images["a"]?.source.description == "registry: 127.0.0.1:5000/a:1 (linux/arm64/v8)")
        #expect(RegistryImage(reference: "h/a@sha256:" + String(repeating: "0", count: 64)).isPinned)
        #expect(!RegistryImage(reference: "h/a:1").isPinned)
    }

    @Test func commandIsOptionalForImagesWithAConfig() throws {
        let m = try #require(manifest("""
            images:
              app: { registry: "127.0.0.1:5000/app:1" }
              layout: { oci: ./layout:v1 }
            containers:
              web: { image: app }
              api: { image: layout, entrypoint: [/bin/api], command: [--port, 80] }
            """))
        #expect(m.containers["web"]?.command == nil && m.containers["web"]?.entrypoint == nil && m.containers["web"]?.workdir == nil)
        #expect(m.containers["api"]?.entrypoint == ["/bin/api"] && m.containers["api"]?.command == ["--port", "80"])
    }

    @Test func imagesWithoutAConfigStillNeedACommand() {
        let found = errors("""
            images: { box: { busybox: /bin/busybox }, t: { tar: ./rootfs.tar } }
            containers:
              a: { image: box }
              b: { image: t, env: { A: "1" } }
              c: { image: box, entrypoint: [/bin/sh] }
            """)
        #expect(found.count == 2, "\(found)")
        #expect(found.contains { $0.hasPrefix("5:3: container \"a\" needs \"command\": image \"box\" (busybox) carries no config") })
        #expect(found.contains { $0.hasPrefix("6:3: container \"b\" needs \"command\": image \"t\" (tar)") })
    }

    @Test func registryFieldsAreCheckedWhereTheyAreWritten() {
        #expect(errors("images: { w: { registry: \"a/B\" } }").first?.hasPrefix("3:26: registry reference \"a/B\":") == true)
        #expect(errors("images: { w: { registry: \"a\", platform: \"x/y/z/w\" } }").first?.hasPrefix("3:41: platform \"x/y/z/w\"") == true)
        #expect(errors("images: { w: { tar: ./x.tar, insecure: true } }").first == "3:40: image \"w\" insecure applies to registry images only")
        #expect(errors("images: { w: { registry: a, tar: ./x.tar } }").first?.contains("has more than one source") == true)
        #expect(errors("images: { w: { protect: true } }").first?.contains("one of busybox, tar, oci, directory, registry") == true)
        #expect(errors("images: { w: { registry: a, insecure: yes } }").first?.contains("insecure must be true or false") == true)
    }
}
