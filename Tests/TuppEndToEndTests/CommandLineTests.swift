import Glibc
import Testing
import TuppSystem
import TuppTestSupport

/// The entry point around the commands. `tupp` parses synchronously and starts the Swift
/// concurrency runtime only for a command whose `run` is async (issue 19: start-up time);
/// what a user sees — output, its order, exit status — must not depend on which path a
/// command takes. `validate`, `status`, `--version` and `--help` are the synchronous path;
/// `plan` and `volume list` the asynchronous one.
@Suite struct CommandLineTests {
    /// Runs the built tupp with arguments as given (no --state-dir added) and no colour.
    func tupp(_ arguments: String..., in directory: TemporaryDirectory? = nil) throws -> Output {
        let state = directory.map { "\($0.path)/unused-state" } ?? "/nonexistent/tupp-state"
        return try Spawn.run([Built.tupp] + arguments, environment: ["NO_COLOR=1", "TUPP_STATE_DIR=\(state)"])
    }

    /// A manifest with a pool that does not exist and one busybox image: plan reads the
    /// host and proposes to create both, changing nothing.
    func manifest(in directory: TemporaryDirectory) throws -> String {
        let path = "\(directory.path)/m.yaml"
        try Files.writeAtomically(path, text: """
            version: 1
            storage:
              root: \(directory.path)/pool
              device: { file: \(directory.path)/pool.img, size: 256MiB }
            images:
              box: { busybox: /bin/busybox }

            """, mode: 0o644)
        return path
    }

    @Test func versionIsTheOnlyOutput() throws {
        let out = try tupp("--version")
        #expect(out.status == 0 && out.stdout == "0.1.0\n" && out.stderr.isEmpty, "\(out)")
    }

    @Test func helpListsTheSubcommands() throws {
        for arguments in [["--help"], ["-h"], ["help"], []] {
            let out = try Spawn.run([Built.tupp] + arguments)
            #expect(out.status == 0 && out.stderr.isEmpty, "\(arguments): \(out)")
            #expect(out.stdout.contains("USAGE: tupp <subcommand>"), "\(arguments): \(out.stdout)")
            for command in ["validate", "plan", "apply", "destroy", "status", "volume"] {
                #expect(out.stdout.contains("\n  \(command) "), "\(arguments) lists \(command)")
            }
        }
        let volume = try tupp("help", "volume")
        #expect(volume.status == 0 && volume.stdout.contains("USAGE: tupp volume <subcommand>"), "\(volume)")
    }

    /// Usage errors are 64 with the usage line on stderr; a manifest with errors is 1 with
    /// its diagnostics, through the synchronous path (validate) and the async one (plan).
    @Test func exitStatusOfUsageAndManifestErrors() throws {
        let directory = try TemporaryDirectory("tupp-cli")
        defer { directory.remove() }
        for arguments in [["bogus"], ["-v"], ["--state-dir"], ["plan", "--bogus"], ["validate", "--bogus"]] {
            let out = try Spawn.run([Built.tupp] + arguments)
            #expect(out.status == 64 && out.stdout.isEmpty && out.stderr.hasPrefix("Error: "), "\(arguments): \(out)")
            #expect(out.stderr.contains("Usage: tupp"), "\(arguments): \(out)")
        }
        let bad = "\(directory.path)/bad.yaml"
        try Files.writeAtomically(bad, text: "version: 1\ncontainers:\n  web:\n    image: nope\n", mode: 0o644)
        for command in ["validate", "plan"] {
            let out = try tupp(command, bad, in: directory)
            #expect(out.status == 1 && out.stdout.isEmpty, "\(command): \(out)")
            #expect(out.stderr.contains("bad.yaml:4:12: error: container \"web\" uses image \"nope\""), "\(command): \(out)")
            #expect(out.stderr.hasSuffix("errors in the manifest.\n"), "\(command): \(out)")
        }
        let missing = try tupp("validate", "\(directory.path)/missing.yaml", in: directory)
        #expect(missing.status == 1 && missing.stderr.contains("cannot read manifest: No such file or directory"), "\(missing)")
        let good = try tupp("validate", try manifest(in: directory), in: directory)
        #expect(good.status == 0 && good.stderr.isEmpty, "\(good)")
    }

