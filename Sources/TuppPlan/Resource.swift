/// The kinds of resources tupp manages, in dependency order: a container needs its
/// image and network, an image needs the pool.
public enum ResourceKind: String, CaseIterable, Sendable, Comparable, Codable {
    case pool, image, network, container

    public static func < (a: ResourceKind, b: ResourceKind) -> Bool {
        allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
    }
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
}

/// A resource as the manifest wants it.
public struct DesiredResource: Sendable, Equatable {
    public var address: ResourceAddress
    /// Flat attribute paths ("network.address", "env.TERM") to values.
    public var attributes: [String: Value]
    public var dependencies: [ResourceAddress]
    public var protect: Bool

    public init(_ address: ResourceAddress, attributes: [String: Value], dependencies: [ResourceAddress] = [], protect: Bool = false) {
        self.address = address
        self.attributes = attributes
        self.dependencies = dependencies
        self.protect = protect
    }
}

/// A resource as the live host shows it.
public struct ObservedResource: Sendable, Equatable {
    /// Something about the live object that needs an action regardless of attributes:
    /// "process not running", "snapshot of an older image", "pool not mounted".
    public struct Condition: Sendable, Equatable {
        public var message: String
        public var effect: ChangeEffect

        public init(_ message: String, effect: ChangeEffect) {
            self.message = message
            self.effect = effect
        }
    }

    public var address: ResourceAddress
    /// Live attributes, in the same paths as the desired ones. For facts the kernel
    /// cannot tell (a container's command), the value tupp recorded when it applied.
    public var attributes: [String: Value]
    /// tupp created this object (it has a record / ownership mark).
    public var owned: Bool
    public var conditions: [Condition]
    /// Differences between what tupp recorded and what the host shows now.
    public var drift: [Drift]
    public var protect: Bool
    /// A foreign object tupp uses but never changes or deletes (an existing bridge such as
    /// docker0 whose address matches the declared network).
    public var external: Bool

    public init(_ address: ResourceAddress, attributes: [String: Value] = [:], owned: Bool = true,
                conditions: [Condition] = [], drift: [Drift] = [], protect: Bool = false, external: Bool = false) {
        self.address = address
        self.attributes = attributes
        self.owned = owned
        self.conditions = conditions
        self.drift = drift
        self.protect = protect
        self.external = external
    }
}

/// "Changed outside tupp": recorded ≠ observed.
public struct Drift: Sendable, Equatable {
    public var address: ResourceAddress
    public var message: String
    public var path: String?
    public var recorded: Value?
    public var observed: Value?

    public init(_ address: ResourceAddress, _ message: String, path: String? = nil, recorded: Value? = nil, observed: Value? = nil) {
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

    public init(_ resources: [ObservedResource] = [], problems: [String] = [], drift: [Drift] = []) {
        self.resources = Dictionary(resources.map { ($0.address, $0) }, uniquingKeysWith: { a, _ in a })
        self.problems = problems
        self.drift = drift
    }
}
