import Dispatch
import Glibc

/// Per-item observation spread over the host's cores.
///
/// A plan reads live truth item by item — for each container its supervisor's state file
/// and /proc entries, a netlink snapshot of its network namespace, its hostname — and on
/// one thread the other cores sit idle (1,000 containers: ~200 ms of mostly system time
/// on one core of two). Lane `k` takes the indices congruent to `k`: each result slot is
/// written by exactly one thread, and `concurrentPerform` returning orders every write
/// before the results are read. Small inputs stay on the calling thread, where a thread's
/// start would cost more than the work.
public enum Lanes {
    /// Items per lane: fewer, and starting a thread costs about what it saves (an item is
    /// 12–70 µs: a supervisor's state, a netns snapshot, a hostname). With 100 containers,
    /// two lanes took a no-op plan from 38–42 ms to 32–33 ms.
    public static let itemsPerLane = 16

    /// How many lanes for `items`: one per `itemsPerLane` items, at most one per online CPU
    /// and at most four.
    public static func count(for items: Int) -> Int {
        max(1, min(items / itemsPerLane, onlineCPUs, 4))
    }

    /// Read once: glibc reads /sys/devices/system/cpu/online on every sysconf call.
    private static let onlineCPUs = max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN)))

    /// `body(i)` for every `i` in `0..<count`, results in index order.
    public static func map<T>(_ count: Int, _ body: (Int) -> T) -> [T] {
        map(count) { indices in indices.map(body) }
    }

    /// `lane(indices)` once per lane — for work that sets a lane up once, such as a
    /// thread that joins namespaces — returning one result per index, in the order given.
    public static func map<T>(_ count: Int, perLane lane: (StrideTo<Int>) -> [T]) -> [T] {
        let lanes = Self.count(for: count)
        guard lanes > 1 else { return lane(stride(from: 0, to: count, by: 1)) }
        return [T](unsafeUninitializedCapacity: count) { buffer, initialized in
            let slots = Slots(base: buffer.baseAddress!)
            withoutActuallyEscaping(lane) { lane in
                let work = UncheckedLane(run: lane)
                DispatchQueue.concurrentPerform(iterations: lanes) { k in
                    let indices = stride(from: k, to: count, by: lanes)
                    let results = work.run(indices)
                    precondition(results.count == (count - k + lanes - 1) / lanes, "a lane returns one result per index")
                    for (i, result) in zip(indices, results) { (slots.base + i).initialize(to: result) }
                }
            }
            initialized = count
        }
    }
}

/// The result buffer, shared by the lanes: disjoint slots (see `Lanes`).
private struct Slots<T>: @unchecked Sendable {
    let base: UnsafeMutablePointer<T>
}

/// The caller's closure, run by every lane: callers pass work that touches only its own
/// indices and shared state that is read-only meanwhile.
private struct UncheckedLane<T>: @unchecked Sendable {
    let run: (StrideTo<Int>) -> [T]
}
