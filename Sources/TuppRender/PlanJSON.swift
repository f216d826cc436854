import TuppBase
import TuppPlan

/// Plans as JSON (`tupp plan --json`), shaped after Terraform's plan representation.
public enum PlanJSON {
    public static let formatVersion = "1.0"

    public static func render(_ plan: Plan, tuppVersion: String) -> JSON.Node {
        let s = plan.summary
        return JSON.object([
            ("format_version", .string(formatVersion)),
            ("tupp_version", .string(tuppVersion)),
            ("project", plan.project.map(JSON.Node.string) ?? .null),
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
        if let path = r.path { pairs.append(("path", .string(path.name))) }
        if r.path != nil {
            pairs.append(("before", r.before?.json ?? .null))
            pairs.append(("after", r.after?.json ?? .null))
        }
        if let m = r.message { pairs.append(("message", .string(m))) }
        pairs.append(("effect", .string(r.effect.name)))
        pairs.append(("forces_replacement", .bool(r.forcesReplacement)))
        return .object(pairs)
    }

    static func drift(_ d: Drift) -> JSON.Node {
        var pairs: [(String, JSON.Node)] = [("address", .string(d.address.description)), ("message", .string(d.message))]
        if let path = d.path { pairs.append(("path", .string(path.name))) }
        if let r = d.recorded { pairs.append(("recorded", r.json)) }
        if let o = d.observed { pairs.append(("observed", o.json)) }
        return .object(pairs)
    }
}
