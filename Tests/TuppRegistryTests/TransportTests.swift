import Glibc
import Testing
@testable import TuppRegistry
import TuppSystem
import TuppTestSupport

/// The HTTP behaviour a real registry rarely shows on demand — 503s, redirects, a
/// connection dropped mid-blob, nobody listening — against a scripted server on
/// 127.0.0.1 (python3's http.server). The server's own request log is the witness.
@Suite("Registry transport", .serialized)
struct TransportTests {
    @Test func retriesRedirectsAndResumes() throws {
        guard try Host.require(.command("/usr/bin/python3")) else { return }
        let server = try ScriptedServer()
        defer { server.stop() }
        let options = RegistryOptions(security: TransportSecurity(allowPlainHTTP: true), credentials: CredentialStore(files: []),
                                      retry: RetryPolicy(attempts: 4, initialDelay: 0.01, maximumDelay: 0.05))

        // 503 twice (Retry-After: 0), then the manifest; one HEAD more than the failures.
        let flaky = RegistryClient(reference: try ImageReference.parse("127.0.0.1:\(server.port)/flaky:1"), options: options)
        let digest = try flaky.resolve()
        #expect(digest == Digest.sha256(Array(ScriptedServer.manifest.utf8)))
        #expect(try server.log().filter { $0.hasPrefix("HEAD /v2/flaky/manifests/1") }.count == 3)

        // A 307 to another path is followed; the digest is of the final body.
        let redirected = RegistryClient(reference: try ImageReference.parse("127.0.0.1:\(server.port)/moved:1"), options: options)
        #expect(try redirected.manifest("1").digest == digest)
        #expect(try server.log().contains("GET /v2/moved/manifests/1 - -"))

        // The blob's connection drops half-way; the rest comes with Range, verified whole.
        let directory = try TemporaryDirectory("tupp-transport")
        defer { directory.remove() }
        let blob = Descriptor(mediaType: MediaType.layers.first, digest: ScriptedServer.blobDigest, size: Int64(ScriptedServer.blobSize))
        let path = try flaky.download(blob, into: directory.path)
        #expect(try Files.read(path)?.count == ScriptedServer.blobSize)
        let gets = try server.log().filter { $0.contains("/blobs/") }
        #expect(gets.count == 2 && gets[1].hasSuffix("bytes=\(ScriptedServer.blobSize / 2)- -"), "\(gets)")

        // Always 503: given up after the policy's attempts, reported as unreachable.
        let down = RegistryClient(reference: try ImageReference.parse("127.0.0.1:\(server.port)/down:1"), options: options)
        let error = #expect(throws: SystemError.self) { try down.resolve() }
        #expect(error?.object == "127.0.0.1:\(server.port)/down:1")
        #expect(error.map(RegistryClient.isUnreachable) == true, "\(String(describing: error))")
        #expect(try server.log().filter { $0.hasPrefix("HEAD /v2/down/") }.count == 4)
    }

    /// Bearer tokens: fetched with the repository's pull scope, reused while valid,
    /// fetched again once `expires_in` has passed.
    @Test func tokensAreRenewedWhenTheyExpire() throws {
        guard try Host.require(.command("/usr/bin/python3")) else { return }
        let server = try ScriptedServer(mode: "auth")
        defer { server.stop() }
        let client = RegistryClient(reference: try ImageReference.parse("127.0.0.1:\(server.port)/team/app:1"),
                                    options: RegistryOptions(security: TransportSecurity(allowPlainHTTP: true),
                                                             credentials: CredentialStore(files: [])))
        _ = try client.manifest("1")
        _ = try client.manifest("1")
        var tokens = try server.log().filter { $0.hasPrefix("GET /token") }
        #expect(tokens.count == 1, "reused while valid: \(tokens)")
        #expect(tokens.first?.contains("scope=repository%3Ateam%2Fapp%3Apull") == true && tokens.first?.contains("service=tupp-scripted") == true)
        // expires_in is 6 s; tupp renews 5 s early.
        usleep(1_300_000)
        _ = try client.manifest("1")
        tokens = try server.log().filter { $0.hasPrefix("GET /token") }
        #expect(tokens.count == 2, "renewed after expiry: \(tokens)")
        #expect(try server.log().filter { $0.hasPrefix("GET /v2/team/app/manifests/1") }.allSatisfy { $0.hasSuffix("Bearer") })
    }

    @Test func nobodyListening() throws {
        let port = try ScriptedServer.unusedPort()
        let client = RegistryClient(reference: try ImageReference.parse("127.0.0.1:\(port)/app:1"),
                                    options: RegistryOptions(security: TransportSecurity(allowPlainHTTP: true),
                                                             credentials: CredentialStore(files: []),
                                                             retry: RetryPolicy(attempts: 2, initialDelay: 0.01)))
        let error = #expect(throws: SystemError.self) { try client.resolve() }
        #expect(error?.object == "127.0.0.1:\(port)/app:1" && error?.code == ECONNREFUSED, "\(String(describing: error))")
        #expect(error.map(RegistryClient.isUnreachable) == true)
        // A pinned reference needs no server at all.
        let digest = "sha256:" + String(repeating: "e", count: 64)
        let pinned = RegistryClient(reference: try ImageReference.parse("127.0.0.1:\(port)/app@\(digest)"))
        #expect(try pinned.resolve() == digest)
    }
}

