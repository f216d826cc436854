import TuppBase
import Glibc
import Testing
import TuppRegistry
import TuppStorage
import TuppSystem
import TuppTestSupport

/// Debian's docker-registry (distribution 2.8), started on a free 127.0.0.1 port for one
/// test with a temporary config — plain HTTP or TLS with a CA the test makes, no auth,
/// htpasswd Basic auth, or Bearer tokens from `tokenServerScript`. `stop()` kills every
/// process it started by pid.
final class TestRegistry: @unchecked Sendable {
    enum Auth { case none, basic, token }

    static let user = "tupp-user"
    /// Looked for in every file and message a test sees: it must never appear.
    static let password = "pw-\(UInt64.random(in: 1 << 40 ... 1 << 50))-secret"

    let directory: String
    let port: UInt16
    let auth: Auth
    let tls: Bool
    private(set) var pid: pid_t?
    private var tokenPid: pid_t?

    var host: String { "127.0.0.1:\(port)" }
    var caFile: String { "\(directory)/ca.crt" }
    var logFile: String { "\(directory)/registry.log" }
    var tokenLog: String { "\(directory)/token.log" }
    var storage: String { "\(directory)/storage" }

    init(directory: String, auth: Auth = .none, tls: Bool = false) throws {
        self.directory = directory
        self.auth = auth
        self.tls = tls
        port = try freePort()
        try Files.createDirectory(directory)
        if tls {
            try command(["sh", "-c", """
                set -e; cd "$1"
                openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 -subj /CN=tupp-test-ca 2>/dev/null
                openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=127.0.0.1 2>/dev/null
                printf 'subjectAltName=IP:127.0.0.1\\n' > san.ext
                openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 2 -extfile san.ext 2>/dev/null
                mkdir -p skopeo-certs && cp ca.crt skopeo-certs/ca.crt
                """, "sh", directory])
        }
        var authConfig = ""
        switch auth {
        case .none:
            break
        case .basic:
            try command(["htpasswd", "-Bbc", "\(directory)/htpasswd", Self.user, Self.password])
            authConfig = "auth:\n  htpasswd:\n    realm: tupp-test\n    path: \(directory)/htpasswd\n"
        case .token:
            let tokenPort = try freePort()
            try command(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "\(directory)/token.key",
                         "-out", "\(directory)/token.crt", "-days", "2", "-subj", "/CN=tupp-token"])
            try Files.writeAtomically("\(directory)/token-server.py", text: tokenServerScript, mode: 0o644)
            let log = try FileDescriptor.open("\(directory)/token-server.out", O_WRONLY | O_CREAT | O_APPEND, mode: 0o600)
            tokenPid = try Spawn.start(["python3", "\(directory)/token-server.py", String(tokenPort), "\(directory)/token.key",
                                        "\(directory)/token.crt", Self.user, Self.password, tokenLog],
                                       stdout: log.rawValue, stderr: log.rawValue)
            try waitForPort(tokenPort, pid: tokenPid!, what: "token server")
            authConfig = """
            auth:
              token:
                realm: http://127.0.0.1:\(tokenPort)/token
                service: tupp-test
                issuer: tupp-test-issuer
                rootcertbundle: \(directory)/token.crt

            """
        }
        let tlsConfig = tls ? "  tls:\n    certificate: \(directory)/server.crt\n    key: \(directory)/server.key\n" : ""
        try Files.writeAtomically("\(directory)/config.yml", text: """
            version: 0.1
            log:
              level: info
              formatter: json
              accesslog:
                disabled: true
            storage:
              filesystem:
                rootdirectory: \(storage)
              delete:
                enabled: true
              maintenance:
                uploadpurging:
                  enabled: false
            http:
              addr: 127.0.0.1:\(port)
            \(tlsConfig)\(authConfig)
            """, mode: 0o644)
        try start()
    }

    func start() throws {
        let log = try FileDescriptor.open(logFile, O_WRONLY | O_CREAT | O_APPEND, mode: 0o600)
        let started = try Spawn.start(["/usr/bin/docker-registry", "serve", "\(directory)/config.yml"],
                                      stdout: log.rawValue, stderr: log.rawValue)
        pid = started
        try waitForPort(port, pid: started, what: "docker-registry")
    }

    /// SIGKILL, like a crash: the connection drops mid-transfer.
    func kill() {
        guard let running = pid else { return }
        Glibc.kill(running, SIGKILL)
        Spawn.wait(running)
        pid = nil
    }

    func stop() {
        kill()
        if let token = tokenPid {
            Glibc.kill(token, SIGKILL)
            Spawn.wait(token)
            tokenPid = nil
        }
    }

    func reference(_ repositoryAndTag: String) throws -> ImageReference {
        try ImageReference.parse("\(host)/\(repositoryAndTag)")
    }

    func source(_ repositoryAndTag: String, platform: Platform? = nil, useCA: Bool = true) throws -> RegistrySource {
        RegistrySource(reference: try reference(repositoryAndTag), platform: platform,
                       security: TransportSecurity(allowPlainHTTP: !tls, caFile: tls && useCA ? caFile : nil))
    }

    /// skopeo's flags for talking to this registry as the pushing user.
    private func skopeoFlags(_ direction: String) -> [String] {
        var flags = tls ? ["--\(direction)-cert-dir", "\(directory)/skopeo-certs"] : ["--\(direction)-tls-verify=false"]
        if auth != .none { flags += ["--\(direction)-creds", "\(Self.user):\(Self.password)"] }
        return flags
    }

    /// `skopeo copy oci:LAYOUT:TAG docker://HOST/NAME` (all platforms of an index).
    func push(_ layout: String, as name: String, extra: [String] = []) throws {
        try command(skopeo(["copy", "--all", "--retry-times", "2"] + skopeoFlags("dest") + extra + ["oci:\(layout)", "docker://\(host)/\(name)"]))
    }

    /// `skopeo copy docker://HOST/NAME oci:DIR:ref` + `umoci unpack`: the reference rootfs.
    func referenceRootfs(_ name: String, into work: String) throws -> String {
        try command(skopeo(["copy"] + skopeoFlags("src") + ["docker://\(host)/\(name)", "oci:\(work)/ref-layout:ref"]))
        try command(["umoci", "unpack", "--image", "\(work)/ref-layout:ref", "\(work)/ref-bundle"])
        return "\(work)/ref-bundle/rootfs"
    }

    /// The registry's request log: one entry per completed request.
    struct Request {
        var method: String
        var uri: String
        var status: Int
        var written: Int?
    }

    func requests() throws -> [Request] {
        let text = try Files.readText(logFile) ?? ""
        return text.split(separator: "\n").compactMap { line in
            guard line.contains("\"response completed\""), let entry = try? JSONObject.parse(Array(line.utf8), what: "log"),
                  let method = try? entry.string("http.request.method"), let uri = try? entry.string("http.request.uri"),
                  let status = try? entry.int("http.response.status") else { return nil }
            let written: Int64? = try? entry.int("http.response.written")
            return Request(method: method, uri: uri, status: Int(status), written: written.map { Int($0) })
        }
    }

    /// GETs of blobs of `repository`, by digest, as the registry saw them.
    func blobGETs(_ repository: String) throws -> [String] {
        try requests().filter { $0.method == "GET" && $0.uri.hasPrefix("/v2/\(repository)/blobs/sha256:") }
            .map { String($0.uri.split(separator: "/").last!) }
    }

    /// The blob's file in the registry's storage.
    func blobData(_ digest: String) -> String {
        let hex = Digest.encoded(digest)
        return "\(storage)/docker/registry/v2/blobs/sha256/\(hex.prefix(2))/\(hex)/data"
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

/// skopeo's argv with its blob-info cache on a private tmpfs: as root it would keep one
/// in /var/lib/containers on the host (a leftover), and use it to swap in blobs it saw
/// before for the ones a test pushes.
func skopeo(_ arguments: [String]) -> [String] {
    ["unshare", "--mount", "--propagation", "private", "sh", "-c",
     #"mount -t tmpfs -o size=64m tupp-skopeo /var/lib && exec skopeo "$@""#, "skopeo"] + arguments
}

/// A port nobody listens on now: bound to 127.0.0.1:0 and released.
func freePort() throws -> UInt16 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw SystemError("socket", "127.0.0.1") }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer -> Int32 in
            guard bind(fd, pointer, length) == 0 else { return -1 }
            return getsockname(fd, pointer, &length)
        }
    }
    guard bound == 0 else { throw SystemError("bind", "127.0.0.1:0") }
    return UInt16(bigEndian: address.sin_port)
}

