import CTuppSys
import Glibc

/// Runs work inside another process's namespaces on a dedicated thread.
///
/// setns(2) switches only the calling thread (for net, uts, ipc). Doing it on a
/// throw-away pthread keeps the switch from leaking into Swift's cooperative pool:
/// the thread joins the namespaces, runs `body`, and exits. Sockets opened there
/// (a netlink socket, say) stay bound to the namespace after the thread is gone —
/// that is how tupp talks netlink inside a container's netns.
/// Mount and user namespaces cannot be joined from a multithreaded process; use
/// tupp-shim for those.
public enum NamespaceThread {
    /// `namespaces`: pairs of (path under /proc, CLONE_NEW* flag), e.g.
    /// ("/proc/1234/ns/net", CLONE_NEWNET).
    public static func run<T>(joining namespaces: [(path: String, type: Int32)],
                              _ body: @escaping () throws -> T) throws -> T {
        var result: Result<T, any Error>?
        let task = ThreadTask(namespaces: namespaces) {
            result = Result { try body() }
        }
        try task.runAndJoin()
        if let failure = task.failure { throw failure }
        return try result!.get()
    }
}

/// The non-generic state handed to the pthread.
private final class ThreadTask: @unchecked Sendable {
    let namespaces: [(path: String, type: Int32)]
    let work: () -> Void
    var failure: (any Error)?

    init(namespaces: [(path: String, type: Int32)], work: @escaping () -> Void) {
        self.namespaces = namespaces
        self.work = work
    }

    func runAndJoin() throws {
        var thread = pthread_t()
        let context = Unmanaged.passRetained(self).toOpaque()
        let rc = pthread_create(&thread, nil, { raw in
            let task = Unmanaged<ThreadTask>.fromOpaque(raw!).takeRetainedValue()
            do {
                for ns in task.namespaces {
                    let fd = try FileDescriptor.open(ns.path, O_RDONLY)
                    try Errno.check("join namespace", ns.path) { tupp_setns(fd.rawValue, ns.type) }
                }
                task.work()
            } catch {
                task.failure = error
            }
            return nil
        }, context)
        if rc != 0 {
            Unmanaged<ThreadTask>.fromOpaque(context).release()
            throw SystemError("start namespace thread", "pthread_create", errno: rc)
        }
        pthread_join(thread, nil)
    }
}
