import TuppBase

/// What tupp records about a resource it owns: the facts the kernel cannot tell (that tupp
/// created it, what it was built from) and the values it applied. Written atomically
/// *before* each side effect (status `creating` / `updating` / `deleting`) and again after
/// it, so a crash at any instant leaves a record the next plan can reconcile. Each kind reads and
/// writes its own facts through typed accessors (Kinds/); the keys are spelled there only.
public struct Record: Sendable, Equatable {
    public enum Status: String, Sendable {
        /// Intent recorded; the object may exist partially.
        case creating
        /// Created and recorded.
        case ready
        /// A change in place or a restart started: the attributes are still the ones from
        /// before it, and some of the change may already be done.
        case updating
        /// Removal started.
        case deleting
    }

    public var kind: ResourceKind
    public var name: String
    public var status: Status
    /// The attributes tupp applied (same paths as the plan's).
    public var attributes: Attributes
    /// Facts that identify the live object: subvolume UUID, link name, init pid, …
    public var facts: [String: String]
    public var protect: Bool
    /// The projects that declare the resource, each with where ("web.yaml:12:3"). One for a
    /// container; several for a shared pool, image or network; none in records made before
    /// projects existed.
    public var projects: [String: String] = [:]
    /// Seconds since the epoch of the last change (set by the store when it saves).
    public var updated: Double

    public init(kind: ResourceKind, name: String, status: Status, attributes: Attributes = [:],
                facts: [String: String] = [:], protect: Bool = false, updated: Double = 0) {
        self.kind = kind
        self.name = name
        self.status = status
        self.attributes = attributes
        self.facts = facts
        self.protect = protect
        self.updated = updated
    }

    public init(_ address: ResourceAddress, status: Status, attributes: Attributes = [:],
                facts: [String: String] = [:], protect: Bool = false) {
        self.init(kind: address.kind, name: address.name, status: status, attributes: attributes, facts: facts, protect: protect)
    }

    public var address: ResourceAddress { ResourceAddress(kind, name) }

    /// The record as a JSON object with sorted keys.
    public var json: JSON.Node {
        JSON.object([
            ("attributes", JSON.attributes(attributes)),
            ("facts", .object(facts.keys.sorted().map { ($0, .string(facts[$0]!)) })),
            ("kind", .string(kind.rawValue)),
            ("name", .string(name)),
            ("projects", .object(projects.keys.sorted().map { ($0, .string(projects[$0]!)) })),
            ("protect", .bool(protect)),
            ("status", .string(status.rawValue)),
            ("updated", .double(updated)),
        ])
    }

    public init?(json: JSON.Node) {
        guard let kind = json["kind"]?.string.flatMap(ResourceKind.init(rawValue:)), let name = json["name"]?.string,
              let status = json["status"]?.string.flatMap(Status.init(rawValue:)),
              case .object(let attributes)? = json["attributes"] else { return nil }
        var values: Attributes = [:]
        for (key, node) in attributes {
            guard let value = Value(json: node) else { return nil }
            values[AttributePath(key)] = value
        }
        var facts: [String: String] = [:]
        if case .object(let pairs)? = json["facts"] {
            for (key, node) in pairs { facts[key] = node.string }
        }
        self.init(kind: kind, name: name, status: status, attributes: values, facts: facts,
                  protect: json["protect"]?.bool ?? false, updated: json["updated"]?.double ?? 0)
        if case .object(let pairs)? = json["projects"] {
            for (project, node) in pairs { projects[project] = node.string ?? "" }
        }
    }
}

extension Value {
    /// An attribute value from JSON; nil for what no attribute holds (objects, null, fractions).
    public init?(json node: JSON.Node) {
        switch node {
        case .string(let s): self = .string(s)
        case .int(let i): self = .int(i)
        case .bool(let b): self = .bool(b)
        case .array(let items):
            let values = items.compactMap(Value.init(json:))
            guard values.count == items.count else { return nil }
            self = .list(values)
        default: return nil
        }
    }

    public var json: JSON.Node {
        switch self {
        case .string(let s): .string(s)
        case .int(let i): .int(i)
        case .bool(let b): .bool(b)
        case .list(let items): .array(items.map(\.json))
        }
    }
}

extension JSON {
    /// Attributes as an object with sorted keys; null for nil.
    public static func attributes(_ a: Attributes?) -> Node {
        guard let a else { return .null }
        return .object(a.keys.sorted().map { ($0.name, a[$0]!.json) })
    }
}
