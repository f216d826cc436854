/// The kinds of resources tupp manages, in dependency order: a container needs its
/// image, volumes and network; a volume is seeded from an image; an image needs the pool
/// (and its layers, which the image pulls make; only their removal is planned). Each kind
/// has its attribute schema, desired state and interpretation in Kinds/, and its
/// reconciler in TuppEngine.
public enum ResourceKind: String, CaseIterable, Sendable, Comparable, Codable {
    case pool, image, layer, volume, network, container, ports

    public static func < (a: ResourceKind, b: ResourceKind) -> Bool {
        allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
    }

    /// How each attribute of this kind is applied when it changes.
    public var schema: AttributeSchema {
        switch self {
        case .pool: PoolAttribute.schema
        case .image: ImageAttribute.schema
        case .layer: LayerAttribute.schema
        case .volume: VolumeAttribute.schema
        case .network: NetworkAttribute.schema
        case .container: ContainerAttribute.schema
        case .ports: PortsAttribute.schema
        }
    }

    /// One resource for the whole installation, whatever project applies: not scoped to
    /// projects (every project's plan computes it from every project's containers).
    public var isInstallationWide: Bool { self == .ports }
}

/// `container.web`, `image.box`, `network.br0`, `pool.main`.
public struct ResourceAddress: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var kind: ResourceKind
    public var name: String

    public init(_ kind: ResourceKind, _ name: String) {
        self.kind = kind
        self.name = name
    }

    public init?(_ text: String) {
        let parts = text.split(separator: ".", maxSplits: 1)
        guard parts.count == 2, let kind = ResourceKind(rawValue: String(parts[0])) else { return nil }
        self.init(kind, String(parts[1]))
    }

    public var description: String { "\(kind.rawValue).\(name)" }

    public static func < (a: ResourceAddress, b: ResourceAddress) -> Bool { (a.kind, a.name) < (b.kind, b.name) }
}

/// An attribute value: what the plan compares and prints.
public enum Value: Hashable, Sendable, CustomStringConvertible {
    case string(String)
    case int(Int64)
    case bool(Bool)
    case list([Value])

    public var description: String {
        switch self {
        case .string(let s): return "\"\(Value.escape(s))\""
        case .int(let i): return String(i)
        case .bool(let b): return String(b)
        case .list(let items): return "[" + items.map(\.description).joined(separator: ", ") + "]"
        }
    }

    static func escape(_ s: String) -> String {
        var out = ""
        for c in s.unicodeScalars {
            switch c {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            default:
                if c.value < 0x20 { out += "\\u{\(String(c.value, radix: 16))}" } else { out.unicodeScalars.append(c) }
            }
        }
        return out
    }

    public static func strings(_ items: [String]) -> Value { .list(items.map(Value.string)) }

    /// The text of a `.string`, nil otherwise.
    public var string: String? { if case .string(let s) = self { s } else { nil } }
}

/// How a changed attribute is applied.
public enum ChangeEffect: Int, Comparable, Sendable {
    /// Changed on the live object: a hostname through setns, an address on a link.
    case inPlace
    /// The container's process is restarted on the same snapshot.
    case restart
    /// The object is destroyed and created again (a container's writable snapshot is lost).
    case replace

    public static func < (a: ChangeEffect, b: ChangeEffect) -> Bool { a.rawValue < b.rawValue }

    /// "in-place", "restart", "replace" (plan JSON).
    public var name: String { ["in-place", "restart", "replace"][rawValue] }
}

/// An attribute's path within its resource: "hostname", "network.address", "env.TERM".
/// Each kind declares its paths once, as constants with their rules (Kinds/); nothing
/// else spells them.
public struct AttributePath: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let name: String

    public init(_ name: String) { self.name = name }

    /// A keyed member of a family: `env.child("TERM")` is "env.TERM".
    public func child(_ key: String) -> AttributePath { AttributePath("\(name).\(key)") }

    /// True for "env.TERM" within "env", and for "network.address" within "network".
    public func isWithin(_ family: AttributePath) -> Bool { name.hasPrefix(family.name + ".") }

    /// The key of a family member: "TERM" for "env.TERM" in "env".
    public func key(in family: AttributePath) -> String? {
        isWithin(family) ? String(name.dropFirst(family.name.count + 1)) : nil
    }

    public var description: String { name }

    public static func < (a: AttributePath, b: AttributePath) -> Bool { a.name < b.name }

    /// Every kind's `protect: true`: never destroyed or replaced, changed in place.
    public static let protect = AttributePath("protect")
}

