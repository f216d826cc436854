import Dispatch
import TuppFacts
import TuppSystem

extension NetlinkSession {
    /// Snapshots of many network namespaces (one per container), in the order given.
    ///
    /// All sockets are opened by one throw-away thread that joins each namespace in
    /// turn (setns is cheap; a thread per namespace is not); the dumps are then read on
    /// up to two threads and the sockets closed at once, so no namespace is kept alive
    /// afterwards. A namespace that is gone (its container died) yields a failure for
    /// that entry only.
    public static func snapshots(ofNamespaces netnsPaths: [String]) -> [Result<NetworkSnapshot, SystemError>] {
        let work = LaneWork(sockets: NamespaceSockets.open(each: netnsPaths))
        let lanes = netnsPaths.count >= 16 ? 2 : 1
        DispatchQueue.concurrentPerform(iterations: lanes) { lane in
            for index in stride(from: lane, to: netnsPaths.count, by: lanes) {
                work.read(index)
            }
        }
        return work.finish()
    }
}

/// The sockets and result slots shared by the lanes. Lane `k` touches only the indices
/// congruent to `k`, so no socket is used by two threads and no slot written twice;
/// `concurrentPerform` returning orders every write before `finish()`.
private final class LaneWork: @unchecked Sendable {
    private var sockets: [Result<NetlinkSocket, SystemError>?]
    private var results: [Result<NetworkSnapshot, SystemError>?]

    init(sockets: [Result<NetlinkSocket, SystemError>]) {
        self.sockets = sockets
        results = Array(repeating: nil, count: sockets.count)
    }

    func read(_ index: Int) {
        results[index] = sockets[index]!.flatMap { socket in
            Result { () throws(SystemError) -> NetworkSnapshot in try socket.snapshot() }
        }
        sockets[index] = nil  // close now: the namespace must not be kept alive
    }

    func finish() -> [Result<NetworkSnapshot, SystemError>] { results.map { $0! } }
}
