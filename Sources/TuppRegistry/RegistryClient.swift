import Crypto
import Glibc
import TuppBase
import CCurl
import Synchronization
import TuppSystem

/// How to reach a registry for one image.
public struct RegistryOptions: Sendable {
    public var security: TransportSecurity
    public var credentials: CredentialStore
    public var retry: RetryPolicy

    public init(security: TransportSecurity = TransportSecurity(), credentials: CredentialStore = .standard(),
                retry: RetryPolicy = RetryPolicy()) {
        self.security = security
        self.credentials = credentials
        self.retry = retry
    }
}

/// A manifest or index as the registry sent it, its digest checked.
public struct FetchedManifest: Sendable {
    /// sha256 of exactly these bytes.
    public var digest: String
    public var mediaType: String?
    public var bytes: [UInt8]
    public var document: ManifestDocument
}

/// The client side of the OCI distribution protocol for one repository: the `/v2/`
/// probe, Basic and Bearer-token authentication, manifests by tag or digest, and blobs
/// verified while they stream.
///
/// Thread-safe: the authentication state is shared, each call uses its own connection
/// (`HTTPSession`) unless given one. Credentials are read from the auth files when the
/// registry asks for them and never appear in errors or descriptions.
public final class RegistryClient: Sendable {
    public let reference: ImageReference
    public let options: RegistryOptions
    private let state = Mutex(AuthState())

    /// How the registry wants requests authorized, learnt from the `/v2/` probe.
    private struct AuthState {
        enum Scheme { case unknown, anonymous, basic, bearer([String: String]) }
        var scheme: Scheme = .unknown
        var credentials: Credentials??
        var token: (value: String, expires: UInt64)?
    }

    public init(reference: ImageReference, options: RegistryOptions = RegistryOptions()) {
        self.reference = reference
        self.options = options
    }

    var baseURL: String { "\(options.security.scheme)://\(reference.endpointHost)/v2" }

    // MARK: - Manifests

    /// The digest the reference stands for. A pinned reference answers without any
    /// request; a tag costs one HEAD (a GET if the registry does not say the digest).
    public func resolve() throws(SystemError) -> String {
        if let digest = reference.digest { return digest }
        let session = try HTTPSession(security: options.security)
        let request = HTTPRequest(method: .head, url: "\(baseURL)/\(reference.repository)/manifests/\(reference.manifestReference)",
                                  headers: ["Accept: \(MediaType.manifestAccept)"])
        let response = try send(request, on: session, what: "resolve tag") { _, _ in true }
        try expectSuccess(response, what: "resolve tag")
        if let digest = response.header("docker-content-digest"), ImageReference.isDigest(digest) { return digest }
        return try manifest(reference.manifestReference, session: session).digest
    }

    /// The manifest or index named by `tagOrDigest`, read whole (at most 4 MiB) and
    /// checked: against the digest when one was asked for, against the registry's
    /// Docker-Content-Digest when it sent one.
    public func manifest(_ tagOrDigest: String) throws(SystemError) -> FetchedManifest {
        try manifest(tagOrDigest, session: try HTTPSession(security: options.security))
    }

    func manifest(_ tagOrDigest: String, session: HTTPSession) throws(SystemError) -> FetchedManifest {
        let what = "manifest \(tagOrDigest)"
        let limit = 4 << 20
        var bytes: [UInt8] = []
        let request = HTTPRequest(url: "\(baseURL)/\(reference.repository)/manifests/\(tagOrDigest)",
                                  headers: ["Accept: \(MediaType.manifestAccept)"])
        let response = try send(request, on: session, what: what, restart: { _ in bytes.removeAll(); return false }) { chunk, _ in
            guard bytes.count + chunk.count <= limit else {
                throw failure("read \(what)", "the registry sent more than \(limit >> 20) MiB; refusing it")
            }
            bytes.append(contentsOf: chunk)
            return true
        }
        try expectSuccess(response, what: what)
        let digest = Digest.sha256(bytes)
        if ImageReference.isDigest(tagOrDigest), digest != tagOrDigest {
            throw failure("verify \(what)", "digest mismatch: expected \(tagOrDigest), content is \(digest)")
        }
        if let sent = response.header("docker-content-digest"), ImageReference.isDigest(sent), sent != digest {
            throw failure("verify \(what)", "digest mismatch: the registry says \(sent), content is \(digest)")
        }
        let mediaType = response.header("content-type")
        let document = try ManifestDocument.decode(bytes, mediaType: mediaType, what: "\(reference) \(what)")
        return FetchedManifest(digest: digest, mediaType: mediaType, bytes: bytes, document: document)
    }

