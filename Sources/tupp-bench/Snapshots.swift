import ArgumentParser
import TuppFacts
import TuppStorage
import TuppSystem

/// Snapshot create and delete through libbtrfsutil (ImageStore) against the `btrfs` CLI,
/// interleaved round by round so both see the same filesystem state.
struct SnapshotBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "snapshot",
        abstract: "Create and delete writable snapshots of images/IMAGE: ImageStore vs the btrfs CLI.")

    @Option(help: "The pool root (holds images/ and containers/).")
    var pool: String

    @Option(help: "The image to snapshot.")
    var image = "box"

    @Option(help: "Repetitions.")
    var rounds = 50

    @Option(help: "Append the samples (JSON lines) to this file.")
    var out: String

    func run() throws {
        let store = ImageStore(poolRoot: pool)
        guard let imageInfo = try store.subvolume("images/\(image)") else {
            throw SystemError.failure("find image", "\(pool)/images/\(image)", "not there; import it first")
        }
        var create = Series("snapshot.create.tupp"), remove = Series("snapshot.delete.tupp")
        var createCLI = Series("snapshot.create.btrfs"), removeCLI = Series("snapshot.delete.btrfs")
        for round in 0..<rounds + 1 {
            let library = "benchsnap\(round)", cli = "benchcli\(round)"
            let cliPath = "\(pool)/containers/\(cli)"
            // Alternate which side goes first, so neither always meets a freshly busy disk.
            let libraryFirst = round % 2 == 0
            var a = Series(""), b = Series(""), c = Series(""), d = Series("")
            func libraryCreate() throws {
                let info = try a.time { try store.snapshot(image: image, container: library) }
                guard info.parentUUID == imageInfo.uuid else {
                    throw SystemError.failure("check snapshot", library, "parent \(info.parentUUID ?? "none") is not the image \(imageInfo.uuid)")
                }
            }
            func cliCreate() throws {
                try b.time { try Command.run(["btrfs", "subvolume", "snapshot", "\(pool)/images/\(image)", cliPath]) }
            }
            if libraryFirst { try libraryCreate(); try cliCreate() } else { try cliCreate(); try libraryCreate() }
            if libraryFirst {
                try c.time { try store.deleteSubvolume("containers/\(library)") }
                try d.time { try Command.run(["btrfs", "subvolume", "delete", cliPath]) }
            } else {
                try d.time { try Command.run(["btrfs", "subvolume", "delete", cliPath]) }
                try c.time { try store.deleteSubvolume("containers/\(library)") }
            }
            if round == 0 { continue }  // warm-up
            create.samples += a.samples
            createCLI.samples += b.samples
            remove.samples += c.samples
            removeCLI.samples += d.samples
        }
        try SeriesWriter(path: out).write([create, createCLI, remove, removeCLI])
    }
}
