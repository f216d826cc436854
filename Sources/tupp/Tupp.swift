import ArgumentParser
import Dispatch
import Logging
import Glibc
import TuppManifest
import TuppManifestLoader

/// The root command. It is synchronous: `tupp --version`, `validate`, `status` and the
/// other commands without `async` run without the Swift concurrency runtime, whose start
/// (worker threads, epoll, a timerfd) cost more than the rest of such a command. Only a
/// command whose `run` is `async` (plan, apply, destroy, volume import) starts it.
@main
struct Tupp: ParsableCommand {
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
    /// Parses, then runs the command: in place when it is synchronous, on the concurrency
    /// runtime when its `run` is `async`. What ArgumentParser's `AsyncParsableCommand.main`
    /// does, except that parsing and synchronous commands happen before that runtime exists.
    static func main() {
        let arguments = Array(CommandLine.arguments.dropFirst())
        // The parser reflects over every command type it may need, which costs more than
        // the rest of a start; printing the version needs none of it. Same output and status
        // as ArgumentParser's own --version.
        if arguments == ["--version"] {
            print(version)
            return
        }
        do {
            var command = try parseAsRoot(movingGlobalOptions(arguments))
            if let asynchronous = command as? any AsyncParsableCommand { runOnConcurrencyRuntime(asynchronous) }
            try command.run()
        } catch {
            exit(withError: error)
        }
    }

    /// `tupp --state-dir DIR -v apply` and `tupp apply --state-dir DIR -v` both work: the
    /// global options are moved after the subcommand, where every subcommand declares them.
    static func movingGlobalOptions(_ arguments: [String]) -> [String] {
        var args = arguments
        var globals: [String] = []
        while let first = args.first, first.hasPrefix("--state-dir") || first == "-v" || first == "--verbose" {
            globals.append(args.removeFirst())
            if first == "--state-dir", !args.isEmpty { globals.append(args.removeFirst()) }
        }
        if globals.isEmpty { return args }
        // After the subcommand, or after `volume SUBCOMMAND` for the nested ones.
        let at = args.first == VolumeCommand.configuration.commandName && args.count > 1 && !args[1].hasPrefix("-") ? 2 : 1
        if args.isEmpty { return globals }
        args.insert(contentsOf: globals, at: at)
        return args
    }

    /// Runs `command` as an async main would: on the global executor, while the main
    /// thread serves the main queue; the process exits when the command returns or throws.
    private static func runOnConcurrencyRuntime(_ command: sending any AsyncParsableCommand) -> Never {
        Task.detached {
            var command = command
            do {
                try await command.run()
            } catch {
                exit(withError: error)
            }
            Glibc.exit(0)
        }
        dispatchMain()
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
