import TuppBase
import TuppManifest

/// A YAML node with the position it came from. The loader keeps the raw scalar text and
/// its style; the decoder gives it a type (YAML 1.2 core schema) where the manifest
/// expects one, so `restart: no` stays the string "no".
public struct Node: Sendable {
    public enum Value: Sendable {
        case scalar(String, plain: Bool)
        case mapping([(key: Node, value: Node)])
        case sequence([Node])
    }

    public var value: Value
    public var mark: Mark
    /// An explicit tag such as "!!str", when the document gave one.
    public var tag: String?

    public init(_ value: Value, mark: Mark, tag: String? = nil) {
        self.value = value
        self.mark = mark
        self.tag = tag
    }

    var isNullScalar: Bool {
        if case .scalar(let text, let plain) = value, ScalarType.resolve(text, plain: plain, tag: tag) == .null { return true }
        return false
    }

    /// What kind of node this is, for error messages: "a mapping", "the string \"x\"".
    public var kindDescription: String {
        switch value {
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .scalar(let text, let plain):
            switch ScalarType.resolve(text, plain: plain, tag: tag) {
            case .null: return "null"
            case .bool(let b): return "the boolean \(b)"
            case .int(let i): return "the number \(i)"
            case .float: return "the number \(text)"
            case .string(let s): return "the string \"\(s.count > 40 ? String(s.prefix(40)) + "…" : s)\""
            }
        }
    }
}

/// YAML 1.2 core-schema resolution of a scalar.
public enum ScalarType: Equatable, Sendable {
    case null
    case bool(Bool)
    case int(Int64)
    case float(Double)
    case string(String)

    public static func resolve(_ text: String, plain: Bool, tag: String?) -> ScalarType {
        if let tag {
            switch tag {
            case "tag:yaml.org,2002:str": return .string(text)
            case "tag:yaml.org,2002:null": return .null
            default: break
            }
        }
        guard plain else { return .string(text) }
        switch text {
        case "", "~", "null", "Null", "NULL": return .null
        case "true", "True", "TRUE": return .bool(true)
        case "false", "False", "FALSE": return .bool(false)
        default: break
        }
        if let i = parseInt(text) { return .int(i) }
        if looksLikeFloat(text), let d = Double(text) { return .float(d) }
        switch text {
        case ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF": return .float(.infinity)
        case "-.inf", "-.Inf", "-.INF": return .float(-.infinity)
        case ".nan", ".NaN", ".NAN": return .float(.nan)
        default: return .string(text)
        }
    }

    static func parseInt(_ text: String) -> Int64? {
        if text.hasPrefix("0x"), text.count > 2 { return Int64(text.dropFirst(2), radix: 16) }
        if text.hasPrefix("0o"), text.count > 2 { return Int64(text.dropFirst(2), radix: 8) }
        var digits = Substring(text)
        if digits.first == "-" || digits.first == "+" { digits = digits.dropFirst() }
        guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        return Int64(text.hasPrefix("+") ? String(text.dropFirst()) : text)
    }

    static func looksLikeFloat(_ text: String) -> Bool {
        // [-+]? ( \. [0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )?
        var chars = Substring(text)
        if chars.first == "-" || chars.first == "+" { chars = chars.dropFirst() }
        guard let first = chars.first, first == "." || first.isNumber else { return false }
        return chars.allSatisfy { $0.isASCII && ($0.isNumber || $0 == "." || $0 == "e" || $0 == "E" || $0 == "-" || $0 == "+") }
    }
}

extension Node {
    /// The plain text of the scalar at `key` of a mapping node; nil for anything else.
    func scalarValue(forKey key: String) -> String? {
        guard case .mapping(let pairs) = value else { return nil }
        for (k, v) in pairs {
            if case .scalar(let name, _) = k.value, name == key, case .scalar(let text, _) = v.value { return text }
        }
        return nil
    }
}
