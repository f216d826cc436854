import ArgumentParser
import TuppManifest
import TuppManifestLoader

struct Validate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "validate",
        abstract: "Check manifests without touching the host.",
        discussion: """
            Reports every problem at once, each as FILE:LINE:COL with the offending line. \
            Exit status 0 when valid, 1 otherwise.

            Examples:
              tupp validate                          ./tupperware.yaml
              tupp validate manifests/               every *.yaml and *.yml in the directory
              tupp validate base.yaml web.yaml       several files form one desired state
            """
    )

    @OptionGroup var global: GlobalOptions

    @Argument(help: ArgumentHelp("Manifest files or directories (default: ./tupperware.yaml).", valueName: "file|dir"))
    var paths: [String] = []

    @Flag(name: .shortAndLong, help: "Print nothing when valid.")
    var quiet = false

    func run() throws {
        let loaded = try loadManifests(paths)
        guard !quiet else { return }
        let m = loaded.manifest
        func count(_ n: Int, _ word: String) -> String { "\(n) \(word)\(n == 1 ? "" : "s")" }
        let files = loaded.files.map(\.path).joined(separator: ", ")
        print("\(files): valid — \(m.storage == nil ? "no pool" : "1 pool"), \(count(m.images.count, "image")), \(count(m.networks.count, "network")), \(count(m.containers.count, "container"))")
    }
}
