/// How projects share a host (issue 21, Compose's project scoping): each resource's
/// record names the projects that declare it. A project prunes and destroys only its
/// own; the pool, images and networks may be declared by several projects, identically,
/// and stay while any declares them; a container belongs to exactly one.
public enum ProjectRules {
    /// `d` declared by `project`, against what is recorded: adoption of a resource made
    /// before projects, joining another project's shared resource, or a refusal.
    static func declare(_ d: DesiredResource, _ o: ObservedResource?, project: String, _ change: inout Plan.ResourceChange,
                        errors: inout [String]) {
        let here = d.location ?? "the manifest"
        guard let o, o.owned, !o.external else {
            if change.action == .create || change.action == .replace { change.projects = [project: here] }
            return
        }
        let recorded = o.projects ?? [:]
        let others = recorded.filter { $0.key != project }
        // What another project declared is what tupp recorded; a difference the host shows
        // now (drift) is repaired, not a conflict.
        let declared = o.recorded ?? o.attributes
        let differing = d.attributes.keys.sorted().filter { declared[$0] != d.attributes[$0] }
        if !others.isEmpty && recorded[project] == nil && d.address.kind == .container {
            errors.append("\(d.address) belongs to project \(describe(others)); container names are unique on a host — rename the one at \(here)")
            change = Plan.ResourceChange(address: d.address, action: .noop, before: o.attributes, after: d.attributes)
            return
        }
        if !others.isEmpty && !differing.isEmpty {
            errors.append("\(d.address) is declared differently by project \(project) (\(here)) and by project \(describe(others)): it differs in \(differing.map(\.name).joined(separator: ", ")); a resource several projects declare must be declared the same in each")
            change = Plan.ResourceChange(address: d.address, action: .noop, before: o.attributes, after: d.attributes)
            return
        }
        if recorded.isEmpty {
            change.reasons.append(Plan.Reason(.adopted(project)))
        } else if recorded[project] == nil {
            change.reasons.append(Plan.Reason(.joined(project, alsoBy: others.keys.sorted())))
        }
        var projects = recorded
        projects[project] = here
        change.projects = projects   // the planner settles the action from the reasons
    }

    /// `project` no longer declares `o`: when other projects still do, a change of its
    /// record only, kept for them; nil when the resource is this project's alone.
    static func leaving(_ o: ObservedResource, project: String) -> Plan.ResourceChange? {
        guard var others = o.projects else { return nil }
        others[project] = nil
        guard !others.isEmpty else { return nil }
        return Plan.ResourceChange(address: o.address, action: .update, before: o.attributes, after: o.attributes,
                                   reasons: [Plan.Reason(.left(project))], effect: .inPlace,
                                   notes: ["kept: also declared by \(others.keys.sorted().map { "project \($0)" }.joined(separator: ", "))"],
                                   projects: others)
    }

    /// "monitoring (monitoring.yaml:4:3)", for several: each.
    static func describe(_ projects: [String: String]) -> String {
        projects.keys.sorted().map { "\($0) (\(projects[$0]!.isEmpty ? "no location recorded" : projects[$0]!))" }.joined(separator: ", project ")
    }

    /// The recorded containers a plan for `project` keeps without declaring them: other
    /// projects' (and, without projects in play, none — undeclared ones are pruned).
    /// Records made before projects are kept by every project until one adopts them.
    public static func keptContainers(_ records: [String: Record], declared: Set<String>, project: String?) -> [KeptContainer] {
        guard let project else { return [] }
        return records.values.filter { !declared.contains($0.name) && $0.projects[project] == nil }
            .sorted { $0.name < $1.name }.compactMap(KeptContainer.init)
    }
}
