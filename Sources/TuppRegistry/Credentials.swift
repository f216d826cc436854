import Glibc
import TuppBase
import TuppSystem

/// A user name and password (or token) for one registry. Never printed: its description
/// names the user and where it came from, not the secret.
public struct Credentials: Sendable, Equatable, CustomStringConvertible, CustomDebugStringConvertible {
    public var username: String
    public var password: String
    /// The auth file and key it was read from, for messages.
    public var source: String

    public init(username: String, password: String, source: String) {
        self.username = username
        self.password = password
        self.source = source
    }

    public var description: String { "credentials for '\(username)' from \(source)" }
    public var debugDescription: String { description }

    /// The value of an `Authorization: Basic …` header.
    var basicAuthorization: String { "Basic " + Base64.encode(Array("\(username):\(password)".utf8)) }
}

/// Registry credentials from auth files in the containers-auth.json / Docker
/// config.json format: `{"auths": {"KEY": {"auth": base64("user:password")}}}`.
///
/// Files are read in order — `$REGISTRY_AUTH_FILE`, /etc/tupp/auth.json,
/// `~/.docker/config.json` — and the first one with an entry for the image wins. A key
/// is a registry host (`registry.example.org:5000`, legacy `https://…/v1/` forms
/// included) or a host with a repository prefix (`host/team`), the longest match first.
/// Credential helpers (`credHelpers`, `credsStore`) are not run.
public struct CredentialStore: Sendable {
    public var files: [String]

    public init(files: [String]) {
        self.files = files
    }

    /// The default search order for this process's environment.
    public static func standard() -> CredentialStore {
        var files: [String] = []
        if let value = getenv("REGISTRY_AUTH_FILE"), value.pointee != 0 { files.append(String(cString: value)) }
        files.append("/etc/tupp/auth.json")
        if let home = getenv("HOME"), home.pointee != 0 {
            files.append("\(String(cString: home))/.docker/config.json")
        } else {
            files.append("/root/.docker/config.json")
        }
        return CredentialStore(files: files)
    }

    /// The credentials for `reference`, nil when no file has any.
    public func credentials(for reference: ImageReference) throws(SystemError) -> Credentials? {
        for file in files {
            guard let bytes = try Files.read(file, limit: 4 << 20) else { continue }
            if let found = try Self.lookup(reference, in: bytes, file: file) { return found }
        }
        return nil
    }

    /// Pure: the entry for `reference` in one auth file's bytes.
    static func lookup(_ reference: ImageReference, in bytes: [UInt8], file: String) throws(SystemError) -> Credentials? {
        let auths: [(key: String, entry: JSONObject)]
        do {
            // Messages may quote the file's content: say only where, never what.
            let file = try JSONObject.parse(bytes, what: file)
            auths = try (file.object("auths")?.pairs ?? []).map { (key, node) throws(SystemError) in (key, try JSONObject(node, what: key)) }
        } catch {
            throw SystemError.failure("read registry auth file", file, "not valid JSON in the containers-auth.json / Docker config.json format")
        }
        let target = "\(reference.registry)/\(reference.repository)"
        var best: (key: String, length: Int, entry: JSONObject)?
        for (key, entry) in auths {
            let scope = normalize(key)
            let matches = scope == reference.registry || target == scope || target.hasPrefix(scope + "/")
            guard matches, scope.count > (best?.length ?? -1) else { continue }
            best = (key, scope.count, entry)
        }
        guard let (key, _, entry) = best else { return nil }
        let source = "\(file) (\"\(key)\")"
        // A field of the wrong type counts as absent.
        let auth: String? = try? entry.string("auth")
        let username: String? = try? entry.string("username"), password: String? = try? entry.string("password")
        if let auth, !auth.isEmpty {
            guard let decoded = Base64.decode(auth), let text = String(validating: decoded, as: UTF8.self),
                  let colon = text.firstIndex(of: ":") else {
                throw SystemError.failure("read registry auth file", source, "\"auth\" is not base64 of USER:PASSWORD")
            }
            return Credentials(username: String(text[..<colon]), password: String(text[text.index(after: colon)...]), source: source)
        }
        if let username, let password {
            return Credentials(username: username, password: password, source: source)
        }
        return nil
    }

    /// "https://index.docker.io/v1/" → "docker.io"; "http://host:5000/" → "host:5000".
    static func normalize(_ key: String) -> String {
        var text = Substring(key)
        for scheme in ["https://", "http://"] where text.hasPrefix(scheme) { text = text.dropFirst(scheme.count) }
        var parts = text.split(separator: "/").map(String.init)
        if key.contains("://") || parts.last == "v1" || parts.last == "v2" {
            // Legacy Docker keys carry an API path, never a repository.
            parts = Array(parts.prefix(1))
        }
        guard !parts.isEmpty else { return "" }
        if ["index.docker.io", "registry-1.docker.io"].contains(parts[0]) { parts[0] = ImageReference.dockerHub }
        return parts.joined(separator: "/")
    }
}
