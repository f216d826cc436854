import Glibc
import TuppSystem

/// Downloads blobs on a few threads while the caller unpacks the ones already there:
/// the caller waits for blob i only when it is its turn.
///
/// Blocking libcurl transfers run on their own threads, not on Swift's cooperative pool
/// (which has as many threads as cores and must not block). `finish` always joins them:
/// nothing keeps writing after an import returned.
final class BlobPrefetcher: @unchecked Sendable {
    typealias Fetch = (_ index: Int, _ isCancelled: @escaping () -> Bool) throws -> String

    private let fetch: Fetch
    private var queue: [Int]
    private var results: [Int: Result<String, any Error>] = [:]
    private var cancelled = false
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let changed = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var threads: [pthread_t] = []

    /// Starts up to `width` threads fetching `indices` in order.
    init(indices: [Int], width: Int, fetch: @escaping Fetch) throws(SystemError) {
        self.fetch = fetch
        queue = indices
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(changed, nil)
        for _ in 0..<min(width, indices.count) {
            var thread = pthread_t()
            let context = Unmanaged.passRetained(self).toOpaque()
            let rc = pthread_create(&thread, nil, { raw in
                Unmanaged<BlobPrefetcher>.fromOpaque(raw!).takeRetainedValue().work()
                return nil
            }, context)
            guard rc == 0 else {
                Unmanaged<BlobPrefetcher>.fromOpaque(context).release()
                finish()
                throw SystemError("start download thread", "pthread_create", errno: rc)
            }
            threads.append(thread)
        }
    }

    deinit {
        pthread_cond_destroy(changed)
        pthread_mutex_destroy(mutex)
        changed.deallocate()
        mutex.deallocate()
    }

    /// The path of blob `index`, waiting for its download; rethrows its failure.
    func wait(_ index: Int) throws -> String {
        pthread_mutex_lock(mutex)
        while results[index] == nil { pthread_cond_wait(changed, mutex) }
        let result = results[index]!
        pthread_mutex_unlock(mutex)
        return try result.get()
    }

    /// Stops fetching (transfers in flight abort at their next block) and joins the threads.
    func finish() {
        pthread_mutex_lock(mutex)
        cancelled = true
        pthread_cond_broadcast(changed)
        pthread_mutex_unlock(mutex)
        for thread in threads { pthread_join(thread, nil) }
        threads.removeAll()
    }

    private var isCancelled: Bool {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return cancelled
    }

    private func work() {
        while true {
            pthread_mutex_lock(mutex)
            guard !cancelled, !queue.isEmpty else {
                pthread_mutex_unlock(mutex)
                return
            }
            let index = queue.removeFirst()
            pthread_mutex_unlock(mutex)
            let result: Result<String, any Error>
            do {
                result = .success(try fetch(index) { self.isCancelled })
            } catch {
                result = .failure(error)
            }
            pthread_mutex_lock(mutex)
            results[index] = result
            pthread_cond_broadcast(changed)
            pthread_mutex_unlock(mutex)
        }
    }
}
