import Glibc
import TuppBase
import TuppFacts
import TuppManifest
import TuppManifestLoader
import TuppPlan
import TuppRuntime
import TuppStorage
import TuppSystem

/// What `tupp volume list` shows for one volume.
public struct VolumeListing: Sendable {
    public enum State: String, Sendable {
        /// volumes/NAME is there.
        case present
        /// Declared or recorded, but volumes/NAME is not there (not created yet, or deleted).
        case missing
        /// Only its snapshots are left (the volume was deleted, its backups kept).
        case snapshotsOnly = "snapshots only"
    }

    public struct Snapshot: Sendable {
        public var tag: String
        /// Seconds since the epoch.
        public var createdAt: Double
        /// Bytes it references, and bytes only it references (nil while quotas are off).
        public var referenced: UInt64?
        public var exclusive: UInt64?
    }

    public struct User: Sendable {
        public var container: String
        /// "running", "exited", … as `tupp status` says.
        public var state: String
    }

    public var name: String
    public var state: State
    /// A manifest given to the command declares it.
    public var declared: Bool
    /// tupp made (or imported) it: it has a record. A subvolume someone else put in
    /// volumes/ is listed but never touched.
    public var owned: Bool
    public var projects: [String]
    public var protect: Bool
    public var owner: String?
    public var mode: String?
    /// The qgroup limit, bytes referenced and bytes only it references (nil while quotas are off).
    public var limit: UInt64?
    public var referenced: UInt64?
    public var exclusive: UInt64?
    public var snapshots: [Snapshot]
    /// Containers whose records mount it.
    public var users: [User]
}

/// The pool's volumes as `tupp volume list` shows them.
public struct VolumeInventory: Sendable {
    public var poolRoot: String
    /// Quotas count usage (some volume declares a size).
    public var quotasEnabled: Bool
    /// The numbers are being counted again, or are off until they are.
    public var quotasRecounting: Bool
    public var volumes: [VolumeListing]
}

/// What `tupp volume export` wrote.
public struct VolumeExport: Sendable {
    public var volume: String
    /// The snapshot the stream carries; an import makes it NAME@TAG.
    public var tag: String
    /// The snapshot it is incremental against.
    public var since: String?
    /// Bytes written, when the output is a regular file.
    public var bytes: UInt64?
}

/// What `tupp volume import` did.
public struct VolumeImport: Sendable {
    public var volume: String
    /// The received snapshot, kept as NAME@TAG (the parent of the next incremental stream).
    public var tag: String
    /// False when the stream's snapshot was there already (a retry): nothing was received.
    public var received: Bool
    public var replaced: Bool
    /// The snapshot that keeps what the replaced volume held, when that existed nowhere else.
    public var previousKeptAs: String?
}

/// `tupp volume …`: the pool is the one the manifests declare (the way plan finds it); every
/// command that changes something takes the host lock, as apply does.
extension Engine {
    /// Every volume of the pool, every declared or recorded one, and every volume that only
    /// has snapshots left. Reads; changes nothing.
    public func volumes(_ manifest: Manifest) throws -> VolumeInventory {
        let store = try volumeStore(manifest)
        let contents = try store.contents()
        let records = try self.store.load()
        var recorded: [String: Record] = [:]
        var containers: [String: Record] = [:]
        for (address, record) in records {
            if address.kind == .volume { recorded[address.name] = record }
            if address.kind == .container { containers[address.name] = record }
        }
        let users = VolumeKind.users(containerRecords: containers)
        var names = Set(contents.volumes.keys).union(manifest.volumes.keys).union(recorded.keys)
        names.formUnion(contents.snapshots.keys)
        let quotas = contents.quotas.enabled
        var listings: [VolumeListing] = []
        for name in names.sorted() {
            let live = contents.volumes[name]
            let record = recorded[name]
            let snapshots = contents.snapshots(of: name).map {
                VolumeListing.Snapshot(tag: $0.tag, createdAt: $0.subvolume.createdAt,
                                       referenced: quotas ? $0.usage?.referenced : nil, exclusive: quotas ? $0.usage?.exclusive : nil)
            }
            let state: VolumeListing.State = live != nil ? .present
                : (manifest.volumes[name] == nil && record == nil ? .snapshotsOnly : .missing)
            listings.append(VolumeListing(
                name: name, state: state, declared: manifest.volumes[name] != nil, owned: record != nil,
                projects: record.map { $0.projects.keys.sorted() } ?? [], protect: record?.protect ?? manifest.volumes[name]?.protect ?? false,
                owner: live?.owner.description, mode: live.map { VolumeSettings.formatMode($0.mode) },
                limit: quotas ? live?.usage?.limit : nil, referenced: quotas ? live?.usage?.referenced : nil,
                exclusive: quotas ? live?.usage?.exclusive : nil, snapshots: snapshots,
                users: (users[name] ?? []).map { VolumeListing.User(container: $0, state: containerState($0, record: containers[$0])) }))
        }
        return VolumeInventory(poolRoot: store.poolRoot, quotasEnabled: contents.quotas.enabled,
                               quotasRecounting: contents.quotas.inconsistent || contents.quotas.rescanning, volumes: listings)
    }

