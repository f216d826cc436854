import Crypto
import Glibc
import TuppSystem

/// SHA-256 on a second thread, so hashing an archive overlaps extracting it.
///
/// The reader fills one of `slotCount` buffers, hands it over with `submit`, and
/// before refilling a slot waits in `acquire` until the hasher is done with it. Buffers
/// are hashed strictly in submission order. Hashing in line cost about a third of a
/// 200 MB import; on a second core it is hidden behind the writes.
final class BackgroundHasher: @unchecked Sendable {
    static let slotCount = 4

    private var hasher = SHA256()
    private var pending: [(slot: Int, pointer: UnsafeRawPointer, count: Int)] = []
    private var busy = [Bool](repeating: false, count: slotCount)
    private var closing = false
    private var digest: SHA256.Digest?
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let changed = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var thread = pthread_t()
    private var started = false

    init() throws(SystemError) {
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(changed, nil)
        let context = Unmanaged.passRetained(self).toOpaque()
        let rc = pthread_create(&thread, nil, { raw in
            Unmanaged<BackgroundHasher>.fromOpaque(raw!).takeRetainedValue().run()
            return nil
        }, context)
        guard rc == 0 else {
            Unmanaged<BackgroundHasher>.fromOpaque(context).release()
            throw SystemError("start hashing thread", "pthread_create", errno: rc)
        }
        started = true
    }

    deinit {
        pthread_cond_destroy(changed)
        pthread_mutex_destroy(mutex)
        changed.deallocate()
        mutex.deallocate()
    }

    /// Waits until `slot`'s previous content has been hashed, so it may be refilled.
    func acquire(_ slot: Int) {
        pthread_mutex_lock(mutex)
        while busy[slot] { pthread_cond_wait(changed, mutex) }
        pthread_mutex_unlock(mutex)
    }

    /// Queues `count` bytes at `pointer` (living in `slot`) for hashing.
    func submit(_ slot: Int, _ pointer: UnsafeRawPointer, _ count: Int) {
        pthread_mutex_lock(mutex)
        busy[slot] = true
        pending.append((slot, pointer, count))
        pthread_cond_broadcast(changed)
        pthread_mutex_unlock(mutex)
    }

    /// Hashes what is queued, stops the thread and returns the digest.
    func finish() -> SHA256.Digest {
        pthread_mutex_lock(mutex)
        closing = true
        pthread_cond_broadcast(changed)
        pthread_mutex_unlock(mutex)
        if started {
            pthread_join(thread, nil)
            started = false
        }
        return digest!
    }

    private func run() {
        pthread_mutex_lock(mutex)
        while true {
            while pending.isEmpty && !closing { pthread_cond_wait(changed, mutex) }
            if pending.isEmpty && closing { break }
            let item = pending.removeFirst()
            pthread_mutex_unlock(mutex)
            hasher.update(bufferPointer: UnsafeRawBufferPointer(start: item.pointer, count: item.count))
            pthread_mutex_lock(mutex)
            busy[item.slot] = false
            pthread_cond_broadcast(changed)
        }
        digest = hasher.finalize()
        pthread_mutex_unlock(mutex)
    }
}
