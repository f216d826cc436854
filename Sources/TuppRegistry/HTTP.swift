import CCurl
import Glibc
import TuppSystem

/// One HTTP request as the registry client makes it.
struct HTTPRequest {
    enum Method: String { case get = "GET", head = "HEAD" }

    var method: Method = .get
    var url: String
    /// "Name: value" lines. Authorization goes in `authorization`, never here.
    var headers: [String] = []
    /// The full header value ("Bearer …", "Basic …"); kept apart so nothing that
    /// describes a request can include it.
    var authorization: String?
    /// Ask for the body from this offset on (`Range: bytes=N-`), to resume a blob.
    var rangeStart: Int64?
}

/// The final response of a request (after redirects).
struct HTTPResponse {
    var status: Int
    /// Lowercased names; the last response's headers only.
    var headers: [(name: String, value: String)]
    /// Where the body finally came from, without query (presigned URLs carry secrets there).
    var effectiveURL: String
    /// The body of an error response (status ≥ 300), up to 64 KiB, for its message.
    var errorBody: [UInt8]

    func header(_ name: String) -> String? {
        headers.last { $0.name == name }?.value
    }
}

/// How a connection is secured: TLS with the system trust store plus an optional CA
/// file, or — for a registry on this host, when the image says `insecure` — plain HTTP.
public struct TransportSecurity: Sendable, Equatable {
    public var allowPlainHTTP: Bool
    /// PEM file with extra CA certificates, trusted besides the system's.
    public var caFile: String?

    public init(allowPlainHTTP: Bool = false, caFile: String? = nil) {
        self.allowPlainHTTP = allowPlainHTTP
        self.caFile = caFile
    }

    var scheme: String { allowPlainHTTP ? "http" : "https" }
}

/// A failure below HTTP: no connection, TLS refused, connection dropped mid-body.
struct TransportError: Error {
    var code: CURLcode
    var message: String

    /// Worth another try: the network or the server may recover.
    var isTransient: Bool {
        switch code {
        case CURLE_COULDNT_CONNECT, CURLE_COULDNT_RESOLVE_HOST, CURLE_OPERATION_TIMEDOUT, CURLE_PARTIAL_FILE,
             CURLE_RECV_ERROR, CURLE_SEND_ERROR, CURLE_GOT_NOTHING, CURLE_HTTP2, CURLE_HTTP2_STREAM,
             CURLE_SSL_CONNECT_ERROR:
            return true
        default:
            return false
        }
    }
}

/// One libcurl easy handle: requests on it run one at a time and reuse its connection.
/// Not thread-safe; each downloading thread has its own.
final class HTTPSession {
    private let handle: UnsafeMutableRawPointer
    private let security: TransportSecurity
    private let errorBuffer = UnsafeMutablePointer<CChar>.allocate(capacity: Int(CURL_ERROR_SIZE) + 1)

    init(security: TransportSecurity) throws(SystemError) {
        if let why = tupp_curl_load() {
            throw SystemError.failure("load libcurl", "libcurl.so.4", String(cString: why))
        }
        guard let handle = tupp_curl_easy_init() else {
            throw SystemError.failure("start HTTP session", "libcurl", "curl_easy_init failed (out of memory)")
        }
        self.handle = handle
        self.security = security
    }

    deinit {
        tupp_curl_easy_cleanup(handle)
        errorBuffer.deallocate()
    }

    /// Sends `request`; a successful body (status 2xx) goes to `body` block by block,
    /// with the status (200, or 206 for a range) — it returns false to abort. Throws `TransportError` for failures below HTTP and
    /// rethrows what `body` threw.
    func perform(_ request: HTTPRequest, body: (UnsafeRawBufferPointer, Int) throws -> Bool) throws -> HTTPResponse {
        return try withoutActuallyEscaping(body) { body in
            try perform(request, state: TransferState(body: body))
        }
    }

