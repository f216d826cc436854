import Glibc
import TuppFacts
import TuppManifest
import TuppSystem

/// User namespaces as the host shows them: a container's maps, every host id range some
/// user namespace on the host uses, and the subordinate ids /etc/subuid and /etc/subgid
/// delegate. Reads files only; what they mean is judged in TuppPlan.
public enum UserNamespaces {
    /// The maps of `pid`'s user namespace; nil for the host's own (the identity map), or
    /// when the process is gone.
    public static func mapping(of pid: Int32) -> IDMapping? {
        guard pid > 0, let uidText = (try? Files.readText("/proc/\(pid)/uid_map", limit: 1 << 16)) ?? nil,
              let uids = IDMapping.parse(procMap: uidText) else { return nil }
        // The host's namespace, without reading gid_map: the common case, once per container.
        if uids == [IDMapLine(inside: 0, outside: 0, count: IDRange.idLimit)] { return nil }
        guard let gidText = (try? Files.readText("/proc/\(pid)/gid_map", limit: 1 << 16)) ?? nil,
              let gids = IDMapping.parse(procMap: gidText) else { return nil }
        let mapping = IDMapping(uids: uids, gids: gids)
        return mapping.isIdentity ? nil : mapping
    }

    /// The host ids every user namespace on the host maps, other than the host's own: one
    /// pass over /proc (a readlink per process, the maps read once per namespace). Other
    /// installations' containers, podman's, LXD's, systemd-nspawn's all show here.
    public static func hostRangesInUse() -> (uids: [IDRange], gids: [IDRange]) {
        let own = namespaceInode(pid: "self", kind: "user")
        var seen: Set<UInt64> = []
        var uids: [IDRange] = [], gids: [IDRange] = []
        for entry in (try? Files.list("/proc")) ?? [] {
            guard let pid = Int32(entry), let inode = namespaceInode(pid: entry, kind: "user"), inode != own,
                  seen.insert(inode).inserted, let mapping = mapping(of: pid) else { continue }
            uids += mapping.uids.map(\.hostRange)
            gids += mapping.gids.map(\.hostRange)
        }
        return (uids, gids)
    }

    /// /etc/subuid and /etc/subgid (empty when absent).
    public static func subordinateIDs(root: String = "") -> (uids: [SubordinateIDs.Entry], gids: [SubordinateIDs.Entry]) {
        func entries(_ file: String) -> [SubordinateIDs.Entry] {
            ((try? Files.readText("\(root)/etc/\(file)", limit: 1 << 20)) ?? nil).map(SubordinateIDs.parse) ?? []
        }
        return (entries("subuid"), entries("subgid"))
    }
}
