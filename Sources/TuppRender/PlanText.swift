import TuppBase
import TuppPlan

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
    public static func render(_ plan: Plan, style: Style = Style(enabled: false)) -> String {
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
        case .delete: return c.notes.contains(Plan.notInManifest) ? "will be destroyed (not in manifest)" : "will be destroyed"
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
            let width = c.reasons.compactMap { $0.path?.name.count }.max() ?? 0
            for r in c.reasons {
                if let path = r.path {
                    let mark: String
                    switch (r.before, r.after) {
                    case (nil, _): mark = style.green("+")
                    case (_, nil): mark = style.red("-")
                    default: mark = style.yellow("~")
                    }
                    var line = "\(indent)\(mark) \(path.name.padding(width)) = "
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
        for note in c.notes where note != Plan.notInManifest {
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

    static func attributes(_ a: Attributes, mark: String, indent: String) -> String {
        let width = a.keys.map(\.name.count).max() ?? 0
        return a.keys.sorted().map { "\(indent)\(mark) \($0.name.padding(width)) = \(display($0, a[$0]!))\n" }.joined()
    }

    /// Byte counts (sizes, a volume's usage) also in binary units, for the reader.
    static func display(_ path: AttributePath, _ value: Value) -> String {
        if path.name.hasSuffix("size") || path.name.hasPrefix("usage."), case .int(let bytes) = value, bytes >= 1024 {
            return "\(bytes) (\(Units.formatSize(UInt64(bytes))))"
        }
        return value.description
    }
}

extension String {
    func padding(_ width: Int) -> String { count >= width ? self : self + String(repeating: " ", count: width - count) }
}
