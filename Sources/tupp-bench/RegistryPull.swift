import ArgumentParser
import TuppRegistry
import TuppStorage
import TuppSystem

/// A registry pull through ImageStore against `skopeo copy` + `umoci unpack` of the same
/// reference, interleaved round by round; then a second image that shares the first's
/// base layer, pulled with the first in place: its time and the bytes it fetched.
struct PullBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pull",
        abstract: "Pull --image from a plain-HTTP registry on this host into the pool, against skopeo copy + umoci unpack.")

    @Option(help: "The pool root; scratch subvolumes go to its bench/ directory.")
    var pool: String

    @Option(help: "HOST:PORT/NAME:TAG of the image to pull (plain HTTP).")
    var image: String

    @Option(help: "HOST:PORT/NAME:TAG of an image sharing --image's base layer.")
    var shared: String

    @Option(help: "Repetitions.")
    var rounds = 20

    @Option(help: "Append the samples (JSON lines) to this file.")
    var out: String

    func waitForCleaner() throws {
        try Command.run(["btrfs", "filesystem", "sync", pool])
        try Command.run(["btrfs", "subvolume", "sync", pool])
    }

    func run() async throws {
        let store = ImageStore(poolRoot: pool)
        let layers = LayerStore(poolRoot: pool)
        let scratch = "\(pool)/bench"
        try Files.createDirectory(scratch, mode: 0o700)
        let plain = TransportSecurity(allowPlainHTTP: true)
        let first = RegistrySource(reference: try ImageReference.parse(image), security: plain)
        let second = RegistrySource(reference: try ImageReference.parse(shared), security: plain)
        var tupp = Series("pull.tupp")
        var reference = Series("pull.skopeo+umoci")
        var sharedPull = Series("pull.shared.tupp")
        var firstBytes: UInt64 = 0, secondBytes: UInt64 = 0

        for round in 0..<rounds + 1 {
            var tuppSample = Series(""), referenceSample = Series(""), sharedSample = Series("")
            func viaTupp() async throws {
                // Every layer missing: the image and its layers from the last round are gone.
                let pulled = try await tuppSample.time { try await store.pullImage(name: "benchpull", from: first) }
                firstBytes = pulled.downloadedBytes
                let again = try await sharedSample.time { try await store.pullImage(name: "benchshared", from: second) }
                secondBytes = again.downloadedBytes
                if round == 0 {
                    progress("pull.tupp: \(pulled.layers.count) layers, \(pulled.downloadedBytes) bytes fetched, \(pulled.entries) entries; "
                             + "shared: \(again.reusedLayers) layer(s) reused, \(again.downloadedBytes) bytes fetched")
                }
                try store.deleteSubvolume("images/benchpull")
                try store.deleteSubvolume("images/benchshared")
                try layers.deleteUnused()
                try waitForCleaner()
            }
            func viaReference() throws {
                let target = "\(scratch)/pull\(round)"
                try Command.run(["btrfs", "subvolume", "create", target])
                try referenceSample.time {
                    // skopeo's blob-info cache on a private tmpfs, not in the host's /var/lib.
                    try Command.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                                     #"mount -t tmpfs -o size=64m tupp-skopeo /var/lib && exec skopeo "$@""#, "skopeo",
                                     "copy", "--quiet", "--src-tls-verify=false", "docker://\(image)", "oci:\(target)/layout:ref"])
                    try Command.run(["umoci", "--log", "error", "unpack", "--image", "\(target)/layout:ref", "\(target)/bundle"])
                }
                try Command.run(["btrfs", "subvolume", "delete", target])
                try waitForCleaner()
            }
            if round % 2 == 0 { try await viaTupp(); try viaReference() } else { try viaReference(); try await viaTupp() }
            if round == 0 { continue }  // warm-up: page cache, connections, skopeo's blob cache
            tupp.samples += tuppSample.samples
            reference.samples += referenceSample.samples
            sharedPull.samples += sharedSample.samples
        }
        try SeriesWriter(path: out).write([reference, tupp, sharedPull])
        var text = (try Files.readText(out)) ?? ""
        text += "{\"key\": \"meta.pull\", \"first_bytes\": \(firstBytes), \"shared_bytes\": \(secondBytes)}\n"
        try Files.writeAtomically(out, text: text, mode: 0o644)
    }
}
