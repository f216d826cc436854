/// What apply will do, and why.
public struct Plan: Sendable, Equatable {
    public enum Action: String, Sendable, Equatable, Codable {
        case create, update, replace, delete, noop = "no-op"

        /// Terraform's JSON action lists: replace is delete then create.
        public var jsonActions: [String] {
            switch self {
            case .create: ["create"]
            case .update: ["update"]
            case .replace: ["delete", "create"]
            case .delete: ["delete"]
            case .noop: ["no-op"]
            }
        }
    }

    /// One reason behind an action: an attribute that changes, a condition of the live
    /// object, or a change of a resource this one depends on.
    public struct Reason: Sendable, Equatable {
        /// The attribute path, when the reason is a changed attribute.
        public var path: AttributePath?
        public var before: Value?
        public var after: Value?
        /// The live object's condition, when that is the reason.
        public var condition: (any ResourceCondition)?
        /// The dependency whose change this follows ("image.box is replaced").
        public var dependency: ResourceAddress?
        /// A change of which projects declare the resource: only its record changes.
        public var membership: Membership?
        public var message: String?
        public var effect: ChangeEffect

        public init(path: AttributePath, before: Value?, after: Value?, effect: ChangeEffect) {
            self.path = path
            self.before = before
            self.after = after
            self.effect = effect
        }

        public init(_ condition: any ResourceCondition) {
            self.condition = condition
            message = condition.description
            effect = condition.effect
        }

        public init(dependency: ResourceAddress, message: String, effect: ChangeEffect) {
            self.dependency = dependency
            self.message = message
            self.effect = effect
        }

        public init(_ membership: Membership) {
            self.membership = membership
            message = membership.description
            effect = .inPlace
        }

        public var forcesReplacement: Bool { effect == .replace }

        public static func == (a: Reason, b: Reason) -> Bool {
            a.path == b.path && a.before == b.before && a.after == b.after && a.dependency == b.dependency && a.membership == b.membership
                && a.message == b.message && a.effect == b.effect
                && (a.condition == nil) == (b.condition == nil) && (a.condition.map { c in b.condition.map(c.isEqual) ?? false } ?? true)
        }
    }

    /// How the set of projects declaring a resource changes.
    public enum Membership: Sendable, Equatable, CustomStringConvertible {
        /// A resource made before projects existed, now declared by this project.
        case adopted(String)
        /// Another project's shared resource, now declared by this one too.
        case joined(String, alsoBy: [String])
        /// This project no longer declares it; the others keep it.
        case left(String)

        public var description: String {
            switch self {
            case .adopted(let p): "adopted into project \(p) (it was made before projects existed)"
            case .joined(let p, let others): "now also declared by project \(p) (shared with \(others.map { "project \($0)" }.joined(separator: ", ")))"
            case .left(let p): "no longer declared by project \(p)"
            }
        }
    }

    public struct ResourceChange: Sendable, Equatable {
        public var address: ResourceAddress
        public var action: Action
        public var before: Attributes?
        public var after: Attributes?
        public var reasons: [Reason]
        /// The strongest effect among the reasons (for updates: in place or a restart).
        public var effect: ChangeEffect?
        /// A note printed under the resource ("not in manifest", "the writable snapshot is discarded").
        public var notes: [String]
        /// The resolved desired value the reconciler applies; nil for removals of
        /// resources the manifest no longer declares.
        public var spec: (any ResourceSpec)?
        /// The projects that declare the resource once the change is applied, with where;
        /// nil when projects are not in play (the record keeps what it has).
        public var projects: [String: String]?

        public init(address: ResourceAddress, action: Action, before: Attributes?, after: Attributes?,
                    reasons: [Reason] = [], effect: ChangeEffect? = nil, notes: [String] = [], spec: (any ResourceSpec)? = nil,
                    projects: [String: String]? = nil) {
            self.projects = projects
            self.address = address
            self.action = action
            self.before = before
            self.after = after
            self.reasons = reasons
            self.effect = effect
            self.notes = notes
            self.spec = spec
        }

