import ArgumentParser
import Glibc
import TuppBase
import TuppEngine
import TuppManifestLoader

/// `tupp volume …`: snapshots, sizes, export and import of the volumes of the pool the
/// manifests declare. The work is the engine's; this parses and prints.
struct VolumeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "volume",
        abstract: "List, snapshot, export and import volumes.",
        discussion: """
            Every subcommand finds the pool the way plan does: from the manifests given after \
            its own arguments (default ./tupperware.yaml). Those that change something take the \
            host lock, like apply.

            Examples:
              tupp volume list
              tupp volume snapshot pgdata --name before-upgrade
              tupp volume export pgdata@before-upgrade > pgdata.btrfs
              tupp volume import pgdata restore/tupperware.yaml < pgdata.btrfs
            """,
        subcommands: [VolumeList.self, VolumeSnapshot.self, VolumeExportCommand.self, VolumeImportCommand.self]
    )
}

struct VolumeList: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "Show the pool's volumes: state, owner, mode, limit, usage, snapshots and the containers that mount them.",
        discussion: """
            USED is what the volume references (shared with its snapshots or not), ONLY what \
            deleting it would free (btrfs qgroups: shown while quotas are on, that is while \
            some volume declares a size).

            Examples:
              tupp volume list
              tupp volume list --json site/
            """
    )

    @OptionGroup var global: GlobalOptions

    @Argument(help: ArgumentHelp("Manifest files or directories that declare the pool (default: ./tupperware.yaml).", valueName: "file|dir"))
    var paths: [String] = []

    @Option(help: ArgumentHelp("The project of the manifests (as for plan).", valueName: "name"))
    var project: String?

    @Flag(help: "Machine-readable JSON.")
    var json = false

    func run() throws {
        let loaded = try loadManifests(paths, project: project)
        let inventory = try Engine(stateDirectory: global.stateDirectory, logger: global.logger).volumes(loaded.manifest)
        if json {
            emit(Self.json(inventory).serialized() + "\n")
            return
        }
        if inventory.volumes.isEmpty {
            emit("No volumes in \(inventory.poolRoot).\n")
            return
        }
        func size(_ bytes: UInt64?) -> String { bytes.map(Units.formatSize) ?? "-" }
        emitTable([["NAME", "STATE", "OWNER", "MODE", "LIMIT", "USED", "ONLY", "SNAPSHOTS", "USED BY"]] + inventory.volumes.map { v in
            let state = v.state.rawValue + (v.owned ? "" : v.state == .present ? " (not tupp's)" : "") + (v.declared || !v.owned ? "" : ", not declared")
            return [v.name, state, v.owner ?? "-", v.mode ?? "-", size(v.limit), size(v.referenced), size(v.exclusive),
                    v.snapshots.isEmpty ? "-" : v.snapshots.map(\.tag).joined(separator: ", "),
                    v.users.isEmpty ? "-" : v.users.map { "\($0.container) (\($0.state))" }.joined(separator: ", ")]
        })
        if !inventory.quotasEnabled {
            emit("Quotas are off in \(inventory.poolRoot) (no volume declares a size): usage is not counted.\n")
        } else if inventory.quotasRecounting {
            emit("The quota numbers are being counted again (rescan): usage may be off.\n")
        }
    }

    static func json(_ inventory: VolumeInventory) -> JSON.Node {
        func bytes(_ value: UInt64?) -> JSON.Node { value.map { .int(Int64(clamping: $0)) } ?? .null }
        return JSON.object([
            ("pool", .string(inventory.poolRoot)),
            ("quotas", JSON.object([("enabled", .bool(inventory.quotasEnabled)), ("recounting", .bool(inventory.quotasRecounting))])),
            ("volumes", .array(inventory.volumes.map { v in
                JSON.object([
                    ("name", .string(v.name)), ("state", .string(v.state.rawValue)), ("declared", .bool(v.declared)),
                    ("owned", .bool(v.owned)), ("projects", .array(v.projects.map { .string($0) })), ("protect", .bool(v.protect)),
                    ("owner", v.owner.map(JSON.Node.string) ?? .null), ("mode", v.mode.map(JSON.Node.string) ?? .null),
                    ("limit_bytes", bytes(v.limit)), ("referenced_bytes", bytes(v.referenced)), ("exclusive_bytes", bytes(v.exclusive)),
                    ("snapshots", .array(v.snapshots.map { s in
                        JSON.object([("tag", .string(s.tag)), ("created", .double(s.createdAt)),
                                     ("referenced_bytes", bytes(s.referenced)), ("exclusive_bytes", bytes(s.exclusive))])
                    })),
                    ("users", .array(v.users.map { u in JSON.object([("container", .string(u.container)), ("state", .string(u.state))]) })),
                ])
            })),
        ])
    }
}

