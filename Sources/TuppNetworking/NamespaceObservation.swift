import CTuppSys
import Glibc
import TuppFacts
import TuppSystem

extension NetlinkSession {
    /// Snapshots of many network namespaces (one per container), in the order given.
    ///
    /// Each lane (`Lanes`: one per core for many namespaces) is a throw-away thread that
    /// joins each of its namespaces in turn (setns is cheap; a thread per namespace is
    /// not), dumps it through a socket made there and closes the socket at once, so no
    /// namespace is kept alive afterwards. A namespace that is gone (its container died)
    /// yields a failure for that entry only.
    public static func snapshots(ofNamespaces netnsPaths: [String]) -> [Result<NetworkSnapshot, SystemError>] {
        Lanes.map(netnsPaths.count) { indices in
            let paths = indices.map { netnsPaths[$0] }
            let snapshots = try? NamespaceThread.run(joining: []) { () -> [Result<NetworkSnapshot, SystemError>] in
                paths.map { path in
                    Result { () throws(SystemError) -> NetworkSnapshot in
                        let fd = try FileDescriptor.open(path, O_RDONLY)
                        try Errno.check("join network namespace", path) { tupp_setns(fd.rawValue, Int32(TUPP_CLONE_NEWNET)) }
                        return try NetlinkSocket(namespace: path).snapshot()
                    }
                }
            }
            return snapshots ?? paths.map { .failure(SystemError.failure("open netlink socket in", $0, "could not start a thread")) }
        }
    }
}
