import TuppBase
import TuppFacts
import TuppManifest

/// An image's attributes: any change of its source replaces it.
public enum ImageAttribute {
    public static let source = AttributePath("source")
    /// The identity of the source's bytes ("sha256:…"): a rewritten tarball replaces the image.
    public static let digest = AttributePath("digest")

    public static let schema = AttributeSchema([
        AttributeRule(source, .replace),
        AttributeRule(digest, .replace),
    ])
}

/// What the image reconciler applies.
public struct ImageSpec: ResourceSpec, Equatable {
    public var image: Image

    public init(_ image: Image) { self.image = image }
}

/// Why an image needs work although its attributes match.
public enum ImageCondition: ResourceCondition, Equatable {
    case importUnfinished
    case notTheImportedSubvolume(name: String)
    case writable(name: String)
    case leftoverImport(subvolume: String)

    public var effect: ChangeEffect {
        switch self {
        case .leftoverImport: .inPlace
        default: .replace
        }
    }

    public var description: String {
        switch self {
        case .importUnfinished: "an earlier import did not finish"
        case .notTheImportedSubvolume(let name): "images/\(name) is not the subvolume tupp imported"
        case .writable(let name): "images/\(name) is writable; images are read-only"
        case .leftoverImport(let subvolume): "an interrupted import left images/\(subvolume); it is removed"
        }
    }
}

extension Record {
    /// The UUID of the subvolume tupp imported (image records).
    public var imageSubvolumeUUID: String? {
        get { facts["uuid"] }
        set { facts["uuid"] = newValue }
    }
}

/// What the image reconciler read from the host.
public struct ImageFacts: Sendable {
    /// The pool's subvolumes; nil while the pool is not mounted (its records are then all
    /// there is — mounting comes first).
    public var contents: PoolContents?
    /// Identity of each declared image's source ("sha256:…").
    public var sourceDigests: [String: String]
    /// Why a declared image's source could not be read.
    public var sourceErrors: [String: String]

    public init(contents: PoolContents?, sourceDigests: [String: String] = [:], sourceErrors: [String: String] = [:]) {
        self.contents = contents
        self.sourceDigests = sourceDigests
        self.sourceErrors = sourceErrors
    }
}

/// Images: read-only subvolumes images/NAME. Pure.
public enum ImageKind {
    public static func desired(_ image: Image, digest: String?, pool: ResourceAddress?) -> DesiredResource {
        var attributes: Attributes = [ImageAttribute.source: .string(image.source.description)]
        if let digest { attributes[ImageAttribute.digest] = .string(digest) }
        return DesiredResource(ResourceAddress(.image, image.name), attributes: attributes, dependencies: pool.map { [$0] } ?? [],
                               protect: image.protect, spec: ImageSpec(image))
    }

    /// `destroying`: what is gone stays gone, so a record whose subvolume is missing (a
    /// removal interrupted after deleting it) is shown for the plan to delete.
    public static func interpret(declared: [String: Image], records: [String: Record], facts: ImageFacts,
                                 destroying: Bool = false) -> KindObservation {
        var out = KindObservation()
        for (name, error) in facts.sourceErrors.sorted(by: { $0.key < $1.key }) {
            out.problems.append("image.\(name): cannot read its source \(declared[name]?.source.description ?? "?"): \(error)")
        }
        var names = Set(declared.keys).union(records.keys)
        if let contents = facts.contents {
            names.formUnion(contents.images.keys)
            names.formUnion(contents.leftovers.compactMap(PoolContents.importedImageName))
        }
        for name in names.sorted() {
            let address = ResourceAddress(.image, name)
            let record = records[name]
            guard let contents = facts.contents else {
                if let record, record.status == .ready || record.status == .updating {
                    out.resources.append(ObservedResource(address, attributes: record.attributes, protect: record.protect))
                }
                continue
            }
            let leftovers = contents.leftovers.filter { PoolContents.importedImageName($0) == name }
            let cleanup: [any ResourceCondition] = leftovers.map { ImageCondition.leftoverImport(subvolume: Paths.basename($0.path)) }
            if let subvolume = contents.images[name] {
                guard let record else {
                    out.resources.append(ObservedResource(address, owned: false))
                    continue
                }
                var resource = ObservedResource(address, attributes: record.attributes, conditions: cleanup, protect: record.protect)
                if record.status == .creating || record.status == .deleting {
                    resource.conditions.append(ImageCondition.importUnfinished)
                } else if let uuid = record.imageSubvolumeUUID, uuid != subvolume.uuid {
                    resource.drift.append(Drift(address, "images/\(name) was replaced outside tupp (subvolume \(uuid) → \(subvolume.uuid))"))
                    resource.conditions.append(ImageCondition.notTheImportedSubvolume(name: name))
                }
                if !subvolume.readOnly {
                    resource.drift.append(Drift(address, "images/\(name) was made writable"))
                    resource.conditions.append(ImageCondition.writable(name: name))
                }
                out.fingerprints[address] = "subvolume \(subvolume.uuid) generation \(subvolume.generation)"
                out.resources.append(resource)
                continue
            }
            if let record, record.status == .ready {
                out.drift.append(Drift(address, "images/\(name) was deleted outside tupp"))
            }
            if declared[name] != nil && !destroying {
                // Absent for the planner, which creates it; the reconciler clears leftovers first.
                out.drift += leftovers.map { Drift(address, "an interrupted import left images/\(Paths.basename($0.path))") }
            } else if record != nil || !leftovers.isEmpty {
                // Not declared: the planner deletes it, which removes leftovers and the record.
                out.resources.append(ObservedResource(address, attributes: record?.attributes ?? [:],
                                                      conditions: cleanup, protect: record?.protect ?? false))
            }
        }
        return out
    }
}
