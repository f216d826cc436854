import TuppBase
import TuppFacts
import TuppManifest

/// Host ids for containers with `userns: auto`: 65,536 uids and gids each, from a pool
/// tupp owns, disjoint from every other container's and from every user namespace the
/// host shows, and stable.
///
/// A container keeps the range it was given while its record exists — through restarts,
/// stops and applies, until it is removed (its snapshot is deleted before its record) —
/// and while its process runs with it, record or not. A new one starts at a block derived
/// from a hash of the installation and its name and takes the first free block from
/// there: the same manifest gets the same ranges after destroy + apply, and two
/// installations sharing a pool rarely even try the same block.
///
/// Nothing on disk carries a range: the rootfs and volumes are idmapped mounts, so files
/// are stored with the container's own ids (0 for root), and a volume shared by containers
/// with different ranges is read and written by each as the same in-container ids.
public enum UserNamespaceAllocator {
    /// Where ranges come from: `uids` and `gids`, block k of one paired with block k of
    /// the other.
    public struct Pool: Sendable, Equatable, CustomStringConvertible {
        public var uids: IDRange
        public var gids: IDRange
        /// Why this pool: "userns.range", "/etc/subuid and /etc/subgid (tupp)", "tupp's default range".
        public var origin: String

        public init(uids: IDRange, gids: IDRange, origin: String) {
            self.uids = uids
            self.gids = gids
            self.origin = origin
        }

        public static let perContainer = UserNamespaceSettings.idsPerContainer

        /// 0x70000000 up to systemd's foreign range (0x7FFE0000): 4094 containers. Above
        /// the subordinate ids useradd hands out (100000…600100000 by default) and
        /// systemd-nspawn's container ranges (524288…1879048191); below 2^31, where tools
        /// that print uid_t as a signed number (procps `ps`) show negative ids and
        /// systemd documents "here be lions".
        public static let defaultRange = IDRange(start: 0x7000_0000, size: 4094 * perContainer)

        /// Whole blocks of 65,536 ids that both ranges hold.
        public var blocks: UInt64 { min(uids.size, gids.size) / Self.perContainer }

        public func mapping(block: UInt64) -> IDMapping {
            .block(uid: uids.start + block * Self.perContainer, gid: gids.start + block * Self.perContainer)
        }

        /// The block `mapping` is, when it is exactly one of this pool's.
        public func block(of mapping: IDMapping) -> UInt64? {
            guard mapping.uids.count == 1, mapping.gids.count == 1, let uid = mapping.uids.first, let gid = mapping.gids.first,
                  uid.inside == 0, gid.inside == 0, uid.count == Self.perContainer, gid.count == Self.perContainer,
                  uid.outside >= uids.start, (uid.outside - uids.start) % Self.perContainer == 0 else { return nil }
            let block = (uid.outside - uids.start) / Self.perContainer
            return block < blocks && gid.outside == gids.start + block * Self.perContainer ? block : nil
        }

        public var description: String {
            uids == gids ? "\(uids) (\(origin))" : "uids \(uids), gids \(gids) (\(origin))"
        }

        /// The manifest's `userns.range`, else the first entries of `user` in /etc/subuid and
        /// /etc/subgid (both needed), else the default range.
        public static func choose(_ settings: UserNamespaceSettings?, subuid: [SubordinateIDs.Entry], subgid: [SubordinateIDs.Entry],
                                  user: String = "tupp") -> Pool {
            if let range = settings?.range { return Pool(uids: range, gids: range, origin: "userns.range") }
            if let uids = subuid.first(where: { $0.user == user })?.range, let gids = subgid.first(where: { $0.user == user })?.range {
                return Pool(uids: uids, gids: gids, origin: "/etc/subuid and /etc/subgid entries of \(user)")
            }
            return Pool(uids: defaultRange, gids: defaultRange, origin: "tupp's default range")
        }
    }

    /// Host ids something else uses: other user namespaces' maps, other users'
    /// subordinate ids.
    public struct InUse: Sendable, Equatable {
        public var uids: [IDRange]
        public var gids: [IDRange]

        public init(uids: [IDRange] = [], gids: [IDRange] = []) {
            self.uids = uids
            self.gids = gids
        }

        func blocks(_ mapping: IDMapping) -> Bool {
            mapping.uids.contains { line in uids.contains { $0.overlaps(line.hostRange) } }
                || mapping.gids.contains { line in gids.contains { $0.overlaps(line.hostRange) } }
        }

        mutating func add(_ mapping: IDMapping) {
            uids += mapping.uids.map(\.hostRange)
            gids += mapping.gids.map(\.hostRange)
        }
    }

    public struct Exhausted: Error, Equatable, Sendable {
        public var container: String
        public var pool: Pool
    }

    /// `wanting`: the containers with `userns: auto`. `held`: the mapping each container of
    /// the installation holds now (its record's, or its live process's) — those not wanting
    /// one any more keep theirs reserved until they are gone. `inUse`: everything else.
    public static func allocate(wanting: [String], held: [String: IDMapping], pool: Pool, inUse: InUse,
                                installation: String) -> Result<[String: IDMapping], Exhausted> {
        var taken = inUse
        for (name, mapping) in held where !wanting.contains(name) { taken.add(mapping) }
        var result: [String: IDMapping] = [:]
        var fresh: [String] = []
        // Held ranges first, so existing containers never move.
        for name in wanting.sorted() {
            if let mapping = held[name], pool.block(of: mapping) != nil, !taken.blocks(mapping) {
                result[name] = mapping
                taken.add(mapping)
            } else {
                fresh.append(name)
            }
        }
        let blocks = pool.blocks
        for name in fresh {
            guard blocks > 0 else { return .failure(Exhausted(container: name, pool: pool)) }
            let start = StableHash.fnv1a("\(installation)/\(name)") % blocks
            var found: IDMapping?
            for offset in 0..<blocks {
                let candidate = pool.mapping(block: (start + offset) % blocks)
                if !taken.blocks(candidate) { found = candidate; break }
            }
            guard let mapping = found else { return .failure(Exhausted(container: name, pool: pool)) }
            result[name] = mapping
            taken.add(mapping)
        }
        return .success(result)
    }
}
