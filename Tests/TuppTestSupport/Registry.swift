import Glibc
import TuppBase
import TuppSystem

/// Debian's docker-registry (distribution 2.8), started on a free 127.0.0.1 port for one
/// test with a temporary config — plain HTTP or TLS with a CA the test makes, no auth,
/// htpasswd Basic auth, or Bearer tokens from `tokenServerScript`. `stop()` kills every
/// process it started by pid.
public final class TestRegistry: @unchecked Sendable {
    public enum Auth: Sendable { case none, basic, token }

    public static let user = "tupp-user"
    /// Looked for in every file and message a test sees: it must never appear.
    public static let password = "pw-\(UInt64.random(in: 1 << 40 ... 1 << 50))-secret"

    public let directory: String
    public let port: UInt16
    public let auth: Auth
    public let tls: Bool
    public private(set) var pid: pid_t?
    private var tokenPid: pid_t?

    public var host: String { "127.0.0.1:\(port)" }
    public var caFile: String { "\(directory)/ca.crt" }
    public var logFile: String { "\(directory)/registry.log" }
    public var tokenLog: String { "\(directory)/token.log" }
    public var storage: String { "\(directory)/storage" }

    public init(directory: String, auth: Auth = .none, tls: Bool = false) throws {
        self.directory = directory
        self.auth = auth
        self.tls = tls
        port = try freePort()
        try Files.createDirectory(directory)
        if tls {
            try Spawn.checked(["sh", "-c", """
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
            try Spawn.checked(["htpasswd", "-Bbc", "\(directory)/htpasswd", Self.user, Self.password])
            authConfig = "auth:\n  htpasswd:\n    realm: tupp-test\n    path: \(directory)/htpasswd\n"
        case .token:
            let tokenPort = try freePort()
            try Spawn.checked(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "\(directory)/token.key",
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

    public func start() throws {
        let log = try FileDescriptor.open(logFile, O_WRONLY | O_CREAT | O_APPEND, mode: 0o600)
        let started = try Spawn.start(["/usr/bin/docker-registry", "serve", "\(directory)/config.yml"],
                                      stdout: log.rawValue, stderr: log.rawValue)
        pid = started
        try waitForPort(port, pid: started, what: "docker-registry")
    }

    /// SIGKILL, like a crash: the connection drops mid-transfer.
    public func kill() {
        guard let running = pid else { return }
        Glibc.kill(running, SIGKILL)
        Spawn.wait(running)
        pid = nil
    }

    public func stop() {
        kill()
        if let token = tokenPid {
            Glibc.kill(token, SIGKILL)
            Spawn.wait(token)
            tokenPid = nil
        }
    }

    /// skopeo's flags for talking to this registry as the pushing user.
    private func skopeoFlags(_ direction: String) -> [String] {
        var flags = tls ? ["--\(direction)-cert-dir", "\(directory)/skopeo-certs"] : ["--\(direction)-tls-verify=false"]
        if auth != .none { flags += ["--\(direction)-creds", "\(Self.user):\(Self.password)"] }
        return flags
    }

    /// `skopeo copy oci:LAYOUT:TAG docker://HOST/NAME` (all platforms of an index).
    public func push(_ layout: String, as name: String, extra: [String] = []) throws {
        try Spawn.checked(skopeo(["copy", "--all", "--retry-times", "2"] + skopeoFlags("dest") + extra + ["oci:\(layout)", "docker://\(host)/\(name)"]))
    }

    /// `skopeo copy docker://HOST/NAME oci:DIR:ref` + `umoci unpack`: the reference rootfs.
    public func referenceRootfs(_ name: String, into work: String) throws -> String {
        try Spawn.checked(skopeo(["copy"] + skopeoFlags("src") + ["docker://\(host)/\(name)", "oci:\(work)/ref-layout:ref"]))
        try Spawn.checked(["umoci", "unpack", "--image", "\(work)/ref-layout:ref", "\(work)/ref-bundle"])
        return "\(work)/ref-bundle/rootfs"
    }

    /// The registry's request log: one entry per completed request.
    public struct Request {
        public var method: String
        public var uri: String
        public var status: Int
        public var written: Int?
    }

    public func requests() throws -> [Request] {
        let text = try Files.readText(logFile) ?? ""
        return text.split(separator: "\n").compactMap { line in
            guard line.contains("\"response completed\""), let entry = try? JSON.parse(Array(line.utf8)),
                  let method = entry["http.request.method"]?.string, let uri = entry["http.request.uri"]?.string,
                  let status = entry["http.response.status"]?.int else { return nil }
            return Request(method: method, uri: uri, status: Int(status), written: entry["http.response.written"]?.int.map { Int($0) })
        }
    }

    /// GETs of blobs of `repository`, by digest, as the registry saw them.
    public func blobGETs(_ repository: String) throws -> [String] {
        try requests().filter { $0.method == "GET" && $0.uri.hasPrefix("/v2/\(repository)/blobs/sha256:") }
            .map { String($0.uri.split(separator: "/").last!) }
    }

    /// The blob's file in the registry's storage.
    public func blobData(_ digest: String) -> String {
        let hex = digest.dropFirst("sha256:".count)
        return "\(storage)/docker/registry/v2/blobs/sha256/\(hex.prefix(2))/\(hex)/data"
    }
}

/// skopeo's argv with its blob-info cache on a private tmpfs: as root it would keep one
/// in /var/lib/containers on the host (a leftover), and use it to swap in blobs it saw
/// before for the ones a test pushes.
public func skopeo(_ arguments: [String]) -> [String] {
    ["unshare", "--mount", "--propagation", "private", "sh", "-c",
     #"mount -t tmpfs -o size=64m tupp-skopeo /var/lib && exec skopeo "$@""#, "skopeo"] + arguments
}

/// A port nobody listens on now: bound to 127.0.0.1:0 and released.
public func freePort() throws -> UInt16 {
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
public func waitForPort(_ port: UInt16, pid: pid_t, what: String) throws {
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
public func filesContaining(_ needle: String, below directory: String) throws -> [String] {
    guard Files.exists(directory) else { return [] }
    let result = try Spawn.run(["grep", "-rlF", "--", needle, directory], stderrToStdout: true,
                               environment: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"])
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

/// OCI layouts the registry tests push, built with umoci in `directory`/L:
/// - `base`: one layer with a setuid file, hard links, symlinks, a FIFO, owners, modes;
/// - `app`: base + a layer that changes, chmods, chowns, deletes (whiteouts) and hard
///   links, + a hand-made layer with an opaque directory and a whiteout-then-recreate;
///   its config sets Entrypoint, Cmd, Env, WorkingDir, User and StopSignal;
/// - `other`: base + a layer of its own (shares the base layer with `app`);
/// - `big`: base + a layer of `BIG_MIB` MiB of random bytes (to interrupt).
public let registryImagesScript = #"""
set -e
cd "$1"
umoci init --layout L
umoci new --image L:base
umoci unpack --image L:base B >/dev/null
R=B/rootfs
mkdir -p $R/etc $R/bin $R/usr/lib $R/opaque/keep $R/del/sub $R/home/u
echo base > $R/etc/motd; head -c 300000 /dev/urandom > $R/usr/lib/blob
printf '#!/bin/sh\necho tool\n' > $R/bin/tool; chmod 4755 $R/bin/tool; ln $R/bin/tool $R/bin/tool2; ln -s tool $R/bin/t
echo a > $R/opaque/a; echo b > $R/opaque/b; echo k > $R/opaque/keep/k; echo x > $R/del/sub/x; echo gone > $R/gone
chown -R 1000:1000 $R/home/u; chmod 700 $R/home/u; mkfifo $R/fifo; ln -s /etc/motd $R/motdlink
umoci repack --image L:base B >/dev/null
umoci config --image L:base --config.env PATH=/usr/bin:/bin --config.cmd /bin/sh

umoci unpack --image L:base A >/dev/null
R=A/rootfs
echo changed > $R/etc/motd; chmod 600 $R/etc/motd; chown 5:6 $R/etc/motd
rm $R/gone; rm -rf $R/del; rm $R/opaque/a; echo new > $R/newfile; ln $R/newfile $R/newlink
ln -sfn ../newfile $R/bin/t; chmod 2750 $R/home/u
umoci repack --image L:app A >/dev/null
python3 -c '
import tarfile, io
def add(tf, name, data=b"", mode=0o644, type=tarfile.REGTYPE):
    ti = tarfile.TarInfo(name); ti.type = type; ti.mode = mode; ti.size = len(data)
    tf.addfile(ti, io.BytesIO(data) if data else None)
with tarfile.open("l3.tar", "w", format=tarfile.PAX_FORMAT) as tf:
    add(tf, "opaque", mode=0o755, type=tarfile.DIRTYPE)
    add(tf, "opaque/.wh..wh..opq")
    add(tf, "opaque/d", b"dee")
    add(tf, "etc/.wh.motd")
    add(tf, "etc/motd", b"third", mode=0o640)
'
umoci raw add-layer --image L:app l3.tar
umoci config --image L:app --config.entrypoint /bin/sh --config.cmd -c --config.cmd 'echo hi' \
  --config.env APP=1 --config.workingdir /srv --config.user 1000:1000 --config.stopsignal SIGINT

umoci unpack --image L:base O >/dev/null
echo other > O/rootfs/other; rm O/rootfs/etc/motd
umoci repack --image L:other O >/dev/null

umoci unpack --image L:base G >/dev/null
head -c $((${BIG_MIB:-1} * 1048576)) /dev/urandom > G/rootfs/big
umoci repack --image L:big G >/dev/null
"""#

/// Adds to layout `layout` an index tagged `tag` listing the manifests tagged in
/// `entries` ("TAG=OS/ARCH"), retagging each image's config to that platform first.
public let platformIndexScript = #"""
set -e
layout="$1"; tag="$2"; shift 2
for entry in "$@"; do
  name="${entry%%=*}"; platform="${entry#*=}"
  umoci config --image "$layout:$name" --os "${platform%%/*}" --architecture "${platform#*/}"
done
python3 - "$layout" "$tag" "$@" <<'PY'
import hashlib, json, sys
layout, tag, entries = sys.argv[1], sys.argv[2], sys.argv[3:]
index = json.load(open(f"{layout}/index.json"))
manifests = []
for entry in entries:
    name, platform = entry.split("=")
    os_, arch = platform.split("/")
    d = next(m for m in index["manifests"] if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == name)
    manifests.append({"mediaType": d["mediaType"], "digest": d["digest"], "size": d["size"],
                      "platform": {"os": os_, "architecture": arch}})
blob = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests}).encode()
digest = hashlib.sha256(blob).hexdigest()
open(f"{layout}/blobs/sha256/{digest}", "wb").write(blob)
index["manifests"].append({"mediaType": "application/vnd.oci.image.index.v1+json", "digest": "sha256:" + digest,
                           "size": len(blob), "annotations": {"org.opencontainers.image.ref.name": tag}})
json.dump(index, open(f"{layout}/index.json", "w"))
PY
"""#

/// Adds to layout `$1` the image tagged `$2` again as `$3` with every layer recompressed
/// with zstd (the zstd CLI; the config, and so the DiffIDs, stay the same).
public let zstdCopyScript = #"""
set -e
python3 - "$@" <<'PY'
import gzip, hashlib, json, subprocess, sys
layout, source, target = sys.argv[1:4]
index = json.load(open(f"{layout}/index.json"))
d = next(m for m in index["manifests"] if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == source)
def blob(digest): return open(f"{layout}/blobs/sha256/{digest[7:]}", "rb").read()
def put(data):
    digest = hashlib.sha256(data).hexdigest()
    open(f"{layout}/blobs/sha256/{digest}", "wb").write(data)
    return "sha256:" + digest, len(data)
manifest = json.loads(blob(d["digest"]))
for layer in manifest["layers"]:
    plain = gzip.decompress(blob(layer["digest"]))
    packed = subprocess.run(["zstd", "-q", "-c"], input=plain, stdout=subprocess.PIPE, check=True).stdout
    layer["digest"], layer["size"] = put(packed)
    layer["mediaType"] = "application/vnd.oci.image.layer.v1.tar+zstd"
digest, size = put(json.dumps(manifest).encode())
index["manifests"].append({"mediaType": d["mediaType"], "digest": digest, "size": size,
                           "annotations": {"org.opencontainers.image.ref.name": target}})
json.dump(index, open(f"{layout}/index.json", "w"))
PY
"""#

/// Builds the layouts in `work` (see `registryImagesScript`); returns the layout path.
@discardableResult
public func buildRegistryImages(in work: String, bigMiB: Int = 1) throws -> String {
    try Spawn.checked(["sh", "-c", registryImagesScript, "sh", work], environment: ["BIG_MIB=\(bigMiB)"])
    return "\(work)/L"
}

extension Spawn {
    /// Runs a witness or fixture command; a non-zero exit throws with its output.
    @discardableResult
    public static func checked(_ argv: [String], environment: [String] = []) throws -> Output {
        let result = try run(argv, stderrToStdout: true,
                             environment: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"] + environment)
        if result.status != 0 {
            throw SystemError.failure("run", argv.prefix(3).joined(separator: " "), "exit \(result.status): \(result.output)")
        }
        return result
    }
}