/// Waits until something accepts on 127.0.0.1:`port`; fails if `pid` exits first.
func waitForPort(_ port: UInt16, pid: pid_t, what: String) throws {
    let deadline = Monotonic.nanoseconds() + 10_000_000_000
    while Monotonic.nanoseconds() < deadline {
        var status: Int32 = 0
        if waitpid(pid, &status, WNOHANG) == pid {
            throw SystemError.failure("start", what, "exited with status \(status) before listening")
        }
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = port.bigEndian
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        close(fd)
        if connected == 0 { return }
        usleep(20_000)
    }
    throw SystemError.failure("start", what, "not listening on 127.0.0.1:\(port) after 10 s")
}

/// Every file below `directory` whose bytes contain `needle` (a grep -r witness).
func filesContaining(_ needle: String, below directory: String) throws -> [String] {
    guard Files.exists(directory) else { return [] }
    let result = try command(["grep", "-rlF", "--", needle, directory], allowFailure: true)
    // grep: 0 found, 1 none, 2 trouble.
    if result.status > 1 { throw SystemError.failure("grep", directory, result.output) }
    return result.status == 0 ? result.output.split(separator: "\n").map(String.init) : []
}

/// Distribution's `auth: token` counterpart: hands out RS256 JWTs with an x5c header for
/// the pushing user (any scope) and refuses wrong credentials; anonymous callers get a
/// token without access. Logs each request without its credentials.
private let tokenServerScript = #"""
import base64, http.server, json, os, sys, time, urllib.parse
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

