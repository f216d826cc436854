import Testing
import TuppFacts
@testable import TuppRegistry
import TuppSystem

@Suite("Image references")
struct ReferenceTests {
    @Test(arguments: [
        ("nginx", "docker.io", "library/nginx", "latest", nil),
        ("nginx:1.27", "docker.io", "library/nginx", "1.27", nil),
        ("team/app", "docker.io", "team/app", "latest", nil),
        ("docker.io/nginx", "docker.io", "library/nginx", "latest", nil),
        ("index.docker.io/library/nginx:1", "docker.io", "library/nginx", "1", nil),
        ("registry.example.org:5000/team/web:1.4", "registry.example.org:5000", "team/web", "1.4", nil),
        ("localhost/app", "localhost", "app", "latest", nil),
        ("localhost:5000/app", "localhost:5000", "app", "latest", nil),
        ("127.0.0.1:5000/a/b/c:v1", "127.0.0.1:5000", "a/b/c", "v1", nil),
        ("[::1]:5000/app:x", "[::1]:5000", "app", "x", nil),
        ("ghcr.io/o/p@sha256:" + String(repeating: "a", count: 64), "ghcr.io", "o/p", nil, "sha256:" + String(repeating: "a", count: 64)),
        ("q.io/p:t@sha256:" + String(repeating: "0", count: 64), "q.io", "p", "t", "sha256:" + String(repeating: "0", count: 64)),
        ("my_org/my-app__x.y", "docker.io", "my_org/my-app__x.y", "latest", nil),
    ] as [(String, String, String, String?, String?)])
    func parses(_ text: String, _ registry: String, _ repository: String, _ tag: String?, _ digest: String?) throws {
        let reference = try ImageReference.parse(text)
        #expect(reference.registry == registry)
        #expect(reference.repository == repository)
        #expect(reference.tag == tag)
        #expect(reference.digest == digest)
        #expect(reference.manifestReference == (digest ?? tag))
        // The canonical form parses back to the same reference.
        #expect(try ImageReference.parse(reference.description) == reference)
    }

    @Test(arguments: [
        "", "Nginx", "nginx:", ":tag", "nginx@sha256:abc", "nginx@md5:" + String(repeating: "a", count: 32),
        "a//b", "a/", "-a", "a-", "a..b", "a___b", "host:99999/app", "nginx:-x", "nginx:.x",
        "nginx@sha256:" + String(repeating: "A", count: 64), "a b", "foo/bar:" + String(repeating: "t", count: 129),
    ])
    func refuses(_ text: String) {
        #expect(throws: SystemError.self) { try ImageReference.parse(text) }
    }

    @Test func dockerHubEndpoint() throws {
        #expect(try ImageReference.parse("nginx").endpointHost == "registry-1.docker.io")
        #expect(try ImageReference.parse("127.0.0.1:5000/x").endpointHost == "127.0.0.1:5000")
    }

    @Test func pinnedKeepsTheTagForDisplay() throws {
        let digest = "sha256:" + String(repeating: "b", count: 64)
        let pinned = try ImageReference.parse("h.io/app:1").pinned(to: digest)
        #expect(pinned.description == "h.io/app:1@\(digest)")
        #expect(pinned.manifestReference == digest)
    }
}