/// A resource's attributes by path.
public typealias Attributes = [AttributePath: Value]

/// How a change of one attribute — or of any member of a family ("env" covers
/// "env.TERM") — is applied, and whether the manifest may leave it out.
public struct AttributeRule: Sendable {
    public var path: AttributePath
    public var effect: ChangeEffect
    /// The rule covers the family's members (`env.*`), not one path.
    public var family: Bool
    /// The manifest may omit it: when it disappears, the plan shows it removed.
    public var optional: Bool

    public init(_ path: AttributePath, _ effect: ChangeEffect, family: Bool = false, optional: Bool = false) {
        self.path = path
        self.effect = effect
        self.family = family
        self.optional = optional
    }
}

/// A kind's attributes and their rules.
public struct AttributeSchema: Sendable {
    public var rules: [AttributeRule]

    public init(_ rules: [AttributeRule]) { self.rules = rules }

    public func rule(for path: AttributePath) -> AttributeRule? {
        rules.first { $0.family ? path.isWithin($0.path) : $0.path == path }
    }

    /// An attribute no rule knows (a record from another tupp version, say) is assumed to
    /// need the strongest effect rather than be silently changed in place.
    public func effect(of path: AttributePath) -> ChangeEffect {
        path == .protect ? .inPlace : rule(for: path)?.effect ?? .replace
    }

    public func isOptional(_ path: AttributePath) -> Bool { rule(for: path)?.optional ?? false }
}

/// The resolved desired value a reconciler applies: defaults computed once, by the
/// kind's `desired`, and carried in the plan to the executor (never re-derived there).
public protocol ResourceSpec: Sendable {
    func isEqual(to other: any ResourceSpec) -> Bool
}

extension ResourceSpec where Self: Equatable {
    public func isEqual(to other: any ResourceSpec) -> Bool { (other as? Self) == self }
}

/// Something about a live object that needs an action whatever its attributes say:
/// "process not running", "snapshot of an older image", "pool not mounted". Each kind
/// has its own enum of them (Kinds/).
public protocol ResourceCondition: Sendable, CustomStringConvertible {
    var effect: ChangeEffect { get }
    func isEqual(to other: any ResourceCondition) -> Bool
}

extension ResourceCondition where Self: Equatable {
    public func isEqual(to other: any ResourceCondition) -> Bool { (other as? Self) == self }
}

/// A resource as the manifest wants it.
public struct DesiredResource: Sendable, Equatable {
    public var address: ResourceAddress
    /// What the plan shows and compares, by typed path.
    public var attributes: Attributes
    public var dependencies: [ResourceAddress]
    public var protect: Bool
    /// The value the reconciler applies.
    public var spec: (any ResourceSpec)?
    /// Where the manifest declares it ("web.yaml:12:3"), for messages about projects.
    public var location: String?
    /// Printed with its change ("127.0.0.1:5000/web:1.4 → sha256:…").
    public var notes: [String] = []

    public init(_ address: ResourceAddress, attributes: Attributes, dependencies: [ResourceAddress] = [],
                protect: Bool = false, spec: (any ResourceSpec)? = nil) {
        self.address = address
        self.attributes = attributes
        self.dependencies = dependencies
        self.protect = protect
        self.spec = spec
    }

    /// The spec, as the reconciler of this kind knows it.
    public func spec<S: ResourceSpec>(_ type: S.Type) -> S? { spec as? S }

    public static func == (a: DesiredResource, b: DesiredResource) -> Bool {
        a.address == b.address && a.attributes == b.attributes && a.dependencies == b.dependencies && a.protect == b.protect
            && sameSpec(a.spec, b.spec) && a.notes == b.notes
    }
}