    /// A read-only snapshot NAME@TAG of the volume as it is now (one ioctl: atomic, and
    /// consistent as a crash would leave it). TAG defaults to the UTC time.
    public func snapshotVolume(_ name: String, tag: String?, manifest: Manifest, lockTimeout: Double,
                               holder: String) throws -> VolumeListing.Snapshot {
        let store = try volumeStore(manifest)
        let lock = try self.lock(timeout: lockTimeout, command: holder)
        defer { withExtendedLifetime(lock) {} }
        let taken = try store.snapshot(name, tag: tag ?? VolumeNames.timestampTag(secondsSinceEpoch: Int(wallClockSeconds())),
                                       checkpoint: { Checkpoint.pass($0) })
        return VolumeListing.Snapshot(tag: taken.tag, createdAt: taken.subvolume.createdAt, referenced: nil, exclusive: nil)
    }

    /// Writes a btrfs send stream of NAME@TAG, or of the live volume through a temporary
    /// snapshot (crash-consistent), to `output`; with `since`, only what changed after
    /// NAME@SINCE. Exporting the live volume holds the host lock until the stream is
    /// written (an apply would take its temporary snapshot for an interrupted export's).
    public func exportVolume(_ reference: String, since: String?, manifest: Manifest, to output: Int32, lockTimeout: Double,
                             holder: String) throws -> VolumeExport {
        let store = try volumeStore(manifest)
        let parsed = try VolumeReference.parse(reference)
        let lock = parsed.tag == nil ? try self.lock(timeout: lockTimeout, command: holder) : nil
        defer { withExtendedLifetime(lock) {} }
        let stream = try store.export(parsed, since: since, to: output, checkpoint: { Checkpoint.pass($0) })
        return VolumeExport(volume: stream.volume, tag: stream.tag, since: stream.parent, bytes: stream.bytes)
    }

    /// Receives a send stream from `input` as volume NAME of the pool `loaded` declares, and
    /// records it as tupp's (it is never seeded: it existed). An existing volume is replaced
    /// only when `replacing`, never while a container mounts it.
    public func importVolume(_ name: String, from input: Int32, replacing: Bool, loaded: LoadedManifest, lockTimeout: Double,
                             holder: String) async throws -> VolumeImport {
        let store = try volumeStore(loaded.manifest)
        let lock = try self.lock(timeout: lockTimeout, command: holder)
        defer { withExtendedLifetime(lock) {} }
        let imported = try await store.importStream(into: name, from: input, replacing: replacing, checkpoint: { Checkpoint.pass($0) })

        // Recorded as it arrived: the next plan shows what differs from the declaration as changes.
        let address = ResourceAddress(.volume, name)
        let contents = try store.contents()
        var record = try self.store.load()[address] ?? Record(address, status: .ready)
        record.status = .ready
        record.volumeExisted = true
        record.volumeSubvolumeUUID = imported.volume.uuid
        if let live = contents.volumes[name] {
            record.attributes = VolumeKind.attributes(VolumeSettings(size: contents.quotas.enabled ? live.usage?.limit : nil,
                                                                     owner: live.owner, mode: live.mode))
        }
        let location = loaded.manifest.sources["volumes.\(name)"].map { "\($0.file):\($0.mark)" }
        if location != nil || record.projects.isEmpty { record.projects[loaded.project] = location ?? "" }
        if let declared = loaded.manifest.volumes[name] { record.protect = declared.protect }
        try self.store.save(record)
        return VolumeImport(volume: name, tag: imported.snapshot.tag, received: imported.received, replaced: imported.replaced,
                            previousKeptAs: imported.previousKeptAs)
    }

    /// The volumes of the pool `manifest` declares, which must be mounted (or, without a
    /// device, on btrfs).
    func volumeStore(_ manifest: Manifest) throws -> VolumeStore {
        guard let storage = manifest.storage else {
            throw SystemError.failure("find the pool", "the manifests",
                                      "they declare no storage; give the manifests that declare the pool (default ./tupperware.yaml)")
        }
        let pool = Pool.observe(storage)
        if storage.device != nil && !(pool.mounted && pool.backedByDevice) {
            throw SystemError.failure("open the pool", storage.root, "it is not mounted from \(storage.device!.file); run tupp apply first")
        }
        if storage.device == nil && !pool.onBtrfs {
            throw SystemError.failure("open the pool", storage.root, "it is not on btrfs; run tupp apply first")
        }
        return VolumeStore(poolRoot: storage.root)
    }

    /// A container's state as `tupp status` shows it.
    func containerState(_ name: String, record: Record?) -> String {
        guard let record, record.status == .ready else { return record?.status.rawValue ?? "absent" }
        return runtime.observe(directory: store.containerDirectory(name)).state.rawValue
    }
}
