import TuppManifest

/// Terminal colors, used only when asked for (a tty without NO_COLOR).
public struct Style: Sendable {
    public var enabled: Bool

    public init(enabled: Bool) { self.enabled = enabled }

    public func paint(_ text: String, _ code: String) -> String { enabled ? "\u{1B}[\(code)m\(text)\u{1B}[0m" : text }
    public func green(_ t: String) -> String { paint(t, "32") }
    public func yellow(_ t: String) -> String { paint(t, "33") }
    public func red(_ t: String) -> String { paint(t, "31") }
    public func bold(_ t: String) -> String { paint(t, "1") }
    public func dim(_ t: String) -> String { paint(t, "2") }
}

/// Human-readable plans in the style reviewers know from Terraform.
public enum PlanText {
    public static func render(_ plan: Plan, style: Style = Style(enabled: false), destroy: Bool = false) -> String {
        var out = ""
        if !plan.drift.isEmpty {
            out += style.bold("Changed outside tupp:") + "\n"
            for d in plan.drift {
                out += "  \(style.yellow("~")) \(d.address): \(d.message)\n"
            }
            out += "\n"
        }
        let actionable = plan.actionable
        if actionable.isEmpty {
            if plan.errors.isEmpty {
                out += style.green("No changes.") + " The host matches the manifest.\n"
            }
        } else {
            out += "tupp will perform the following actions:\n"
            for change in actionable { out += "\n" + block(change, style: style) }
            let s = plan.summary
            out += "\n" + style.bold("Plan:") + " \(s.add) to add, \(s.change) to change, \(s.replace) to replace, \(s.destroy) to destroy.\n"
        }
        for w in plan.warnings { out += "\n" + style.yellow("Warning:") + " \(w)" }
        if !plan.warnings.isEmpty { out += "\n" }
        for e in plan.errors { out += "\n" + style.red("Error:") + " \(e)" }
        if !plan.errors.isEmpty { out += "\n" }
        return out
    }

    static func symbol(_ action: Plan.Action, _ style: Style) -> String {
        switch action {
        case .create: style.green("  +")
        case .update: style.yellow("  ~")
        case .replace: style.red("-/+")
        case .delete: style.red("  -")
        case .noop: "   "
        }
    }

    static func headline(_ c: Plan.ResourceChange) -> String {
        switch c.action {
        case .create: return "will be created"
        case .update: return c.effect == .restart ? "will be updated in place (the process restarts)" : "will be updated in place"
        case .replace: return "must be replaced"
        case .delete: return c.notes.contains("not in manifest") ? "will be destroyed (not in manifest)" : "will be destroyed"
        case .noop: return "is unchanged"
        }
    }

    static func block(_ c: Plan.ResourceChange, style: Style) -> String {
        var out = style.bold("  # \(c.address) \(headline(c))") + "\n"
        out += "\(symbol(c.action, style)) \(c.address.kind.rawValue) \"\(c.address.name)\" {\n"
        let indent = "      "
        switch c.action {
        case .create:
            out += attributes(c.after ?? [:], mark: style.green("+"), indent: indent)
        case .delete:
            out += attributes(c.before ?? [:], mark: style.red("-"), indent: indent)
        case .update, .replace:
            let width = c.reasons.compactMap { $0.path?.count }.max() ?? 0
            for r in c.reasons {
                if let path = r.path {
                    let mark: String
                    switch (r.before, r.after) {
                    case (nil, _): mark = style.green("+")
                    case (_, nil): mark = style.red("-")
                    default: mark = style.yellow("~")
                    }
                    var line = "\(indent)\(mark) \(path.padding(width)) = "
                    switch (r.before, r.after) {
                    case (nil, let a?): line += display(path, a)
                    case (let b?, nil): line += display(path, b) + " -> null"
                    case (let b?, let a?): line += "\(display(path, b)) -> \(display(path, a))"
                    default: break
                    }
                    out += line + comment(r, style) + "\n"
                } else if let message = r.message {
                    out += "\(indent)\(style.dim("#")) \(message)\(comment(r, style))\n"
                }
            }
        case .noop:
            break
        }
        for note in c.notes where note != "not in manifest" {
            out += "\(indent)\(style.yellow("!")) \(note)\n"
        }
        return out + "    }\n"
    }