func sameSpec(_ a: (any ResourceSpec)?, _ b: (any ResourceSpec)?) -> Bool {
    switch (a, b) {
    case (nil, nil): true
    case (let a?, let b?): a.isEqual(to: b)
    default: false
    }
}

/// A resource as the live host shows it.
public struct ObservedResource: Sendable, Equatable {
    public var address: ResourceAddress
    /// Live attributes, in the same paths as the desired ones. For facts the kernel
    /// cannot tell (a container's command), the value tupp recorded when it applied.
    public var attributes: Attributes
    /// tupp created this object (it has a record / ownership mark).
    public var owned: Bool
    public var conditions: [any ResourceCondition]
    /// Differences between what tupp recorded and what the host shows now.
    public var drift: [Drift]
    public var protect: Bool
    /// A foreign object tupp uses but never changes or deletes (an existing bridge such as
    /// docker0 whose address matches the declared network).
    public var external: Bool
    /// What tupp applied, as recorded (nil without a record): what another project declared,
    /// as opposed to what the host shows now.
    public var recorded: Attributes?
    /// The projects that declare it, with where (from its record): empty for a record
    /// made before projects existed; nil when no record tells (leftovers of this
    /// installation without a record, which any project's apply clears).
    public var projects: [String: String]?

    public init(_ address: ResourceAddress, attributes: Attributes = [:], owned: Bool = true,
                conditions: [any ResourceCondition] = [], drift: [Drift] = [], protect: Bool = false, external: Bool = false) {
        self.address = address
        self.attributes = attributes
        self.owned = owned
        self.conditions = conditions
        self.drift = drift
        self.protect = protect
        self.external = external
    }

    public static func == (a: ObservedResource, b: ObservedResource) -> Bool {
        a.address == b.address && a.attributes == b.attributes && a.owned == b.owned && a.drift == b.drift
            && a.protect == b.protect && a.external == b.external && a.projects == b.projects && a.conditions.count == b.conditions.count
            && zip(a.conditions, b.conditions).allSatisfy { $0.isEqual(to: $1) }
    }
}

/// "Changed outside tupp": recorded ≠ observed.
public struct Drift: Sendable, Equatable {
    public var address: ResourceAddress
    public var message: String
    public var path: AttributePath?
    public var recorded: Value?
    public var observed: Value?

    public init(_ address: ResourceAddress, _ message: String, path: AttributePath? = nil, recorded: Value? = nil, observed: Value? = nil) {
        self.address = address
        self.message = message
        self.path = path
        self.recorded = recorded
        self.observed = observed
    }
}

/// Everything observed on the host, by address. A missing address means "absent".
public struct ObservedState: Sendable, Equatable {
    public var resources: [ResourceAddress: ObservedResource]
    /// Problems found while observing that block applying (e.g. a foreign object in
    /// the way, a subnet that overlaps a host route).
    public var problems: [String]
    /// Drift about objects the plan treats as absent (a subvolume deleted by hand).
    public var drift: [Drift]
    /// What the plan should say although it does not block it (a registry that did not
    /// answer, so a tag is taken as unchanged).
    public var warnings: [String] = []

    public init(_ resources: [ObservedResource] = [], problems: [String] = [], drift: [Drift] = []) {
        self.resources = Dictionary(resources.map { ($0.address, $0) }, uniquingKeysWith: { a, _ in a })
        self.problems = problems
        self.drift = drift
    }

    /// Adds what one kind's interpretation found.
    public mutating func merge(_ kind: KindObservation) {
        for resource in kind.resources { resources[resource.address] = resource }
        problems += kind.problems
        drift += kind.drift
        warnings += kind.warnings
    }
}

/// What interpreting one kind's facts found: the observed resources, drift about objects
/// the plan treats as absent, blocking problems, and a short description of each live
/// object's identity (a saved plan is stale when one of these moves).
public struct KindObservation: Sendable, Equatable {
    public var resources: [ObservedResource] = []
    public var drift: [Drift] = []
    public var problems: [String] = []
    public var warnings: [String] = []
    public var fingerprints: [ResourceAddress: String] = [:]

    public init() {}

    public subscript(address: ResourceAddress) -> ObservedResource? {
        resources.first { $0.address == address }
    }
}
