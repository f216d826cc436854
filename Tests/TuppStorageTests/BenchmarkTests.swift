import Glibc
import Testing
import TuppFacts
import TuppManifest
import TuppStorage
import TuppSystem
import TuppTestSupport

/// Measurements for the benchmark harness, run only with TUPP_BENCH=1 (they take
/// minutes and print numbers). They still assert correctness — a big real-world
/// tarball imported by tupp must equal GNU tar's extraction, and every snapshot must
/// name its image as parent — but never a duration.
@Suite("Benchmarks (TUPP_BENCH=1)", .serialized)
struct BenchmarkTests {
    static var enabled: Bool { getenv("TUPP_BENCH") != nil }

    /// A ~200 MB rootfs-like tarball from the host's own /usr: many small files
    /// (python, docs, zoneinfo) and some large binaries.
    static func makeRootfsTarball(_ path: String) throws {
        try command(["tar", "-cf", path, "-C", "/", "usr/lib/python3.11", "usr/share/doc", "usr/share/zoneinfo",
                     "usr/share/i18n", "usr/sbin", "usr/share/perl"])
    }

    @Test func importVersusGNUTar() async throws {
        guard Self.enabled else { return }
        try await withPool(size: 3 << 30) { pool in
            let work = pool.directory.path
            let tarball = "\(work)/rootfs.tar"
            try Self.makeRootfsTarball(tarball)
            let size = try #require(try Files.status(tarball)).st_size
            let entries = try command(["sh", "-c", "tar -tf \(tarball) | wc -l"]).output.trimmingCharacters()
            try command(["sh", "-c", "cat \"$0\" > /dev/null", tarball])  // warm the page cache for both sides
            var tarTimes: [Double] = [], tarSyncTimes: [Double] = [], tuppTimes: [Double] = [], firstTimes: [Double] = []
            let rounds = Int(getenv("BENCH_ROUNDS").map { String(cString: $0) } ?? "5") ?? 5
            func runTar(_ round: Int) throws {
                let target = "\(pool.root)/containers/gnutar\(round)"
                try command(["btrfs", "subvolume", "create", target])
                let t0 = Monotonic.nanoseconds()
                try command(["tar", "-xf", tarball, "-C", target])
                let t1 = Monotonic.nanoseconds()
                try command(["sync", "-f", target])
                let t2 = Monotonic.nanoseconds()
                tarTimes.append(Double(t1 - t0) / 1e6)
                tarSyncTimes.append(Double(t2 - t0) / 1e6)
            }
            func runTupp(_ round: Int) async throws {
                let t0 = Monotonic.nanoseconds()
                // Round 0 hashes while extracting (and fills the cache); later rounds are
                // what apply does after a plan: the digest comes from identify's cache.
                let image = try await pool.store.importImage(name: "bench\(round)", from: .tar(path: tarball),
                                                             cacheDirectory: "\(work)/cache")
                let elapsed = Double(Monotonic.nanoseconds() - t0) / 1e6
                if round == 0 { firstTimes.append(elapsed) } else { tuppTimes.append(elapsed) }
                #expect(image.warnings.isEmpty)
            }
            for round in 0..<rounds {
                // Alternate who goes first; let btrfs finish cleaning deleted subvolumes
                // so neither side pays for the other's deletions.
                if round % 2 == 0 {
                    try runTar(round)
                    try await runTupp(round)
                } else {
                    try await runTupp(round)
                    try runTar(round)
                }
                if round < rounds - 1 {
                    try pool.store.deleteSubvolume("containers/gnutar\(round)")
                    try pool.store.deleteSubvolume("images/bench\(round)")
                    try command(["btrfs", "subvolume", "sync", pool.root])
                }
            }
            let expected = try TreeSnapshot("\(pool.root)/containers/gnutar\(rounds - 1)", withMtimes: true)
            let actual = try TreeSnapshot("\(pool.root)/images/bench\(rounds - 1)", withMtimes: true)
            #expect(actual.differences(from: expected).prefix(10) == [])
            print("""
            BENCH import: tarball \(size) bytes, \(entries) entries, \(rounds) rounds, warm page cache
            BENCH   GNU tar -x            median \(median(tarTimes)) ms  all \(tarTimes.map { Int($0) })
            BENCH   GNU tar -x + sync -f  median \(median(tarSyncTimes)) ms  all \(tarSyncTimes.map { Int($0) })
            BENCH   tupp importImage, hashing while extracting (first import): \(firstTimes.map { Int($0) }) ms
            BENCH   tupp importImage, digest from identify's cache: median \(median(tuppTimes)) ms  all \(tuppTimes.map { Int($0) }) (btrfs sync + read-only + rename included)
            BENCH   ratio tupp / tar -x = \(format2(median(tuppTimes) / median(tarTimes))), tupp / (tar -x + sync) = \(String(format2(median(tuppTimes) / median(tarSyncTimes))))
            """)
        }
    }

    @Test func snapshotLatency() async throws {
        guard Self.enabled else { return }
        try await withPool(size: 1 << 30) { pool in
            let image = try await pool.store.importImage(name: "box", from: .busybox(path: "/bin/busybox"))
            var library: [Double] = []
            for index in 0..<200 {
                let t0 = Monotonic.nanoseconds()
                let snapshot = try pool.store.snapshot(image: "box", container: "c\(index)")
                library.append(Double(Monotonic.nanoseconds() - t0) / 1e6)
                #expect(snapshot.parentUUID == image.info.uuid)
            }
            var cli: [Double] = []
            for index in 0..<50 {
                let t0 = Monotonic.nanoseconds()
                try command(["btrfs", "subvolume", "snapshot", "\(pool.root)/images/box", "\(pool.root)/containers/cli\(index)"])
                cli.append(Double(Monotonic.nanoseconds() - t0) / 1e6)
            }
            var deletion: [Double] = []
            for index in 0..<50 {
                let t0 = Monotonic.nanoseconds()
                try pool.store.deleteSubvolume("containers/c\(index)")
                deletion.append(Double(Monotonic.nanoseconds() - t0) / 1e6)
            }
            let t0 = Monotonic.nanoseconds()
            let contents = try pool.store.contents()
            let listing = Double(Monotonic.nanoseconds() - t0) / 1e6
            #expect(contents.containers.count == 200)
            print("""
            BENCH snapshot via libbtrfsutil (incl. subvolume info): median \(format3(median(library))) ms, p90 \(format3(percentile(library, 0.9))) ms (n=200)
            BENCH snapshot via `btrfs subvolume snapshot` CLI:      median \(format3(median(cli))) ms, p90 \(format3(percentile(cli, 0.9))) ms (n=50, process start included)
            BENCH deleteSubvolume (mountinfo check + delete):       median \(format3(median(deletion))) ms (n=50)
            BENCH contents() with \(contents.containers.count + contents.images.count) subvolumes: \(format3(listing)) ms
            """)
        }
    }
}

func median(_ values: [Double]) -> Double { percentile(values, 0.5) }

func percentile(_ values: [Double], _ p: Double) -> Double {
    let sorted = values.sorted()
    guard !sorted.isEmpty else { return 0 }
    return sorted[min(sorted.count - 1, Int(Double(sorted.count - 1) * p + 0.5))]
}

func format2(_ value: Double) -> String { String(Double(Int(value * 100 + 0.5)) / 100) }
func format3(_ value: Double) -> String { String(Double(Int(value * 1000 + 0.5)) / 1000) }
