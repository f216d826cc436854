import Glibc
import Testing
import TuppSystem
import TuppTestSupport

/// Kill -9 at every checkpoint of a volume's creation (quotas, subvolume, limit, seed, move
/// into place, records) and of its deletion; then the next apply converges: the volume
/// holds exactly its seed, once, with its limit, or is gone with its record — and no
/// staging subvolume, record or quota setting is left behind.
@Suite(.serialized) struct VolumeCrashTests {
    /// Pool, an image with content at /srv/data, volume "data" (16MiB) seeded from it, and
    /// the container that mounts it; without `volume`, only the pool and the image.
    func manifest(_ i: Installation, volume: Bool = true) throws -> String {
        let app = user("app", of: "data", at: "/srv/data").replacing("image: box\n", with: "image: seeded\n")
        return try i.manifest("m.yaml", volumesManifest(volumes: volume ? "  data: { size: 16MiB }" : "", containers: volume ? app : "",
                                                        images: "  seeded: { directory: {{ROOT}}/rootfs }"))
    }

    /// The checkpoints of one run of `arguments` about volumes and quotas, as (number, label).
    func volumeCheckpoints(_ i: Installation, _ arguments: [String]) throws -> [(Int, String)] {
        let traced = try i.tupp(arguments, environment: ["TUPP_TEST_CHECKPOINTS=1"])
        #expect(traced.status == 0, "\(traced)")
        return traced.stderr.split(separator: "\n").compactMap { line -> (Int, String)? in
            guard line.hasPrefix("tupp checkpoint "), let colon = line.firstIndex(of: ":"),
                  let n = Int(line.dropFirst("tupp checkpoint ".count).prefix { $0.isNumber }) else { return nil }
            let label = String(line[line.index(after: colon)...]).trimmingCharacters()
            return label.contains("volume") || label.contains("quotas") ? (n, label) : nil
        }
    }

    /// Every subvolume of the pool, by path (btrfs subvolume list).
    func subvolumes(_ i: Installation) throws -> [String] {
        let out = try Witness.btrfs("subvolume", "list", "\(i.root.path)/pool")
        return out.stdout.split(separator: "\n").compactMap { $0.split(separator: " ").last.map(String.init) }.sorted()
    }

    @Test func createAndSeedKilledAtEveryCheckpointConverge() throws {
        guard try ready(), try Host.require(.command("/bin/btrfs"), .command("/usr/bin/find"), .command("/usr/bin/diff")) else { return }
        let i = try Installation()
        defer { i.cleanupLeavingNothing() }
        let rootfs = try i.seededRootfs()
        let m = try manifest(i)
        let points = try volumeCheckpoints(i, ["apply", m])
        #expect(points.count >= 6, "\(points)")
        #expect(points.contains { $0.1.contains("seed from image seeded") } && points.contains { $0.1.contains("enable quotas") }, "\(points)")
        try i.expectCleanIncludingVolumes(m)

        let pool = "\(i.root.path)/pool", volume = "\(i.root.path)/pool/volumes/data"
        for (n, label) in points {
            let crashed = try i.tupp(["apply", m], environment: ["TUPP_TEST_CRASH_AT=\(n)"])
            #expect(crashed.status == 128 + SIGKILL, "killed at \(label): \(crashed)")
            let plan = try i.tupp("plan", "--detailed-exitcode", m)
            #expect(plan.status == 2, "after a crash at \(label) the plan shows what is left: \(plan)")
            let converge = try i.tupp("apply", m)
            #expect(converge.status == 0, "apply converges after a crash at \(label): \(converge)")
            #expect(try i.tupp("apply", m).stdout.contains("No changes."), "after a crash at \(label)")

            // Seeded exactly once, limited, and nothing half-made left in the pool.
            #expect(try Witness.identical("\(rootfs)/srv/data", volume), "after a crash at \(label): \((try? Witness.tree(volume)) ?? [])")
            #expect(try Witness.limit(pool, volume) == "\(16 << 20)", "after a crash at \(label)")
            #expect(try subvolumes(i) == ["containers/app", "images/box", "images/seeded", "volumes/data"], "after a crash at \(label)")
            #expect(try i.tupp("exec", "app", "--", "cat", "/srv/data/config").stdout == "seeded\n")
            try i.expectCleanIncludingVolumes(m)
        }
    }

    @Test func deleteKilledAtEveryCheckpointConverges() throws {
        guard try ready(), try Host.require(.command("/bin/btrfs")) else { return }
        let i = try Installation()
        defer { i.cleanupLeavingNothing() }
        _ = try i.seededRootfs()
        let pool = "\(i.root.path)/pool"
        try i.apply(try manifest(i))
        let gone = try manifest(i, volume: false)
        let points = try volumeCheckpoints(i, ["apply", "--prune-volumes", gone])
        #expect(points.count >= 3, "\(points)")
        #expect(points.contains { $0.1.contains("delete subvolume") } && points.contains { $0.1.contains("disable quotas") }, "\(points)")

        for (n, label) in points {
            try i.apply(try manifest(i))
            _ = try manifest(i, volume: false)
            let crashed = try i.tupp(["apply", "--prune-volumes", gone], environment: ["TUPP_TEST_CRASH_AT=\(n)"])
            #expect(crashed.status == 128 + SIGKILL, "killed at \(label): \(crashed)")
            let converge = try i.tupp("apply", "--prune-volumes", gone)
            #expect(converge.status == 0, "apply converges after a crash at \(label): \(converge)")
            #expect(try i.tupp("apply", "--prune-volumes", gone).stdout.contains("No changes."), "after a crash at \(label)")
            #expect(try subvolumes(i) == ["images/box", "images/seeded"], "after a crash at \(label)")
            #expect(!Files.exists("\(i.state)/records/volume.data.json"), "after a crash at \(label)")
            #expect(try Witness.btrfs("qgroup", "show", pool).status != 0, "quotas are off again after a crash at \(label)")
        }
        try i.expectCleanIncludingVolumes(gone)
    }
}
