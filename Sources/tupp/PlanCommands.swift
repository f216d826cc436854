import ArgumentParser
import Glibc
import TuppEngine
import TuppBase
import TuppManifest
import TuppManifestLoader
import TuppPlan
import TuppRender

enum PlanFormat: String, ExpressibleByArgument, CaseIterable {
    case text, json, markdown
}

struct PlanCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plan",
        abstract: "Show what apply would change, read from the live host. Changes nothing.",
        discussion: """
            Lists what was changed outside tupp first (drift), then one block per resource: \
            + create, ~ update in place, -/+ replace, - destroy, with the reason for each.

            Exit status: 0 success (with --detailed-exitcode: no changes), 1 error, \
            2 changes present (with --detailed-exitcode).

            Examples:
              tupp plan                              ./tupperware.yaml
              tupp plan --detailed-exitcode site/    in CI: fail the job on drift
              tupp plan --format markdown > plan.md  a pull-request comment
              tupp plan --json | jq .summary
            """
    )

    @OptionGroup var global: GlobalOptions

    @Argument(help: ArgumentHelp("Manifest files or directories (default: ./tupperware.yaml).", valueName: "file|dir"))
    var paths: [String] = []

    @Flag(help: "Machine-readable JSON (same as --format json).")
    var json = false

    @Option(help: "Output format: text, json or markdown.")
    var format: PlanFormat = .text

    @Flag(help: "Exit 2 when there are changes, 0 when there are none.")
    var detailedExitcode = false

    @Flag(help: "Keep resources that left the manifest instead of planning their removal.")
    var noPrune = false

    @Flag(help: "Plan the removal of everything the manifest declares (what destroy would do).")
    var destroy = false

    @Flag(help: "Also plan the deletion of volumes that left the manifest (kept otherwise).")
    var pruneVolumes = false

    @Flag(help: "With --destroy: also plan the deletion of the declared volumes (kept otherwise).")
    var includeVolumes = false

    @Option(help: ArgumentHelp("Save the plan for `tupp apply FILE`, which refuses it if the host or manifest changed meanwhile.", valueName: "file"))
    var out: String?

    @Option(help: ArgumentHelp("The project: what apply prunes and destroy removes (default: the manifests' project: key, else their directory's name).", valueName: "name"))
    var project: String?

    func run() async throws {
        let loaded = try loadManifests(paths, project: project)
        let engine = Engine(stateDirectory: global.stateDirectory, logger: global.logger)
        let run = try await engine.plan(loaded.manifest, options: PlanOptions(prune: !noPrune, destroy: destroy, project: loaded.project,
                                                                             pruneVolumes: pruneVolumes, includeVolumes: includeVolumes))
        if let out, run.plan.errors.isEmpty {
            let saved = SavedPlan(run, loaded: loaded, stateDirectory: global.stateDirectory, version: Tupp.version)
            try saved.write(to: out, plan: PlanJSON.render(run.plan, tuppVersion: Tupp.version))
        }
        switch json ? .json : format {
        case .text: emit(PlanText.render(run.plan, style: Style(enabled: colorEnabled())))
        case .json: emit(PlanJSON.render(run.plan, tuppVersion: Tupp.version).serialized() + "\n")
        case .markdown: emit(PlanMarkdown.render(run.plan))
        }
        if let out, run.plan.errors.isEmpty, !json, format == .text {
            emit("\nSaved the plan to \(out). Apply exactly this plan with: tupp apply \(out)\n")
        }
        if !run.plan.errors.isEmpty { throw ExitCode(1) }
        if detailedExitcode && run.plan.hasChanges { throw ExitCode(2) }
    }
}

struct ApplyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "apply",
        abstract: "Make the host match the manifest.",
        discussion: """
            Takes the host lock, reads the live host, plans, and applies in dependency order, \
            printing one line per resource. Given a plan saved by `tupp plan --out FILE`, it \
            applies exactly that plan, or refuses it when the manifest or the host changed since. Resources tupp created that left the manifest are \
            removed (--no-prune keeps them) — except volumes, which are kept with their data unless \
            --prune-volumes is given, and never deleted while a container mounts them. On failure it stops and reports what was applied, \
            what failed and what was not attempted; running apply again converges.

            Examples:
              tupp apply                             ./tupperware.yaml
              tupp apply manifests/tupperware.yaml
              tupp plan --out reviewed.plan && tupp apply reviewed.plan
              tupp apply --json site/ | jq -c 'select(.type=="complete")'
              tupp apply --prune-volumes             also delete volumes that left the manifest
              tupp apply --wait /etc/tupp/           return once everything runs and is healthy

            A container with dependsOn starts once its dependencies are started, healthy or \
            completed (--wait-timeout). Every command apply starts is watched for the settle \
            time (--settle): one that exits or restarts meanwhile is reported as crashing \
            instead of done, and fails --wait.
            """
    )

    @OptionGroup var global: GlobalOptions

    @Argument(help: ArgumentHelp("Manifest files or directories (default: ./tupperware.yaml), or one saved plan.", valueName: "file|dir|plan"))
    var paths: [String] = []

    @Flag(help: "Stream JSON lines (planned, start, progress, complete, errored, summary).")
    var json = false

    @Flag(help: "Keep resources that left the manifest.")
    var noPrune = false

    @Flag(help: "Also delete volumes that left the manifest, with their data (kept otherwise).")
    var pruneVolumes = false

    @Option(help: ArgumentHelp("Seconds to wait for another apply to finish.", valueName: "seconds"))
    var lockTimeout: Double = 60

    @Option(help: ArgumentHelp("The project: what apply prunes and destroy removes (default: the manifests' project: key, else their directory's name).", valueName: "name"))
    var project: String?

    @OptionGroup var waiting: WaitOptions

    func run() async throws {
        if paths.count == 1, let saved = SavedPlan.read(paths[0]) {
            let loaded = try loadManifests(saved.manifests, project: saved.project)
            try await runApply(loaded, options: saved.options, reviewed: saved, json: json, lockTimeout: lockTimeout,
                               global: global, command: "apply", lifecycle: try waiting.options())
            return
        }
        let loaded = try loadManifests(paths, project: project)
        try await runApply(loaded, options: PlanOptions(prune: !noPrune, project: loaded.project, pruneVolumes: pruneVolumes), json: json,
                           lockTimeout: lockTimeout, global: global, command: "apply", lifecycle: try waiting.options())
    }
}