@Suite("WWW-Authenticate")
struct ChallengeTests {
    @Test func bearerWithQuotedParameters() {
        let challenges = AuthChallenge.parse(#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull,push""#)
        #expect(challenges == [AuthChallenge(scheme: "bearer", parameters: [
            "realm": "https://auth.docker.io/token", "service": "registry.docker.io", "scope": "repository:library/nginx:pull,push",
        ])])
    }

    @Test func severalSchemesAndTokens() {
        let challenges = AuthChallenge.parse(#"Basic realm="Registry Realm", Bearer realm=https://h/t,service=s"#)
        #expect(challenges.map(\.scheme) == ["basic", "bearer"])
        #expect(challenges[0].parameters == ["realm": "Registry Realm"])
        #expect(challenges[1].parameters == ["realm": "https://h/t", "service": "s"])
    }

    @Test func escapedQuotes() {
        let challenges = AuthChallenge.parse(#"Basic realm="a \"b\" c""#)
        #expect(challenges.first?.parameters["realm"] == #"a "b" c"#)
    }
}

@Suite("Platforms")
struct PlatformTests {
    @Test func hostNames() {
        #expect(Platform.fromMachine("x86_64") == Platform(os: "linux", architecture: "amd64"))
        #expect(Platform.fromMachine("aarch64") == Platform(os: "linux", architecture: "arm64", variant: "v8"))
        #expect(Platform.fromMachine("armv7l") == Platform(os: "linux", architecture: "arm", variant: "v7"))
    }

    @Test func matching() throws {
        let arm64 = try Platform.parse("linux/arm64")
        #expect(arm64.accepts(Platform(os: "linux", architecture: "arm64", variant: "v8")))
        #expect(arm64.accepts(Platform(os: "linux", architecture: "arm64")))
        #expect(!arm64.accepts(Platform(os: "linux", architecture: "amd64")))
        #expect(!Platform(os: "linux", architecture: "arm", variant: "v7").accepts(Platform(os: "linux", architecture: "arm", variant: "v6")))
        #expect(!Platform(os: "linux", architecture: "amd64").accepts(Platform(os: "windows", architecture: "amd64")))
        #expect(throws: SystemError.self) { try Platform.parse("linux") }
    }

    @Test func indexSelection() {
        func entry(_ arch: String, _ variant: String?, _ n: Character) -> Descriptor {
            Descriptor(mediaType: MediaType.ociManifest, digest: "sha256:" + String(repeating: n, count: 64), size: 1,
                       platform: Platform(os: "linux", architecture: arch, variant: variant))
        }
        let attestation = Descriptor(mediaType: MediaType.ociManifest, digest: "sha256:" + String(repeating: "f", count: 64), size: 1,
                                     platform: Platform(os: "unknown", architecture: "unknown"))
        let index = ImageIndex(mediaType: MediaType.ociIndex, manifests: [
            attestation, entry("arm", "v6", "1"), entry("arm", "v7", "2"), entry("amd64", nil, "3"), entry("arm64", "v8", "4"),
        ])
        #expect(index.select(Platform(os: "linux", architecture: "amd64"))?.digest.hasSuffix("3") == true)
        #expect(index.select(Platform(os: "linux", architecture: "arm", variant: "v7"))?.digest.hasSuffix("2") == true)
        #expect(index.select(Platform(os: "linux", architecture: "arm64"))?.digest.hasSuffix("4") == true)
        #expect(index.select(Platform(os: "linux", architecture: "s390x")) == nil)
        #expect(index.platformList == "linux/arm/v6, linux/arm/v7, linux/amd64, linux/arm64/v8")
    }
}

@Suite("Image spec documents")
struct ImageSpecTests {
    @Test func chainIDsFollowTheSpec() {
        let a = "sha256:" + String(repeating: "a", count: 64)
        let b = "sha256:" + String(repeating: "b", count: 64)
        let chain = Digest.chainIDs([a, b])
        #expect(chain[0] == a)
        // sha256("sha256:aaa… sha256:bbb…"), as `printf '%s %s' A B | sha256sum` gives.
        #expect(chain[1] == "sha256:ccd722928bd92476ba1745586fed6e45a102504185ad88cd89e01ff116fd146c")
    }

    @Test func configDefaults() throws {
        let json = #"""
        {"architecture":"arm64","variant":"v8","os":"linux",
         "config":{"Entrypoint":["/docker-entrypoint.sh"],"Cmd":["nginx","-g","daemon off;"],
                   "Env":["PATH=/usr/bin","NGINX_VERSION=1.27"],"WorkingDir":"","User":"101:101","StopSignal":"SIGQUIT",
                   "Healthcheck":{"Test":["CMD-SHELL","curl -f http://localhost/"],"Interval":30000000000,"Retries":3}},
         "rootfs":{"type":"layers","diff_ids":["sha256:\#(String(repeating: "c", count: 64))"]}}
        """#
        let file = try ImageConfigFile.decode(Array(json.utf8), what: "test")
        #expect(file.platform == Platform(os: "linux", architecture: "arm64", variant: "v8"))
        #expect(file.config.entrypoint == ["/docker-entrypoint.sh"])
        #expect(file.config.cmd == ["nginx", "-g", "daemon off;"])
        #expect(file.config.defaultCommand == ["/docker-entrypoint.sh", "nginx", "-g", "daemon off;"])
        #expect(file.config.env == ["PATH=/usr/bin", "NGINX_VERSION=1.27"])
        #expect(file.config.workingDir == nil)
        #expect(file.config.user == "101:101")
        #expect(file.config.stopSignal == "SIGQUIT")
        #expect(file.config.healthcheck == .init(test: ["CMD-SHELL", "curl -f http://localhost/"], intervalNanoseconds: 30_000_000_000, retries: 3))
        #expect(file.diffIDs.count == 1)
    }

    @Test func configWithNullsAndNoConfig() throws {
        let file = try ImageConfigFile.decode(Array(#"{"architecture":"amd64","os":"linux","config":{"Cmd":null,"Entrypoint":null},"rootfs":{"diff_ids":[]}}"#.utf8), what: "t")
        #expect(file.config == ImageConfig())
        let bare = try ImageConfigFile.decode(Array(#"{"architecture":"amd64","os":"linux"}"#.utf8), what: "t")
        #expect(bare.diffIDs.isEmpty && bare.config.defaultCommand.isEmpty)
        #expect(throws: SystemError.self) {
            try ImageConfigFile.decode(Array(#"{"rootfs":{"diff_ids":["md5:x"]}}"#.utf8), what: "t")
        }
    }

    @Test func documentsToldApart() throws {
        let index = #"{"schemaVersion":2,"manifests":[]}"#
        let manifest = #"{"schemaVersion":2,"config":{"digest":"sha256:\#(String(repeating: "d", count: 64))","size":2},"layers":[]}"#
        guard case .index = try ManifestDocument.decode(Array(index.utf8), mediaType: nil, what: "t") else { Issue.record("index"); return }
        guard case .manifest = try ManifestDocument.decode(Array(manifest.utf8), mediaType: MediaType.dockerManifest, what: "t") else { Issue.record("manifest"); return }
        let error = #expect(throws: SystemError.self) {
            try ManifestDocument.decode(Array(#"{"schemaVersion":1}"#.utf8), mediaType: "application/vnd.docker.distribution.manifest.v1+prettyjws", what: "t")
        }
        #expect(error?.detail?.contains("schema 1") == true)
    }
}

@Suite("Retries")
struct RetryTests {
    @Test func backoffDoublesUpToTheCap() {
        let policy = RetryPolicy(attempts: 6, initialDelay: 0.25, maximumDelay: 2)
        #expect([1, 2, 3, 4, 5].map { policy.delay(afterFailure: $0) } == [0.25, 0.5, 1, 2, 2])
        #expect(policy.delay(afterFailure: 1, retryAfter: "3") == 3)
        #expect(policy.delay(afterFailure: 1, retryAfter: "999") == 8)
        #expect(policy.delay(afterFailure: 2, retryAfter: "Wed, 21 Oct 2015 07:28:00 GMT") == 0.5)
    }

    @Test func transientStatuses() {
        #expect([429, 500, 502, 503, 504].allSatisfy(RetryPolicy.isTransient))
        #expect(![200, 206, 401, 403, 404, 416].contains(where: RetryPolicy.isTransient))
    }
}
