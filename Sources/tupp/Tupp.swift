import ArgumentParser
import Logging
import Glibc
import TuppManifest
import TuppManifestLoader

@main
struct Tupp: AsyncParsableCommand {
    static let version = "0.1.0"

    static let configuration = CommandConfiguration(
        commandName: "tupp",
        abstract: "Declarative Linux containers: a manifest, planned against the live kernel and applied.",
        discussion: """
            tupp reads a YAML manifest (images, a btrfs pool, networks, containers), compares it \
            with what the host shows right now, and makes the host match.

            Examples:
              tupp validate manifests/               check every manifest in a directory
              tupp plan tupperware.yaml              show what apply would change
              tupp apply tupperware.yaml             make the host match the manifest
              tupp exec -t tupperware sh             a shell inside the container
              tupp volume list                       volumes: sizes, snapshots, users
              tupp destroy tupperware.yaml           remove everything the manifest declares

            Without a file argument, tupp reads ./tupperware.yaml.
            """,
        version: version,
        subcommands: [Validate.self, PlanCommand.self, ApplyCommand.self, DestroyCommand.self, StatusCommand.self, ListCommand.self,
                      ExecCommand.self, LogsCommand.self, VolumeCommand.self, StopCommand.self, StartCommand.self, EventsCommand.self]
    )
}

extension Tupp {
    /// `tupp --state-dir DIR -v apply` and `tupp apply --state-dir DIR -v` both work: the
    /// global options are moved after the subcommand, where every subcommand declares them.
    static func main() async {
        var args = Array(CommandLine.arguments.dropFirst())
        var globals: [String] = []
        while let first = args.first, first.hasPrefix("--state-dir") || first == "-v" || first == "--verbose" {
            globals.append(args.removeFirst())
            if first == "--state-dir", !args.isEmpty { globals.append(args.removeFirst()) }
        }
        // After the subcommand, or after `volume SUBCOMMAND` for the nested ones.
        let at = args.first == VolumeCommand.configuration.commandName && args.count > 1 && !args[1].hasPrefix("-") ? 2 : 1
        if !globals.isEmpty, !args.isEmpty { args.insert(contentsOf: globals, at: at) } else { args = globals + args }
        await main(args)
    }
}

/// Options every subcommand shares.
struct GlobalOptions: ParsableArguments {
    @Option(name: .customLong("state-dir"),
            help: ArgumentHelp("Where tupp keeps its records (env TUPP_STATE_DIR; default /var/lib/tupp).",
                               valueName: "dir"))
    var stateDirOption: String?

    @Flag(name: .shortAndLong, help: "Print what tupp observes and does, with timings (to stderr).")
    var verbose = false

    /// swift-log, to stderr: warnings always, debug detail with --verbose.
    var logger: Logger {
        var logger = Logger(label: "tupp") { StreamLogHandler.standardError(label: $0) }
        logger.logLevel = verbose ? .debug : .warning
        return logger
    }

    /// Always absolute: records name paths inside it that become bind-mount sources.
    var stateDirectory: String {
        var path = "/var/lib/tupp"
        if let stateDirOption { path = stateDirOption }
        else if let env = getenv("TUPP_STATE_DIR"), env.pointee != 0 { path = String(cString: env) }
        guard !path.hasPrefix("/"), let cwd = getcwd(nil, 0) else { return path }
        defer { free(cwd) }
        return String(cString: cwd) + "/" + path
    }
}

/// Writes to stderr.
func printError(_ text: String) {
    var line = text
    if !line.hasSuffix("\n") { line += "\n" }
    _ = line.withCString { write(2, $0, strlen($0)) }
}

/// Loads one project's manifests or prints their diagnostics and exits 1.
func loadManifests(_ paths: [String], project: String? = nil) throws -> LoadedManifest {
    switch ManifestLoader.load(paths, project: project) {
    case .success(let loaded): return loaded
    case .failure(let failure):
        printError(failure.rendered())
        let count = failure.diagnostics.count
        printError("\(count) error\(count == 1 ? "" : "s") in the manifest\(paths.count > 1 ? "s" : "").")
        throw ExitCode(1)
    }
}
