import TuppBase
import TuppFacts
import TuppManifest
import TuppPlan
import TuppStorage
import TuppSystem

/// Images: sources identified by digest (cached by file stamp), subvolumes listed by the
/// pool reconciler; judged by `ImageKind`; imported and deleted through `ImageStore`.
struct ImageReconciler: Reconciler {
    var kind: ResourceKind { .image }

    func observe(_ observation: inout Observation, _ context: ObserveContext) async {
        var facts = ImageFacts(contents: observation.facts[PoolFacts.self]?.contents)
        for (name, image) in context.manifest.images {
            do {
                facts.sourceDigests[name] = try ImageStore.identify(image.source, cacheDirectory: context.store.cacheDirectory,
                                                                    updatingCache: context.updatesCaches)
            } catch {
                facts.sourceErrors[name] = "\(error)"
            }
        }
        observation.desiredContext.imageDigests = facts.sourceDigests
        observation.merge(ImageKind.interpret(declared: context.manifest.images, records: observation.records(of: .image), facts: facts,
                                              destroying: context.destroying))
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
            guard let image = change.spec(ImageSpec.self)?.image else { return }
            try context.save(Record(change.address, status: .creating, attributes: change.after ?? [:], protect: image.protect))
            for leftover in leftovers { try images.removeLeftover(leftover) }
            Checkpoint.pass("leftover imports removed")
            let meter = RateMeter()
            let imported = try await images.importImage(name: name, from: image.source,
                                                        cacheDirectory: context.store.cacheDirectory) { p in
                if let line = meter.line(bytes: p.bytesRead) { context.progress(line) }
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
