import TuppBase
import TuppFacts
import TuppManifest
import TuppPlan
import TuppRegistry
import TuppStorage
import TuppSystem

/// Images: sources identified by digest (files cached by stamp, registry tags by one
/// HEAD), subvolumes listed by the pool reconciler, each layered image's config and
/// layers read from its metadata (or, for one about to be pulled, its manifest and
/// config); judged by `ImageKind`; imported, pulled and deleted through `ImageStore`.
struct ImageReconciler: Reconciler {
    var kind: ResourceKind { .image }

    /// Tags are resolved with fewer retries than a pull makes: a registry that is down
    /// costs a plan a second, not the half minute a pull would wait it out.
    static let resolveRetry = RetryPolicy(attempts: 3)

    func observe(_ observation: inout Observation, _ context: ObserveContext) async {
        let contents = observation.facts[PoolFacts.self]?.contents
        var facts = ImageFacts(contents: contents)
        let records = observation.records(of: .image)
        let store = ImageStore(poolRoot: context.manifest.storage?.root ?? "", retry: Self.resolveRetry)
        var warnings: [String] = []
        for (name, image) in context.manifest.images.sorted(by: { $0.key < $1.key }) {
            // What the image is built from now, with its metadata when layered.
            let pulled = contents?.images[name] == nil || !image.source.carriesConfig ? nil : try? store.metadata(of: name)
            do {
                switch image.source {
                case .registry(let registry):
                    // A destroy needs no digest: nothing is asked.
                    guard !context.destroying else { continue }
                    let source = try RegistrySource(registry)
                    let resolution: RegistryResolution
                    if let digest = source.reference.digest {
                        resolution = .pinned(digest)
                    } else if !context.refresh {
                        resolution = .notAsked
                    } else {
                        do { resolution = .resolved(try store.resolve(source)) } catch where RegistryClient.isUnreachable(error) {
                            resolution = .unreachable("\(error)")
                        }
                    }
                    let (digest, warning) = ImageKind.registryDigest(registry, name: name, resolution: resolution,
                                                                     pulled: ImageKind.pulledDigest(image, record: records[name]))
                    if let warning { warnings.append(warning) }
                    facts.sourceDigests[name] = digest
                    if let pulled, let digest, pulled.digest == digest {
                        observation.desiredContext.imageDefaults[name] = .config(pulled.config)
                        observation.desiredContext.imageLayers[name] = pulled.layers
                    } else if let digest, context.refresh, resolution.answered {
                        // About to be pulled: its config and layers, without any layer.
                        do {
                            let described = try store.describe(source.pinned(to: digest))
                            observation.desiredContext.imageDefaults[name] = .config(described.config)
                            observation.desiredContext.imageLayers[name] = described.layers
                        } catch where RegistryClient.isUnreachable(error) {
                            warnings.append("image.\(name): registry \(source.reference.registry) did not answer (\(error)); what its config gives containers is known once it is pulled")
                        }
                    }
                case .oci(let layout, let tag):
                    let digest = try ImageStore.identify(image.source, cacheDirectory: context.store.cacheDirectory,
                                                         updatingCache: context.updatesCaches)
                    facts.sourceDigests[name] = digest
                    let described: (config: ImageConfig, layers: [String])
                    if let pulled, pulled.digest == digest {
                        described = (pulled.config, pulled.layers)
                    } else {
                        let fromLayout = try store.describe(layout: layout, tag: tag)
                        described = (fromLayout.config, fromLayout.layers)
                    }
                    observation.desiredContext.imageDefaults[name] = .config(described.config)
                    observation.desiredContext.imageLayers[name] = described.layers
                case .busybox, .tar, .directory:
                    facts.sourceDigests[name] = try ImageStore.identify(image.source, cacheDirectory: context.store.cacheDirectory,
                                                                        updatingCache: context.updatesCaches)
                    observation.desiredContext.imageDefaults[name] = ImageDefaults.none
                    observation.desiredContext.imageLayers[name] = []
                }
            } catch {
                facts.sourceErrors[name] = "\(error)"
            }
        }
        observation.desiredContext.imageDigests = facts.sourceDigests
        var interpreted = ImageKind.interpret(declared: context.manifest.images, records: records, facts: facts,
                                              destroying: context.destroying)
        interpreted.warnings += warnings
        observation.merge(interpreted)
    }