    /// A small blob (the image config), read whole and verified.
    public func smallBlob(_ descriptor: Descriptor, limit: Int = 8 << 20) throws(SystemError) -> [UInt8] {
        guard ImageReference.isDigest(descriptor.digest) else {
            throw failure("read blob", "'\(descriptor.digest)' is not a sha256 digest")
        }
        guard descriptor.size <= Int64(limit) else {
            throw failure("read blob \(descriptor.digest)", "it is \(descriptor.size) bytes, more than the \(limit >> 20) MiB allowed")
        }
        let session = try HTTPSession(security: options.security)
        var bytes: [UInt8] = []
        let what = "blob \(descriptor.digest)"
        let request = HTTPRequest(url: "\(baseURL)/\(reference.repository)/blobs/\(descriptor.digest)")
        let response = try send(request, on: session, what: what, restart: { _ in bytes.removeAll(); return false }) { chunk, _ in
            guard Int64(bytes.count + chunk.count) <= descriptor.size else {
                throw failure("read \(what)", "the registry sent more than the \(descriptor.size) bytes the manifest gives")
            }
            bytes.append(contentsOf: chunk)
            return true
        }
        try expectSuccess(response, what: what)
        let digest = Digest.sha256(bytes)
        guard digest == descriptor.digest, Int64(bytes.count) == descriptor.size else {
            throw failure("verify \(what)", "digest mismatch: expected \(descriptor.digest) (\(descriptor.size) bytes), content is \(digest) (\(bytes.count) bytes)")
        }
        return bytes
    }

    // MARK: - Requests

    /// Sends `request` with authorization, retrying transient failures (429, 5xx,
    /// dropped connections) with backoff and a 401 once with a fresh token. `restart`
    /// runs before each retry so the body sink starts over (or, for a blob, moves the
    /// range on); when it answers true the attempt made progress and the count of
    /// failures in a row starts again.
    func send(_ request: HTTPRequest, on session: HTTPSession, what: String,
              restart: (inout HTTPRequest) -> Bool = { _ in false },
              body: (UnsafeRawBufferPointer, Int) throws -> Bool) throws(SystemError) -> HTTPResponse {
        var failures = 0
        var renewedToken = false
        var next = request
        func again() { if restart(&next) { failures = 0 } }
        while true {
            var attempt = next
            let response: HTTPResponse
            do {
                attempt.authorization = try authorization(session: session)
                response = try session.perform(attempt, body: body)
            } catch let error as TransportError where error.isTransient && failures + 1 < options.retry.attempts {
                failures += 1
                again()
                RetryPolicy.sleep(options.retry.delay(afterFailure: max(1, failures)))
                continue
            } catch let error as TransportError {
                throw unreachable(what, "\(error.message) (\(failures + 1) attempt\(failures == 0 ? "" : "s"))", error)
            } catch let error as SystemError {
                throw error
            } catch {
                throw failure(what, "\(error)")
            }
            if response.status == 401, !renewedToken, case .bearer = state.withLock({ $0.scheme }) {
                renewedToken = true
                state.withLock { $0.token = nil }
                again()
                continue
            }
            if RetryPolicy.isTransient(status: response.status), failures + 1 < options.retry.attempts {
                failures += 1
                again()
                RetryPolicy.sleep(options.retry.delay(afterFailure: max(1, failures), retryAfter: response.header("retry-after")))
                continue
            }
            return response
        }
    }