struct VolumeSnapshot: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "snapshot",
        abstract: "Take a read-only snapshot NAME@TAG of a volume, atomically (also while a container writes to it).",
        discussion: """
            The snapshot is volumes/.snapshots/NAME/TAG in the pool, and shares every unchanged \
            byte with the volume. It is what `tupp volume export NAME@TAG` writes, and the base \
            an incremental export names with --since. Apply never deletes snapshots.

            Examples:
              tupp volume snapshot pgdata                         tagged with the UTC time
              tupp volume snapshot pgdata --name before-upgrade
            """
    )

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The volume.")
    var name: String

    @Argument(help: ArgumentHelp("Manifest files or directories that declare the pool (default: ./tupperware.yaml).", valueName: "file|dir"))
    var paths: [String] = []

    @Option(name: .customLong("name"), help: ArgumentHelp("The snapshot's tag (default: the UTC time, e.g. 20260131T120501Z).", valueName: "tag"))
    var tag: String?

    @Option(help: ArgumentHelp("The project of the manifests (as for plan).", valueName: "name"))
    var project: String?

    @Option(help: ArgumentHelp("Seconds to wait for another apply to finish.", valueName: "seconds"))
    var lockTimeout: Double = 60

    func run() throws {
        let loaded = try loadManifests(paths, project: project)
        let snapshot = try Engine(stateDirectory: global.stateDirectory, logger: global.logger)
            .snapshotVolume(name, tag: tag, manifest: loaded.manifest, lockTimeout: lockTimeout, holder: CommandLine.arguments.joined(separator: " "))
        emit("Snapshot \(name)@\(snapshot.tag) taken.\n")
    }
}

struct VolumeExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write a volume, or one of its snapshots, to stdout as a btrfs send stream.",
        discussion: """
            NAME exports the live volume through a temporary read-only snapshot: what a crash \
            would have left, consistent for a database that survives crashes. NAME@TAG exports \
            a snapshot. With --since TAG only what changed after NAME@TAG is written: the pool \
            that imports it must hold that snapshot (import the streams of a chain in order). \
            stdout must be a pipe or a file (> FILE, or >> FILE to append).

            Examples:
              tupp volume export pgdata > pgdata.btrfs
              tupp volume export pgdata@monday > monday.btrfs
              tupp volume export pgdata@tuesday --since monday > tuesday.btrfs
              tupp volume export pgdata@monday | ssh backup tupp volume import pgdata
            """
    )

    @OptionGroup var global: GlobalOptions

    @Argument(help: ArgumentHelp("The volume, or one of its snapshots.", valueName: "name[@tag]"))
    var reference: String

    @Argument(help: ArgumentHelp("Manifest files or directories that declare the pool (default: ./tupperware.yaml).", valueName: "file|dir"))
    var paths: [String] = []

    @Option(help: ArgumentHelp("Write only what changed since the volume's snapshot TAG.", valueName: "tag"))
    var since: String?

    @Option(help: ArgumentHelp("The project of the manifests (as for plan).", valueName: "name"))
    var project: String?

    @Option(help: ArgumentHelp("Seconds to wait for another apply to finish (exporting the live volume).", valueName: "seconds"))
    var lockTimeout: Double = 60

    func run() throws {
        if isatty(1) == 1 {
            throw ValidationError("stdout is a terminal; redirect it to a file or a pipe, e.g. tupp volume export \(reference) > \(reference.split(separator: "@").first ?? "volume").btrfs")
        }
        let loaded = try loadManifests(paths, project: project)
        let stream = try Engine(stateDirectory: global.stateDirectory, logger: global.logger)
            .exportVolume(reference, since: since, manifest: loaded.manifest, to: 1, lockTimeout: lockTimeout,
                          holder: CommandLine.arguments.joined(separator: " "))
        printError("Exported \(stream.volume)@\(stream.tag)\(stream.since.map { " (changes since \($0))" } ?? "")\(stream.bytes.map { ": \(Units.formatSize($0))" } ?? "").")
    }
}

struct VolumeImportCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Receive a btrfs send stream from stdin as a volume of the pool.",
        discussion: """
            The stream's snapshot is kept as NAME@TAG (the base of the next incremental stream) \
            and the volume becomes a writable copy of it, recorded as tupp's: apply never seeds \
            it, and sets the declared owner, mode and size on it. Every command of the stream is \
            checked before btrfs receive sees it. An existing volume is replaced only with \
            --replace, never while a container mounts it; what it held is kept as a snapshot \
            NAME@replaced-TIME unless that exists elsewhere already.

            Examples:
              tupp volume import pgdata < pgdata.btrfs
              tupp volume import pgdata restore/tupperware.yaml < monday.btrfs
              tupp volume import --replace pgdata < tuesday.btrfs      an incremental stream on top
            """
    )

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The volume to create (or replace).")
    var name: String

    @Argument(help: ArgumentHelp("Manifest files or directories that declare the pool (default: ./tupperware.yaml).", valueName: "file|dir"))
    var paths: [String] = []

    @Flag(help: "Replace the volume when it exists (refused while a container mounts it).")
    var replace = false

    @Option(help: ArgumentHelp("The project of the manifests (as for plan).", valueName: "name"))
    var project: String?

    @Option(help: ArgumentHelp("Seconds to wait for another apply to finish.", valueName: "seconds"))
    var lockTimeout: Double = 60

    func run() async throws {
        if isatty(0) == 1 {
            throw ValidationError("stdin is a terminal; give the stream, e.g. tupp volume import \(name) < \(name).btrfs")
        }
        let loaded = try loadManifests(paths, project: project)
        let imported = try await Engine(stateDirectory: global.stateDirectory, logger: global.logger)
            .importVolume(name, from: 0, replacing: replace, loaded: loaded, lockTimeout: lockTimeout,
                          holder: CommandLine.arguments.joined(separator: " "))
        var line = imported.received ? "Imported \(name) (snapshot \(name)@\(imported.tag))" : "\(name)@\(imported.tag) was there already; \(name) made from it"
        if imported.replaced { line += "; the previous volume was replaced" }
        if let kept = imported.previousKeptAs { line += " and kept as \(name)@\(kept)" }
        emit(line + ".\n")
    }
}
