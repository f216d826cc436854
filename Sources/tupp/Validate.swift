import ArgumentParser
import TuppManifest
import TuppManifestLoader
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
        // A directory may hold several projects' manifests; each is validated as its own state.
        let projects: [LoadedManifest]
        switch ManifestLoader.loadProjects(paths) {
        case .success(let loaded): projects = loaded
        case .failure(let failure):
            printError(failure.rendered())
            let count = failure.diagnostics.count
            printError("\(count) error\(count == 1 ? "" : "s") in the manifest\(paths.count > 1 ? "s" : "").")
            throw ExitCode(1)
        }
        guard !quiet else { return }
        func count(_ n: Int, _ word: String) -> String { "\(n) \(word)\(n == 1 ? "" : "s")" }
        for loaded in projects {
            let m = loaded.manifest
            let files = loaded.files.map(\.path).joined(separator: ", ")
            print("\(files): valid — project \(loaded.project): \(m.storage == nil ? "no pool" : "1 pool"), \(count(m.images.count, "image")), \(count(m.volumes.count, "volume")), \(count(m.networks.count, "network")), \(count(m.containers.count, "container"))")
        }
    }
}
