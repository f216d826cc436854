import TuppPlan

/// Plans as a pull-request comment: the summary and the destructive changes first, the
/// full plan in a collapsed block, never longer than `limit` characters (GitHub refuses
/// comments over 65,536).
public enum PlanMarkdown {
    public static func render(_ plan: Plan, limit: Int = 65_000) -> String {
        let s = plan.summary
        var head = "### tupp plan\n\n"
        if !plan.errors.isEmpty {
            head += "**\(plan.errors.count) error\(plan.errors.count == 1 ? "" : "s") — this plan cannot be applied.**\n\n"
            head += plan.errors.map { "- ❌ \(escape($0))\n" }.joined() + "\n"
        }
        if plan.hasChanges {
            head += "**Plan:** \(s.add) to add, \(s.change) to change, \(s.replace) to replace, \(s.destroy) to destroy.\n\n"
        } else if plan.errors.isEmpty {
            head += "**No changes.** The host matches the manifest.\n\n"
        }
        let destructive = plan.actionable.filter { $0.action == .delete || $0.action == .replace }
        if !destructive.isEmpty {
            head += "#### Destroyed or replaced\n\n"
            head += destructive.map { c in
                let why = c.action == .replace
                    ? c.reasons.filter(\.forcesReplacement).map { r in r.path.map { "`\($0)`" } ?? escape(r.message ?? "") }.joined(separator: ", ")
                    : (c.notes.first.map(escape) ?? "")
                return "- \(c.action == .replace ? "🔁 replace" : "🗑️ destroy") `\(c.address)`\(why.isEmpty ? "" : " — \(why)")\n"
            }.joined() + "\n"
        }
        if !plan.drift.isEmpty {
            head += "#### Changed outside tupp\n\n" + plan.drift.map { "- `\($0.address)`: \(escape($0.message))\n" }.joined() + "\n"
        }
        for w in plan.warnings { head += "> ⚠️ \(escape(w))\n" }
        guard plan.hasChanges else { return clip(head, limit) }

        let open = "<details><summary>Full plan (\(plan.actionable.count) resource\(plan.actionable.count == 1 ? "" : "s"))</summary>\n\n```diff\n"
        let close = "```\n\n</details>\n"
        var body = ""
        let budget = limit - head.count - open.count - close.count - 120
        var shown = 0
        for change in plan.actionable {
            let block = diffBlock(change)
            if body.count + block.count > budget { break }
            body += block
            shown += 1
        }
        if shown < plan.actionable.count {
            body += "# … \(plan.actionable.count - shown) more resource\(plan.actionable.count - shown == 1 ? "" : "s") not shown (comment size limit); run `tupp plan` for all.\n"
        }
        return clip(head + open + body + close, limit)
    }

    /// A text block with diff markers in the first column so GitHub colors it.
    static func diffBlock(_ change: Plan.ResourceChange) -> String {
        PlanText.block(change, style: Style(enabled: false)).split(separator: "\n", omittingEmptySubsequences: false).map { line -> String in
            let trimmed = line.drop { $0 == " " }
            if line.hasPrefix("-/+") { return "! " + line }
            switch trimmed.first {
            case "+": return "+ " + line
            case "-": return "- " + line
            case "~": return "! " + line
            default: return "  " + line
            }
        }.joined(separator: "\n").trimmingTrailingSpaces() + "\n"
    }

    static func escape(_ text: String) -> String {
        text.replacingAll("<", "&lt;").replacingAll(">", "&gt;")
    }

    static func clip(_ text: String, _ limit: Int) -> String {
        text.count <= limit ? text : String(text.prefix(limit - 40)) + "\n\n… (truncated to \(limit) characters)\n"
    }
}

extension String {
    func replacingAll(_ target: String, _ replacement: String) -> String {
        split(separator: target, omittingEmptySubsequences: false).joined(separator: replacement)
    }

    func trimmingTrailingSpaces() -> String {
        var s = Substring(self)
        while s.last == " " || s.last == "\n" { s.removeLast() }
        return String(s)
    }
}
