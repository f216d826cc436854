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

    /// What observing one declared image found, besides its live subvolume.
    struct Source {
        /// The identity of the content it should have; nil when not known before a pull.
        var digest: String?
        /// Its config's defaults for containers, when known.
        var defaults: ImageDefaults?
        /// The chain IDs of the planned content, when known.
        var layers: [String]?
        var warnings: [String] = []
    }

    func observe(_ observation: inout Observation, _ context: ObserveContext) async {
        let contents = observation.facts[PoolFacts.self]?.contents
        var facts = ImageFacts(contents: contents)
        let records = observation.records(of: .image)
        let store = ImageStore(poolRoot: context.manifest.storage?.root ?? "", retry: Self.resolveRetry)
        var warnings: [String] = []
        for (name, image) in context.manifest.images.sorted(by: { $0.key < $1.key }) {
            // The metadata of the layered image there now: its digest, config and layers.
            let pulled = contents?.images[name] == nil || !image.source.carriesConfig ? nil : try? store.metadata(of: name)
            do {
                let source: Source
                switch image.source {
                case .registry(let registry):
                    // A destroy needs no digest: nothing is asked.
                    guard !context.destroying else { continue }
                    source = try observe(registry, name: name, pulled: pulled, record: records[name], image: image, store: store,
                                         refresh: context.refresh)
                case .oci(let layout, let tag):
                    let digest = try ImageStore.identify(image.source, cacheDirectory: context.store.cacheDirectory,
                                                         updatingCache: context.updatesCaches)
                    if let pulled, pulled.digest == digest {
                        source = Source(digest: digest, defaults: .config(pulled.config), layers: pulled.layers)
                    } else {
                        let described = try store.describe(layout: layout, tag: tag)
                        source = Source(digest: digest, defaults: .config(described.config), layers: described.layers)
                    }
                case .busybox, .tar, .directory:
                    source = Source(digest: try ImageStore.identify(image.source, cacheDirectory: context.store.cacheDirectory,
                                                                    updatingCache: context.updatesCaches),
                                    defaults: ImageDefaults.none, layers: [])
                }
                facts.sourceDigests[name] = source.digest
                observation.desiredContext.imageDefaults[name] = source.defaults
                observation.desiredContext.imageLayers[name] = source.layers
                warnings += source.warnings
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

    /// A registry image: its tag resolved with one HEAD (no request for a digest, none with
    /// `--refresh=false`); its config and layers from the metadata of the image pulled
    /// when that is the same digest, else — about to be pulled — from its manifest and
    /// config (a few small requests, no layer).
    func observe(_ registry: RegistryImage, name: String, pulled: ImageMetadata?, record: Record?, image: Image, store: ImageStore,
                 refresh: Bool) throws -> Source {
        let source = try RegistrySource(registry)
        let resolution: RegistryResolution
        if let digest = source.reference.digest {
            resolution = .pinned(digest)
        } else if !refresh {
            resolution = .notAsked
        } else {
            do { resolution = .resolved(try store.resolve(source)) } catch where RegistryClient.isUnreachable(error) {
                resolution = .unreachable("\(error)")
            }
        }
        let (digest, warning) = ImageKind.registryDigest(registry, name: name, resolution: resolution,
                                                         pulled: ImageKind.pulledDigest(image, record: record))
        var observed = Source(digest: digest, warnings: warning.map { [$0] } ?? [])
        guard let digest else { return observed }
        if let pulled, pulled.digest == digest {
            observed.defaults = .config(pulled.config)
            observed.layers = pulled.layers
        } else if refresh, resolution.answered {
            do {
                let described = try store.describe(source.pinned(to: digest))
                observed.defaults = .config(described.config)
                observed.layers = described.layers
            } catch where RegistryClient.isUnreachable(error) {
                observed.warnings.append("image.\(name): registry \(source.reference.registry) did not answer (\(error)); what its config gives containers is known once it is pulled")
            }
        }
        return observed
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
            Checkpoint.pass("leftover imports removed")
            if try images.subvolume("images/\(name)") != nil {
                try images.deleteSubvolume("images/\(name)")
            }
            Checkpoint.pass("images/\(name) deleted")
            try context.store.remove(change.address)
        case .create, .replace:
            guard let spec = change.spec(ImageSpec.self) else { return }
            let image = spec.image
            try context.save(Record(change.address, status: .creating, attributes: change.after ?? [:], protect: image.protect))
            for leftover in leftovers { try images.removeLeftover(leftover) }
            Checkpoint.pass("leftover imports removed")
            let meter = RateMeter()
            // Layered images report each layer instead of a byte count.
            let layered = image.source.carriesConfig
            let progress: (ImportProgress) -> Void = { p in
                if !layered, let line = meter.line(bytes: p.bytesRead) { context.progress(line) }
            }
            let layerProgress = context.layerProgress
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
            // In place: `protect`, and leftovers of an interrupted import removed.
            var record = context.record(change.address) ?? Record(change.address, status: .ready, attributes: change.after ?? [:])
            record.status = .updating
            try context.save(record)
            for leftover in leftovers { try images.removeLeftover(leftover) }
            Checkpoint.pass("leftover imports removed")
            record.status = .ready
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

    func line(bytes: UInt64) -> String? {
        let now = Monotonic.nanoseconds()
        guard now - last > 100_000_000 else { return nil }
        last = now
        let seconds = Double(now - start) / 1e9
        let rate = seconds > 0 ? UInt64(Double(bytes) / seconds) : 0
        return "\(Units.formatSize(bytes)) (\(Units.formatSize(rate))/s)"
    }
}
