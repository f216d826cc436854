import Glibc

/// A task executor with its own threads, for async code that spends its time in blocking
/// system calls.
///
/// Swift's cooperative pool has one thread per core. Applying a container is mostly
/// waiting in the kernel — a snapshot's transaction, a veth's RCU grace period, moving a
/// process into a v1 cgroup — and a thread blocked there is a core's worth of the pool
/// gone: on a 2-core host two containers were applied at a time, whatever `parallelism`
/// said. Work run under `withTaskExecutorPreference(executor)` blocks these threads
/// instead, so waits overlap while the pool stays free for the rest.
///
/// Threads are started on demand, up to `threads`, and live as long as the executor
/// (the process, for the CLI's one).
public final class BlockingWorkExecutor: TaskExecutor, @unchecked Sendable {
    private let limit: Int
    private var queue: [UnownedJob] = []
    private var started = 0
    private var idle = 0
    // Allocated, not stored: pthread objects must not move, and Swift does not promise a
    // stable address for a stored property passed with `&`.
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let wakeup = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

    public init(threads: Int) {
        limit = max(1, threads)
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(wakeup, nil)
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        pthread_mutex_lock(mutex)
        queue.append(job)
        // Idle threads each take one queued job once woken; a thread more when they cannot
        // take them all.
        let startThread = queue.count > idle && started < limit
        if startThread { started += 1 } else { pthread_cond_signal(wakeup) }
        pthread_mutex_unlock(mutex)
        // Without a new thread the job waits for a busy one to come back.
        if startThread && !startWorker() {
            pthread_mutex_lock(mutex)
            started -= 1
            pthread_mutex_unlock(mutex)
        }
    }

    private func startWorker() -> Bool {
        var thread = pthread_t()
        let context = Unmanaged.passRetained(self).toOpaque()
        let rc = pthread_create(&thread, nil, { raw in
            Unmanaged<BlockingWorkExecutor>.fromOpaque(raw!).takeRetainedValue().work()
            return nil
        }, context)
        guard rc == 0 else {
            Unmanaged<BlockingWorkExecutor>.fromOpaque(context).release()
            return false
        }
        pthread_detach(thread)
        return true
    }

    private func work() -> Never {
        while true {
            pthread_mutex_lock(mutex)
            while queue.isEmpty {
                idle += 1
                pthread_cond_wait(wakeup, mutex)
                idle -= 1
            }
            let job = queue.removeFirst()
            pthread_mutex_unlock(mutex)
            job.runSynchronously(on: asUnownedTaskExecutor())
        }
    }
}
