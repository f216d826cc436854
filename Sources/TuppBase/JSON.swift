/// tupp's one JSON codec: records, saved plans, `--json` output. Writing keeps the
/// order it is given (callers sort keys, so output is deterministic for CI diffs); the
/// reader is in JSONReader.swift. No Foundation: the pure modules stay small.
public enum JSON {
    public indirect enum Node: Sendable, Equatable {
        case string(String), int(Int64), double(Double), bool(Bool), null
        case array([Node])
        case object([(String, Node)])

        public static func == (a: Node, b: Node) -> Bool { a.serialized() == b.serialized() }

        public func serialized() -> String {
            var out = ""
            write(into: &out)
            return out
        }

        func write(into out: inout String) {
            switch self {
            case .string(let s): JSON.quote(s, into: &out)
            case .int(let i): out += String(i)
            case .double(let d): out += d.isFinite ? String(d) : "null"
            case .bool(let b): out += b ? "true" : "false"
            case .null: out += "null"
            case .array(let items):
                out += "["
                for (i, item) in items.enumerated() {
                    if i > 0 { out += "," }
                    item.write(into: &out)
                }
                out += "]"
            case .object(let pairs):
                out += "{"
                for (i, (k, v)) in pairs.enumerated() {
                    if i > 0 { out += "," }
                    JSON.quote(k, into: &out)
                    out += ":"
                    v.write(into: &out)
                }
                out += "}"
            }
        }
    }

    public static func quote(_ s: String, into out: inout String) {
        out += "\""
        for c in s.unicodeScalars {
            switch c {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if c.value < 0x20 {
                    let hex = String(c.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(c)
                }
            }
        }
        out += "\""
    }

    public static func object(_ pairs: [(String, Node)]) -> Node { .object(pairs) }
}