    private func perform(_ request: HTTPRequest, state: TransferState) throws -> HTTPResponse {
        let raw = handle
        var headerList: UnsafeMutablePointer<curl_slist>?
        defer { tupp_curl_slist_free_all(headerList) }
        // A custom Authorization header goes to the request's own host only: libcurl
        // drops it when a redirect leads elsewhere (a blob store's presigned URL).
        var lines = request.headers + ["User-Agent: tupp", "Expect:"]
        if let authorization = request.authorization { lines.append("Authorization: \(authorization)") }
        for line in lines { headerList = tupp_curl_slist_append(headerList, line) }

        let protocols = security.allowPlainHTTP ? "http,https" : "https"
        errorBuffer[0] = 0
        try setup("set URL") { tupp_curl_setopt_string(raw, CURLOPT_URL, request.url) }
        try setup("restrict protocols") { tupp_curl_setopt_string(raw, CURLOPT_PROTOCOLS_STR, protocols) }
        try setup("restrict redirect protocols") { tupp_curl_setopt_string(raw, CURLOPT_REDIR_PROTOCOLS_STR, protocols) }
        try setup("follow redirects") { tupp_curl_setopt_long(raw, CURLOPT_FOLLOWLOCATION, 1) }
        try setup("limit redirects") { tupp_curl_setopt_long(raw, CURLOPT_MAXREDIRS, 10) }
        try setup("disable signals") { tupp_curl_setopt_long(raw, CURLOPT_NOSIGNAL, 1) }
        try setup("set headers") { tupp_curl_setopt_pointer(raw, CURLOPT_HTTPHEADER, headerList) }
        try setup("set error buffer") { tupp_curl_setopt_pointer(raw, CURLOPT_ERRORBUFFER, errorBuffer) }
        try setup("set method") { tupp_curl_setopt_long(raw, CURLOPT_NOBODY, request.method == .head ? 1 : 0) }
        if request.method == .get { try setup("set method") { tupp_curl_setopt_long(raw, CURLOPT_HTTPGET, 1) } }
        let range = request.rangeStart.map { "\($0)-" }
        try setup("set range") {
            range.map { tupp_curl_setopt_string(raw, CURLOPT_RANGE, $0) } ?? tupp_curl_setopt_pointer(raw, CURLOPT_RANGE, nil)
        }
        try setup("set connect timeout") { tupp_curl_setopt_long(raw, CURLOPT_CONNECTTIMEOUT, 30) }
        // A transfer that moves less than 1 byte/s for 60 s counts as a dropped connection.
        try setup("set stall limit") { tupp_curl_setopt_long(raw, CURLOPT_LOW_SPEED_LIMIT, 1) }
        try setup("set stall time") { tupp_curl_setopt_long(raw, CURLOPT_LOW_SPEED_TIME, 60) }
        try setup("set buffer size") { tupp_curl_setopt_long(raw, CURLOPT_BUFFERSIZE, 512 << 10) }
        if let caFile = security.caFile {
            // CAINFO replaces the default bundle; CAPATH keeps the system's hashed
            // certificates trusted beside it.
            try setup("set CA file") { tupp_curl_setopt_string(raw, CURLOPT_CAINFO, caFile) }
            try setup("set CA path") { tupp_curl_setopt_string(raw, CURLOPT_CAPATH, "/etc/ssl/certs") }
        }
        let context = Unmanaged.passUnretained(state).toOpaque()
        try setup("set write callback") { tupp_curl_setopt_write_function(raw, CURLOPT_WRITEFUNCTION, writeCallback) }
        try setup("set write data") { tupp_curl_setopt_pointer(raw, CURLOPT_WRITEDATA, context) }
        try setup("set header callback") { tupp_curl_setopt_write_function(raw, CURLOPT_HEADERFUNCTION, headerCallback) }
        try setup("set header data") { tupp_curl_setopt_pointer(raw, CURLOPT_HEADERDATA, context) }

        let code = withExtendedLifetime(state) { tupp_curl_easy_perform(raw) }
        if let thrown = state.thrown { throw thrown }
        guard code == CURLE_OK else {
            let detail = errorBuffer[0] != 0 ? String(cString: errorBuffer) : String(cString: tupp_curl_easy_strerror(code))
            throw TransportError(code: code, message: Self.redactQueries(detail))
        }
        var status = 0
        _ = tupp_curl_getinfo_long(raw, CURLINFO_RESPONSE_CODE, &status)
        var effective: UnsafePointer<CChar>?
        _ = tupp_curl_getinfo_string(raw, CURLINFO_EFFECTIVE_URL, &effective)
        let url = effective.map { String(cString: $0) } ?? request.url
        return HTTPResponse(status: status, headers: state.headers, effectiveURL: Self.withoutQuery(url),
                            errorBody: state.errorBody)
    }

    private func setup(_ what: String, _ body: () -> CURLcode) throws(SystemError) {
        let code = body()
        guard code == CURLE_OK else {
            throw SystemError.failure("configure HTTP request", what, String(cString: tupp_curl_easy_strerror(code)))
        }
    }

    static func withoutQuery(_ url: String) -> String {
        url.split(separator: "?", maxSplits: 1).first.map(String.init) ?? url
    }

    /// curl's messages may quote a URL; drop query strings from them.
    static func redactQueries(_ text: String) -> String {
        guard text.contains("?") else { return text }
        return text.split(separator: " ", omittingEmptySubsequences: false)
            .map { $0.contains("://") ? withoutQuery(String($0)) : String($0) }.joined(separator: " ")
    }
}

/// What the callbacks of one transfer share with `perform`.
private final class TransferState {
    let body: (UnsafeRawBufferPointer, Int) throws -> Bool
    var headers: [(name: String, value: String)] = []
    var status = 0
    var errorBody: [UInt8] = []
    var thrown: (any Error)?

    init(body: @escaping (UnsafeRawBufferPointer, Int) throws -> Bool) {
        self.body = body
    }
}

private let writeCallback: curl_write_callback = { data, size, count, context in
    let state = Unmanaged<TransferState>.fromOpaque(context!).takeUnretainedValue()
    let length = size * count
    let buffer = UnsafeRawBufferPointer(start: data, count: length)
    if !(200..<300).contains(state.status) {
        if state.errorBody.count < 64 << 10 { state.errorBody.append(contentsOf: buffer.prefix((64 << 10) - state.errorBody.count)) }
        return length
    }
    do {
        return try state.body(buffer, state.status) ? length : 0
    } catch {
        state.thrown = error
        return 0
    }
}

/// Collects the headers of the last response: a status line starts a new set (each
/// redirect and each `100 Continue` has its own).
private let headerCallback: curl_write_callback = { data, size, count, context in
    let state = Unmanaged<TransferState>.fromOpaque(context!).takeUnretainedValue()
    let length = size * count
    let line = String(decoding: UnsafeRawBufferPointer(start: data, count: length), as: UTF8.self).trimmingCharacters()
    if line.hasPrefix("HTTP/") {
        state.headers.removeAll()
        let parts = line.split(separator: " ")
        state.status = parts.count > 1 ? Int(parts[1]) ?? 0 : 0
    } else if let colon = line.firstIndex(of: ":") {
        state.headers.append((String(line[..<colon]).lowercased(), String(line[line.index(after: colon)...]).trimmingCharacters()))
    }
    return length
}
