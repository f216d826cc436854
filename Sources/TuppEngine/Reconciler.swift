import Logging
import TuppBase
import TuppManifest
import TuppPlan
import TuppRuntime

/// One kind of resource on the host (DESIGN rule 12).
///
/// *observe* reads the host — I/O only — and hands the facts to the kind's pure
/// interpretation in TuppPlan/Kinds/, which decides what is drift and what needs doing;
/// *apply* carries out one planned change of the kind, recording intent before each
/// side effect. The engine runs the reconcilers in dependency order and knows nothing
/// else about the kinds.
protocol Reconciler: Sendable {
    var kind: ResourceKind { get }
    func observe(_ observation: inout Observation, _ context: ObserveContext) async
    func apply(_ change: Plan.ResourceChange, _ context: ApplyContext) async throws
}

/// What every reconciler's observation needs.
struct ObserveContext: Sendable {
    let manifest: Manifest
    let store: StateStore
    let runtime: Runtime
    let installation: String
    let logger: Logger
    /// Planning a destroy: what only matters for resources that stay is not checked.
    let destroying: Bool
    /// Observing for an apply, under the host lock: caches (source digests) may be
    /// written. A plan alone writes nothing.
    let updatesCaches: Bool
    /// The project planned for (nil: projects not in play).
    let project: String?
    /// Registries may be asked what tags point to (false: `--refresh=false`).
    var refresh = true
}

/// What every reconciler's apply needs: the services, and what observation found.
struct ApplyContext: Sendable {
    let store: StateStore
    let runtime: Runtime
    let installation: String
    let logger: Logger
    let options: PlanOptions
    let observation: Observation
    /// Progress lines for the resource being changed ("120 MiB (240 MiB/s)", warnings).
    let progress: @Sendable (String) -> Void
    /// Each layer's progress while an image is pulled or imported from layers.
    var layerProgress: @Sendable (LayerProgress) -> Void = { _ in }
    /// The projects declaring the resource once this change is applied (nil: as recorded).
    var projects: [String: String]? = nil

    func record(_ address: ResourceAddress) -> Record? { observation.records[address] }

    /// Saves `record` atomically with the projects that declare it.
    func save(_ record: Record) throws {
        var record = record
        record.projects = projects ?? observation.records[record.address]?.projects ?? record.projects
        try store.save(record)
    }

    /// The pool's root: declared, or recorded when the manifest no longer declares storage.
    var poolRoot: String? {
        if let root = observation.facts[PoolFacts.self]?.storage?.root { return root }
        return observation.records[PoolKind.address]?.attributes[PoolAttribute.root]?.string
    }
}

/// Everything one plan saw on the live host, plus what the reconcilers need to act on it.
public struct Observation: Sendable {
    public var state = ObservedState()
    public var records: [ResourceAddress: Record] = [:]
    /// A short description of each observed object's identity; a saved plan is stale
    /// when any of these differ at apply time.
    public var fingerprints: [ResourceAddress: String] = [:]
    /// Values the desired state needs from the host (source digests) or the records
    /// (allocated addresses).
    public var desiredContext = DesiredContext()
    /// What each reconciler read, for the kinds after it and for its own apply.
    var facts = FactStore()

    /// Adds one kind's interpretation.
    mutating func merge(_ kind: KindObservation) {
        state.merge(kind)
        fingerprints.merge(kind.fingerprints) { _, new in new }
    }

    /// The records of one kind, by name.
    func records(of kind: ResourceKind) -> [String: Record] {
        var out: [String: Record] = [:]
        for (address, record) in records where address.kind == kind { out[address.name] = record }
        return out
    }
}

/// Facts by type: each reconciler stores the values it read under its own type, and the
/// kinds after it (or its apply) read them back.
struct FactStore: Sendable {
    private var values: [ObjectIdentifier: any Sendable] = [:]

    subscript<T: Sendable>(_ type: T.Type) -> T? {
        get { values[ObjectIdentifier(type)] as? T }
        set { values[ObjectIdentifier(type)] = newValue }
    }
}