/// How apply waits: for readiness (--wait), how long (--wait-timeout), and how long it
/// watches a started command (--settle).
struct WaitOptions: ParsableArguments {
    @Flag(help: "Return only when every container runs and, where it has a health check, is healthy; exit 1 otherwise.")
    var wait = false

    @Option(help: ArgumentHelp("How long --wait and dependsOn wait: 120s, 5m (default 120s).", valueName: "duration"))
    var waitTimeout: String = "120s"

    @Option(help: ArgumentHelp("How long apply watches a command it started before it calls it done (default 1s; 0 to skip).", valueName: "duration"))
    var settle: String = "1s"

    func options() throws -> LifecycleOptions {
        func seconds(_ text: String, _ flag: String) throws -> Double {
            switch Units.parseDuration(text) {
            case .success(let value): return value
            case .failure(let e): throw ValidationError("\(flag) \(text): \(e.message)")
            }
        }
        return LifecycleOptions(wait: wait, waitTimeout: try seconds(waitTimeout, "--wait-timeout"), settle: try seconds(settle, "--settle"))
    }
}

struct DestroyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "destroy",
        abstract: "Remove everything the manifest declares.",
        discussion: """
            Shows the destroy plan, then stops and removes the project's containers, networks \
            and images in reverse dependency order and unmounts the pool. What other projects \
            also declare (a shared network, the pool) is kept for them. Volumes are kept with \
            their data unless --include-volumes is given; the pool's image file and its data are \
            kept unless --include-storage is given (refused while it holds volumes that are kept).

            Examples:
              tupp destroy manifests/tupperware.yaml
              tupp destroy --include-storage         also delete the pool's image file
              tupp destroy --include-volumes --include-storage    everything, data included
            """
    )

    @OptionGroup var global: GlobalOptions

    @Argument(help: ArgumentHelp("Manifest files or directories (default: ./tupperware.yaml).", valueName: "file|dir"))
    var paths: [String] = []

    @Flag(help: "Also delete the pool's image file and every byte in it.")
    var includeStorage = false

    @Flag(help: "Also delete the declared volumes and their data.")
    var includeVolumes = false

    @Flag(help: "Stream JSON lines instead of text.")
    var json = false

    @Option(help: ArgumentHelp("Seconds to wait for another apply to finish.", valueName: "seconds"))
    var lockTimeout: Double = 60

    @Option(help: ArgumentHelp("The project: what apply prunes and destroy removes (default: the manifests' project: key, else their directory's name).", valueName: "name"))
    var project: String?

    func run() async throws {
        let loaded = try loadManifests(paths, project: project)
        try await runApply(loaded, options: PlanOptions(destroy: true, includeStorage: includeStorage, project: loaded.project,
                                                        includeVolumes: includeVolumes), json: json,
                           lockTimeout: lockTimeout, global: global, command: "destroy")
    }
}

/// Apply and destroy: the engine does the work; this picks the reporter and turns a
/// refusal or failure into the exit status.
func runApply(_ loaded: LoadedManifest, options: PlanOptions, reviewed: SavedPlan? = nil, json: Bool, lockTimeout: Double,
              global: GlobalOptions, command: String, lifecycle: LifecycleOptions = LifecycleOptions(),
              starting names: [String]? = nil) async throws {
    let engine = Engine(stateDirectory: global.stateDirectory, logger: global.logger)
    let reporter: any ApplyReporter = json ? JSONReporter(version: Tupp.version)
                                           : TextReporter(operation: options.destroy ? "Destroy" : names != nil ? "Start" : "Apply")
    do {
        let holder = CommandLine.arguments.joined(separator: " ")
        let outcome = if let names {
            try await engine.start(names, loaded: loaded, options: options, version: Tupp.version, lockTimeout: lockTimeout,
                                   holder: holder, reporter: reporter, lifecycle: lifecycle)
        } else {
            try await engine.apply(loaded, options: options, reviewed: reviewed, version: Tupp.version,
                                   lockTimeout: lockTimeout, holder: holder, reporter: reporter, lifecycle: lifecycle)
        }
        if !outcome.succeeded { throw ExitCode(1) }
    } catch let refusal as ApplyRefusal {
        switch refusal {
        case .stale: printError("\(refusal)")
        case .planErrors: printError("\(command) refused: \(refusal)")
        }
        throw ExitCode(1)
    }
}