        /// The spec, as the reconciler of this kind knows it.
        public func spec<S: ResourceSpec>(_ type: S.Type) -> S? { spec as? S }

        /// True when `path` (or a member of the family `path`) is among the changed attributes.
        public func changes(_ path: AttributePath) -> Bool {
            reasons.contains { $0.path == path || $0.path?.isWithin(path) == true }
        }

        /// Only which projects declare it changes: the host is left alone, the record updated.
        public var isMembershipOnly: Bool { !reasons.isEmpty && reasons.allSatisfy { $0.membership != nil } }

        /// The conditions behind this change that are of the given kind's enum.
        public func conditions<C: ResourceCondition>(_ type: C.Type) -> [C] { reasons.compactMap { $0.condition as? C } }

        public static func == (a: ResourceChange, b: ResourceChange) -> Bool {
            a.address == b.address && a.action == b.action && a.before == b.before && a.after == b.after
                && a.reasons == b.reasons && a.effect == b.effect && a.notes == b.notes && sameSpec(a.spec, b.spec)
                && a.projects == b.projects
        }
    }

    /// Every resource, changed or not, in execution order: deletes (containers first),
    /// then creates/updates/replaces in dependency order.
    public var changes: [ResourceChange]
    /// The project planned for, when projects are in play.
    public var project: String?
    public var drift: [Drift]
    /// Blocking problems: the plan cannot be applied.
    public var errors: [String]
    public var warnings: [String]

    public init(changes: [ResourceChange] = [], drift: [Drift] = [], errors: [String] = [], warnings: [String] = []) {
        self.changes = changes
        self.drift = drift
        self.errors = errors
        self.warnings = warnings
    }

    public var actionable: [ResourceChange] { changes.filter { $0.action != .noop } }

    /// The note of a removal the manifest asked for by leaving the resource out.
    public static let notInManifest = "not in manifest"
    public var hasChanges: Bool { !actionable.isEmpty }

    public struct Summary: Sendable, Equatable {
        public var add = 0, change = 0, replace = 0, destroy = 0

        public init(add: Int = 0, change: Int = 0, replace: Int = 0, destroy: Int = 0) {
            self.add = add
            self.change = change
            self.replace = replace
            self.destroy = destroy
        }
    }

    public var summary: Summary {
        var s = Summary()
        for c in changes {
            switch c.action {
            case .create: s.add += 1
            case .update: s.change += 1
            case .replace: s.replace += 1
            case .delete: s.destroy += 1
            case .noop: break
            }
        }
        return s
    }
}

public struct PlanOptions: Sendable {
    /// Delete owned resources that left the manifest.
    public var prune = true
    /// Plan the removal of everything declared (tupp destroy).
    public var destroy = false
    /// With `destroy`: also delete the pool's image file.
    public var includeStorage = false
    /// Delete owned volumes that left the manifest (volumes are never pruned otherwise).
    public var pruneVolumes = false
    /// With `destroy`: also delete the declared volumes (kept otherwise).
    public var includeVolumes = false
    /// The project planned for: pruning and destroy are scoped to it, shared resources
    /// kept while other projects declare them. nil: every owned resource is this plan's.
    public var project: String?

    public init(prune: Bool = true, destroy: Bool = false, includeStorage: Bool = false, project: String? = nil,
                pruneVolumes: Bool = false, includeVolumes: Bool = false) {
        self.prune = prune
        self.destroy = destroy
        self.includeStorage = includeStorage
        self.project = project
        self.pruneVolumes = pruneVolumes
        self.includeVolumes = includeVolumes
    }
}