    /// `--state-dir DIR -v` before the subcommand reach it as if written after it. The state
    /// directory is a regular file here, so the plan fails naming it (after the plan, on
    /// stdout, as before the synchronous entry point): that shows which
    /// directory was used; "observed" lines on stderr show --verbose arrived. The plan
    /// itself (stdout, through a pipe) is complete although the async path ends the
    /// process with exit(3) from another thread.
    @Test func globalOptionsBeforeTheSubcommand() throws {
        guard try Host.require(.root) else { return }
        let directory = try TemporaryDirectory("tupp-cli")
        defer { directory.remove() }
        let m = try manifest(in: directory)
        let state = "\(directory.path)/state-file"
        try Files.writeAtomically(state, text: "", mode: 0o644)
        let orders = [["--state-dir", state, "-v", "plan", m], ["-v", "--state-dir", state, "plan", m],
                      ["--state-dir=\(state)", "--verbose", "plan", m], ["plan", "--state-dir", state, "-v", m]]
        for arguments in orders {
            let out = try tupp(arguments, in: directory)
            #expect(out.status == 1, "\(arguments): \(out)")
            #expect(out.output.contains("\(state)/records: Not a directory (ENOTDIR)"), "\(arguments): \(out)")
            #expect(out.stderr.contains("debug tupp: [TuppEngine] observed pools in"), "\(arguments): \(out)")
            #expect(out.stdout.contains("\nPlan: 2 to add, 0 to change, 0 to replace, 0 to destroy.\n"), "\(arguments): \(out)")
        }
        // Without -v nothing but the error goes to stderr.
        let quiet = try tupp("--state-dir", state, "plan", m, in: directory)
        #expect(quiet.status == 1 && !quiet.stderr.contains("debug"), "\(quiet)")
        // An async command that succeeds: its buffered stdout is all there, status 0.
        let fine = try tupp("--state-dir", "\(directory.path)/state", "plan", m, in: directory)
        #expect(fine.status == 0 && fine.stderr.isEmpty, "\(fine)")
        #expect(fine.stdout.hasSuffix("\nPlan: 2 to add, 0 to change, 0 to replace, 0 to destroy.\n"), "\(fine)")
        let detailed = try tupp("--state-dir", "\(directory.path)/state", "plan", "--detailed-exitcode", m, in: directory)
        #expect(detailed.status == 2 && detailed.stderr.isEmpty, "changes to make: \(detailed)")
    }

    /// `volume SUBCOMMAND` is nested: global options before `volume` go after `list`, not
    /// after `volume` (where they would be a usage error, 64). The pool does not exist, so
    /// the command itself runs and fails saying so.
    @Test func globalOptionsAroundANestedSubcommand() throws {
        guard try Host.require(.root) else { return }
        let directory = try TemporaryDirectory("tupp-cli")
        defer { directory.remove() }
        let m = try manifest(in: directory)
        let state = "\(directory.path)/state"
        for arguments in [["--state-dir", state, "volume", "list", m], ["volume", "list", "--state-dir", state, m],
                          ["-v", "--state-dir", state, "volume", "list", "--json", m]] {
            let out = try tupp(arguments, in: directory)
            #expect(out.status == 1, "\(arguments): \(out)")
            #expect(out.stderr.contains("open the pool \(directory.path)/pool: it is not mounted"), "\(arguments): \(out)")
        }
        let bare = try tupp("--state-dir", state, "volume", in: directory)
        #expect(bare.status == 64 && bare.stderr.contains("Usage: tupp volume"), "\(bare)")
    }

    func tupp(_ arguments: [String], in directory: TemporaryDirectory) throws -> Output {
        try Spawn.run([Built.tupp] + arguments,
                      environment: ["NO_COLOR=1", "TUPP_STATE_DIR=\(directory.path)/unused-state"])
    }
}
