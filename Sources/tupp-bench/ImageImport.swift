import ArgumentParser
import Glibc
import TuppStorage
import TuppManifest
import TuppSystem

/// Image import through ImageStore against the usual tools, interleaved round by round
/// on a warm page cache: a rootfs tarball against GNU tar -x (and tar -x + sync, since
/// tupp's import ends with a btrfs sync), an OCI layout against `umoci unpack` (and
/// `umoci raw unpack`, which skips umoci's mtree manifest and config.json).
struct ImportBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Import a tarball (--tar) or an OCI layout (--oci DIR:TAG) into the pool, against GNU tar / umoci.")

    @Option(help: "The pool root (holds images/); scratch subvolumes go to its bench/ directory.")
    var pool: String

    @Option(help: "A rootfs tarball.")
    var tar: String?

    @Option(help: "An OCI image layout and tag, DIR:TAG.")
    var oci: String?

    @Option(help: "Repetitions.")
    var rounds = 20

    @Option(help: "Append the samples (JSON lines) to this file.")
    var out: String

    /// Deleted subvolumes are freed by btrfs's cleaner thread, which wakes at the next
    /// transaction commit (up to 30 s later). Commit now and wait for it, so that no side
    /// is measured while the cleaner frees the previous side's 200 MB.
    func waitForCleaner() throws {
        try Command.run(["btrfs", "filesystem", "sync", pool])
        try Command.run(["btrfs", "subvolume", "sync", pool])
    }

    func run() async throws {
        let store = ImageStore(poolRoot: pool)
        let scratch = "\(pool)/bench"
        try Files.createDirectory(scratch, mode: 0o700)
        var tupp: Series
        var references: [(series: Series, command: (String) -> [[String]])]
        let source: Image.Source
        if let tar {
            source = .tar(path: tar)
            tupp = Series("import.tar.tupp")
            references = [
                (Series("import.tar.gnutar"), { target in [["tar", "-xf", tar, "-C", target]] }),
                (Series("import.tar.gnutar+sync"), { target in [["tar", "-xf", tar, "-C", target], ["sync", "-f", target]] }),
            ]
        } else if let oci, let colon = oci.lastIndex(of: ":") {
            let layout = String(oci[..<colon]), tag = String(oci[oci.index(after: colon)...])
            source = .oci(layout: layout, tag: tag)
            tupp = Series("import.oci.tupp")
            references = [
                (Series("import.oci.umoci"), { target in [["umoci", "--log", "error", "unpack", "--image", oci, "\(target)/bundle"]] }),
                (Series("import.oci.umoci-raw"), { target in [["umoci", "--log", "error", "raw", "unpack", "--image", oci, "\(target)/rootfs"]] }),
            ]
        } else {
            throw ValidationError("give --tar FILE or --oci DIR:TAG")
        }

        for round in 0..<rounds + 1 {
            let image = "benchimport\(round)"
            var tuppSample = Series("")
            func viaTupp() async throws {
                // RUSAGE_SELF: the import's threads (extraction, hashing) are this process's.
                let imported = try await tuppSample.time(usageOf: RUSAGE_SELF) { try await store.importImage(name: image, from: source) }
                if round == 0 {
                    progress("\(tupp.key): \(imported.entries) entries, \(imported.bytesRead) bytes read, \(imported.warnings.count) warnings")
                }
            }
            var referenceSamples: [Series] = []
            func viaReferences() throws {
                for (index, reference) in references.enumerated() {
                    let target = "\(scratch)/ref\(round)-\(index)"
                    try Command.run(["btrfs", "subvolume", "create", target])
                    var sample = Series("")
                    try sample.time(usageOf: RUSAGE_CHILDREN) { for step in reference.command(target) { try Command.run(step) } }
                    referenceSamples.append(sample)
                    try Command.run(["btrfs", "subvolume", "delete", target])
                    try waitForCleaner()
                }
            }
            if round % 2 == 0 { try await viaTupp(); try viaReferences() } else { try viaReferences(); try await viaTupp() }
            try store.deleteSubvolume("images/\(image)")
            // OCI layers stay in the layer store after their image is gone: delete them,
            // so that every round imports every layer.
            try LayerStore(poolRoot: pool).deleteUnused()
            try waitForCleaner()
            if round == 0 { continue }  // warm-up: page cache
            tupp.append(tuppSample)
            for index in references.indices { references[index].series.append(referenceSamples[index]) }
        }
        try SeriesWriter(path: out).write([tupp] + references.map(\.series))
    }
}