    /// The Authorization header value for the next request, probing `/v2/` and
    /// fetching a token first when needed.
    private func authorization(session: HTTPSession) throws(SystemError) -> String? {
        try state.withLock { (auth: inout AuthState) throws(SystemError) -> String? in
            if case .unknown = auth.scheme { auth.scheme = try probe(session: session) }
            switch auth.scheme {
            case .unknown, .anonymous:
                return nil
            case .basic:
                guard let credentials = try credentials(&auth) else {
                    throw failure("authenticate", "the registry asks for a user name and password (Basic) and no auth file has any for \(reference.registry); checked: \(options.credentials.files.joined(separator: ", "))")
                }
                return credentials.basicAuthorization
            case .bearer(let challenge):
                let now = Monotonic.nanoseconds()
                if let token = auth.token, token.expires > now { return "Bearer \(token.value)" }
                let (token, lifetime) = try fetchToken(challenge, credentials: try credentials(&auth), session: session)
                // Renewed a little before the server's expiry.
                auth.token = (token, now + UInt64(max(1, lifetime - 5) * 1_000_000_000))
                return "Bearer \(token)"
            }
        }
    }

    private func credentials(_ auth: inout AuthState) throws(SystemError) -> Credentials? {
        if let known = auth.credentials { return known }
        let found = try options.credentials.credentials(for: reference)
        auth.credentials = .some(found)
        return found
    }

    /// `GET /v2/`: 200 needs no authorization, 401 says which kind in WWW-Authenticate.
    private func probe(session: HTTPSession) throws(SystemError) -> AuthState.Scheme {
        let request = HTTPRequest(url: "\(baseURL)/")
        var failures = 0
        while true {
            do {
                let response = try session.perform(request) { _, _ in true }
                if response.status == 401 {
                    let challenges = AuthChallenge.parse(response.headers.filter { $0.name == "www-authenticate" }.map(\.value).joined(separator: ", "))
                    if let bearer = challenges.first(where: { $0.scheme == "bearer" }), bearer.parameters["realm"] != nil {
                        return .bearer(bearer.parameters)
                    }
                    if challenges.contains(where: { $0.scheme == "basic" }) { return .basic }
                    throw failure("probe registry", "401 without a Bearer or Basic challenge")
                }
                if RetryPolicy.isTransient(status: response.status), failures + 1 < options.retry.attempts {
                    failures += 1
                    RetryPolicy.sleep(options.retry.delay(afterFailure: failures, retryAfter: response.header("retry-after")))
                    continue
                }
                guard (200..<300).contains(response.status) else {
                    throw failure("probe registry", "GET \(baseURL)/ answered \(response.status); is this an OCI registry?")
                }
                return .anonymous
            } catch let error as TransportError where error.isTransient && failures + 1 < options.retry.attempts {
                failures += 1
                RetryPolicy.sleep(options.retry.delay(afterFailure: failures))
            } catch let error as TransportError {
                throw unreachable("reach registry", "\(baseURL)/: \(error.message)", error)
            } catch let error as SystemError {
                throw error
            } catch {
                throw failure("probe registry", "\(error)")
            }
        }
    }

    /// The token server's answer for pulling this repository (distribution's
    /// token.md): anonymous, or with the user's credentials as Basic auth.
    private func fetchToken(_ challenge: [String: String], credentials: Credentials?,
                            session: HTTPSession) throws(SystemError) -> (String, Double) {
        let realm = challenge["realm"] ?? ""
        var query = ["scope=" + Self.percentEncode("repository:\(reference.repository):pull")]
        if let service = challenge["service"] { query.insert("service=" + Self.percentEncode(service), at: 0) }
        let url = realm + (realm.contains("?") ? "&" : "?") + query.joined(separator: "&")
        var request = HTTPRequest(url: url)
        request.authorization = credentials?.basicAuthorization
        var bytes: [UInt8] = []
        let response: HTTPResponse
        var failures = 0
        while true {
            do {
                bytes.removeAll()
                let answer = try session.perform(request) { chunk, _ in
                    guard bytes.count + chunk.count <= 1 << 20 else { return false }
                    bytes.append(contentsOf: chunk)
                    return true
                }
                if RetryPolicy.isTransient(status: answer.status), failures + 1 < options.retry.attempts {
                    failures += 1
                    RetryPolicy.sleep(options.retry.delay(afterFailure: failures, retryAfter: answer.header("retry-after")))
                    continue
                }
                response = answer
                break
            } catch let error as TransportError where error.isTransient && failures + 1 < options.retry.attempts {
                failures += 1
                RetryPolicy.sleep(options.retry.delay(afterFailure: failures))
            } catch let error as TransportError {
                throw unreachable("get a registry token", "\(HTTPSession.withoutQuery(realm)): \(error.message)", error)
            } catch {
                throw failure("get a registry token", "\(error)")
            }
        }
        guard (200..<300).contains(response.status) else {
            let who = credentials.map { "with \($0)" } ?? "anonymously (no auth file has credentials for \(reference.registry))"
            throw failure("authenticate", "the token server \(HTTPSession.withoutQuery(realm)) refused \(who): \(response.status)\(Self.registryMessage(response.errorBody).map { " \($0)" } ?? "")")
        }
        let answer = try? JSONObject.parse(bytes, what: "token")
        let token: String? = (try? answer?.string("token")) ?? (try? answer?.string("access_token"))
        guard let token, !token.isEmpty else {
            throw failure("authenticate", "the token server \(HTTPSession.withoutQuery(realm)) sent no token")
        }
        let lifetime: Double? = try? answer?.double("expires_in")
        return (token, lifetime ?? 60)
    }