/// python3's http.server playing a registry with faults, logging "METHOD PATH RANGE".
final class ScriptedServer {
    static let manifest = #"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#
    static let blobSize = 1 << 20
    /// sha256 of `blobSize` bytes of (i * 7) & 255.
    static var blobDigest: String { Digest.sha256((0..<blobSize).map { UInt8(truncatingIfNeeded: $0 &* 7) }) }

    let directory: TemporaryDirectory
    let pid: pid_t
    let port: UInt16

    /// `mode` "auth": every /v2/ path wants a Bearer token from /token.
    init(mode: String = "plain") throws {
        directory = try TemporaryDirectory("tupp-scripted")
        try Files.writeAtomically("\(directory.path)/server.py", text: Self.script)
        pid = try Spawn.start(["python3", "\(directory.path)/server.py", directory.path, Self.manifest, mode])
        let deadline = Monotonic.nanoseconds() + 10_000_000_000
        var found: UInt16?
        while found == nil && Monotonic.nanoseconds() < deadline {
            found = (try? Files.readText("\(directory.path)/port")).flatMap { UInt16($0.trimmingCharacters()) }
            if found == nil { usleep(20_000) }
        }
        guard let found else {
            kill(pid, SIGKILL)
            Spawn.wait(pid)
            throw SystemError.failure("start", "scripted registry", "no port after 10 s")
        }
        port = found
    }

    func stop() {
        kill(pid, SIGKILL)
        Spawn.wait(pid)
        directory.remove()
    }

    func log() throws -> [String] {
        (try Files.readText("\(directory.path)/log") ?? "").split(separator: "\n").map(String.init)
    }

    static func unusedPort() throws -> UInt16 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 ? getsockname(fd, $0, &length) : -1 }
        }
        return UInt16(bigEndian: address.sin_port)
    }

    static let script = #"""
    import hashlib, http.server, os, sys
    directory, manifest, mode = sys.argv[1], sys.argv[2].encode(), sys.argv[3]
    blob = bytes((i * 7) & 255 for i in range(1 << 20))
    blob_digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    counts = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        def log_message(self, *args): pass
        def record(self):
            auth = self.headers.get("Authorization", "-").split(" ")[0]
            with open(os.path.join(directory, "log"), "a") as log:
                log.write(f"{self.command} {self.path} {self.headers.get('Range', '-')} {auth}\n")
        def reply(self, status, body=b"", headers=()):
            self.send_response(status)
            for name, value in headers: self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD": self.wfile.write(body)
        def manifest(self):
            self.reply(200, manifest, [("Content-Type", "application/vnd.oci.image.manifest.v1+json"),
                                       ("Docker-Content-Digest", "sha256:" + hashlib.sha256(manifest).hexdigest())])
        def do_HEAD(self): self.do_GET()
        def do_GET(self):
            self.record()
            counts[self.path] = counts.get(self.path, 0) + 1
            if mode == "auth":
                if self.path.startswith("/token"):
                    return self.reply(200, b'{"token": "scripted-token", "expires_in": 6}')
                if not self.headers.get("Authorization", "").startswith("Bearer "):
                    port = self.server.server_address[1]
                    challenge = f'Bearer realm="http://127.0.0.1:{port}/token",service="tupp-scripted"'
                    return self.reply(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}', [("WWW-Authenticate", challenge)])
                if self.path.startswith("/v2/team/app/manifests/"):
                    return self.manifest()
            if self.path == "/v2/":
                return self.reply(200, b"{}")
            if self.path.startswith("/v2/flaky/manifests/"):
                if counts[self.path] <= 2:
                    return self.reply(503, b'{"errors":[{"code":"UNAVAILABLE","message":"try later"}]}', [("Retry-After", "0")])
                return self.manifest()
            if self.path.startswith("/v2/down/"):
                return self.reply(503)
            if self.path == "/v2/moved/manifests/1":
                return self.reply(307, b"", [("Location", "/v2/flaky/manifests/1")])
            if self.path == "/v2/flaky/blobs/" + blob_digest:
                wanted = self.headers.get("Range")
                if wanted:
                    start = int(wanted.split("=")[1].rstrip("-"))
                    return self.reply(206, blob[start:], [("Content-Range", f"bytes {start}-{len(blob) - 1}/{len(blob)}")])
                # Promise everything, send half, drop the connection.
                self.send_response(200)
                self.send_header("Content-Length", str(len(blob)))
                self.end_headers()
                self.wfile.write(blob[: len(blob) // 2])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)
                return
            self.reply(404, b'{"errors":[{"code":"NAME_UNKNOWN","message":"unknown"}]}')

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    with open(os.path.join(directory, "port.tmp"), "w") as f: f.write(str(server.server_address[1]))
    os.rename(os.path.join(directory, "port.tmp"), os.path.join(directory, "port"))
    server.serve_forever()
    """#
}