    static func comment(_ r: Plan.Reason, _ style: Style) -> String {
        switch r.effect {
        case .replace: return style.red(" # forces replacement")
        case .restart: return style.dim(" # restarts the process")
        case .inPlace: return ""
        }
    }

    static func attributes(_ a: [String: Value], mark: String, indent: String) -> String {
        let width = a.keys.map(\.count).max() ?? 0
        return a.keys.sorted().map { "\(indent)\(mark) \($0.padding(width)) = \(display($0, a[$0]!))\n" }.joined()
    }

    /// Byte counts also in binary units, for the reader.
    static func display(_ path: String, _ value: Value) -> String {
        if path.hasSuffix("size"), case .int(let bytes) = value, bytes >= 1024 {
            return "\(bytes) (\(Units.formatSize(UInt64(bytes))))"
        }
        return value.description
    }
}

extension String {
    func padding(_ width: Int) -> String { count >= width ? self : self + String(repeating: " ", count: width - count) }
}

/// Minimal JSON writing with sorted keys: deterministic output for CI diffs, without
/// pulling Foundation into the pure planner.
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

    static func quote(_ s: String, into out: inout String) {
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

    public static func value(_ v: Value) -> Node {
        switch v {
        case .string(let s): .string(s)
        case .int(let i): .int(i)
        case .bool(let b): .bool(b)
        case .list(let items): .array(items.map(value))
        }
    }

    public static func attributes(_ a: [String: Value]?) -> Node {
        guard let a else { return .null }
        return .object(a.keys.sorted().map { ($0, value(a[$0]!)) })
    }
}

/// Plans as JSON (`tupp plan --json`), shaped after Terraform's plan representation.
public enum PlanJSON {
    public static let formatVersion = "1.0"

    public static func render(_ plan: Plan, tuppVersion: String) -> JSON.Node {
        let s = plan.summary
        return JSON.object([
            ("format_version", .string(formatVersion)),
            ("tupp_version", .string(tuppVersion)),
            ("resource_drift", .array(plan.drift.map(drift))),
            ("resource_changes", .array(plan.changes.map(change))),
            ("summary", JSON.object([("add", .int(Int64(s.add))), ("change", .int(Int64(s.change))),
                                     ("replace", .int(Int64(s.replace))), ("destroy", .int(Int64(s.destroy)))])),
            ("changes", .bool(plan.hasChanges)),
            ("warnings", .array(plan.warnings.map { .string($0) })),
            ("errors", .array(plan.errors.map { .string($0) })),
        ])
    }

    public static func change(_ c: Plan.ResourceChange) -> JSON.Node {
        JSON.object([
            ("address", .string(c.address.description)),
            ("type", .string(c.address.kind.rawValue)),
            ("name", .string(c.address.name)),
            ("actions", .array(c.action.jsonActions.map { .string($0) })),
            ("restarts_process", .bool(c.effect == .restart && c.action == .update)),
            ("before", JSON.attributes(c.before)),
            ("after", JSON.attributes(c.after)),
            ("reasons", .array(c.reasons.map(reason))),
            ("notes", .array(c.notes.map { .string($0) })),
        ])
    }

    static func reason(_ r: Plan.Reason) -> JSON.Node {
        var pairs: [(String, JSON.Node)] = []
        if let path = r.path { pairs.append(("path", .string(path))) }
        if r.path != nil {
            pairs.append(("before", r.before.map(JSON.value) ?? .null))
            pairs.append(("after", r.after.map(JSON.value) ?? .null))
        }
        if let m = r.message { pairs.append(("message", .string(m))) }
        pairs.append(("effect", .string(["in-place", "restart", "replace"][r.effect.rawValue])))
        pairs.append(("forces_replacement", .bool(r.forcesReplacement)))
        return .object(pairs)
    }

    static func drift(_ d: Drift) -> JSON.Node {
        var pairs: [(String, JSON.Node)] = [("address", .string(d.address.description)), ("message", .string(d.message))]
        if let path = d.path { pairs.append(("path", .string(path))) }
        if let r = d.recorded { pairs.append(("recorded", JSON.value(r))) }
        if let o = d.observed { pairs.append(("observed", JSON.value(o))) }
        return .object(pairs)
    }
}