/// The pure planner: desired + observed → plan. No I/O, no system modules. What is
/// particular to a kind (the pool's rules, a container's lost snapshot) is in Kinds/.
public enum Planner {
    public static func plan(desired: [DesiredResource], observed: ObservedState, options: PlanOptions = PlanOptions()) -> Plan {
        var plan = Plan(drift: (observed.drift + observed.resources.values.flatMap(\.drift)).sorted { ($0.address, $0.message) < ($1.address, $1.message) },
                        errors: observed.problems)
        let desiredByAddress = Dictionary(desired.map { ($0.address, $0) }, uniquingKeysWith: { a, _ in a })
        var changes: [ResourceAddress: Plan.ResourceChange] = [:]

        plan.project = options.project
        if options.destroy {
            // Installation-wide resources (the port table) are changed to what stays, not
            // deleted with the project.
            for d in desired where d.address.kind.isInstallationWide {
                var change = diff(d, observed.resources[d.address], errors: &plan.errors)
                settle(&change, protect: false, errors: &plan.errors)
                changes[d.address] = change
            }
            for (address, o) in observed.resources where address.kind.isInstallationWide && desiredByAddress[address] == nil && o.owned {
                changes[address] = Plan.ResourceChange(address: address, action: .delete, before: o.attributes, after: nil)
            }
            for d in desired where !d.address.kind.isInstallationWide {
                guard let o = observed.resources[d.address] else { continue }
                if let project = options.project, o.owned, !o.external, !d.address.kind.isInstallationWide, let projects = o.projects {
                    // Another project's resource of the same name is never destroyed; a
                    // shared one is kept while other projects declare it.
                    if !projects.isEmpty && projects[project] == nil { continue }
                    if let kept = ProjectRules.leaving(o, project: project) {
                        changes[d.address] = kept
                        continue
                    }
                }
                if d.address.kind == .pool {
                    var teardown = PoolKind.teardown(o, includeStorage: options.includeStorage)
                    teardown.spec = d.spec
                    changes[d.address] = teardown
                    // Unmounting would fail (or strand them): everything in the pool must go too.
                    let declared = Set(desired.map(\.address))
                    let stranded = observed.resources.values.filter {
                        ($0.address.kind == .image || $0.address.kind == .container) && $0.owned && !declared.contains($0.address)
                    }.map(\.address).sorted()
                    if !stranded.isEmpty, changes[d.address]?.action == .delete {
                        plan.errors.append("pool.\(d.address.name) still holds \(stranded.map(\.description).joined(separator: ", ")), which these manifests do not declare; destroy with the manifests that declare them too")
                    }
                    continue
                }
                guard o.owned, !o.external else { continue }
                if d.address.kind == .volume && !options.includeVolumes && VolumeKind.holdsData(o) {
                    plan.warnings.append(VolumeKind.keptNote(o, destroying: true))
                    continue
                }
                if d.protect || o.protect {
                    plan.errors.append("\(d.address) is protected (protect: true); remove the flag and apply before destroying it")
                    changes[d.address] = Plan.ResourceChange(address: d.address, action: .noop, before: o.attributes, after: o.attributes)
                    continue
                }
                changes[d.address] = Plan.ResourceChange(address: d.address, action: .delete, before: o.attributes, after: nil,
                                                         notes: d.address.kind == .volume ? VolumeKind.deletionNotes(o) : [], spec: d.spec)
            }
            checkVolumeDeletions(&plan, changes, desired: desired, observed: observed, options: options)
            return finish(plan, changes)
        }

        // Creates, updates, replaces — in dependency order so replacements propagate.
        for d in desired.sorted(by: { $0.address < $1.address }) {
            let o = observed.resources[d.address]
            var change = diff(d, o, errors: &plan.errors)
            if d.address.kind == .volume { VolumeKind.judge(&change, drift: plan.drift) }
            if let project = options.project, !d.address.kind.isInstallationWide {
                ProjectRules.declare(d, o, project: project, &change, errors: &plan.errors)
            }
            if change.action != .create && change.action != .delete && (o?.owned ?? false || d.address.kind == .pool) {
                // A replaced image forces replacement of the containers built from it; a
                // replaced or new network re-plugs its containers in place.
                for dep in d.dependencies {
                    guard let depChange = changes[dep] else { continue }
                    if dep.kind == .image && depChange.action == .replace {
                        change.reasons.append(Plan.Reason(dependency: dep, message: "\(dep) is replaced", effect: .replace))
                    } else if dep.kind == .network && (depChange.action == .replace || depChange.action == .create) {
                        change.reasons.append(Plan.Reason(dependency: dep, message: "\(dep) is \(depChange.action == .replace ? "replaced" : "created"): plugged again", effect: .inPlace))
                    } else if dep.kind == .volume && depChange.action == .create && d.address.kind == .container {
                        // A volume deleted by hand lives on in the container's mount namespace until it restarts.
                        change.reasons.append(Plan.Reason(dependency: dep, message: "\(dep) is created", effect: .restart))
                    }
                }
                settle(&change, protect: d.protect || (o?.protect ?? false), errors: &plan.errors)
            }
            changes[d.address] = change
        }

        // Orphans: owned resources that left the manifest.
        for (address, o) in observed.resources where desiredByAddress[address] == nil && o.owned && !o.external {
            if let project = options.project, !address.kind.isInstallationWide, let projects = o.projects {
                if projects.isEmpty {
                    plan.warnings.append("\(address) was made before projects existed and project \(project) does not declare it; kept (declare it to adopt it into its project)")
                    continue
                }
                guard projects[project] != nil else { continue }   // another project's
                if let kept = ProjectRules.leaving(o, project: project) {
                    changes[address] = kept
                    continue
                }
            }
            if address.kind == .pool {
                plan.warnings.append("pool.\(address.name) is no longer declared; it is left as is (tupp never deletes a pool implicitly)")
                continue
            }
            if address.kind == .volume && VolumeKind.holdsData(o) && (!options.pruneVolumes || !options.prune) {
                plan.warnings.append(VolumeKind.keptNote(o, destroying: false))
                continue
            }
            if !options.prune {
                plan.warnings.append("\(address) is not in the manifest; kept because of --no-prune")
                continue
            }
            if o.protect {
                plan.warnings.append("\(address) is not in the manifest but protected (protect: true); kept")
                continue
            }
            changes[address] = Plan.ResourceChange(address: address, action: .delete, before: o.attributes, after: nil,
                                                   notes: [Plan.notInManifest] + (address.kind == .volume ? VolumeKind.deletionNotes(o) : []))
        }
        // An image still used by a container that stays cannot be deleted.
        for (address, change) in changes where address.kind == .image && change.action == .delete {
            let users = desired.filter { $0.dependencies.contains(address) }.map(\.address.name).sorted()
            if !users.isEmpty {
                plan.errors.append("\(address) is not in the manifest but container(s) \(users.joined(separator: ", ")) still use it")
            }
        }
        checkVolumeDeletions(&plan, changes, desired: desired, observed: observed, options: options)
        ContainerReadiness.propagateRestarts(&changes)
        return finish(plan, changes)
    }