port, key_file, cert_file, user, password, log_file = sys.argv[1:7]
key = serialization.load_pem_private_key(open(key_file, "rb").read(), None)
cert = x509.load_pem_x509_certificate(open(cert_file, "rb").read())
x5c = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()

def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

def token(subject, access):
    now = int(time.time())
    header = {"typ": "JWT", "alg": "RS256", "x5c": [x5c]}
    claims = {"iss": "tupp-test-issuer", "sub": subject, "aud": "tupp-test", "exp": now + 300, "nbf": now - 10,
              "iat": now, "jti": os.urandom(8).hex(), "access": access}
    signing_input = b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return signing_input + "." + b64(signature)

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        query = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
        header = self.headers.get("Authorization", "")
        if header.startswith("Basic "):
            given = base64.b64decode(header[6:]).decode(errors="replace")
            who = "user" if given == user + ":" + password else "bad"
        else:
            who = "anonymous"
        with open(log_file, "a") as log:
            log.write(json.dumps({"who": who, "scope": query.get("scope", []), "service": query.get("service", [])}) + "\n")
        if who == "bad":
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"errors":[{"code":"UNAUTHORIZED","message":"wrong user name or password"}]}')
            return
        access = []
        if who == "user":
            for scope in query.get("scope", []):
                for item in scope.split(" "):
                    kind, name, actions = item.split(":")
                    access.append({"type": kind, "name": name, "actions": actions.split(",")})
        body = json.dumps({"token": token(user if who == "user" else "", access), "expires_in": 300}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

http.server.HTTPServer(("127.0.0.1", int(port)), Handler).serve_forever()
"""#