    func apply(_ change: Plan.ResourceChange, _ context: ApplyContext) async throws {
        let name = change.address.name
        guard let root = context.poolRoot else {
            throw SystemError.failure("change", "\(change.address)", "no pool is declared or recorded")
        }
        let images = ImageStore(poolRoot: root)
        let leftovers = try images.contents().leftovers.filter { PoolContents.importedImageName($0) == name }
        switch change.action {
        case .delete:
            var record = context.record(change.address) ?? Record(change.address, status: .deleting)
            record.status = .deleting
            try context.save(record)
            for leftover in leftovers { try images.removeLeftover(leftover) }
            if try images.subvolume("images/\(name)") != nil {
                try images.deleteSubvolume("images/\(name)")
                Checkpoint.pass("images/\(name) deleted")
            }
            try context.store.remove(change.address)
        case .create, .replace:
            guard let spec = change.spec(ImageSpec.self) else { return }
            let image = spec.image
            for leftover in leftovers { try images.removeLeftover(leftover) }
            try context.save(Record(change.address, status: .creating, attributes: change.after ?? [:], protect: image.protect))
            let meter = RateMeter()
            // Layered images report each layer instead of a byte count.
            let layered = image.source.carriesConfig
            let progress: (ImportProgress) -> Void = { p in
                if meter.first() { Checkpoint.pass("importing images/\(name)") }
                if !layered, let line = meter.line(bytes: p.bytesRead) { context.progress(line) }
            }
            let layerProgress: @Sendable (LayerProgress) -> Void = { p in
                context.layerProgress(LayerEvent(p))
                if p.phase == .done { Checkpoint.pass("layer \(p.index + 1)/\(p.count) of images/\(name) unpacked") }
            }
            let imported: ImportedImage
            if case .registry(let registry) = image.source {
                // The digest the plan showed, not whatever the tag points to by now.
                var source = try RegistrySource(registry)
                if let digest = spec.digest { source = source.pinned(to: digest) }
                imported = try await images.pullImage(name: name, from: source, progress: progress, layerProgress: layerProgress)
            } else {
                imported = try await images.importImage(name: name, from: image.source, cacheDirectory: context.store.cacheDirectory,
                                                        progress: progress, layerProgress: layerProgress)
            }
            for warning in imported.warnings { context.progress("warning: \(warning)") }
            var attributes = change.after ?? [:]
            attributes[ImageAttribute.digest] = .string(imported.digest)
            var record = Record(change.address, status: .ready, attributes: attributes, protect: image.protect)
            record.imageSubvolumeUUID = imported.info.uuid
            try context.save(record)
        case .update:
            for leftover in leftovers { try images.removeLeftover(leftover) }
            guard var record = context.record(change.address) else { return }
            record.protect = change.spec(ImageSpec.self)?.image.protect ?? record.protect
            // A new name for the same content (a tag pinned to its digest): recorded.
            record.attributes.merge(change.after ?? [:]) { _, new in new }
            try context.save(record)
        case .noop:
            break
        }
    }
}

/// Turns byte counts into "120 MiB (240 MiB/s)" at most ten times a second.
final class RateMeter: @unchecked Sendable {
    let start = Monotonic.nanoseconds()
    var last: UInt64 = 0
    private var started = false

    /// True on the first call only.
    func first() -> Bool {
        defer { started = true }
        return !started
    }

    func line(bytes: UInt64) -> String? {
        let now = Monotonic.nanoseconds()
        guard now - last > 100_000_000 else { return nil }
        last = now
        let seconds = Double(now - start) / 1e9
        let rate = seconds > 0 ? UInt64(Double(bytes) / seconds) : 0
        return "\(Units.formatSize(bytes)) (\(Units.formatSize(rate))/s)"
    }
}
