import TuppBase
import TuppSystem

/// A JSON object read field by field, with type checks: a field that is absent or null
/// is nil, one of another type is an error naming the document and the field. Registry
/// documents are untrusted input; tupp's JSON reader (TuppBase) bounds their depth.
public struct JSONObject {
    public let pairs: [(String, JSON.Node)]
    /// Names the document in errors ("registry.example/app manifest sha256:…").
    public let what: String

    public init(_ node: JSON.Node?, what: String) throws(SystemError) {
        guard case .object(let pairs)? = node else {
            throw SystemError.failure("read JSON", what, "expected an object")
        }
        self.pairs = pairs
        self.what = what
    }

    /// Parses `bytes` as one JSON object.
    public static func parse(_ bytes: [UInt8], what: String) throws(SystemError) -> JSONObject {
        let node: JSON.Node
        do {
            node = try JSON.parse(bytes)
        } catch {
            throw SystemError.failure("parse JSON", what, error.description)
        }
        return try JSONObject(node, what: what)
    }

    public func has(_ key: String) -> Bool { value(key) != nil }

    func value(_ key: String) -> JSON.Node? {
        guard let node = pairs.first(where: { $0.0 == key })?.1 else { return nil }
        if case .null = node { return nil }
        return node
    }

    func wrongType(_ key: String, _ expected: String) -> SystemError {
        SystemError.failure("read JSON", what, "\"\(key)\" is not \(expected)")
    }

    public func string(_ key: String) throws(SystemError) -> String? {
        guard let node = value(key) else { return nil }
        guard case .string(let text) = node else { throw wrongType(key, "a string") }
        return text
    }

    public func requiredString(_ key: String) throws(SystemError) -> String {
        guard let text = try string(key) else { throw SystemError.failure("read JSON", what, "\"\(key)\" is missing") }
        return text
    }

    public func int(_ key: String) throws(SystemError) -> Int64? {
        guard let node = value(key) else { return nil }
        switch node {
        case .int(let number): return number
        case .double(let number) where number == number.rounded() && abs(number) < 9e15: return Int64(number)
        default: throw wrongType(key, "an integer")
        }
    }

    public func double(_ key: String) throws(SystemError) -> Double? {
        guard let node = value(key) else { return nil }
        guard let number = node.double else { throw wrongType(key, "a number") }
        return number
    }

    public func strings(_ key: String) throws(SystemError) -> [String]? {
        guard let node = value(key) else { return nil }
        guard case .array(let items) = node else { throw wrongType(key, "an array of strings") }
        var out: [String] = []
        for item in items {
            guard case .string(let text) = item else { throw wrongType(key, "an array of strings") }
            out.append(text)
        }
        return out
    }

    public func object(_ key: String) throws(SystemError) -> JSONObject? {
        guard let node = value(key) else { return nil }
        return try JSONObject(node, what: "\(what) \"\(key)\"")
    }

    public func objects(_ key: String) throws(SystemError) -> [JSONObject]? {
        guard let node = value(key) else { return nil }
        guard case .array(let items) = node else { throw wrongType(key, "an array of objects") }
        var out: [JSONObject] = []
        for (index, item) in items.enumerated() { out.append(try JSONObject(item, what: "\(what) \"\(key)\"[\(index)]")) }
        return out
    }

    public func stringMap(_ key: String) throws(SystemError) -> [String: String]? {
        guard let object = try object(key) else { return nil }
        var out: [String: String] = [:]
        for (name, _) in object.pairs { out[name] = try object.string(name) }
        return out
    }
}

/// RFC 4648 base64, for the `auth` field of auth files and Basic authorization.
public enum Base64 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    public static func encode(_ bytes: [UInt8]) -> String {
        var out: [UInt8] = []
        out.reserveCapacity((bytes.count + 2) / 3 * 4)
        var index = 0
        while index < bytes.count {
            let count = min(3, bytes.count - index)
            var value = UInt32(bytes[index]) << 16
            if count > 1 { value |= UInt32(bytes[index + 1]) << 8 }
            if count > 2 { value |= UInt32(bytes[index + 2]) }
            out.append(alphabet[Int(value >> 18 & 63)])
            out.append(alphabet[Int(value >> 12 & 63)])
            out.append(count > 1 ? alphabet[Int(value >> 6 & 63)] : UInt8(ascii: "="))
            out.append(count > 2 ? alphabet[Int(value & 63)] : UInt8(ascii: "="))
            index += 3
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// nil for anything that is not padded base64.
    public static func decode(_ text: String) -> [UInt8]? {
        var values: [UInt8] = []
        var padding = 0
        for byte in text.utf8 {
            if byte == UInt8(ascii: "=") { padding += 1; continue }
            guard padding == 0, let value = alphabet.firstIndex(of: byte) else { return nil }
            values.append(UInt8(value))
        }
        guard (values.count + padding) % 4 == 0, padding <= 2 else { return nil }
        var out: [UInt8] = []
        var index = 0
        while index + 1 < values.count {
            let chunk = values[index..<min(index + 4, values.count)]
            var value: UInt32 = 0
            for (offset, sixBits) in chunk.enumerated() { value |= UInt32(sixBits) << (18 - 6 * UInt32(offset)) }
            out.append(UInt8(value >> 16 & 255))
            if chunk.count > 2 { out.append(UInt8(value >> 8 & 255)) }
            if chunk.count > 3 { out.append(UInt8(value & 255)) }
            index += 4
        }
        return out
    }
}