    /// Desired vs observed for one resource.
    static func diff(_ d: DesiredResource, _ o: ObservedResource?, errors: inout [String]) -> Plan.ResourceChange {
        guard let o else {
            return Plan.ResourceChange(address: d.address, action: .create, before: nil, after: d.attributes, spec: d.spec)
        }
        var change = Plan.ResourceChange(address: d.address, action: .noop, before: o.attributes, after: d.attributes, spec: d.spec)
        if !o.owned && d.address.kind != .pool {
            errors.append("\(d.address) exists on the host but was not created by tupp; remove it or choose another name")
            return change
        }
        if o.external {
            let differing = d.attributes.keys.sorted().filter { o.attributes[$0] != d.attributes[$0] }
            if !differing.isEmpty {
                errors.append("\(d.address) uses an existing object tupp did not create and will not change; it differs in \(differing.map(\.name).joined(separator: ", "))")
            }
            return change
        }
        let schema = d.address.kind.schema
        for path in d.attributes.keys.sorted() where o.attributes[path] != d.attributes[path] {
            change.reasons.append(Plan.Reason(path: path, before: o.attributes[path], after: d.attributes[path], effect: schema.effect(of: path)))
        }
        // Attributes that were set and are no longer declared (an env var removed, say).
        for path in o.attributes.keys.sorted() where d.attributes[path] == nil && schema.isOptional(path) {
            change.reasons.append(Plan.Reason(path: path, before: o.attributes[path], after: nil, effect: schema.effect(of: path)))
        }
        if d.protect != o.protect {
            change.reasons.append(Plan.Reason(path: .protect, before: .bool(o.protect), after: .bool(d.protect), effect: .inPlace))
        }
        for condition in o.conditions {
            change.reasons.append(Plan.Reason(condition))
        }
        if d.address.kind == .pool { PoolKind.check(&change, errors: &errors) }
        return change
    }

