/// A `WWW-Authenticate` challenge (RFC 7235): the scheme and its parameters.
///
///     Bearer realm="https://auth.example/token",service="registry",scope="repository:a/b:pull"
public struct AuthChallenge: Sendable, Equatable {
    /// Lowercased: "bearer", "basic".
    public var scheme: String
    /// Parameter names lowercased, values unquoted.
    public var parameters: [String: String]

    /// Every challenge in one header value (a server may offer several).
    public static func parse(_ header: String) -> [AuthChallenge] {
        var challenges: [AuthChallenge] = []
        var bytes = Array(header.utf8)[...]
        func skipSpaces() { while let b = bytes.first, b == 0x20 || b == 0x09 { bytes.removeFirst() } }
        func token() -> String {
            var out: [UInt8] = []
            while let b = bytes.first, !(b == 0x20 || b == 0x09 || b == UInt8(ascii: ",") || b == UInt8(ascii: "=")) {
                out.append(b)
                bytes.removeFirst()
            }
            return String(decoding: out, as: UTF8.self)
        }
        func quoted() -> String {
            var out: [UInt8] = []
            bytes.removeFirst()  // the opening quote
            while let b = bytes.first {
                bytes.removeFirst()
                if b == UInt8(ascii: "\"") { break }
                if b == UInt8(ascii: "\\"), let next = bytes.first { out.append(next); bytes.removeFirst(); continue }
                out.append(b)
            }
            return String(decoding: out, as: UTF8.self)
        }
        while true {
            skipSpaces()
            while bytes.first == UInt8(ascii: ",") { bytes.removeFirst(); skipSpaces() }
            if bytes.isEmpty { break }
            let scheme = token().lowercased()
            if scheme.isEmpty { bytes.removeFirst(); continue }
            var parameters: [String: String] = [:]
            // Parameters until the next token that is not followed by '=' (a new scheme).
            while true {
                skipSpaces()
                let mark = bytes
                let name = token()
                skipSpaces()
                guard !name.isEmpty, bytes.first == UInt8(ascii: "=") else { bytes = mark; break }
                bytes.removeFirst()
                skipSpaces()
                parameters[name.lowercased()] = bytes.first == UInt8(ascii: "\"") ? quoted() : token()
                skipSpaces()
                guard bytes.first == UInt8(ascii: ",") else { break }
                bytes.removeFirst()
            }
            challenges.append(AuthChallenge(scheme: scheme, parameters: parameters))
        }
        return challenges
    }
}