    // MARK: - Errors

    /// An error about this image: the reference is the object, so every message names it.
    func failure(_ operation: String, _ detail: String) -> SystemError {
        SystemError.failure(operation, reference.description, detail)
    }

    /// A failure below HTTP, with the errno that says what kind: refused, timed out, no
    /// such host, connection reset. TLS failures (a certificate not trusted) keep 0: they
    /// are a configuration problem, not an outage.
    func unreachable(_ operation: String, _ detail: String, _ error: TransportError) -> SystemError {
        let code: Int32
        switch error.code {
        case CURLE_COULDNT_CONNECT: code = ECONNREFUSED
        case CURLE_OPERATION_TIMEDOUT: code = ETIMEDOUT
        case CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_RESOLVE_PROXY: code = EHOSTUNREACH
        case CURLE_RECV_ERROR, CURLE_SEND_ERROR, CURLE_GOT_NOTHING, CURLE_PARTIAL_FILE: code = ECONNRESET
        default: code = 0
        }
        return SystemError(operation, reference.description, errno: code, detail: detail)
    }

    /// Whether `error` says the registry could not be reached (no answer, or only 429/5xx
    /// after every retry) rather than that it answered no: what `plan` reports as a
    /// warning and treats the tag as unchanged.
    public static func isUnreachable(_ error: any Error) -> Bool {
        guard let error = error as? SystemError else { return false }
        return [ECONNREFUSED, ETIMEDOUT, EHOSTUNREACH, ECONNRESET, EAGAIN].contains(error.code)
    }

    func expectSuccess(_ response: HTTPResponse, what: String) throws(SystemError) {
        guard !(200..<300).contains(response.status) else { return }
        let message = Self.registryMessage(response.errorBody).map { ": \($0)" } ?? ""
        switch response.status {
        case 401, 403:
            let known = state.withLock { $0.credentials ?? nil }
            let who = known.map { "with \($0)" } ?? "without credentials"
            throw failure("pull \(what)", "access denied (\(response.status)) \(who)\(message)")
        case 404:
            throw failure("pull \(what)", "not found (404)\(message): check the name and the tag or digest")
        case 429, 500...599:
            throw SystemError("pull \(what)", reference.description, errno: EAGAIN,
                              detail: "the registry answered \(response.status)\(message) to every retry")
        default:
            throw failure("pull \(what)", "the registry answered \(response.status)\(message)")
        }
    }

    /// "MANIFEST_UNKNOWN: manifest unknown" from a registry's error JSON.
    static func registryMessage(_ body: [UInt8]) -> String? {
        guard let decoded = try? JSONObject.parse(body, what: "error"), let errors = try? decoded.objects("errors"),
              let first = errors.first else { return nil }
        let code: String? = try? first.string("code")
        let message: String? = try? first.string("message")
        let text = [code, message].compactMap { $0 }.joined(separator: ": ")
        return text.isEmpty ? nil : text
    }

    static func percentEncode(_ text: String) -> String {
        var out = ""
        for byte in text.utf8 {
            let c = Character(UnicodeScalar(byte))
            if c.isASCII && (c.isLetter || c.isNumber || "-._~".contains(c)) {
                out.append(c)
            } else {
                out += "%" + String(byte, radix: 16, uppercase: true).leftPadded(to: 2)
            }
        }
        return out
    }
}

extension String {
    func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