    /// Sets the action from the strongest reason; refuses to replace protected resources.
    static func settle(_ change: inout Plan.ResourceChange, protect: Bool, errors: inout [String]) {
        guard change.action != .create && change.action != .delete else { return }
        let strongest = change.reasons.map(\.effect).max()
        change.effect = strongest
        switch strongest {
        case nil: change.action = .noop
        case .replace?:
            if protect {
                let why = change.reasons.filter(\.forcesReplacement).map(describe).joined(separator: "; ")
                errors.append("\(change.address) is protected (protect: true) but must be replaced (\(why)); remove the flag in a separate apply first")
            }
            change.action = .replace
        default: change.action = .update
        }
        if change.action == .replace && change.address.kind == .container {
            for note in ContainerKind.replacementNotes(change) where !change.notes.contains(note) { change.notes.append(note) }
        }
    }

    static func describe(_ r: Plan.Reason) -> String {
        if let path = r.path { return "\(path): \(r.before.map(\.description) ?? "none") → \(r.after.map(\.description) ?? "none")" }
        return r.message ?? ""
    }

    /// Orders changes for execution: deletes first (containers, networks, images), then
    /// everything else in dependency order, then volume deletes — after the containers that
    /// stay have been restarted without them — and last the pool's.
    static func finish(_ plan: Plan, _ changes: [ResourceAddress: Plan.ResourceChange]) -> Plan {
        var plan = plan
        let deletes = changes.values.filter { $0.action == .delete }.sorted { a, b in
            a.address.kind != b.address.kind ? a.address.kind > b.address.kind : a.address.name < b.address.name
        }
        let late: Set<ResourceKind> = [.volume, .pool]
        let rest = changes.values.filter { $0.action != .delete }.sorted { $0.address < $1.address }
        plan.changes = deletes.filter { !late.contains($0.address.kind) } + rest + deletes.filter { late.contains($0.address.kind) }
        return plan
    }

    /// A volume is never deleted while a container that stays mounts it, and never with
    /// the pool's file unless volumes are included.
    static func checkVolumeDeletions(_ plan: inout Plan, _ changes: [ResourceAddress: Plan.ResourceChange], desired: [DesiredResource],
                                     observed: ObservedState, options: PlanOptions) {
        for (address, change) in changes.sorted(by: { $0.key < $1.key }) where address.kind == .volume && change.action == .delete {
            let users = VolumeKind.usersAfter(address, desired: desired, observed: observed, changes: changes, destroying: options.destroy)
            if !users.isEmpty {
                plan.errors.append("\(address) cannot be deleted: container \(users.joined(separator: ", container ")) mounts it and is not removed by this plan; remove the mount (or the container) first")
            }
        }
        guard options.destroy, options.includeStorage, let pool = changes[PoolKind.address], pool.action == .delete,
              pool.before?[PoolAttribute.deviceFile] != nil else { return }
        let kept = observed.resources.values.filter {
            $0.address.kind == .volume && $0.owned && VolumeKind.holdsData($0) && changes[$0.address]?.action != .delete
        }.map(\.address).sorted()
        if !kept.isEmpty {
            plan.errors.append("pool.\(pool.address.name): --include-storage would delete \(kept.map(\.description).joined(separator: ", ")) with the pool's file; add --include-volumes to delete declared volumes too (undeclared ones first need apply --prune-volumes), or keep the file")
        }
    }
}
